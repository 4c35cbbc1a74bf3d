#!/usr/bin/env python3
"""numpy float64 reference for imago's collection-learned PCA whitening.

Reads the case directory written by tests/unit/test_index_whiten.c (case.json,
X.f32 and the C outputs per case) and recomputes, with numpy.linalg.eigh on
the float64 covariance (1 / (N - 1), as sklearn's explained_variance_):

  m = mean(X);  C = (X - m)^T (X - m) / (N - 1) = U diag(lambda) U^T
  P = diag((lambda_j + eps)^-power) U_d^T   (top d eigenvalues)
  y = L2N(P (x - m))

Rows of P (and columns of y) are compared up to their sign. Prints the
largest relative difference of each check; exits 1 above the tolerance.
"""
import json
import os
import sys

import numpy as np


def main():
    case_dir, tol = sys.argv[1], float(sys.argv[2])
    cfg = json.load(open(os.path.join(case_dir, "case.json")))
    n, D = cfg["n"], cfg["dim_in"]
    X = np.fromfile(os.path.join(case_dir, "X.f32"), dtype=np.float32).reshape(n, D)
    Xd = X.astype(np.float64)
    m = Xd.mean(axis=0)
    Xc = Xd - m
    C = Xc.T @ Xc / (n - 1)
    lam, U = np.linalg.eigh(C)
    lam, U = lam[::-1], U[:, ::-1]
    bad = 0
    for c in cfg["cases"]:
        name, d, power, eps = c["name"], c["dim"], c["power"], c["eps"]

        def load(suffix, dt, shape):
            return np.fromfile(os.path.join(case_dir, name + suffix), dtype=dt).reshape(shape)

        cm = load(".mean.f64", np.float64, (D,))
        cP = load(".P.f64", np.float64, (d, D))
        cl = load(".lambda.f64", np.float64, (d,))
        cY = load(".Y.f32", np.float32, (n, d)).astype(np.float64)
        P = np.diag((np.maximum(lam[:d], 0) + eps) ** -power) @ U[:, :d].T
        Y = Xc @ P.T
        Y /= np.linalg.norm(Y, axis=1, keepdims=True) + 1e-6
        e_mean = np.abs(cm - m).max() / np.abs(m).max()
        e_lam = np.abs(cl - lam[:d]).max() / lam[0]
        e_P = 0.0
        e_Y = 0.0
        for r in range(d):
            s = 1.0 if np.dot(cP[r], P[r]) >= 0 else -1.0
            e_P = max(e_P, np.abs(cP[r] - s * P[r]).max() / np.abs(P[r]).max())
            # y's column r flips with row r of P; L2N is sign-independent
            e_Y = max(e_Y, np.abs(cY[:, r] - s * Y[:, r]).max())
        # y in float32 (C sgemm on float32 inputs): 1e-4 absolute on unit vectors
        ok = e_mean <= tol and e_lam <= tol and e_P <= tol and e_Y <= 10 * tol
        print("%s: d=%d power=%g mean %.2e, lambda %.2e, P %.2e, y %.2e %s"
              % (name, d, power, e_mean, e_lam, e_P, e_Y, "ok" if ok else "FAIL"))
        bad += not ok
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
