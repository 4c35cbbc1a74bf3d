#!/usr/bin/python3
"""imago's PyTorch reference: preprocessing and descriptor networks (the oracle).

Run with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14, Pillow).
Everything here follows docs/models.md and docs/preprocessing.md; the
C engine is tested against it.

Where things happen (the exact order of operations)
---------------------------------------------------
Notation: L2N(x) = x / (||x||_2 + 1e-6).

Per scale s (descriptor_at_scale):
    x_s   = x                                  if s == 1
          = interpolate(x, scale_factor=s, bilinear, align_corners=False)
            otherwise: output floor(H s) x floor(W s) (computed in double),
            source coordinate (dst + 0.5) / s - 0.5, clamped at 0
    F     = backbone(x_s)                       ResNet layer4 / MobileNetV2 last conv
    head  gem : X = F
          agem: X = X53 + A52 * X53   (attention branch from layer3 and layer4 blocks)
          glam: see below; the GLAM head ends in FC + BatchNorm1d
    d_s   = L2N(pool(X))                        gem / agem heads (pool = gem|spoc|mac)
          = L2N(bn(fc(GeM_p(F_gl))))            glam head (always GeM with pool.p)
          = L2N(apgem_pool(F, a, p))            apgem: a = sigmoid(att.1(ReLU(BN(att.0 F))))
          = L2N(fc(sum_k L2N(v_k)))             glap: v_k the softmax-weighted power means
                                                (fc optional); see apgem_pool, glap_pool
    (config "normalize_pooled": false drops this L2N and the one after the
    multi-scale combination: the pooled vector goes to the whitening as it is,
    dirtorch's GeM -> fc without norm_features)

Single scale (len(scales) == 1):
    v = d_s                                      (already L2N'd; no re-normalisation)
    descriptor = whiten(v)

Multi-scale (len(scales) > 1):
    v = (mean_s d_s ** q) ** (1 / q)             q = multiscale_p(config)
    v = L2N(v)
    descriptor = whiten(v)
    q is the learned GeM p (tensor pool.p) when the pooling type is gem, the head is
    gem, agem or apgem, and no whitening stage is fc; otherwise q = 1 (heads with
    an FC: the FC whitening layer, the GLAM head's FC, the GLAP head).  This is also the choice of
    cnnimageretrieval-pytorch (msp = pool.p only for gem without a whitening
    layer).  Note that whitening (lw or fc) is applied ONCE, after combining the
    scales, never per scale.

Whitening (config "whitening": "none", "lw", "fc", or a list of stages such
as ["fc", "lw"], applied in order, each followed by L2N):
    none: descriptor = v
    lw  : v' = L2N(P (v - m))                    whiten.P [D' x D], whiten.m [D]
    fc  : v' = L2N(W v + b)                      whiten.weight [D' x D], whiten.bias [D']

Pooling (per channel over y, x):
    gem : (mean max(F, 1e-6) ** p) ** (1 / p)    p = pool.p (a 1-element tensor)
    spoc: mean F
    mac : max F

AGeM head (docs/models.md, the networks): A4 = Att1(X_{4,last}) with Att1 = conv3x3/2 p1 + BN +
ReLU, conv3x3 p1 + BN + ReLU, conv1x1 + BN + ReLU, conv1x1 (bias) + sigmoid;
A51 = sigmoid(att2_1(A4 * X51)); A52 = sigmoid(att2_2(A51 * X52));
X = X53 + A52 * X53.

GLAM head: the four attention forms are the functions glam_local_channel,
glam_local_spatial, glam_global_channel, glam_global_spatial (each testable in
isolation), fused by glam_fuse.

MobileNetV2 padding: "torch" pads every 3x3 by 1; "tf_same" pads the stride-2
3x3 convolutions (the stem and four depthwise convs) TensorFlow-style:
total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0), before = total // 2,
the rest bottom/right (even inputs: 0 top/left, 1 bottom/right).

BatchNorm runs unfolded in eval mode (eps 1e-5), which is mathematically the
engine's folding a' = gamma / sqrt(var + 1e-5).

Command line: reference.py MODEL.safetensors INPUT... ; an INPUT ending in .npy
is a raw float32 NCHW normalised tensor (the network input, before the
multi-scale resize); anything else is an image file (JPEG/PNG).  See --help.
"""

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_model  # noqa: E402

EPS_L2N = 1e-6
EPS_GEM = 1e-6

# ---------------------------------------------------------------------------
# Preprocessing (docs/preprocessing.md)

_TRANSPOSE = None


def _transpose_methods():
    global _TRANSPOSE
    if _TRANSPOSE is None:
        from PIL import Image
        T = Image.Transpose
        _TRANSPOSE = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
                      5: T.TRANSPOSE, 6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}
    return _TRANSPOSE


def _jpeg_orientation(im):
    """EXIF Orientation (1-8) of a JPEG from its APP1 EXIF block only (no XMP
    fallback, which the C engine does not read); 1 when absent or invalid."""
    from PIL import Image
    if im.format != "JPEG":
        return 1
    raw = im.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
        o = int(exif.get(0x0112, 1))
    except Exception:  # a corrupt EXIF block is ignored, as libjpeg users do
        return 1
    return o if 1 <= o <= 8 else 1


def round_half_even(v):
    return int(round(v))  # Python's round() rounds half to even


def target_size(cw, ch, max_side):
    """Step 4 of the contract: (tw, th), never upscaling."""
    if max_side <= 0 or max(cw, ch) <= max_side:
        return cw, ch
    if cw >= ch:
        return max_side, max(1, round_half_even(ch * max_side / cw))
    return max(1, round_half_even(cw * max_side / ch)), max_side


def load_rgb(path, max_side, box=None, dct=True, info=None):
    """Decode + orient + crop + resize: the 8-bit RGB array (H x W x 3 uint8)
    that is the network's input before normalisation.  box = (x1, y1, x2, y2)
    in oriented pixels or None.  dct: JPEG DCT scaling (Pillow draft).
    info: optional dict filled with k, crop and target sizes."""
    from PIL import Image
    im = Image.open(path)
    fmt = im.format
    if fmt not in ("JPEG", "PNG"):
        raise ValueError("%s: %s images are not supported (JPEG and PNG only)" % (path, fmt))
    W0, H0 = im.size
    orient = _jpeg_orientation(im)
    W, H = (H0, W0) if orient >= 5 else (W0, H0)
    if box is not None:
        x1, y1, x2, y2 = (round_half_even(float(v)) for v in box)
        x1, x2 = min(max(x1, 0), W), min(max(x2, 0), W)
        y1, y2 = min(max(y1, 0), H), min(max(y2, 0), H)
        if x2 <= x1 or y2 <= y1:
            raise ValueError("query box %s is empty after clamping to %dx%d" % (box, W, H))
    else:
        x1, y1, x2, y2 = 0, 0, W, H
    cw, ch = x2 - x1, y2 - y1
    tw, th = target_size(cw, ch, max_side)
    k = 1
    if dct and fmt == "JPEG":
        for kk in (8, 4, 2):
            if max(cw, ch) // kk >= max(tw, th):
                k = kk
                break
    if k > 1:
        if W0 // k == 0 or H0 // k == 0:
            raise NotImplementedError("DCT scaling 1/%d of a %dx%d JPEG: Pillow's draft cannot "
                                      "express it; use dct=False" % (k, W0, H0))
        im.draft("RGB", (W0 // k, H0 // k))
        want = ((W0 + k - 1) // k, (H0 + k - 1) // k)
        if im.size != want:
            raise RuntimeError("Pillow draft gave %s, expected %s" % (im.size, want))
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit gray PNG: keep the high byte (the contract), not Pillow's clipping
        a = (np.asarray(im, dtype=np.uint32) >> 8).astype(np.uint8)
        im = Image.fromarray(a, "L")
    im = im.convert("RGB")
    if orient != 1:
        im = im.transpose(_transpose_methods()[orient])
    Wd, Hd = im.size
    if k > 1:
        rect = (min(x1 / k, Wd), min(y1 / k, Hd), min(x2 / k, Wd), min(y2 / k, Hd))
    else:
        rect = (x1, y1, x2, y2)
    out = im.resize((tw, th), Image.Resampling.LANCZOS, box=rect)
    if info is not None:
        info.update(k=k, decoded=(Wd, Hd), crop=(x1, y1, x2, y2), target=(tw, th),
                    orientation=orient, format=fmt, rect=rect)
    a = np.asarray(out, dtype=np.uint8)
    assert a.shape == (th, tw, 3)
    return a


def normalize(rgb, mean, std):
    """uint8 H x W x 3 -> float32 1 x 3 x H x W: (v / 255 - mean_c) / std_c in fp32."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0)
    x = x.to(torch.float32) / torch.tensor(255.0, dtype=torch.float32)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def preprocess(path, max_side, mean, std, box=None, dct=True):
    """Image file -> normalised float32 tensor 1 x 3 x H x W."""
    return normalize(load_rgb(path, max_side, box=box, dct=dct), mean, std)


# ---------------------------------------------------------------------------
# Small pieces of the networks


def l2n(x, dim=-1):
    return x / (torch.norm(x, p=2, dim=dim, keepdim=True) + EPS_L2N)


def gem(x, p):
    """x: N x C x H x W -> N x C; p a tensor (1 element) or a float."""
    return x.clamp(min=EPS_GEM).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


def pool(x, kind, p=None):
    x = x.float()
    if kind == "gem":
        return gem(x, p)
    if kind == "spoc":
        return x.mean(dim=(2, 3))
    if kind == "mac":
        return x.amax(dim=(2, 3))
    raise ValueError("unknown pooling %r" % kind)


def resize_bilinear(x, s):
    """The multi-scale resize: floor(H s) x floor(W s), bilinear,
    align_corners=False, source coordinate (dst + 0.5) / s - 0.5 clamped at 0."""
    if s == 1:
        return x
    return F.interpolate(x, scale_factor=float(s), mode="bilinear", align_corners=False,
                         recompute_scale_factor=False)


def tf_same_pad(n, k, s):
    """(before, after) padding of TensorFlow SAME for input length n."""
    total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow SAME padding computed from the input size."""

    def forward(self, x):
        kh, kw = self.kernel_size
        sh, sw = self.stride
        dh, dw = self.dilation
        ph = tf_same_pad(x.shape[2], (kh - 1) * dh + 1, sh)
        pw = tf_same_pad(x.shape[3], (kw - 1) * dw + 1, sw)
        x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _to_same(conv):
    new = SamePadConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                        padding=0, dilation=conv.dilation, groups=conv.groups,
                        bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


# ---------------------------------------------------------------------------
# Backbones

RESNET_BLOCKS = {"resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3],
                 "resnet152": [3, 8, 36, 3]}


def make_resnet(name, last_stride=2):
    """torchvision ResNet without fc/avgpool; last_stride 1 makes layer4's first
    block stride 1 in its 3x3 conv and its downsample (output stride 16)."""
    import torchvision
    net = getattr(torchvision.models, name)(weights=None)
    del net.fc
    del net.avgpool
    if last_stride == 1:
        blk = net.layer4[0]
        blk.conv2.stride = (1, 1)
        blk.downsample[0].stride = (1, 1)
    elif last_stride != 2:
        raise ValueError("last_stride %r is not 1 or 2" % (last_stride,))
    return net


class MobileNetV2Backbone(nn.Module):
    """torchvision's MobileNetV2 features (keys features.N...), 1280 channels."""

    def __init__(self, padding="torch"):
        super().__init__()
        import torchvision
        self.features = torchvision.models.mobilenet_v2(weights=None).features
        self.padding = padding
        if padding == "tf_same":
            for mod in self.features.modules():
                for cname, child in list(mod.named_children()):
                    if (isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3)
                            and child.stride == (2, 2)):
                        setattr(mod, cname, _to_same(child))
        elif padding != "torch":
            raise ValueError("unknown padding %r" % padding)

    def forward(self, x, trace=None):
        for i, m in enumerate(self.features):
            x = m(x)
            if trace is not None and i in (1, 3, 6, 13, 17, 18):
                trace["features.%d" % i] = x
        return x


def resnet_forward(net, x, trace=None, keep_blocks=False):
    """Runs a torchvision ResNet up to layer4.  Returns (layer4 output,
    layer3 output, [layer4 block outputs]) (the last two for AGeM)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    if trace is not None:
        trace["stem"] = x
    x = net.layer1(x)
    if trace is not None:
        trace["layer1"] = x
    x = net.layer2(x)
    if trace is not None:
        trace["layer2"] = x
    x3 = net.layer3(x)
    if trace is not None:
        trace["layer3"] = x3
    blocks = []
    x = x3
    for b in net.layer4:
        x = b(x)
        blocks.append(x)
    if trace is not None:
        trace["layer4"] = x
    return x, x3, blocks


# ---------------------------------------------------------------------------
# AGeM head


class AGeMHead(nn.Module):
    def __init__(self, c3=1024, c4=2048):
        super().__init__()
        self.att1 = nn.ModuleList([
            nn.Conv2d(c3, 1024, 3, stride=2, padding=1, bias=False),
            nn.Conv2d(1024, 512, 3, stride=1, padding=1, bias=False),
            nn.Conv2d(512, 512, 1, bias=False),
            nn.Conv2d(512, c4, 1, bias=True),
        ])
        self.att1_bn = nn.ModuleList([nn.BatchNorm2d(1024), nn.BatchNorm2d(512),
                                      nn.BatchNorm2d(512)])
        self.att2_1 = nn.Conv2d(c4, c4, 1, bias=True)
        self.att2_2 = nn.Conv2d(c4, c4, 1, bias=True)

    def forward(self, x3, blocks, trace=None):
        a = x3
        for i in range(3):
            a = F.relu(self.att1_bn[i](self.att1[i](a)))
        a4 = torch.sigmoid(self.att1[3](a))
        x51, x52, x53 = blocks
        a51 = torch.sigmoid(self.att2_1(a4 * x51))
        a52 = torch.sigmoid(self.att2_2(a51 * x52))
        x = x53 + a52 * x53
        if trace is not None:
            trace.update({"agem.A4": a4, "agem.A51": a51, "agem.A52": a52, "agem.X": x})
        return x


# ---------------------------------------------------------------------------
# AP-GeM head (imago's definition; tools/reference.py is its oracle)


def apgem_pool(f, a, p):
    """Attention-weighted GeM: f N x C x H x W, a N x 1 x H x W (weights) ->
    (sum a max(f, eps)^p / max(sum a, eps))^(1/p), N x C.  a = 1 is GeM."""
    f = f.float()
    a = a.float()
    num = (a * f.clamp(min=EPS_GEM).pow(p)).sum(dim=(2, 3))
    den = a.sum(dim=(2, 3)).clamp(min=EPS_GEM)
    return (num / den).pow(1.0 / p)


class APGeMHead(nn.Module):
    """a = sigmoid(conv1x1_{c'->1}(ReLU(BN(conv1x1_{c->c'}(F)))))."""

    def __init__(self, c=2048, width=512):
        super().__init__()
        self.att = nn.ModuleList([nn.Conv2d(c, width, 1, bias=False),
                                  nn.Conv2d(width, 1, 1, bias=True)])
        self.att_bn = nn.ModuleList([nn.BatchNorm2d(width)])

    def attention(self, f):
        return torch.sigmoid(self.att[1](F.relu(self.att_bn[0](self.att[0](f)))))


# ---------------------------------------------------------------------------
# GLAP head (imago's reading of Roig et al. 2020's poster)


def glap_maps(s):
    """S N x K x H x W logits -> A: softmax of each map over its H*W locations."""
    n, k, h, w = s.shape
    return torch.softmax(s.float().flatten(2), dim=2).view(n, k, h, w)


def glap_means(f, a, p):
    """v[n, k, c] = (sum_yx A_k(y,x) max(F_c(y,x), eps)^p)^(1/p)."""
    fp = f.float().clamp(min=EPS_GEM).pow(p).flatten(2)          # n x c x hw
    return torch.bmm(a.float().flatten(2), fp.transpose(1, 2)).pow(1.0 / p)  # n x k x c


def glap_pool(f, s, p):
    """v = sum_k L2N(v_k) (N x C)."""
    return l2n(glap_means(f, glap_maps(s), p), dim=2).sum(dim=1)


class GLAPHead(nn.Module):
    def __init__(self, c=2048, k=8, out_dim=0):
        super().__init__()
        self.att = nn.Conv2d(c, k, 1, bias=True)
        if out_dim:
            self.fc = nn.Linear(c, out_dim)

    def embed(self, f, p):
        s = self.att(f)
        v = glap_pool(f, s, p)
        return self.fc(v) if hasattr(self, "fc") else v


# ---------------------------------------------------------------------------
# GLAM head: the four attention forms as functions, then the module


def _conv1d_channels(z, weight):
    """1-D convolution (kernel [1,1,k], no bias, zero 'same' padding) along the
    channel axis of z (N x C)."""
    k = weight.shape[-1]
    return F.conv1d(z.unsqueeze(1), weight, padding=k // 2).squeeze(1)


def glam_local_channel(f, lc_weight):
    """a = sigmoid(conv1d(GAP(F))); returns (F_c = F * a + F, a [N x C])."""
    z = f.mean(dim=(2, 3))
    a = torch.sigmoid(_conv1d_channels(z, lc_weight))
    fc = f * a[:, :, None, None] + f
    return fc, a


def glam_local_spatial(f, f_c, m):
    """m has ls_reduce, ls_b1, ls_d1, ls_d2, ls_d3, ls_out (Conv2d).  Returns
    (F_l = F_c * s + F_c, s [N x 1 x H x W])."""
    r = m.ls_reduce(f)
    cat = torch.cat([m.ls_b1(r), m.ls_d1(r), m.ls_d2(r), m.ls_d3(r)], dim=1)
    s = m.ls_out(cat)
    return f_c * s + f_c, s


def glam_global_channel(f, q_weight, k_weight):
    """z = GAP(F); q = sigmoid(conv1d_q z); k = sigmoid(conv1d_k z);
    A[i, j] = softmax_i(k_i q_j); G_c[j] = sum_i F[i] A[i, j].
    Returns (G_c [N x C x H x W], A [N x C x C])."""
    n, c, h, w = f.shape
    z = f.mean(dim=(2, 3))
    q = torch.sigmoid(_conv1d_channels(z, q_weight))
    k = torch.sigmoid(_conv1d_channels(z, k_weight))
    logits = k[:, :, None] * q[:, None, :]          # [n, i, j]
    a = torch.softmax(logits, dim=1)
    g = torch.bmm(a.transpose(1, 2), f.reshape(n, c, h * w)).reshape(n, c, h, w)
    return g, a


def glam_global_spatial(f, m):
    """Q, K, V = gs_q, gs_k, gs_v (F) flattened to c' x hw;
    A[m, n] = softmax_m(K[:, m] . Q[:, n]); G = V A; G_s = gs_out(G).
    Returns (G_s [N x C x H x W], A [N x hw x hw])."""
    n, _c, h, w = f.shape
    q = m.gs_q(f).flatten(2)   # n x c' x hw
    k = m.gs_k(f).flatten(2)
    v = m.gs_v(f).flatten(2)
    logits = torch.bmm(k.transpose(1, 2), q)     # [n, m, n']
    a = torch.softmax(logits, dim=1)
    g = torch.bmm(v, a).reshape(n, -1, h, w)
    return m.gs_out(g), a


def glam_fuse(f, f_l, f_g, theta):
    """(w_l, w_g, w) = softmax(theta) in the order (local, global, identity)."""
    w = torch.softmax(theta, dim=0)
    return w[0] * f_l + w[1] * f_g + w[2] * f


class GLAMHead(nn.Module):
    def __init__(self, c=2048, c_local=256, c_global=256, out_dim=512, k=3):
        super().__init__()
        self.lc_conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.ls_reduce = nn.Conv2d(c, c_local, 1)
        self.ls_b1 = nn.Conv2d(c_local, c_local, 1)
        self.ls_d1 = nn.Conv2d(c_local, c_local, 3, padding=1, dilation=1)
        self.ls_d2 = nn.Conv2d(c_local, c_local, 3, padding=2, dilation=2)
        self.ls_d3 = nn.Conv2d(c_local, c_local, 3, padding=3, dilation=3)
        self.ls_out = nn.Conv2d(4 * c_local, 1, 1)
        self.gc_q = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gc_k = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)
        self.gs_q = nn.Conv2d(c, c_global, 1)
        self.gs_k = nn.Conv2d(c, c_global, 1)
        self.gs_v = nn.Conv2d(c, c_global, 1)
        self.gs_out = nn.Conv2d(c_global, c, 1)
        self.fusion = nn.Parameter(torch.zeros(3))
        self.fc = nn.Linear(c, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)

    def attend(self, f, trace=None):
        f_c, a_lc = glam_local_channel(f, self.lc_conv.weight)
        f_l, s = glam_local_spatial(f, f_c, self)
        g_c, _ = glam_global_channel(f, self.gc_q.weight, self.gc_k.weight)
        g_s, _ = glam_global_spatial(f, self)
        f_g1 = f * g_c
        f_g = f_g1 * g_s + f_g1
        f_gl = glam_fuse(f, f_l, f_g, self.fusion)
        if trace is not None:
            trace.update({"glam.a_lc": a_lc, "glam.Fc": f_c, "glam.s": s, "glam.Fl": f_l,
                          "glam.Gc": g_c, "glam.Gs": g_s, "glam.Fg": f_g, "glam.Fgl": f_gl})
        return f_gl

    def embed(self, f_gl, p, trace=None):
        g = pool(f_gl, "gem", p)
        y = self.bn(self.fc(g))
        if trace is not None:
            trace["glam.pooled"] = g
            trace["glam.fc_bn"] = y
        return l2n(y)


# ---------------------------------------------------------------------------
# The whole network


class GeMParam(nn.Module):
    def __init__(self, p=3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]))


class Whiten(nn.Module):
    """The whitening stages in order, each followed by L2N: lw = L2N(P (x - m))
    (tensors whiten.P, whiten.m), fc = L2N(W x + b) (whiten.weight, whiten.bias).
    dims: the output width of each stage."""

    def __init__(self, stages, dims, d_in):
        super().__init__()
        self.stages = list(stages)
        for st, d in zip(self.stages, dims):
            if st == "lw":
                self.P = nn.Parameter(torch.eye(d, d_in))
                self.m = nn.Parameter(torch.zeros(d_in))
            else:
                self.weight = nn.Parameter(torch.eye(d, d_in))
                self.bias = nn.Parameter(torch.zeros(d))
            d_in = d
        self.out_dim = d_in

    def forward(self, v):
        for st in self.stages:
            if st == "lw":
                v = l2n(F.linear(v - self.m, self.P))
            else:
                v = l2n(F.linear(v, self.weight, self.bias))
        return v


def multiscale_p(config, p_tensor):
    """The exponent combining the per-scale descriptors (see the docstring)."""
    if (imago_model.pooling_type(config) == "gem" and config["head"] in ("gem", "agem", "apgem")
            and "fc" not in imago_model.whitening_stages(config.get("whitening", "none"))
            and p_tensor is not None):
        return p_tensor
    return 1.0


class ImagoNet(nn.Module):
    """The network of an imago model.  state_dict() names are exactly the
    file's tensor names (minus BatchNorm's num_batches_tracked)."""

    def __init__(self, config, shapes=None):
        """config: the imago.config dict.  shapes: {name: shape} of the file's
        tensors, used for sizes read from weights (GLAM widths, whitening
        output dimension); None = defaults (for make_test_model)."""
        super().__init__()
        shapes = shapes or {}
        self.config = config
        bb = config["backbone"]
        self.head_kind = config["head"]
        self.pooling = imago_model.pooling_type(config)
        self.whitening = config.get("whitening", "none")
        self.stages = imago_model.whitening_stages(self.whitening)
        self.normalize_pooled = bool(config.get("normalize_pooled", True))
        last_stride = int(config.get("last_stride", 2))
        if bb in RESNET_BLOCKS:
            self.backbone = make_resnet(bb, last_stride)
            c = 2048
            if config.get("padding", "torch") != "torch":
                raise ValueError("padding %r is only for mobilenet_v2" % config["padding"])
        elif bb == "mobilenet_v2":
            if last_stride != 2:
                raise ValueError("last_stride 1 needs a ResNet backbone")
            self.backbone = MobileNetV2Backbone(config.get("padding", "torch"))
            c = 1280
        else:
            raise ValueError("unknown backbone %r" % bb)
        self.channels = c
        if self.head_kind == "agem":
            if bb not in RESNET_BLOCKS:
                raise ValueError("the agem head needs a ResNet backbone")
            self.agem = AGeMHead()
        elif self.head_kind == "glam":
            cl = shapes.get("glam.ls_reduce.weight", [256])[0]
            cg = shapes.get("glam.gs_q.weight", [256])[0]
            od = shapes.get("glam.fc.weight", [512])[0]
            k = shapes.get("glam.lc_conv.weight", [1, 1, 3])[-1]
            self.glam = GLAMHead(c, cl, cg, od, k)
        elif self.head_kind == "apgem":
            self.apgem = APGeMHead(c, shapes.get("apgem.att.0.weight", [512])[0])
        elif self.head_kind == "glap":
            od = shapes.get("glap.fc.weight", [0])[0] if shapes else 512
            self.glap = GLAPHead(c, shapes.get("glap.att.weight", [8])[0], od)
        elif self.head_kind != "gem":
            raise ValueError("unknown head %r" % self.head_kind)
        attn = self.head_kind in ("glam", "apgem", "glap")   # always GeM with pool.p
        if self.pooling == "gem" or attn or "pool.p" in shapes:
            self.pool = GeMParam(3.0)
        if self.head_kind == "glam":
            dim_in = self.glam.fc.out_features
        elif self.head_kind == "glap" and hasattr(self.glap, "fc"):
            dim_in = self.glap.fc.out_features
        else:
            dim_in = c
        if self.stages:
            dims, d = [], dim_in
            for st in self.stages:
                d = shapes.get("whiten.P" if st == "lw" else "whiten.weight", [d])[0]
                dims.append(d)
            self.whiten = Whiten(self.stages, dims, dim_in)
        self.pre_dim = dim_in
        self.eval()

    @property
    def p(self):
        return self.pool.p if hasattr(self, "pool") else None

    def file_tensors(self):
        """{name: tensor} to store (num_batches_tracked dropped)."""
        return {k: v.detach().clone() for k, v in self.state_dict().items()
                if not k.endswith("num_batches_tracked")}

    def load_file_tensors(self, tensors):
        """Loads {name: tensor} (file names); raises KeyError listing missing
        and unexpected names."""
        want = self.file_tensors()
        missing = sorted(set(want) - set(tensors))
        unexpected = sorted(set(tensors) - set(want))
        if missing or unexpected:
            raise KeyError("model tensors do not match %s/%s/%s: missing %s; unexpected %s"
                           % (self.config["backbone"], self.head_kind, self.whitening,
                              _abbrev(missing), _abbrev(unexpected)))
        bad = [(k, list(tensors[k].shape), list(want[k].shape)) for k in want
               if tuple(tensors[k].shape) != tuple(want[k].shape)]
        if bad:
            raise ValueError("tensor shapes differ from the architecture (name, file, want): %s"
                             % _abbrev(bad))
        sd = {k: v.float() for k, v in tensors.items()}
        self.load_state_dict(sd, strict=False)

    # -- forward pieces -----------------------------------------------------

    def features(self, x, trace=None):
        """Backbone + attention: the feature map that is pooled."""
        if self.config["backbone"] in RESNET_BLOCKS:
            f, x3, blocks = resnet_forward(self.backbone, x, trace)
            if self.head_kind == "agem":
                return self.agem(x3, blocks, trace)
        else:
            f = self.backbone(x, trace)
            if trace is not None:
                trace["layer4"] = f
        if self.head_kind == "glam":
            return self.glam.attend(f, trace)
        return f

    def descriptor_at_scale(self, x, s=1.0, trace=None, autocast=None):
        """d_s: the L2N'd descriptor of one scale, before whitening (N x D)."""
        xs = resize_bilinear(x, s)
        if trace is not None:
            trace["input"] = xs
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16,
                            enabled=autocast is not None):
            f = self.features(xs, trace)
            if self.head_kind == "apgem":
                a = self.apgem.attention(f)
            elif self.head_kind == "glap":
                logits = self.glap.att(f)
        f = f.float()
        if self.head_kind == "glam":
            return self.glam.embed(f, self.p, trace)
        if self.head_kind == "apgem":
            g = apgem_pool(f, a, self.p)
            if trace is not None:
                trace["apgem.a"] = a
        elif self.head_kind == "glap":
            v = glap_pool(f, logits, self.p)
            g = self.glap.fc(v) if hasattr(self.glap, "fc") else v
            if trace is not None:
                trace.update({"glap.S": logits, "glap.v": v})
        else:
            g = pool(f, self.pooling, self.p)
        if trace is not None:
            trace["pooled"] = g
        return l2n(g) if self.normalize_pooled else g

    def combine(self, ds):
        """Multi-scale combination of per-scale descriptors (before whitening)."""
        if len(ds) == 1:
            return ds[0]
        q = multiscale_p(self.config, self.p)
        v = torch.stack([d.pow(q) for d in ds]).mean(dim=0).pow(1.0 / q)
        return l2n(v) if self.normalize_pooled else v

    def apply_whitening(self, v):
        if not self.stages:
            return v
        return self.whiten(v)

    def forward(self, x, scales=(1.0,), traces=None, autocast=None):
        """x: N x 3 x H x W normalised; returns N x dim float32."""
        ds = []
        for i, s in enumerate(scales):
            tr = None
            if traces is not None:
                tr = {}
                traces["scale%d" % i] = tr
            d = self.descriptor_at_scale(x, s, tr, autocast)
            if tr is not None:
                tr["descriptor"] = d
            ds.append(d)
        v = self.combine(ds)
        out = self.apply_whitening(v)
        if traces is not None:
            traces["combined"] = v
            traces["descriptor"] = out
        return out


def _abbrev(lst, n=12):
    lst = list(lst)
    if len(lst) <= n:
        return str(lst)
    return "%s ... (%d in all)" % (lst[:n], len(lst))


def load_model(path):
    """Reads a .safetensors model; returns (ImagoNet in eval mode, config)."""
    tensors, config, _meta = imago_model.load(path)
    if config is None:
        raise imago_model.ModelFormatError("%s has no __metadata__['imago.config']" % path)
    net = ImagoNet(config, {k: list(v.shape) for k, v in tensors.items()})
    net.load_file_tensors(tensors)
    net.eval()
    return net, config


def extract(net, x, scales, dtype="fp32", traces=None, channels_last=False):
    """Descriptors of the normalised batch x (N x 3 x H x W): eval mode,
    torch.no_grad(), fp32 or bf16 autocast (pooling, combination and
    whitening always in fp32).  channels_last converts the net's weights (in
    place) and the input to NHWC."""
    autocast = torch.bfloat16 if dtype == "bf16" else None
    if channels_last:
        # weights too (in place, once): PyTorch's fast CPU path wants both NHWC
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return net(x, tuple(scales), traces, autocast).float()


# ---------------------------------------------------------------------------
# Command line


def _floats(s, n=None):
    v = [float(t) for t in s.split(",") if t.strip()]
    if n is not None and len(v) != n:
        raise argparse.ArgumentTypeError("want %d comma-separated numbers" % n)
    return v


def _flatten(prefix, d, out):
    for k, v in d.items():
        if isinstance(v, dict):
            _flatten(prefix + k + ".", v, out)
        else:
            out[prefix + k] = v.detach().float().numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="imago .safetensors model")
    ap.add_argument("inputs", nargs="+", help="images (JPEG/PNG) or raw float32 NCHW .npy tensors")
    ap.add_argument("--scales", type=_floats, default=None,
                    help="comma-separated scales (default: the model's)")
    ap.add_argument("--max-side", type=int, default=None, help="default: the model's")
    ap.add_argument("--box", type=lambda s: _floats(s, 4), default=None, help="x1,y1,x2,y2")
    ap.add_argument("--no-dct", action="store_true", help="disable JPEG DCT scaling")
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--out", help="write the N x dim descriptors here (.npy float32)")
    ap.add_argument("--dump-input", metavar="DIR",
                    help="write each image's normalised input tensor (1x3xHxW .npy) and its "
                         "8-bit RGB (.rgb.npy) here")
    ap.add_argument("--dump-intermediates", metavar="DIR",
                    help="write every intermediate tensor of each input as DIR/<i>.npz")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    net, config = load_model(args.model)
    scales = args.scales or config.get("scales", [1.0])
    max_side = args.max_side if args.max_side is not None else config["input"]["max_side"]
    mean, std = config["input"]["mean"], config["input"]["std"]
    for d in (args.dump_input, args.dump_intermediates):
        if d:
            os.makedirs(d, exist_ok=True)
    outs = []
    for i, path in enumerate(args.inputs):
        base = os.path.splitext(os.path.basename(path))[0]
        if path.endswith(".npy"):
            x = torch.from_numpy(np.load(path).astype(np.float32))
            if x.dim() == 3:
                x = x.unsqueeze(0)
            if x.dim() != 4 or x.shape[1] != 3:
                raise SystemExit("%s: want a float32 N x 3 x H x W tensor, got %s"
                                 % (path, tuple(x.shape)))
        else:
            rgb = load_rgb(path, max_side, box=args.box, dct=not args.no_dct)
            x = normalize(rgb, mean, std)
            if args.dump_input:
                np.save(os.path.join(args.dump_input, base + ".npy"), x.numpy())
                np.save(os.path.join(args.dump_input, base + ".rgb.npy"), rgb)
        traces = {} if args.dump_intermediates else None
        d = extract(net, x, scales, args.dtype, traces, args.channels_last)
        if traces is not None:
            flat = {}
            _flatten("", traces, flat)
            np.savez(os.path.join(args.dump_intermediates, "%d_%s.npz" % (i, base)), **flat)
        outs.append(d.numpy())
        if not args.quiet:
            for j in range(d.shape[0]):
                v = d[j].numpy()
                print("%s%s\tdim=%d\tnorm=%.6f\t%s ..." % (
                    path, "[%d]" % j if d.shape[0] > 1 else "", v.shape[0],
                    float(np.linalg.norm(v)), " ".join("%.6f" % t for t in v[:6])))
    allv = np.concatenate(outs, axis=0).astype(np.float32)
    if args.out:
        np.save(args.out, allv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
