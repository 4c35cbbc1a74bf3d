#!/usr/bin/python3
"""Writes an imago model file with seeded random weights (for tests and demos).

The architecture is the real one (docs/models.md, the networks; the tensors have the
names and shapes of a converted model), only the values are random:

  * convolution / linear weights: the torchvision and PyTorch initialisers,
    drawn after torch.manual_seed(seed);
  * BatchNorm gamma ~ U(0.5, 1.5) (U(0.1, 0.4) for the BN that ends a residual
    branch, so the residual sums stay moderate), beta ~ N(0, 0.1);
  * BatchNorm running statistics measured on a few real photos (default:
    $IMAGO_SHARED/data/photos or ../shared/data/photos, resized to
    --calib-side squares, one batch) by running the network once in training
    mode with momentum=None, so that activations stay O(1) through the whole
    depth instead of exploding (docs/models.md, the model file);
  * GeM p ~ 3 + U(-0.25, 0.25); GLAM fusion logits ~ N(0, 1);
  * whitening: P = Q diag(s) with Q a random orthogonal matrix and
    s ~ U(0.5, 2) (condition number <= 4), m = the mean of the calibration
    descriptors (lw), or W = P, b = -P m (fc).

The same arguments give a byte-identical file (measured statistics are rounded
to 16 mantissa bits, and measured with one thread, so that the summation order
does not depend on the thread count).  --verbose prints each stage's activation scale.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_model  # noqa: E402
import reference  # noqa: E402

IMG_EXT = (".jpg", ".jpeg", ".png")


def default_photo_dir():
    shared = os.environ.get("IMAGO_SHARED")
    if not shared:
        shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")
        if not os.path.isdir(shared) and os.path.isdir("/work/shared"):
            shared = "/work/shared"
    return os.path.join(shared, "data", "photos")


def calib_files(spec, n):
    files = []
    for item in spec:
        if os.path.isdir(item):
            files += sorted(f for f in glob.glob(os.path.join(item, "*"))
                            if f.lower().endswith(IMG_EXT))
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise SystemExit("--calib: %s is neither a folder nor a file" % item)
    if not files:
        raise SystemExit("no calibration photos found in %s (use --calib DIR or --calib "
                         "synthetic)" % spec)
    if len(files) > n:
        # spread the picks over the folder, deterministically
        idx = np.linspace(0, len(files) - 1, n).round().astype(int)
        files = [files[i] for i in idx]
    return files


def calib_batch(spec, n, side, mean, std, gen):
    """N x 3 x side x side normalised batch from photos (or synthetic noise)."""
    if spec == ["synthetic"]:
        # smooth random images: upsampled low-resolution noise
        low = torch.rand(n, 3, 8, 8, generator=gen)
        x = nn.functional.interpolate(low, size=(side, side), mode="bilinear",
                                      align_corners=False)
        rgb = (x * 255).round().clamp(0, 255)
        m = torch.tensor(mean).view(1, 3, 1, 1)
        s = torch.tensor(std).view(1, 3, 1, 1)
        return (rgb / 255 - m) / s, ["synthetic"] * n
    from PIL import Image
    files = calib_files(spec, n)
    xs = []
    for f in files:
        im = Image.open(f)
        im.draft("RGB", (side, side))
        im = im.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
        xs.append(reference.normalize(np.asarray(im), mean, std))
    return torch.cat(xs), files


def round_mantissa(t, bits=16):
    """Rounds float32 values to `bits` explicit mantissa bits (ties away)."""
    a = t.detach().float().contiguous().numpy().view(np.uint32).astype(np.uint64)
    drop = 23 - bits
    a = ((a + (1 << (drop - 1))) >> drop) << drop
    return torch.from_numpy(a.astype(np.uint32).view(np.float32).copy()).view(t.shape)


def residual_end_bns(net):
    """BatchNorms whose output is added to a residual stream."""
    out = set()
    bb = net.backbone
    if hasattr(bb, "layer1"):
        for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
            for blk in layer:
                out.add(blk.bn3)
                if blk.downsample is not None:
                    out.add(blk.downsample[1])
    else:
        for m in bb.features:
            if hasattr(m, "conv") and getattr(m, "use_res_connect", False):
                out.add(m.conv[-1])
    return out


def randomize(net, gen, verbose=False):
    small = residual_end_bns(net)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                lo, hi = (0.1, 0.4) if m in small else (0.5, 1.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * (hi - lo) + lo)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        if hasattr(net, "agem"):
            for conv in (net.agem.att1[3], net.agem.att2_1, net.agem.att2_2):
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
            # larger attention logits, so that the attention maps vary (std ~0.1-0.2)
            # instead of sitting at sigmoid(0) = 0.5 everywhere
            for conv in (net.agem.att2_1, net.agem.att2_2):
                conv.weight.mul_(4.0)
        if hasattr(net, "glam"):
            g = net.glam
            for c in (g.lc_conv, g.gc_q, g.gc_k):
                c.weight.copy_(torch.randn(c.weight.shape, generator=gen) * 2.0)
            g.ls_out.weight.mul_(5.0)   # a spatial map s of O(0.5), not O(0.05)
            g.fusion.copy_(torch.randn(3, generator=gen))
        if hasattr(net, "apgem"):
            # attention that varies over the map (sigmoid logits of std ~1), not 0.5 everywhere
            net.apgem.att[1].weight.mul_(3.0)
            net.apgem.att[1].bias.copy_(torch.randn(1, generator=gen) * 0.5)
        if hasattr(net, "glap"):
            # softmax maps between uniform and one-hot (logits of std ~2)
            net.glap.att.weight.mul_(8.0)
            net.glap.att.bias.copy_(torch.randn(net.glap.att.bias.shape, generator=gen))
        if hasattr(net, "pool"):
            net.pool.p.fill_(3.0 + (float(torch.rand(1, generator=gen)) - 0.5) * 0.5)


def calibrate(net, x):
    bns = [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        net.descriptor_at_scale(x, 1.0)
    net.eval()
    with torch.no_grad():
        for m in bns:
            m.running_mean.copy_(round_mantissa(m.running_mean))
            m.running_var.copy_(round_mantissa(m.running_var))


def random_whitening(d_out, d_in, gen):
    q, r = torch.linalg.qr(torch.randn(d_in, d_in, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)   # unique QR
    s = torch.rand(d_out, generator=gen, dtype=torch.float64) * 1.5 + 0.5
    return (s.unsqueeze(1) * q[:d_out]).float()


def stage_report(net, x):
    traces = {}
    with torch.no_grad():
        net(x[:1], (1.0,), traces)
    tr = traces["scale0"]
    lines = []
    for k, v in tr.items():
        v = v.float()
        lines.append("  %-14s %-22s mean|x| %.4g  std %.4g  max|x| %.4g" % (
            k, "x".join(str(s) for s in v.shape), float(v.abs().mean()), float(v.std()),
            float(v.abs().max())))
    d = traces["descriptor"]
    lines.append("  %-14s %-22s norm %.6f" % ("final", "x".join(str(s) for s in d.shape),
                                               float(d.norm())))
    return "\n".join(lines)


def build(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed * 7919 + 17)
    mean = args.mean or imago_model.IMAGENET_MEAN
    std = args.std or imago_model.IMAGENET_STD
    padding = args.padding
    name = args.name or "test-%s-%s-%s-%s-seed%d" % (args.backbone, args.head, args.pooling,
                                                     args.whitening, args.seed)
    c = 1280 if args.backbone == "mobilenet_v2" else 2048
    base_dim = {"glam": 512, "glap": args.glap_dim or c}.get(args.head, c)
    stages = imago_model.whitening_stages(args.whitening)
    wdim = args.whiten_dim or base_dim
    dim = wdim if stages else base_dim
    attn = args.head in ("glam", "apgem", "glap")
    pooling = "gem" if attn else args.pooling
    config = imago_model.make_config(
        name, args.backbone, args.head, pooling, dim, stages or "none", max_side=args.max_side,
        mean=mean, std=std, scales=args.scales, padding=padding,
        source="tools/make_test_model.py --seed %d (random weights, BN statistics from "
               "calibration photos)" % args.seed, trained=False,
        last_stride=args.last_stride, normalize_pooled=not args.raw_pooled)
    shapes = {}
    if args.head == "glam":
        shapes = {"glam.ls_reduce.weight": [args.glam_width], "glam.gs_q.weight": [args.glam_width]}
    if args.head == "apgem":
        shapes["apgem.att.0.weight"] = [args.apgem_width]
    if args.head == "glap":
        shapes["glap.att.weight"] = [args.glap_maps]
        shapes["glap.fc.weight"] = [args.glap_dim]
    for i, st in enumerate(stages):  # inner stages keep the width, the last has wdim
        d = wdim if i == len(stages) - 1 else base_dim
        shapes["whiten.P" if st == "lw" else "whiten.weight"] = [d]
    if attn or pooling == "gem":
        shapes["pool.p"] = [1]
    net = reference.ImagoNet(config, shapes)
    randomize(net, gen)
    x, files = calib_batch(args.calib, args.calib_n, args.calib_side, mean, std, gen)
    t0 = time.time()
    # one thread while measuring: the summation order (hence the file's bytes)
    # then does not depend on the machine's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    calibrate(net, x)
    if args.verbose:
        print("calibrated BN statistics on %d images (%dx%d) in %.1f s: %s"
              % (x.shape[0], args.calib_side, args.calib_side, time.time() - t0,
                 ", ".join(os.path.basename(f) for f in files)), file=sys.stderr)
    if stages:
        with torch.no_grad():
            v = net.descriptor_at_scale(x, 1.0)
            d_in = base_dim
            for i, st in enumerate(stages):
                d = wdim if i == len(stages) - 1 else base_dim
                m = round_mantissa(v.mean(dim=0))
                P = round_mantissa(random_whitening(d, d_in, gen))
                if st == "lw":
                    net.whiten.P.copy_(P)
                    net.whiten.m.copy_(m)
                    v = reference.l2n((v - net.whiten.m) @ net.whiten.P.t())
                else:
                    net.whiten.weight.copy_(P)
                    net.whiten.bias.copy_(round_mantissa(-(P @ m)))
                    v = reference.l2n(v @ net.whiten.weight.t() + net.whiten.bias)
                d_in = d
    torch.set_num_threads(threads)
    if args.verbose:
        print("activation scales (first calibration image, eval mode):\n" + stage_report(net, x),
              file=sys.stderr)
    return net, config


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="resnet50", choices=imago_model.BACKBONES)
    ap.add_argument("--head", default="gem", choices=imago_model.HEADS)
    ap.add_argument("--whitening", default="none",
                    help="none, lw, fc, or stages joined by ',' (fc,lw)")
    ap.add_argument("--last-stride", type=int, default=2, choices=(1, 2),
                    help="ResNet layer4 stride (1: output stride 16)")
    ap.add_argument("--raw-pooled", action="store_true",
                    help='config "normalize_pooled": false (no L2N before the whitening)')
    ap.add_argument("--apgem-width", type=int, default=512, help="AP-GeM attention width c'")
    ap.add_argument("--glap-maps", type=int, default=8, help="GLAP attention maps K")
    ap.add_argument("--glap-dim", type=int, default=512,
                    help="GLAP embedding width (0: no glap.fc, D = c)")
    ap.add_argument("--whiten-dim", type=int, default=0, help="whitening output dim (default: input)")
    ap.add_argument("--pooling", default="gem", choices=imago_model.POOLINGS,
                    help="gem/agem heads (GLAM always uses GeM)")
    ap.add_argument("--padding", default="torch", choices=imago_model.PADDINGS)
    ap.add_argument("--glam-width", type=int, default=256, help="GLAM reduced width c'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16", "bf16"))
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--scales", type=lambda s: [float(t) for t in s.split(",")], default=None)
    ap.add_argument("--mean", type=lambda s: [float(t) for t in s.split(",")], default=None)
    ap.add_argument("--std", type=lambda s: [float(t) for t in s.split(",")], default=None)
    ap.add_argument("--name", default=None)
    ap.add_argument("--calib", nargs="+", default=None,
                    help="folders/files of calibration photos, or 'synthetic' "
                         "(default: the shared photos)")
    ap.add_argument("--calib-n", type=int, default=6, help="number of calibration images")
    ap.add_argument("--calib-side", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args(argv)
    if args.head == "agem" and args.backbone == "mobilenet_v2":
        ap.error("the agem head needs a ResNet backbone")
    try:
        imago_model.whitening_stages(args.whitening)
    except ValueError as e:
        ap.error(str(e))
    if args.last_stride == 1 and args.backbone == "mobilenet_v2":
        ap.error("--last-stride 1 is for ResNet backbones")
    if args.padding != "torch" and args.backbone != "mobilenet_v2":
        ap.error("--padding tf_same is only for mobilenet_v2")
    if args.calib is None:
        args.calib = [default_photo_dir()]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    net, config = build(args)
    n = imago_model.save(args.out, net.file_tensors(), config, dtype=args.dtype)
    if args.verbose:
        print("wrote %s (%d bytes, %d tensors, dim %d) in %.1f s"
              % (args.out, n, len(net.file_tensors()), config["dim"], time.time() - t0),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
