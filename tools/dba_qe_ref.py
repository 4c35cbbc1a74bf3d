#!/usr/bin/env python3
"""numpy reference for imago's DBA and alpha-QE (docs/models.md and README.md, DBA and QE).

Reads the case directory written by tests/unit/test_index_dba_qe.c
(case.json + raw little-endian float32 / int64 files) and checks the C
outputs against the formulas:

  DBA:  x_i' = normalize(x_i + sum_{j in N_k(x_i), j != i} w(x_i . x_j) x_j)
  QE:   q'   = normalize(q + sum_{j in N_n(q)} w(q . a_j) a_j), then search again
  w(s) = max(s, 0) ** e   (e = beta for DBA, alpha for QE; e = 0 gives 1)

Prints the largest difference of each check and exits 1 when one exceeds
the tolerance.
"""
import json
import os
import sys

import numpy as np


def load(case, name, dtype, shape):
    return np.fromfile(os.path.join(case, name), dtype=dtype).reshape(shape)


def w(s, e):
    if e == 0:
        return np.ones_like(s)
    return np.maximum(s, 0.0) ** e


def normalize(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def dba_full(X, k, beta):
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    # best k by score, ties broken by the smaller index (as imago does)
    order = np.lexsort((np.tile(np.arange(len(X)), (len(X), 1)), -S), axis=1)[:, :k]
    out = X.copy()
    for i in range(len(X)):
        nb = order[i]
        out[i] = X[i] + (w(S[i, nb], beta)[:, None] * X[nb]).sum(0)
    return normalize(out)


def main():
    case = sys.argv[1]
    tol = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-5
    with open(os.path.join(case, "case.json")) as f:
        c = json.load(f)
    n, d = c["n"], c["dim"]
    X = load(case, "raw.f32", np.float32, (n, d)).astype(np.float64)
    worst = 0.0
    failed = False

    for run in c["dba_runs"]:
        A = load(case, run["file"], np.float32, (n, d)).astype(np.float64)
        ref = dba_full(X, run["k"], run["beta"])
        diff = float(np.abs(A - ref).max())
        print(f"dba k={run['k']} beta={run['beta']}: max |C - numpy| = {diff:.3g}")
        failed |= diff > tol
        worst = max(worst, diff)

    if "online" in c:
        o = c["online"]
        A = load(case, o["index_before"], np.float32, (n, d)).astype(np.float64)
        x = load(case, o["raw_new"], np.float32, (d,)).astype(np.float64)
        got = load(case, o["aug_new"], np.float32, (d,)).astype(np.float64)
        k, beta = o["k"], o["beta"]
        nb = np.lexsort((np.arange(n), -(A @ x)))[:k]  # neighbours in the index
        ref = normalize(x + (w(X[nb] @ x, beta)[:, None] * X[nb]).sum(0))
        diff = float(np.abs(got - ref).max())
        print(f"online dba: max |C - numpy| = {diff:.3g}")
        failed |= diff > tol

    for run in c["qe_runs"]:
        A = load(case, run["index"], np.float32, (n, d)).astype(np.float64)
        ids = load(case, "ids.i64", np.int64, (n,))
        nq, kk = run["nq"], run["k"]
        Q = load(case, run["queries"], np.float32, (nq, d)).astype(np.float64)
        got_ids = load(case, run["hit_ids"], np.int64, (nq, kk))
        got_sc = load(case, run["hit_scores"], np.float32, (nq, kk)).astype(np.float64)
        maxd = 0.0
        id_mismatch = 0
        for j in range(nq):
            q = Q[j]
            s = A @ q
            nb = np.lexsort((np.arange(n), -s))[: run["n"]]
            q2 = normalize(q + (w(s[nb], run["alpha"])[:, None] * A[nb]).sum(0))
            s2 = A @ q2
            top = np.lexsort((np.arange(n), -s2))[:kk]
            maxd = max(maxd, float(np.abs(s2[top] - got_sc[j]).max()))
            # ids must agree except where scores tie within tolerance
            for i in range(kk):
                if ids[top[i]] != got_ids[j, i] and abs(s2[top[i]] - got_sc[j, i]) > tol:
                    id_mismatch += 1
        print(f"qe n={run['n']} alpha={run['alpha']}: max score diff {maxd:.3g}, "
              f"id mismatches {id_mismatch}")
        failed |= maxd > tol or id_mismatch > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
