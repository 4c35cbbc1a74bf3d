#!/usr/bin/python3
"""tools/reference.py: preprocessing contract, multi-scale resize, TF SAME
padding, the four GLAM attention forms against explicit loops, and a whole
ResNet-50 + AGeM + learned whitening descriptor (3 scales) against an
independent functional implementation that folds BatchNorm like the C engine."""

import contextlib
import io
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taplib  # noqa: E402

taplib.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

import imago_model  # noqa: E402
import reference as R  # noqa: E402

torch.set_num_threads(1)
sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731


def test_preprocessing(t, tmp):
    ts = R.target_size
    t.is_eq(ts(4000, 3000, 1024), (1024, 768), "target 4000x3000 -> 1024x768")
    t.is_eq(ts(3000, 4000, 1024), (768, 1024), "target portrait")
    t.is_eq(ts(500, 300, 1024), (500, 300), "never upscale")
    t.is_eq(ts(5000, 300, 0), (5000, 300), "max_side 0 keeps the size")
    t.is_eq(ts(2048, 1023, 1024), (1024, 512), "511.5 rounds half to even (512)")
    t.is_eq(ts(2048, 1025, 1024), (1024, 512), "512.5 rounds half to even (512)")
    t.is_eq(ts(2048, 1027, 1024), (1024, 514), "513.5 rounds half to even (514)")
    t.is_eq(ts(9000, 3, 1024), (1024, 1), "short side at least 1")

    yy, xx = np.mgrid[0:80, 0:100]
    arr = np.stack([xx * 2, yy * 3, (xx + yy) % 256], axis=-1).astype(np.uint8)
    png = os.path.join(tmp, "grad.png")
    Image.fromarray(arr).save(png)
    got = R.load_rgb(png, 0, box=(10.5, 20.5, 50.5, 61.5))
    t.ok(np.array_equal(got, arr[20:62, 10:50]), "box rounds half to even: [10,50) x [20,62)",
         got.shape)
    got = R.load_rgb(png, 0, box=(-5, -5, 1000, 30))
    t.ok(np.array_equal(got, arr[0:30, 0:100]), "box clamped to the image")
    t.raises(lambda: R.load_rgb(png, 0, box=(120, 0, 130, 10)), ValueError,
             "empty box after clamping is an error", "empty")
    got = R.load_rgb(png, 1024)
    t.ok(np.array_equal(got, arr), "small PNG without box: bit-exact, no resampling")
    info = {}
    got = R.load_rgb(png, 50, info=info)
    want = np.asarray(Image.fromarray(arr).resize((50, 40), Image.Resampling.LANCZOS))
    t.ok(got.shape == (40, 50, 3) and np.array_equal(got, want), "PNG resize = Pillow LANCZOS")

    g16 = np.full((10, 12), 0x12F4, dtype=np.uint16)
    p16 = os.path.join(tmp, "g16.png")
    Image.fromarray(g16).save(p16)
    got = R.load_rgb(p16, 0)
    t.ok(got.shape == (10, 12, 3) and (got == 0x12).all(), "16-bit gray PNG keeps the high byte",
         np.unique(got))

    # EXIF orientation 6 (rotate 90 degrees clockwise)
    jarr = np.zeros((48, 64, 3), np.uint8)
    jarr[:, :32] = (250, 10, 10)
    jarr[:16, :] = (10, 250, 10)
    jpg = os.path.join(tmp, "o6.jpg")
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(jarr).save(jpg, quality=95, exif=ex.tobytes())
    plain = np.asarray(Image.open(jpg).convert("RGB"))
    got = R.load_rgb(jpg, 0, info=(info := {}))
    t.ok(got.shape == (64, 48, 3) and info["orientation"] == 6, "orientation 6: 48x64 -> 64x48")
    t.ok(np.array_equal(got, np.rot90(plain, k=-1)), "orientation 6 rotates clockwise")

    # DCT scaling: 1600x1200 to max_side 200 decodes at 1/8, no resampling left
    big = Image.fromarray(np.asarray(Image.fromarray(arr).resize((1600, 1200),
                                                                 Image.Resampling.BICUBIC)))
    bjpg = os.path.join(tmp, "big.jpg")
    big.save(bjpg, quality=92)
    info = {}
    got = R.load_rgb(bjpg, 200, info=info)
    t.is_eq((info["k"], info["decoded"], got.shape), (8, (200, 150), (150, 200, 3)),
            "DCT scaling: k = 8, decoded 200x150")
    ref = Image.open(bjpg)
    ref.draft("RGB", (200, 150))
    t.ok(np.array_equal(got, np.asarray(ref.convert("RGB"))), "1/8 decode is the output")
    info = {}
    got = R.load_rgb(bjpg, 300, info=info)
    t.is_eq((info["k"], info["decoded"]), (4, (400, 300)), "max_side 300: k = 4 (400 >= 300)")
    nodct = R.load_rgb(bjpg, 300, dct=False)
    d = np.abs(got.astype(int) - nodct.astype(int))
    t.cmp(float(d.mean()), "<", 2.0, "DCT-scaled decode close to full decode (mean |diff|)")
    info = {}
    got = R.load_rgb(bjpg, 300, box=(101, 203, 1401, 1003), info=info)
    t.is_eq((info["k"], info["rect"], got.shape),
            (4, (25.25, 50.75, 350.25, 250.75), (185, 300, 3)),
            "box with DCT scaling: 1300x800 crop -> 300x185, k = 4, fractional rectangle")
    x = R.normalize(np.array([[[255, 0, 128]]], np.uint8), [0.5] * 3, [0.5] * 3)
    t.ok(torch.allclose(x.flatten(), torch.tensor([1.0, -1.0, 128 / 127.5 - 1]), atol=1e-6),
         "normalise (v/255 - mean)/std")


def bilinear_np(x, s):
    n, c, h, w = x.shape
    oh, ow = int(math.floor(h * s)), int(math.floor(w * s))

    def coords(o, size):
        src = max((o + 0.5) / s - 0.5, 0.0)
        i0 = min(int(math.floor(src)), size - 1)
        i1 = min(i0 + 1, size - 1)
        return i0, i1, src - i0

    out = np.zeros((n, c, oh, ow))
    for oy in range(oh):
        y0, y1, ly = coords(oy, h)
        for ox in range(ow):
            x0, x1, lx = coords(ox, w)
            out[:, :, oy, ox] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                                 + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


def test_resize_and_padding(t):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 17, 23, generator=g)
    for s in (0.70710678, 0.5):
        y = R.resize_bilinear(x, s)
        want = bilinear_np(x.double().numpy(), s)
        t.is_eq(tuple(y.shape), want.shape, "scale %g: floor(H s) x floor(W s)" % s)
        t.cmp(float(np.abs(y.numpy() - want).max()), "<", 1e-5,
              "scale %g: source (dst+0.5)/s - 0.5 bilinear" % s)
    t.is_eq([R.tf_same_pad(n, 3, s) for n, s in ((224, 2), (225, 2), (7, 1), (8, 1))],
            [(0, 1), (1, 1), (1, 1), (1, 1)], "TF SAME pads (before, after)")
    conv = torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
    same = R._to_same(conv)
    for h, w in ((10, 12), (9, 11), (10, 11)):
        x = torch.randn(1, 4, h, w, generator=g)
        ph, pw = R.tf_same_pad(h, 3, 2), R.tf_same_pad(w, 3, 2)
        want = F.conv2d(F.pad(x, (pw[0], pw[1], ph[0], ph[1])), conv.weight, conv.bias, 2)
        got = same(x)
        t.ok(torch.allclose(got, want, atol=1e-6), "tf_same conv %dx%d" % (h, w))
    x = torch.randn(1, 4, 10, 12, generator=g)
    t.ok(torch.allclose(same(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, 2),
                        atol=1e-6), "even input: 0 top/left, 1 bottom/right")
    mb = R.MobileNetV2Backbone("tf_same")
    n_same = sum(isinstance(m, R.SamePadConv2d) for m in mb.modules())
    t.is_eq(n_same, 5, "MobileNetV2 tf_same: the stem and 4 depthwise stride-2 convs")
    with torch.no_grad():
        t.is_eq(tuple(mb.eval()(torch.zeros(1, 3, 100, 70)).shape), (1, 1280, 4, 3),
                "MobileNetV2: 1280 channels at stride 32 (ceil)")


def conv1d_np(z, w):
    zp = np.concatenate([[0.0], z, [0.0]])
    return np.array([w[0] * zp[i] + w[1] * zp[i + 1] + w[2] * zp[i + 2] for i in range(len(z))])


def conv2d_np(x, w, b, dil):
    """x c x h x w, w o x c x k x k, zero padding = dil * (k // 2)."""
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    p = dil * (k // 2)
    xp = np.zeros((c, h + 2 * p, wd + 2 * p))
    xp[:, p:p + h, p:p + wd] = x
    out = np.zeros((o, h, wd))
    for ky in range(k):
        for kx in range(k):
            patch = xp[:, ky * dil:ky * dil + h, kx * dil:kx * dil + wd]
            out += np.einsum("oc,chw->ohw", w[:, :, ky, kx], patch)
    return out + b[:, None, None]


def test_glam(t):
    torch.manual_seed(3)
    c, cp, h, w = 6, 3, 4, 5
    head = R.GLAMHead(c, cp, cp, out_dim=4).double()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64) * 0.7)
    f = torch.rand(1, c, h, w, dtype=torch.float64) * 2
    fn = f[0].numpy()
    P = {k: v.detach().numpy() for k, v in head.state_dict().items()}
    z = fn.mean(axis=(1, 2))

    fc_t, a_t = R.glam_local_channel(f, head.lc_conv.weight)
    a = sig(conv1d_np(z, P["lc_conv.weight"][0, 0]))
    fc = fn * a[:, None, None] + fn
    t.cmp(float(np.abs(fc_t[0].detach().numpy() - fc).max()), "<", 1e-12,
          "local channel: F*sigmoid(conv1d(GAP F)) + F")

    fl_t, s_t = R.glam_local_spatial(f, fc_t, head)
    r = conv2d_np(fn, P["ls_reduce.weight"], P["ls_reduce.bias"], 1)
    br = [conv2d_np(r, P["ls_b1.weight"], P["ls_b1.bias"], 1),
          conv2d_np(r, P["ls_d1.weight"], P["ls_d1.bias"], 1),
          conv2d_np(r, P["ls_d2.weight"], P["ls_d2.bias"], 2),
          conv2d_np(r, P["ls_d3.weight"], P["ls_d3.bias"], 3)]
    s = conv2d_np(np.concatenate(br), P["ls_out.weight"], P["ls_out.bias"], 1)
    fl = fc * s + fc
    t.cmp(float(np.abs(fl_t[0].detach().numpy() - fl).max()), "<", 1e-10,
          "local spatial: dilations 1,2,3 (padding = dilation), concat, 1x1 -> s")

    gc_t, _ = R.glam_global_channel(f, head.gc_q.weight, head.gc_k.weight)
    q = sig(conv1d_np(z, P["gc_q.weight"][0, 0]))
    k = sig(conv1d_np(z, P["gc_k.weight"][0, 0]))
    A = np.zeros((c, c))
    for j in range(c):
        e = np.exp(k * q[j])
        A[:, j] = e / e.sum()
    gc = np.zeros_like(fn)
    for j in range(c):
        for i in range(c):
            gc[j] += fn[i] * A[i, j]
    t.cmp(float(np.abs(gc_t[0].detach().numpy() - gc).max()), "<", 1e-12,
          "global channel: softmax over i of k_i q_j, G_c[j] = sum_i F[i] A[i,j]")

    gs_t, _ = R.glam_global_spatial(f, head)
    Q = conv2d_np(fn, P["gs_q.weight"], P["gs_q.bias"], 1).reshape(cp, -1)
    K = conv2d_np(fn, P["gs_k.weight"], P["gs_k.bias"], 1).reshape(cp, -1)
    V = conv2d_np(fn, P["gs_v.weight"], P["gs_v.bias"], 1).reshape(cp, -1)
    hw = h * w
    A = np.zeros((hw, hw))
    for n_ in range(hw):
        e = np.exp(np.array([K[:, m] @ Q[:, n_] for m in range(hw)]))
        A[:, n_] = e / e.sum()
    G = (V @ A).reshape(cp, h, w)
    gs = conv2d_np(G, P["gs_out.weight"], P["gs_out.bias"], 1)
    t.cmp(float(np.abs(gs_t[0].detach().numpy() - gs).max()), "<", 1e-10,
          "global spatial: softmax over m of K_m . Q_n, G = V A, 1x1 out")

    fg = fn * gc
    fg = fg * gs + fg
    th = P["fusion"]
    wts = np.exp(th) / np.exp(th).sum()
    fgl = wts[0] * fl + wts[1] * fg + wts[2] * fn
    got = head.attend(f)[0].detach().numpy()
    t.cmp(float(np.abs(got - fgl).max()), "<", 1e-10,
          "GLAM fusion: softmax(theta) (local, global, identity)")


def test_glam_fixture(t, tmp):
    import glam_fixture
    path = os.path.join(tmp, "glam_fixture.safetensors")
    glam_fixture.main([path, "--seed", "4"])
    T, cfg, _ = imago_model.load(path)
    f, a = T["input.F"], T["expect.a_lc"]
    t.ok(torch.allclose(T["expect.Fc"], f * a[:, :, None, None] + f, atol=1e-6)
         and torch.allclose(T["expect.Fl"], T["expect.Fc"] * (T["expect.s"] + 1), atol=1e-5),
         "GLAM fixture: local maps consistent")
    n = f.shape[2] * f.shape[3]
    t.ok(T["expect.As"].shape == (1, n, n) and
         torch.allclose(T["expect.As"].sum(dim=1), torch.ones(1, n), atol=1e-5) and
         torch.allclose(T["expect.Ac"].sum(dim=1), torch.ones(1, 16), atol=1e-5),
         "GLAM fixture: attention columns sum to 1 (softmax over the first index)")
    t.is_eq((cfg["head"], cfg["dim"], list(T["expect.descriptor"].shape)), ("glam", 8, [1, 8]),
            "GLAM fixture config and descriptor size")


def bn_fold(T, conv, bn):
    w = T[conv + ".weight"]
    a = T[bn + ".weight"] / torch.sqrt(T[bn + ".running_var"] + 1e-5)
    return w * a[:, None, None, None], T[bn + ".bias"] - a * T[bn + ".running_mean"]


def functional_resnet_agem(T, x, blocks, p):
    """ResNet + AGeM + GeM + L2N from raw file tensors, BN folded (C engine style)."""
    def cbr(x, conv, bn, stride=1, pad=0, relu=True):
        w, b = bn_fold(T, conv, bn)
        y = F.conv2d(x, w, b, stride, pad)
        return F.relu(y) if relu else y

    x = cbr(x, "backbone.conv1", "backbone.bn1", 2, 3)
    x = F.max_pool2d(x, 3, 2, 1)
    outs = {}
    for li, nb in enumerate(blocks, start=1):
        for bi in range(nb):
            pre = "backbone.layer%d.%d." % (li, bi)
            stride = 2 if (bi == 0 and li > 1) else 1
            y = cbr(x, pre + "conv1", pre + "bn1")
            y = cbr(y, pre + "conv2", pre + "bn2", stride, 1)
            y = cbr(y, pre + "conv3", pre + "bn3", relu=False)
            sc = x
            if pre + "downsample.0.weight" in T:
                sc = cbr(x, pre + "downsample.0", pre + "downsample.1", stride, relu=False)
            x = F.relu(y + sc)
            outs[(li, bi)] = x
    x3 = outs[(3, blocks[2] - 1)]
    a = cbr(x3, "agem.att1.0", "agem.att1_bn.0", 2, 1)
    a = cbr(a, "agem.att1.1", "agem.att1_bn.1", 1, 1)
    a = cbr(a, "agem.att1.2", "agem.att1_bn.2")
    a4 = torch.sigmoid(F.conv2d(a, T["agem.att1.3.weight"], T["agem.att1.3.bias"]))
    a51 = torch.sigmoid(F.conv2d(a4 * outs[(4, 0)], T["agem.att2_1.weight"], T["agem.att2_1.bias"]))
    a52 = torch.sigmoid(F.conv2d(a51 * outs[(4, 1)], T["agem.att2_2.weight"], T["agem.att2_2.bias"]))
    X = outs[(4, 2)] * (1 + a52)
    g = X.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)
    return g / (g.norm(dim=1, keepdim=True) + 1e-6)


def test_agem_functional(t, tmp):
    import make_test_model as M
    path = os.path.join(tmp, "agem.safetensors")
    M.main(["--backbone", "resnet50", "--head", "agem", "--whitening", "lw", "--seed", "11",
            "--calib", "synthetic", "--calib-n", "2", "--calib-side", "64", "--out", path])
    net, cfg = R.load_model(path)
    T = {k: v.double() for k, v in imago_model.load(path, as_float32=True)[0].items()}
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 80, 112, generator=g)
    scales = [1.0, 0.70710678, 0.5]
    got = R.extract(net, x, scales)[0].double()
    p = float(T["pool.p"][0])
    ds = [functional_resnet_agem(T, F.interpolate(x.double(), scale_factor=s, mode="bilinear",
                                                  align_corners=False) if s != 1 else x.double(),
                                 [3, 4, 6, 3], p) for s in scales]
    v = torch.stack([d.pow(p) for d in ds]).mean(0).pow(1 / p)
    v = v / (v.norm() + 1e-6)
    wv = (v - T["whiten.m"]) @ T["whiten.P"].T
    want = (wv / (wv.norm() + 1e-6))[0]
    cos = taplib.cosine(got.numpy(), want.numpy())
    t.cmp(cos, ">", 0.999999, "ResNet-50+AGeM+lw, 3 scales: reference = functional BN-folded "
          "(combine with p, L2N, then whitening once)")
    t.cmp(float((got - want).abs().max()), "<", 1e-4, "... max abs difference")
    # the order matters: whitening per scale gives a different descriptor
    per = [((d - T["whiten.m"]) @ T["whiten.P"].T) for d in ds]
    per = [u / (u.norm() + 1e-6) for u in per]
    alt = torch.stack(per).mean(0)[0]
    t.cmp(taplib.cosine(got.numpy(), alt.numpy()), "<", 0.99999,
          "whitening per scale would differ (the test can tell)")
    single = R.extract(net, x, [1.0])[0].double()
    wv1 = (ds[0] - T["whiten.m"]) @ T["whiten.P"].T
    want1 = (wv1 / (wv1.norm() + 1e-6))[0]
    t.cmp(taplib.cosine(single.numpy(), want1.numpy()), ">", 0.999999,
          "single scale: whiten(L2N(GeM(X)))")
    t.ok(abs(float(single.norm()) - 1) < 1e-5, "descriptor has unit norm")

    # the command line: a raw NCHW .npy input and an image, --out, --dump-input
    npy = os.path.join(tmp, "x.npy")
    np.save(npy, x.numpy())
    png = os.path.join(tmp, "grad.png")
    outp = os.path.join(tmp, "d.npy")
    dump = os.path.join(tmp, "dump")
    with contextlib.redirect_stdout(io.StringIO()):
        rc = R.main([path, npy, png, "--scales", "1,0.70710678,0.5", "--max-side", "64",
                     "--out", outp, "--dump-input", dump, "--threads", "1"])
    D = np.load(outp)
    t.ok(rc == 0 and D.shape == (2, 2048) and D.dtype == np.float32, "CLI writes N x dim float32")
    t.cmp(float(np.abs(D[0] - got.numpy()).max()), "<", 1e-6, "CLI .npy input = extract()")
    xin = np.load(os.path.join(dump, "grad.npy"))
    want_in = R.preprocess(png, 64, cfg["input"]["mean"], cfg["input"]["std"]).numpy()
    t.ok(xin.shape == (1, 3, 51, 64) and np.array_equal(xin, want_in),
         "--dump-input writes the normalised 1x3xHxW input")
    d_img = R.extract(net, torch.from_numpy(xin), scales)[0].numpy()
    t.cmp(float(np.abs(D[1] - d_img).max()), "<", 1e-6, "CLI image input = extract(preprocess)")
    bf = R.extract(net, x, scales, dtype="bf16", channels_last=True)[0].double()
    t.cmp(taplib.cosine(bf.numpy(), got.numpy()), ">", 0.98, "bf16 autocast close to fp32")

    P = net.p
    mk = lambda **kw: dict(imago_model.make_config("x", "resnet50", kw.get("head", "gem"),  # noqa
                                                   kw.get("pool", "gem"), 2048,
                                                   kw.get("wh", "none")))
    t.ok(R.multiscale_p(mk(), P) is P and R.multiscale_p(mk(head="agem", wh="lw"), P) is P,
         "multi-scale p = pool.p for gem/agem heads with gem pooling")
    t.ok(R.multiscale_p(mk(wh="fc"), P) == 1.0 and R.multiscale_p(mk(head="glam"), P) == 1.0
         and R.multiscale_p(mk(pool="mac"), P) == 1.0,
         "multi-scale p = 1 with an FC (fc whitening, GLAM) or non-GeM pooling")


def main(t):
    tmp = taplib.tmpdir("imago_ref_")
    test_preprocessing(t, tmp)
    test_resize_and_padding(t)
    test_glam(t)
    test_glam_fixture(t, tmp)
    test_agem_functional(t, tmp)


taplib.Tap().run(main)
