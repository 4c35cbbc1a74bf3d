#!/usr/bin/python3
"""tools/convert.py on checkpoints of the supported layouts, written here with
random weights: the converted model's reference descriptor must equal a direct
computation with the original torchvision modules + hand-written GeM /
whitening / multi-scale (cosine > 0.99999).  Also: the project's own
reference checkpoints round-trip exactly, and unknown layouts fail naming the
unexpected / missing keys."""

import contextlib
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taplib  # noqa: E402

taplib.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

import convert  # noqa: E402
import imago_model  # noqa: E402
import make_test_model as M  # noqa: E402
import reference as R  # noqa: E402

torch.set_num_threads(2)
SCALES = [1.0, 0.70710678, 0.5]
COS = 0.99999


def calibrate(m, seed):
    """Moderate BN statistics (train-mode pass on a random batch), eval mode."""
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, 0.1, generator=g)
    m.train()
    x = F.interpolate(torch.randn(4, 3, 12, 12, generator=g), size=(96, 96), mode="bilinear",
                      align_corners=False)
    with torch.no_grad():
        m(x)
    return m.eval()


def l2n(v):
    return v / (v.norm(dim=-1, keepdim=True) + 1e-6)


def gem(f, p):
    return f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def direct(features, x, p, q, scales, whiten=None):
    """Hand-written GeM + L2N per scale, (mean d^q)^(1/q), L2N, whitening."""
    with torch.no_grad():
        ds = []
        for s in scales:
            xs = x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear",
                                                align_corners=False)
            ds.append(l2n(gem(features(xs), p)))
        if len(ds) == 1:
            v = ds[0]
        else:
            v = l2n(torch.stack([d.pow(q) for d in ds]).mean(0).pow(1.0 / q))
        return whiten(v) if whiten else v


def run_convert(t, argv, name):
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = convert.main(argv)
    except SystemExit as e:
        rc = e.code
    t.note(buf.getvalue().strip())
    t.is_eq(rc, 0, "convert %s" % name)
    return rc == 0


def ref_desc(path, x, scales):
    net, cfg = R.load_model(path)
    return R.extract(net, x, scales)[0], cfg


def image_input(mean, std):
    photo = os.path.join(taplib.SHARED, "data", "photos", "building.jpg")
    if os.path.exists(photo):
        return R.preprocess(photo, 160, mean, std)
    return torch.randn(1, 3, 120, 160, generator=torch.Generator().manual_seed(4))


def test_torchvision_resnet(t, tmp):
    torch.manual_seed(21)
    m = calibrate(torchvision.models.resnet50(weights=None), 1)
    ck = os.path.join(tmp, "resnet50.pth")
    torch.save(m.state_dict(), ck)
    feats = nn.Sequential(*list(m.children())[:-2])
    x = image_input(imago_model.IMAGENET_MEAN, imago_model.IMAGENET_STD)
    g = torch.Generator().manual_seed(22)
    P = torch.randn(256, 2048, generator=g) / 45
    mu = torch.rand(2048, generator=g) * 0.04
    np.savez(os.path.join(tmp, "lw.npz"), P=P.numpy(), m=mu.numpy())
    out = os.path.join(tmp, "r50.safetensors")
    if run_convert(t, [ck, "--head", "gem", "--p", "3", "--whiten", os.path.join(tmp, "lw.npz"),
                       "--out", out], "torchvision resnet50 + lw (.npz)"):
        got, cfg = ref_desc(out, x, SCALES)
        want = direct(feats, x, 3.0, 3.0, SCALES, lambda v: l2n((v - mu) @ P.T))[0]
        t.cmp(taplib.cosine(got, want), ">", COS, "torchvision resnet50 + lw, 3 scales")
        t.is_eq((cfg["backbone"], cfg["head"], cfg["whitening"], cfg["dim"]),
                ("resnet50", "gem", "lw", 256), "config resnet50/gem/lw/256")
        T = imago_model.load(out)[0]
        t.ok(not any(k.startswith("backbone.fc") for k in T) and float(T["pool.p"][0]) == 3.0,
             "fc.* dropped, pool.p = 3")
    W = torch.randn(512, 2048, generator=g) / 45
    b = torch.randn(512, generator=g) * 0.01
    torch.save({"weight": W, "bias": b}, os.path.join(tmp, "fc.pt"))
    out = os.path.join(tmp, "r50fc.safetensors")
    if run_convert(t, [ck, "--p", "2.5", "--whiten", os.path.join(tmp, "fc.pt"), "--out", out,
                       "--dtype", "f16"], "torchvision resnet50 + fc whitening (.pt), f16"):
        got, cfg = ref_desc(out, x, [1.0, 0.5])
        want = direct(feats, x, 2.5, 1.0, [1.0, 0.5], lambda v: l2n(v @ W.T + b))[0]
        t.cmp(taplib.cosine(got, want), ">", 0.9995,
              "fc whitening, 2 scales combined with p = 1, f16 weights")
    # unknown / broken layouts
    sd = m.state_dict()
    bad = dict(sd)
    bad["layer4.0.extra.weight"] = torch.zeros(3)
    del bad["layer2.1.bn2.running_var"]
    torch.save(bad, os.path.join(tmp, "bad.pth"))
    args = convert.parse_args([os.path.join(tmp, "bad.pth"), "--out", os.path.join(tmp, "x")])
    t.raises(lambda: convert.convert(args), convert.ConvertError,
             "extra key named as unexpected", "backbone.layer4.0.extra.weight")
    t.raises(lambda: convert.convert(args), convert.ConvertError,
             "missing key named as missing", "missing ['backbone.layer2.1.bn2.running_var']")
    torch.save({"foo.weight": torch.zeros(2), "bar": torch.zeros(1)}, os.path.join(tmp, "u.pth"))
    args = convert.parse_args([os.path.join(tmp, "u.pth"), "--out", os.path.join(tmp, "x")])
    t.raises(lambda: convert.convert(args), convert.ConvertError,
             "unknown layout is refused with its keys", "['bar', 'foo.weight']")
    with contextlib.redirect_stderr(io.StringIO()) as err:
        rc = convert.main([os.path.join(tmp, "u.pth"), "--out", os.path.join(tmp, "x")])
    t.note("stderr: " + err.getvalue().strip())
    t.ok(rc == 2 and not os.path.exists(os.path.join(tmp, "x")), "CLI: exit 2, no output file")
    return feats


def test_cirtorch(t, tmp):
    torch.manual_seed(31)
    m = calibrate(torchvision.models.resnet50(weights=None), 2)
    feats = nn.Sequential(*list(m.children())[:-2])
    sd = {"features." + k: v for k, v in feats.state_dict().items()}
    t.ok("features.7.2.conv3.weight" in sd and "features.1.running_mean" in sd,
         "cnnimageretrieval layout (features.N) built from the torchvision children")
    sd["pool.p"] = torch.tensor([2.7])
    g = torch.Generator().manual_seed(32)
    lw = {}
    for mode in ("ss", "ms"):
        P = (torch.randn(2048, 2048, generator=g) / 45).numpy()
        mu = (torch.rand(2048, 1, generator=g) * 0.04).numpy()
        lw[mode] = {"m": mu, "P": P}
    mean, std = [0.48, 0.45, 0.40], [0.22, 0.23, 0.24]
    meta = {"architecture": "resnet50", "pooling": "gem", "local_whitening": False,
            "regional": False, "whitening": False, "mean": mean, "std": std,
            "pretrained": True, "Lw": {"retrieval-SfM-120k": lw}}
    ck = os.path.join(tmp, "cirtorch.pth")
    torch.save({"epoch": 3, "meta": meta, "state_dict": sd, "min_loss": 0.5, "optimizer": {}}, ck)
    x = image_input(mean, std)
    out = os.path.join(tmp, "cir.safetensors")
    if run_convert(t, [ck, "--lw", "retrieval-SfM-120k", "--lw-mode", "ms", "--out", out],
                   "cirtorch GeM + Lw ms"):
        got, cfg = ref_desc(out, x, SCALES)
        P = torch.from_numpy(lw["ms"]["P"])
        mu = torch.from_numpy(lw["ms"]["m"]).reshape(-1)
        want = direct(feats, x, 2.7, 2.7, SCALES, lambda v: l2n((v - mu) @ P.T))[0]
        t.cmp(taplib.cosine(got, want), ">", COS, "cirtorch + Lw(ms), 3 scales, msp = p")
        t.is_eq((cfg["input"]["mean"], cfg["input"]["std"], cfg["whitening"], cfg["dim"]),
                (mean, std, "lw", 2048), "meta mean/std and Lw carried into the config")
        T = imago_model.load(out)[0]
        t.ok(torch.equal(T["whiten.P"], P) and abs(float(T["pool.p"][0]) - 2.7) < 1e-6,
             "whiten.P = Lw ms P, pool.p = 2.7")
    args = convert.parse_args([ck, "--lw", "oxford5k", "--out", os.path.join(tmp, "x")])
    t.raises(lambda: convert.convert(args), convert.ConvertError, "unknown Lw set is refused",
             "retrieval-SfM-120k")

    # with an FC whitening layer (meta whitening True)
    W = torch.randn(512, 2048, generator=g) / 45
    b = torch.randn(512, generator=g) * 0.01
    sd2 = dict(sd, **{"whiten.weight": W, "whiten.bias": b})
    meta2 = dict(meta, whitening=True)
    del meta2["Lw"]
    ck2 = os.path.join(tmp, "cirtorch_fc.pth")
    torch.save({"meta": meta2, "state_dict": sd2}, ck2)
    out = os.path.join(tmp, "cirfc.safetensors")
    if run_convert(t, [ck2, "--out", out], "cirtorch GeM + FC whitening"):
        got, cfg = ref_desc(out, x, SCALES)
        want = direct(feats, x, 2.7, 1.0, SCALES, lambda v: l2n(v @ W.T + b))[0]
        t.cmp(taplib.cosine(got, want), ">", COS, "cirtorch + FC whitening, 3 scales, p = 1")
        t.is_eq((cfg["whitening"], cfg["dim"]), ("fc", 512), "config fc / 512")
    args = convert.parse_args([ck2, "--lw", "retrieval-SfM-120k", "--out", os.path.join(tmp, "x")])
    t.raises(lambda: convert.convert(args), convert.ConvertError,
             "Lw on top of an FC whitening is refused", "FC whitening layer")
    sd3 = dict(sd, **{"lwhiten.weight": torch.zeros(4)})
    torch.save({"meta": meta2, "state_dict": sd3}, os.path.join(tmp, "cir_bad.pth"))
    args = convert.parse_args([os.path.join(tmp, "cir_bad.pth"), "--out", os.path.join(tmp, "x")])
    t.raises(lambda: convert.convert(args), convert.ConvertError,
             "cirtorch unexpected key named", "lwhiten.weight")


def test_mobilenet(t, tmp):
    torch.manual_seed(41)
    m = calibrate(torchvision.models.mobilenet_v2(weights=None), 3)
    ck = os.path.join(tmp, "mnv2.pth")
    torch.save(m.state_dict(), ck)
    x = image_input([0.5] * 3, [0.5] * 3)
    out = os.path.join(tmp, "mnv2.safetensors")
    if run_convert(t, [ck, "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5", "--padding", "torch",
                       "--max-side", "320", "--out", out], "torchvision mobilenet_v2"):
        got, cfg = ref_desc(out, x, SCALES)
        want = direct(m.features, x, 3.0, 3.0, SCALES)[0]
        t.cmp(taplib.cosine(got, want), ">", COS, "mobilenet_v2 (torch padding) + GeM, 3 scales")
        t.is_eq((cfg["backbone"], cfg["dim"], cfg["padding"], cfg["input"]["max_side"],
                 cfg["input"]["mean"]), ("mobilenet_v2", 1280, "torch", 320, [0.5] * 3),
                "config mobilenet_v2 / 1280 / torch / 320 / mean 0.5")
        T = imago_model.load(out)[0]
        t.ok(not any(k.startswith("backbone.classifier") for k in T), "classifier dropped")
    out2 = os.path.join(tmp, "mnv2_same.safetensors")
    if run_convert(t, [ck, "--padding", "tf_same", "--out", out2], "mobilenet_v2 tf_same"):
        got2, cfg2 = ref_desc(out2, x, [1.0])
        want1 = direct(m.features, x, 3.0, 3.0, [1.0])[0]
        c = taplib.cosine(got2, want1)
        t.ok(cfg2["padding"] == "tf_same" and c < 0.999999,
             "tf_same changes the descriptor (cos %.6f vs torch padding)" % c)


def test_reference_checkpoints(t, tmp):
    for name, extra in (("agem", ["--backbone", "resnet50", "--head", "agem", "--whitening", "fc",
                                  "--whiten-dim", "256"]),
                        ("apgem", ["--backbone", "mobilenet_v2", "--head", "apgem",
                                   "--apgem-width", "32", "--whitening", "fc,lw",
                                   "--whiten-dim", "128", "--raw-pooled"]),
                        ("glap", ["--backbone", "resnet50", "--head", "glap", "--last-stride",
                                  "1", "--glap-maps", "4", "--glap-dim", "0"]),
                        ("glam", ["--backbone", "mobilenet_v2", "--head", "glam", "--padding",
                                  "tf_same", "--glam-width", "64", "--whitening", "lw"])):
        src = os.path.join(tmp, "%s_src.safetensors" % name)
        M.main(extra + ["--seed", "3", "--calib", "synthetic", "--calib-n", "2",
                        "--calib-side", "64", "--out", src])
        net, cfg = R.load_model(src)
        ck = os.path.join(tmp, "%s.pth" % name)
        torch.save({"state_dict": net.state_dict(), "config": cfg}, ck)
        out = os.path.join(tmp, "%s.safetensors" % name)
        if not run_convert(t, [ck, "--untrained", "--out", out], "imago reference %s" % name):
            continue
        A = imago_model.load(src)[0]
        B, cfg2, _ = imago_model.load(out)
        t.ok(sorted(A) == sorted(B) and all(torch.equal(A[k], B[k]) for k in A),
             "%s: same tensors, bit for bit" % name)
        keys = ("backbone", "head", "whitening", "dim", "padding", "last_stride",
                "normalize_pooled")
        t.is_eq(tuple(cfg2.get(k) for k in keys), tuple(cfg.get(k) for k in keys),
                "%s: config recovered" % name)
        x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(5))
        a = R.extract(net, x, SCALES)
        b = R.extract(R.load_model(out)[0], x, SCALES)
        t.ok(torch.equal(a, b), "%s: identical descriptors" % name)
    # a bare state dict (no config) is recognised from its keys
    torch.save(net.state_dict(), os.path.join(tmp, "bare.pth"))
    out = os.path.join(tmp, "bare.safetensors")
    if run_convert(t, [os.path.join(tmp, "bare.pth"), "--padding", "tf_same", "--out", out],
                   "bare reference state dict"):
        c = imago_model.load(out)[1]
        t.is_eq((c["backbone"], c["head"], c["whitening"], c["dim"]),
                ("mobilenet_v2", "glam", "lw", 512), "bare glam checkpoint detected")


def main(t):
    tmp = taplib.tmpdir("imago_conv_")
    for fn in (test_torchvision_resnet, test_cirtorch, test_mobilenet,
               test_reference_checkpoints):
        c0 = time.process_time()
        fn(t, tmp)
        t.note("%s: %.1f s CPU" % (fn.__name__, time.process_time() - c0))


taplib.Tap().run(main)
