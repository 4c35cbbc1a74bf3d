#!/usr/bin/python3
"""Parity of imago's AP-GeM and GLAP heads (engine/attpool.c after the oneDNN
backbone + attention convolutions) with the PyTorch reference
(tools/reference.py: APGeMHead / apgem_pool, GLAPHead / glap_pool).

    test_parity_heads.py ENGINE_EXTRACT        (meson test --suite parity)

Reuses tests/parity/test_parity_resnet.py's helpers (seeded models from
tools/make_test_model.py cached in $IMAGO_BUILD_ROOT/parity-models, shared
.npy inputs: synthetic images of odd sizes and real photos from
$IMAGO_SHARED/data/photos). Cases, each for AP-GeM and GLAP:

  ResNet-50 (GLAP: last_stride 1, output stride 16, with glap.fc 512):
      fp32, 1 scale (odd sizes + photos) and 3 scales: cosine >= 0.99999 and
      max |difference| <= 1e-4
  ResNet-101 + lw whitening (GLAP without glap.fc, last_stride 2), fp32,
      3 scales, as above
  MobileNetV2 (+ lw for AP-GeM), fp32 1 and 3 scales, as above
  MobileNetV2 + AP-GeM with whitening ["fc", "lw"] and "normalize_pooled":
      false (the converted dirtorch form), fp32 1 and 3 scales, as above
  bf16 (ResNet-50, MobileNetV2), 3 scales: test_parity_resnet's relative
      check (mean 1 - cosine within 3x PyTorch's own autocast bf16 error,
      every cosine >= 0.5), as the other heads

Prints TAP.
"""
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_parity_resnet as pr  # noqa: E402

import torch  # noqa: E402
import reference  # noqa: E402

pr.MODELS.update({
    "r50-apgem": ["--backbone", "resnet50", "--head", "apgem", "--seed", "31"],
    "r101-apgem-lw": ["--backbone", "resnet101", "--head", "apgem", "--whitening", "lw",
                      "--seed", "32"],
    "mnv2-apgem-lw": ["--backbone", "mobilenet_v2", "--head", "apgem", "--whitening", "lw",
                      "--seed", "33"],
    "mnv2-apgem-fclw-raw": ["--backbone", "mobilenet_v2", "--head", "apgem", "--apgem-width",
                            "64", "--whitening", "fc,lw", "--whiten-dim", "256", "--raw-pooled",
                            "--seed", "37"],
    "r50-glap-s1": ["--backbone", "resnet50", "--head", "glap", "--last-stride", "1",
                    "--seed", "34"],
    "r101-glap-lw": ["--backbone", "resnet101", "--head", "glap", "--glap-dim", "0",
                     "--whitening", "lw", "--seed", "35"],
    "mnv2-glap": ["--backbone", "mobilenet_v2", "--head", "glap", "--seed", "36"],
})


def main():
    exe, photos, cache = pr.setup("test_parity_heads.py")
    t_start = time.time()
    S3 = pr.DEFAULT_SCALES

    def load(name):
        path = pr.model_path(cache, name)
        net, cfg = reference.load_model(path)
        return path, net, cfg

    with tempfile.TemporaryDirectory(prefix="imago-parity-heads-") as tmp:
        inp = pr.Inputs(tmp)
        mean, std = reference.imago_model.IMAGENET_MEAN, reference.imago_model.IMAGENET_STD
        inp.synthetic("synth_97x203", 97, 203, 1)
        inp.synthetic("synth_333x517", 333, 517, 2)
        inp.photo("apple_320", os.path.join(photos, "apple.jpg"), 320, mean, std)
        inp.photo("building_384", os.path.join(photos, "building.jpg"), 384, mean, std)
        inp.photo("parrot_256", os.path.join(photos, "coral_parrot.jpg"), 256, mean, std)

        for name, shape_ok in (
                ("r50-apgem", lambda n, c: c["head"] == "apgem"
                 and n.apgem.att[0].out_channels == 512),
                ("r50-glap-s1", lambda n, c: c["head"] == "glap" and c["last_stride"] == 1
                 and n.glap.att.out_channels == 8 and n.glap.fc.out_features == 512)):
            path, net, cfg = load(name)
            pr.tap(shape_ok(net, cfg), "%s: the reference model has the head's shapes" % name)
            # the attention is not trivial (a != const, softmax maps neither uniform nor one-hot)
            tr = {}
            reference.extract(net, torch.from_numpy(inp.arrays["apple_320"]), [1.0], traces=tr)
            t = tr["scale0"]
            if cfg["head"] == "apgem":
                a = t["apgem.a"]
                pr.tap(float(a.std()) > 0.02, "%s: attention varies over the map (std %.3f, "
                       "mean %.3f)" % (name, float(a.std()), float(a.mean())))
            else:
                A = reference.glap_maps(t["glap.S"]).flatten(2)
                mx = float(A.max(dim=2).values.mean())
                hw = A.shape[2]
                pr.tap(2.0 / hw < mx < 0.9, "%s: softmax maps neither uniform nor one-hot "
                       "(mean peak %.3f over %d locations)" % (name, mx, hw))
            pr.check_case("%s fp32 single-scale" % name, exe, path, net, inp,
                          ["synth_97x203", "synth_333x517", "apple_320", "building_384"],
                          [1.0], "fp32", tmp)
            pr.check_case("%s fp32 3 scales" % name, exe, path, net, inp,
                          ["synth_97x203", "parrot_256"], S3, "fp32", tmp)
            pr.check_case("%s bf16 3 scales" % name, exe, path, net, inp,
                          ["apple_320", "building_384"], S3, "bf16", tmp, torch_bf16=True)

        for name in ("r101-apgem-lw", "r101-glap-lw"):
            path, net, _ = load(name)
            pr.check_case("%s fp32 3 scales" % name, exe, path, net, inp,
                          ["synth_97x203", "building_384"], S3, "fp32", tmp)

        for name in ("mnv2-apgem-lw", "mnv2-glap"):
            path, net, _ = load(name)
            pr.check_case("%s fp32 single-scale" % name, exe, path, net, inp,
                          ["synth_333x517", "parrot_256"], [1.0], "fp32", tmp)
            pr.check_case("%s fp32 3 scales" % name, exe, path, net, inp,
                          ["synth_97x203", "apple_320"], S3, "fp32", tmp)
            pr.check_case("%s bf16 3 scales" % name, exe, path, net, inp,
                          ["apple_320", "building_384"], S3, "bf16", tmp, torch_bf16=True)

        # whitening stages fc then lw and "normalize_pooled": false (no L2N of the
        # pooled vector nor of the multi-scale combination), as converted dirtorch
        # models have, with 1 and 3 scales
        path, net, cfg = load("mnv2-apgem-fclw-raw")
        pr.tap(cfg["whitening"] == ["fc", "lw"] and cfg["normalize_pooled"] is False,
               "mnv2-apgem-fclw-raw: config whitening [fc, lw], normalize_pooled false")
        for scales in ([1.0], S3):
            pr.check_case("mnv2-apgem-fclw-raw fp32 %d scale(s)" % len(scales), exe, path, net,
                          inp, ["synth_333x517", "parrot_256"], scales, "fp32", tmp)

    pr.diag("AP-GeM / GLAP parity suite: %.0f s" % (time.time() - t_start))
    print("1..%d" % pr.n_test)
    return 1 if pr.failed else 0


if __name__ == "__main__":
    sys.exit(main())
