#!/usr/bin/python3
"""Writes a small fixture for the unit test of the AP-GeM and GLAP poolings
(tests/unit/test_engine_attpool.c, engine/attpool.c).

The expected values are computed here in numpy float64 with explicit sums,
straight from the formulas in engine/attpool.h, independently of torch; the
script also asserts that tools/reference.py's apgem_pool / glap_pool agree
with them, so the C code and the reference are both held to the same numbers.
The file is an imago .safetensors (F32) holding, for an H x W map of c
channels (NHWC: location-major):

  input.F        F                                   [hw, c]  (some values <= 0)
  input.a        AP-GeM attention in (0, 1)          [hw]
  input.S        GLAP logits                         [hw, K]
  input.fc_w     GLAP embedding                      [D, c]
  input.fc_b                                         [D]
  pool.p         the GeM exponent                    [1]
  expect.apgem   attention-weighted GeM              [c]
  expect.gem     plain GeM (the a = 1 case)          [c]
  expect.glap_vk per-map generalized means v_k       [K, c]
  expect.glap_v  sum_k L2N(v_k)                      [c]
  expect.glap_e  fc_w v + fc_b                       [D]

Usage: attpool_fixture.py OUT.safetensors [--c 12] [--k 3] [--dim 5]
       [--height 4] [--width 7] [--seed 0]
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_model  # noqa: E402
import reference as R  # noqa: E402

EPS = 1e-6


def expected(F, a, S, p, W, b):
    hw, c = F.shape
    k = S.shape[1]
    Fp = np.maximum(F, EPS) ** p
    apgem = np.zeros(c)
    gem = np.zeros(c)
    for ch in range(c):
        num = sum(a[i] * Fp[i, ch] for i in range(hw))
        apgem[ch] = (num / max(a.sum(), EPS)) ** (1.0 / p)
        gem[ch] = (sum(Fp[i, ch] for i in range(hw)) / hw) ** (1.0 / p)
    vk = np.zeros((k, c))
    for j in range(k):
        e = np.exp(S[:, j] - S[:, j].max())
        A = e / e.sum()
        for ch in range(c):
            vk[j, ch] = sum(A[i] * Fp[i, ch] for i in range(hw)) ** (1.0 / p)
    v = sum(vk[j] / (np.sqrt((vk[j] ** 2).sum()) + 1e-6) for j in range(k))
    e = W @ v + b
    return apgem, gem, vk, v, e


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--c", type=int, default=12)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--dim", type=int, default=5)
    ap.add_argument("--height", type=int, default=4)
    ap.add_argument("--width", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    o = ap.parse_args(argv)
    rng = np.random.default_rng(o.seed)
    hw, c, k = o.height * o.width, o.c, o.k
    F = (rng.random((hw, c)) * 2.0 - 0.3).astype(np.float32)   # ~15% at or below 0 (clamped)
    a = (1.0 / (1.0 + np.exp(-2.0 * rng.standard_normal(hw)))).astype(np.float32)
    S = (2.0 * rng.standard_normal((hw, k))).astype(np.float32)
    p = np.float32(2.5 + rng.random())
    W = (rng.standard_normal((o.dim, c)) / np.sqrt(c)).astype(np.float32)
    b = (0.1 * rng.standard_normal(o.dim)).astype(np.float32)
    apgem, gem, vk, v, e = expected(F.astype(np.float64), a.astype(np.float64),
                                    S.astype(np.float64), float(p), W.astype(np.float64),
                                    b.astype(np.float64))

    # the reference's functions on the same numbers (NCHW, one image)
    ft = torch.from_numpy(F.T.reshape(1, c, o.height, o.width).copy()).double()
    at = torch.from_numpy(a.reshape(1, 1, o.height, o.width).copy()).double()
    st = torch.from_numpy(S.T.reshape(1, k, o.height, o.width).copy()).double()
    pt = torch.tensor([float(p)], dtype=torch.float64)
    assert np.allclose(R.apgem_pool(ft, at, pt)[0].double().numpy(), apgem, rtol=1e-5)
    assert np.allclose(R.glap_pool(ft.float(), st.float(), pt.float())[0].numpy(), v,
                       rtol=1e-4, atol=1e-6)

    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))  # noqa: E731
    out = {"input.F": t(F), "input.a": t(a), "input.S": t(S), "input.fc_w": t(W),
           "input.fc_b": t(b), "pool.p": t([p]), "expect.apgem": t(apgem), "expect.gem": t(gem),
           "expect.glap_vk": t(vk), "expect.glap_v": t(v), "expect.glap_e": t(e)}
    cfg = imago_model.make_config("attpool-fixture", "resnet50", "apgem", "gem", c, "none",
                                  scales=[1.0], source="tools/attpool_fixture.py --seed %d"
                                  % o.seed, trained=False)
    imago_model.save(o.out, out, cfg, dtype="f32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
