#!/usr/bin/python3
"""Retrieval with the real ImageNet MobileNetV2 (../shared/models) converted by
tools/convert.py (stock torch padding, GeM p = 3, as the models README
measured) and run by tools/reference.py: the known photo pairs of
../shared/data/photos find each other at rank 1 among the 36 photos, in both
directions, with the default 3 scales at 320 px.  (Single scale at 512 px
ranks box_in_scene -> box 5th; 3 scales at 256 px rank box -> box_in_scene
2nd.)  Suite slow: every photo has its own shape, and PyTorch's oneDNN builds
new primitives per shape (about 90 s of CPU in all)."""

import contextlib
import glob
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taplib  # noqa: E402

taplib.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402

import convert  # noqa: E402
import reference as R  # noqa: E402

torch.set_num_threads(2)
CKPT = os.path.join(taplib.SHARED, "models", "mobilenet_v2_imagenet.pth")
PHOTOS = os.path.join(taplib.SHARED, "data", "photos")
PAIRS = [("box.png", "box_in_scene.png"), ("graf1.png", "graf3.png"),
         ("leuvenA.jpg", "leuvenB.jpg"), ("aero1.jpg", "aero3.jpg"), ("aloeL.jpg", "aloeR.jpg"),
         ("rubberwhale1.png", "rubberwhale2.png")]


def main(t):
    if not os.path.exists(CKPT) or not os.path.isdir(PHOTOS):
        taplib.skip_all("needs %s and %s" % (CKPT, PHOTOS))
    out = os.path.join(taplib.tmpdir(), "mnv2.safetensors")
    with contextlib.redirect_stdout(io.StringIO()):
        rc = convert.main([CKPT, "--padding", "torch", "--mean", "0.5,0.5,0.5", "--std",
                           "0.5,0.5,0.5", "--p", "3", "--out", out])
    t.is_eq(rc, 0, "convert the real MobileNetV2 (torch padding)")
    net, cfg = R.load_model(out)
    files = sorted(f for f in glob.glob(os.path.join(PHOTOS, "*"))
                   if f.lower().endswith((".jpg", ".png")))
    D = np.stack([R.extract(net, R.preprocess(f, 320, [0.5] * 3, [0.5] * 3),
                            cfg["scales"])[0].numpy() for f in files])
    t.cmp(float(np.abs(np.linalg.norm(D, axis=1) - 1).max()), "<", 1e-5, "unit descriptors")
    S = D @ D.T
    np.fill_diagonal(S, -np.inf)
    names = [os.path.basename(f) for f in files]
    for a, b in PAIRS:
        ia, ib = names.index(a), names.index(b)
        ra = int((S[ia] > S[ia, ib]).sum()) + 1
        rb = int((S[ib] > S[ib, ia]).sum()) + 1
        t.ok(ra == 1 and rb == 1, "%s <-> %s at rank 1 among %d (ranks %d, %d)"
             % (a, b, len(files), ra, rb))


taplib.Tap().run(main)
