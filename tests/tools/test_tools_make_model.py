#!/usr/bin/python3
"""tools/make_test_model.py: byte-identical output for a seed (whatever the
thread count), the tensor names of docs/models.md, BN statistics that keep
activations O(1) on a real photo, and a well-conditioned whitening."""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taplib  # noqa: E402

taplib.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402

import imago_model  # noqa: E402
import make_test_model as M  # noqa: E402
import reference as R  # noqa: E402

GLAM_NAMES = {"lc_conv.weight", "gc_q.weight", "gc_k.weight", "fusion", "fc.weight", "fc.bias",
              "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
for _n in ("ls_reduce", "ls_b1", "ls_d1", "ls_d2", "ls_d3", "ls_out", "gs_q", "gs_k", "gs_v",
           "gs_out"):
    GLAM_NAMES |= {_n + ".weight", _n + ".bias"}


def gen(path, *extra, threads=1):
    torch.set_num_threads(threads)
    M.main(list(extra) + ["--out", path])
    torch.set_num_threads(1)
    return open(path, "rb").read()


def main(t):
    tmp = taplib.tmpdir("imago_mk_")
    photos = os.path.join(taplib.SHARED, "data", "photos")
    have_photos = len(glob.glob(os.path.join(photos, "*.jpg"))) > 0
    calib = ["--calib", photos] if have_photos else ["--calib", "synthetic"]
    if not have_photos:
        t.note("no photos in %s: calibrating on synthetic images" % photos)

    args = ["--backbone", "mobilenet_v2", "--head", "glam", "--padding", "tf_same",
            "--dtype", "bf16", "--glam-width", "64", "--calib-n", "3"] + calib
    a = gen(os.path.join(tmp, "a.safetensors"), "--seed", "5", *args, threads=1)
    b = gen(os.path.join(tmp, "b.safetensors"), "--seed", "5", *args, threads=2)
    t.ok(a == b, "same seed -> same bytes (1 vs 2 threads), %d bytes" % len(a))
    c = gen(os.path.join(tmp, "c.safetensors"), "--seed", "6", *args)
    t.ok(a != c, "another seed -> other bytes")
    tensors, cfg, _ = imago_model.load(os.path.join(tmp, "a.safetensors"))
    t.ok(all(v.dtype == torch.bfloat16 for v in tensors.values()), "--dtype bf16 stored as BF16")
    glam = {k[5:] for k in tensors if k.startswith("glam.")}
    t.is_eq(sorted(glam), sorted(GLAM_NAMES), "GLAM tensor names of docs/models.md")
    t.is_eq(list(tensors["glam.fc.weight"].shape), [512, 1280], "GLAM fc 1280 -> 512")
    t.is_eq(list(tensors["glam.lc_conv.weight"].shape), [1, 1, 3], "1-D kernel [1,1,3]")
    t.is_eq((cfg["backbone"], cfg["head"], cfg["dim"], cfg["padding"], cfg["trained"]),
            ("mobilenet_v2", "glam", 512, "tf_same", False), "config of the GLAM model")
    t.ok("backbone.features.18.1.running_var" in tensors and
         "backbone.features.3.conv.1.0.weight" in tensors, "MobileNetV2 torchvision names")

    path = os.path.join(tmp, "r50.safetensors")
    gen(path, "--backbone", "resnet50", "--head", "agem", "--whitening", "lw", "--seed", "9",
        "--max-side", "512", *calib)
    tensors, cfg, _ = imago_model.load(path)
    t.is_eq((cfg["backbone"], cfg["head"], cfg["pooling"], cfg["dim"], cfg["whitening"],
             cfg["input"]["max_side"]),
            ("resnet50", "agem", {"type": "gem", "p": "from tensor pool.p"}, 2048, "lw", 512),
            "config of the AGeM model")
    want = ["backbone.conv1.weight", "backbone.layer4.0.downsample.1.running_var",
            "backbone.layer3.5.conv2.weight", "agem.att1.0.weight", "agem.att1.3.bias",
            "agem.att1_bn.2.running_mean", "agem.att2_1.bias", "agem.att2_2.weight",
            "pool.p", "whiten.P", "whiten.m"]
    t.is_eq([n for n in want if n not in tensors], [], "docs/models.md names present")
    t.ok(not any("num_batches_tracked" in k or k.startswith("backbone.fc") for k in tensors),
         "no num_batches_tracked, no fc")
    t.is_eq(list(tensors["agem.att1.0.weight"].shape), [1024, 1024, 3, 3], "att1.0 3x3 1024->1024")
    t.ok("agem.att1.0.bias" not in tensors and "agem.att1.3.bias" in tensors,
         "att1 convs 0-2 without bias, conv 3 with")
    p = float(tensors["pool.p"][0])
    t.ok(2.74 < p < 3.26, "GeM p around 3 (%.4f)" % p)
    sv = torch.linalg.svdvals(tensors["whiten.P"].double())
    t.cmp(float(sv.max() / sv.min()), "<=", 4.01, "whitening P well conditioned")
    rv = [float(v.min()) for k, v in tensors.items() if k.endswith("running_var")]
    t.cmp(min(rv), ">", 0.0, "BN running_var measured (positive)")

    net, cfg = R.load_model(path)
    if have_photos:
        x = R.preprocess(os.path.join(photos, "building.jpg"), 384, cfg["input"]["mean"],
                         cfg["input"]["std"])
    else:
        x = torch.randn(1, 3, 288, 384, generator=torch.Generator().manual_seed(0))
    traces = {}
    d = R.extract(net, x, [1.0], traces=traces)
    tr = traces["scale0"]
    for k in ("stem", "layer1", "layer2", "layer3", "layer4", "agem.X"):
        t.cmp(float(tr[k].abs().max()), "<", 200.0, "%s activations stay O(1) (max |x|)" % k)
    t.cmp(float(tr["layer4"].std()), ">", 0.05, "layer4 activations are not dead (std)")
    t.cmp(float(tr["agem.A52"].std()), ">", 0.02, "attention map A52 varies over positions")
    g = tr["pooled"]
    t.ok(bool(torch.isfinite(g).all()) and float(g.min()) > 1e-4 and float(g.max()) < 100,
         "pooled GeM values in (1e-4, 100)")
    t.cmp(abs(float(d.norm()) - 1.0), "<", 1e-5, "unit-norm descriptor")


taplib.Tap().run(main)
