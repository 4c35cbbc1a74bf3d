#!/usr/bin/python3
"""Parity of imago's GLAM head (engine/glam.c on the oneDNN backbone) with the
PyTorch reference (tools/reference.py).

    test_parity_glam.py ENGINE_EXTRACT        (meson test --suite parity)

Reuses tests/parity/test_parity_resnet.py's helpers (seeded models from
tools/make_test_model.py cached in $IMAGO_BUILD_ROOT/parity-models, shared
.npy inputs: synthetic images of odd sizes and real photos from
$IMAGO_SHARED/data/photos). Cases:

  ResNet-101 + GLAM, fp32, single scale and 3 scales (odd sizes, photos):
      cosine >= 0.99999 and max |difference| <= 1e-4
  ResNet-101 + GLAM, bf16 backbone (the GLAM head stays fp32), 3 scales:
      against the fp32 reference, mean 1 - cosine within 3x PyTorch's own
      autocast bf16 error (which runs the head in bf16 too) and every cosine
      >= 0.5: random-weight ResNet-101s are too ill-conditioned in bf16 for an
      absolute bound (PyTorch bf16 itself: 0.84 and 0.99 on these inputs)
  MobileNetV2 + GLAM (c = 1280) + learned whitening, 3 scales: fp32 as above;
      bf16 relative to PyTorch's own bf16 as above (both score ~0.995 against
      the fp32 reference on random weights: GLAM amplifies the backbone's
      bf16 rounding, see below)

Prints TAP. Small sizes keep it near a minute or two on 2 cores.
"""
import os
import sys
import tempfile
import time


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_parity_resnet as pr  # noqa: E402

import reference  # noqa: E402

pr.MODELS.update({
    "r101-glam": ["--backbone", "resnet101", "--head", "glam", "--seed", "21"],
    "mnv2-glam-lw": ["--backbone", "mobilenet_v2", "--head", "glam", "--whitening", "lw",
                     "--seed", "22"],
})


def main():
    exe, photos, cache = pr.setup("test_parity_glam.py")
    t_start = time.time()
    S3 = pr.DEFAULT_SCALES

    with tempfile.TemporaryDirectory(prefix="imago-parity-glam-") as tmp:
        path, net, cfg = (lambda p: (p,) + reference.load_model(p))(pr.model_path(cache,
                                                                                  "r101-glam"))
        pr.tap(cfg["head"] == "glam" and net.glam.fc.out_features == 512,
               "r101-glam: the reference model is ResNet-101 + GLAM, 512-d")
        mean, std = cfg["input"]["mean"], cfg["input"]["std"]
        inp = pr.Inputs(tmp)
        inp.synthetic("synth_97x203", 97, 203, 1)
        inp.synthetic("synth_333x517", 333, 517, 2)
        inp.photo("apple_320", os.path.join(photos, "apple.jpg"), 320, mean, std)
        inp.photo("building_384", os.path.join(photos, "building.jpg"), 384, mean, std)
        inp.photo("parrot_256", os.path.join(photos, "coral_parrot.jpg"), 256, mean, std)
        inp.photo("basketball_288", os.path.join(photos, "basketball1.png"), 288, mean, std)

        pr.check_case("r101-glam fp32 single-scale", exe, path, net, inp,
                      ["synth_97x203", "synth_333x517", "apple_320", "building_384"], [1.0],
                      "fp32", tmp)
        pr.check_case("r101-glam fp32 3 scales", exe, path, net, inp,
                      ["synth_97x203", "parrot_256"], S3, "fp32", tmp)
        # Random-weight ResNet-101 backbones are ill-conditioned in bf16: PyTorch's
        # own autocast bf16 scores 0.84 / 0.99 against its fp32 here (measured),
        # so the check is test_parity_resnet's relative one (mean 1 - cosine
        # within 3x PyTorch's own bf16 error, every cosine >= 0.5).
        pr.check_case("r101-glam bf16 3 scales", exe, path, net, inp,
                      ["apple_320", "building_384"], S3, "bf16", tmp, torch_bf16=True)

        p2 = pr.model_path(cache, "mnv2-glam-lw")
        net2, _ = reference.load_model(p2)
        pr.check_case("mnv2-glam-lw fp32 3 scales", exe, p2, net2, inp,
                      ["synth_333x517", "basketball_288"], S3, "fp32", tmp)
        # GLAM's global channel product (F * G_c * (1 + G_s): cubic in F)
        # amplifies the bf16 rounding of the backbone's map: imago scored
        # 0.9960 / 0.9934 and PyTorch's own bf16 0.9951 on apple_320 (measured),
        # below an absolute 0.999 on random weights; relative check as above.
        pr.check_case("mnv2-glam-lw bf16 3 scales", exe, p2, net2, inp,
                      ["apple_320", "basketball_288"], S3, "bf16", tmp, torch_bf16=True)

    pr.diag("GLAM parity suite: %.0f s" % (time.time() - t_start))
    print("1..%d" % pr.n_test)
    return 1 if pr.failed else 0


if __name__ == "__main__":
    sys.exit(main())
