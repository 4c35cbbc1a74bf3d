#!/usr/bin/python3
"""Writes a tiny GLAM test fixture for the C engine's unit tests.

The file is an imago .safetensors (F32) holding, for a small random GLAM head
(c channels, reduced width c', an H x W map):

  glam.*            the head's tensors, named as in a model file (docs/models.md, the networks)
  pool.p            the GeM exponent
  input.F           the feature map F            [1, c, H, W]
  expect.a_lc       local channel attention a    [1, c]
  expect.Fc         F * a + F                    [1, c, H, W]
  expect.s          local spatial map s          [1, 1, H, W]
  expect.Fl         F_c * s + F_c                [1, c, H, W]
  expect.Ac         global channel attention A   [1, c, c]   (A[i, j], softmax over i)
  expect.Gc         global channel output G_c    [1, c, H, W]
  expect.As         global spatial attention A   [1, HW, HW] (A[m, n], softmax over m)
  expect.Gs         global spatial output G_s    [1, c, H, W]
  expect.Fg         F_g                          [1, c, H, W]
  expect.Fgl        the fused map                [1, c, H, W]
  expect.pooled     GeM(F_gl)                    [1, c]
  expect.fc_bn      BatchNorm1d(FC(pooled))      [1, out]
  expect.descriptor L2N(fc_bn)                   [1, out]

Each expect.* comes from the functions of tools/reference.py that
tests/tools/test_tools_reference.py checks against explicit loops.  The
imago.config says head "glam" with dim = out; the backbone entry is nominal
(the fixture has no backbone tensors).

Usage: glam_fixture.py OUT.safetensors [--c 16] [--reduced 4] [--out-dim 8]
       [--height 3] [--width 5] [--seed 0]
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_model  # noqa: E402
import reference as R  # noqa: E402


def make_fixture(c=16, reduced=4, out_dim=8, h=3, w=5, seed=0):
    """-> {name: tensor} of weights, input and expected outputs."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    head = R.GLAMHead(c, reduced, reduced, out_dim)
    with torch.no_grad():
        for name, prm in head.named_parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * (0.8 if "conv" in name else 0.5))
        head.bn.running_mean.copy_(torch.randn(out_dim, generator=g) * 0.2)
        head.bn.running_var.copy_(torch.rand(out_dim, generator=g) + 0.5)
    head.eval()
    p = torch.tensor([2.5 + float(torch.rand(1, generator=g))])
    f = torch.rand(1, c, h, w, generator=g) * 2.0
    with torch.no_grad():
        fc, a_lc = R.glam_local_channel(f, head.lc_conv.weight)
        fl, s = R.glam_local_spatial(f, fc, head)
        gc, ac = R.glam_global_channel(f, head.gc_q.weight, head.gc_k.weight)
        gs, as_ = R.glam_global_spatial(f, head)
        fg1 = f * gc
        fg = fg1 * gs + fg1
        fgl = R.glam_fuse(f, fl, fg, head.fusion)
        pooled = R.pool(fgl, "gem", p)
        fc_bn = head.bn(head.fc(pooled))
        desc = R.l2n(fc_bn)
        check = head.embed(head.attend(f), p)
    assert torch.allclose(check, desc, atol=1e-6)
    out = {"glam." + k: v.detach().clone() for k, v in head.state_dict().items()
           if not k.endswith("num_batches_tracked")}
    out["pool.p"] = p
    out["input.F"] = f
    out.update({"expect.a_lc": a_lc, "expect.Fc": fc, "expect.s": s, "expect.Fl": fl,
                "expect.Ac": ac, "expect.Gc": gc, "expect.As": as_, "expect.Gs": gs,
                "expect.Fg": fg, "expect.Fgl": fgl, "expect.pooled": pooled,
                "expect.fc_bn": fc_bn, "expect.descriptor": desc})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--c", type=int, default=16)
    ap.add_argument("--reduced", type=int, default=4)
    ap.add_argument("--out-dim", type=int, default=8)
    ap.add_argument("--height", type=int, default=3)
    ap.add_argument("--width", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t = make_fixture(a.c, a.reduced, a.out_dim, a.height, a.width, a.seed)
    cfg = imago_model.make_config("glam-fixture", "resnet50", "glam", "gem", a.out_dim, "none",
                                  scales=[1.0], source="tools/glam_fixture.py --seed %d" % a.seed,
                                  trained=False)
    imago_model.save(a.out, t, cfg, dtype="f32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
