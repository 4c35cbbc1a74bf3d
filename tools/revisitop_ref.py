#!/usr/bin/env python3
"""Python port of revisitop's evaluation (compute_ap / compute_map with the
Easy / Medium / Hard protocol setup of its example_evaluate), used to
cross-check imago's C implementation (index/eval.c).

usage: revisitop_ref.py GND.json RANKS.i64 NQ NRANKED OUT.json
RANKS is a raw little-endian int64 matrix NQ x NRANKED (row q = database
indices best first). Writes {"easy": {"map":..,"mp":[..]}, ...} (fractions).
"""
import json
import sys

import numpy as np


def compute_ap(ranks, nres):
    nimgranks = len(ranks)
    ap = 0.0
    recall_step = 1.0 / nres
    for j in np.arange(nimgranks):
        rank = ranks[j]
        if rank == 0:
            precision_0 = 1.0
        else:
            precision_0 = float(j) / rank
        precision_1 = float(j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * recall_step / 2.0
    return ap


def compute_map(ranks, gnd, kappas=()):
    """ranks: (n_ranked x nq) as in revisitop (columns are queries)."""
    mAP = 0.0
    nq = len(gnd)
    pr = np.zeros(len(kappas))
    nempty = 0
    for i in np.arange(nq):
        qgnd = np.array(gnd[i]["ok"])
        if qgnd.shape[0] == 0:
            nempty += 1
            continue
        qgndj = np.array(gnd[i].get("junk", []))
        pos = np.arange(ranks.shape[0])[np.in1d(ranks[:, i], qgnd)]
        junk = np.arange(ranks.shape[0])[np.in1d(ranks[:, i], qgndj)]
        k = 0
        ij = 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap = compute_ap(pos, len(qgnd))
        mAP = mAP + ap
        pos += 1
        for j in np.arange(len(kappas)):
            kq = min(max(pos), kappas[j])
            pr[j] += (pos <= kq).sum() / kq
    mAP = mAP / (nq - nempty)
    pr = pr / (nq - nempty)
    return mAP, pr


def main():
    gnd_path, ranks_path, nq, nr, out = sys.argv[1:6]
    nq, nr = int(nq), int(nr)
    with open(gnd_path) as f:
        cfg = json.load(f)
    gnd = cfg["gnd"]
    ranks = np.fromfile(ranks_path, dtype=np.int64).reshape(nq, nr).T
    res = {}
    for name in ("easy", "medium", "hard"):
        g = []
        for q in gnd:
            e, h, j = q.get("easy", []), q.get("hard", []), q.get("junk", [])
            if name == "easy":
                g.append({"ok": list(e), "junk": list(j) + list(h)})
            elif name == "medium":
                g.append({"ok": list(e) + list(h), "junk": list(j)})
            else:
                g.append({"ok": list(h), "junk": list(j) + list(e)})
        m, pr = compute_map(ranks, g, [1, 5, 10])
        res[name] = {"map": m, "mp": list(pr)}
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
