#!/usr/bin/python3
"""Converts the checkpoints users have into an imago model file (.safetensors).

Supported inputs (the layout is detected from the state dict's keys):

  torchvision-resnet   a torchvision ResNet-50/101/152 state dict (.pth): conv1.*,
                       bn1.*, layer1..4.* (fc.* is dropped).  Head GeM with
                       --p (default 3, written as pool.p); optional --whiten FILE
                       (.npz/.pt/.pth holding {P, m} -> "lw", or {weight, bias}
                       -> "fc").
  cirtorch             a cnnimageretrieval-pytorch GeM checkpoint: a dict with
                       'state_dict' (features.N.* with N the Sequential index of
                       conv1, bn1, relu, maxpool, layer1..layer4, i.e.
                       features.0 = conv1, features.1 = bn1, features.4..7 =
                       layer1..4; pool.p; optional whiten.weight/whiten.bias)
                       and 'meta' (architecture, pooling, whitening, mean, std,
                       optional Lw[dataset]['ss'|'ms'] = {m, P}: choose with
                       --lw DATASET --lw-mode ss|ms).
  torchvision-mobilenet_v2
                       a torchvision MobileNetV2 state dict (features.N...,
                       classifier.* dropped); use --mean/--std, --padding
                       torch|tf_same, --max-side.
  imago-reference      the state dict of tools/reference.py's ImagoNet (the
                       project's AGeM / GLAM / AP-GeM / GLAP reference
                       checkpoints): keys backbone.*, agem.*, glam.*, apgem.* or
                       glap.*, pool.p, whiten.*; optionally wrapped as
                       {'state_dict': ..., 'config': {...}}.
  dirtorch             a naver deep-image-retrieval AP-GeM checkpoint
                       (Resnet101-AP-GeM.pt, Resnet-101-AP-GeM-LM18.pt,
                       Resnet50-AP-GeM.pt): {'state_dict': torchvision ResNet
                       keys (maybe under module.), adpool.p, fc.weight, fc.bias;
                       'model_options': {'arch': 'resnet101_rmac', maybe
                       'norm_features'}; optional 'preprocess' {mean, std};
                       'pca': {set: pickled scikit-learn PCA}}.  Written as head
                       gem, whitening ["fc", "lw"]: whiten.weight/bias = fc,
                       whiten.P = diag(explained_variance_^-WHITENP) components_
                       (without the ev factor when the PCA has whiten False),
                       whiten.m = mean_; "normalize_pooled": false unless
                       norm_features (dirtorch runs GeM -> fc without an L2N),
                       scales [1] (its README's numbers are single-scale).
                       --pca-set (default Landmarks_clean), --whitenp (default
                       0.25, the README's; its extract_features.py uses 0.5).
                       Needs python3-sklearn to unpickle the PCA (old pickles
                       name sklearn.decomposition.pca, mapped to ._pca here).

Wrappers {'state_dict': ...} / {'model': ...} and DataParallel's 'module.'
prefixes are removed.  Unknown layouts fail with the keys that were missing
or unexpected.  Output: the tensors under the names of docs/models.md and the
imago.config (name, backbone, head, pooling, dim, whitening, input {max_side,
mean, std}, scales, padding, source).
"""

import argparse
import os
import pickle
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_model  # noqa: E402
import reference  # noqa: E402


class ConvertError(Exception):
    pass


RESNET_BY_BLOCKS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101",
                    (3, 8, 36, 3): "resnet152"}
CIRTORCH_INDEX = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3",
                  "7": "layer4"}


def _as_tensor(v, what):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu()
    if isinstance(v, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(v))
    raise ConvertError("%s is a %s, not a tensor/array" % (what, type(v).__name__))


class _NamingUnpickler(pickle.Unpickler):
    """An Unpickler that names the class it could not find (dirtorch
    checkpoints pickle scikit-learn PCA objects)."""

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except Exception as e:
            raise ConvertError("the checkpoint holds a pickled %s.%s that cannot be loaded "
                               "here (%s: %s)%s"
                               % (module, name, type(e).__name__, e,
                                  "; install python3-sklearn (deploy/install-deps)"
                                  if module.startswith("sklearn") and "sklearn" not in sys.modules
                                  else "")) from None


def _sklearn_shim():
    """Old scikit-learn pickles name sklearn.decomposition.pca (now ._pca)."""
    try:
        import sklearn.decomposition._pca as pca_mod
    except ImportError:
        return
    sys.modules.setdefault("sklearn.decomposition.pca", pca_mod)


def load_checkpoint(path):
    _sklearn_shim()
    # torch.load subclasses pickle.Unpickler at each call (Debian's torch 1.13
    # ignores pickle_module=): swap in the naming one for this load only
    saved = pickle.Unpickler
    pickle.Unpickler = _NamingUnpickler
    try:
        obj = torch.load(path, map_location="cpu")
    except ConvertError as e:
        raise ConvertError("%s: %s" % (path, e)) from None
    except Exception as e:
        raise ConvertError("cannot read %s as a PyTorch checkpoint: %s" % (path, e)) from None
    finally:
        pickle.Unpickler = saved
    return obj


def is_dirtorch(obj):
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return False
    keys = {k[len("module."):] if k.startswith("module.") else k for k in obj["state_dict"]}
    return "model_options" in obj or ("adpool.p" in keys and "fc.weight" in keys)


def _pca_matrix(pca, whitenp, what):
    """(P, m) of a scikit-learn PCA: P = diag(ev^-whitenp) components_ when the
    PCA whitens, else components_; m = mean_."""
    try:
        comp = np.asarray(pca.components_, dtype=np.float64)
        mean = np.asarray(pca.mean_, dtype=np.float64).reshape(-1)
        ev = np.asarray(pca.explained_variance_, dtype=np.float64).reshape(-1)
        whiten = bool(getattr(pca, "whiten", False))
    except AttributeError as e:
        raise ConvertError("%s is a %s, not a fitted scikit-learn PCA (%s)"
                           % (what, type(pca).__name__, e)) from None
    if comp.ndim != 2 or comp.shape[1] != mean.shape[0] or ev.shape[0] != comp.shape[0]:
        raise ConvertError("%s: inconsistent shapes components_ %s, mean_ %s, "
                           "explained_variance_ %s" % (what, comp.shape, mean.shape, ev.shape))
    if whiten:
        if not (ev > 0).all():
            raise ConvertError("%s: explained_variance_ has values <= 0" % what)
        comp = comp * (ev ** -whitenp)[:, None]
    return torch.from_numpy(comp).float(), torch.from_numpy(mean).float(), whiten


def convert_dirtorch(obj, args):
    """A dirtorch AP-GeM checkpoint -> (tensors, info) (see the module docstring)."""
    opts = obj.get("model_options") or {}
    if not isinstance(opts, dict):
        raise ConvertError("dirtorch checkpoint: model_options is a %s, not a dict"
                           % type(opts).__name__)
    sd = {(k[len("module."):] if k.startswith("module.") else k): v
          for k, v in obj["state_dict"].items()}
    tensors, unexpected = {}, []
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k == "adpool.p":
            tensors["pool.p"] = _as_tensor(v, k).reshape(-1)[:1].float()
        elif k in ("fc.weight", "fc.bias"):
            tensors["whiten." + k[3:]] = _as_tensor(v, k).float()
        elif re.match(r"^(conv1|bn1|layer[1-4])\.", k):
            tensors["backbone." + k] = _as_tensor(v, k)
        else:
            unexpected.append(k)
    if unexpected:
        raise ConvertError("dirtorch checkpoint: unexpected keys %s (only the AP-GeM "
                           "ResNet + GeM + fc networks are supported)"
                           % reference._abbrev(unexpected))
    for need in ("pool.p", "whiten.weight", "whiten.bias"):
        if need not in tensors:
            raise ConvertError("dirtorch checkpoint: state_dict has no %s"
                               % {"pool.p": "adpool.p"}.get(need, need.replace("whiten.",
                                                                               "fc.")))
    arch_opt = str(opts.get("arch", ""))
    arch = re.sub(r"_(rmac|gem)$", "", arch_opt)
    if arch not in reference.RESNET_BLOCKS:
        raise ConvertError("dirtorch arch %r is not supported (resnet50_rmac, resnet101_rmac, "
                           "resnet152_rmac)" % (arch_opt or None,))
    got = resnet_arch(tensors, "backbone.")
    if got != arch:
        raise ConvertError("model_options arch %r but the state dict is a %s" % (arch_opt, got))
    pca_sets = obj.get("pca")
    if not pca_sets:
        raise ConvertError("dirtorch checkpoint has no 'pca' (the PCA whitening its "
                           "descriptors are defined with); this converter needs one")
    if not isinstance(pca_sets, dict) or args.pca_set not in pca_sets:
        have = sorted(pca_sets) if isinstance(pca_sets, dict) else type(pca_sets).__name__
        raise ConvertError("dirtorch checkpoint: pca has no set %r (has %s; choose with "
                           "--pca-set)" % (args.pca_set, have))
    P, m, whiten = _pca_matrix(pca_sets[args.pca_set], args.whitenp,
                               "pca[%r]" % args.pca_set)
    d_fc = tensors["whiten.weight"].shape[0]
    if P.shape[1] != d_fc:
        raise ConvertError("pca[%r] works on %d values but fc gives %d"
                           % (args.pca_set, P.shape[1], d_fc))
    tensors["whiten.P"] = P
    tensors["whiten.m"] = m
    info = {"layout": "dirtorch", "backbone": arch, "head": "gem", "pooling": "gem",
            "whitening": ["fc", "lw"], "normalize_pooled": bool(opts.get("norm_features")),
            "scales": [1.0],
            "lw": "pca %s, whitenp %g%s" % (args.pca_set, args.whitenp,
                                            "" if whiten else " (PCA without whiten)")}
    pre = obj.get("preprocess")
    if isinstance(pre, dict):
        for key in ("mean", "std"):
            if pre.get(key) is not None and getattr(args, key) is None:
                info[key] = [float(v) for v in pre[key]]
    return tensors, info


def unwrap(obj):
    """-> (state dict {name: tensor}, meta dict or None, config dict or None)."""
    meta = config = None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = obj.get("meta")
        config = obj.get("config")
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ConvertError("the checkpoint is a %s, not a state dict" % type(obj).__name__)
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise ConvertError("state dict key %r is not a string" % (k,))
        if k.startswith("module."):
            k = k[len("module."):]
        sd[k] = v
    return sd, meta, config


def _blocks(sd, prefix):
    counts = []
    for layer in range(1, 5):
        pat = re.compile(r"^%slayer%d\.(\d+)\." % (re.escape(prefix), layer))
        idx = {int(m.group(1)) for m in (pat.match(k) for k in sd) if m}
        counts.append(max(idx) + 1 if idx else 0)
    return tuple(counts)


def resnet_arch(sd, prefix=""):
    blocks = _blocks(sd, prefix)
    arch = RESNET_BY_BLOCKS.get(blocks)
    if arch is None:
        raise ConvertError("ResNet with blocks per stage %s is not ResNet-50/101/152 "
                           "([3,4,6,3], [3,4,23,3], [3,8,36,3])" % (list(blocks),))
    return arch


def detect_layout(sd):
    keys = set(sd)
    if any(k.startswith("backbone.") for k in keys):
        return "imago-reference"
    if "conv1.weight" in keys and any(k.startswith("layer4.") for k in keys):
        return "torchvision-resnet"
    if "features.0.weight" in keys and any(k.startswith("features.7.") for k in keys):
        return "cirtorch"
    if "features.0.0.weight" in keys and "features.18.0.weight" in keys:
        return "torchvision-mobilenet_v2"
    sample = sorted(keys)[:12]
    raise ConvertError("unknown checkpoint layout: none of torchvision ResNet (conv1.weight, "
                       "layer4.*), cnnimageretrieval (features.0.weight, features.7.*), "
                       "torchvision MobileNetV2 (features.0.0.weight, features.18.0.weight) "
                       "or imago reference (backbone.*) keys found; the first keys are %s "
                       "(%d keys)" % (sample, len(keys)))


def _drop(sd, prefixes):
    return {k: v for k, v in sd.items()
            if not any(k.startswith(p) for p in prefixes) and not k.endswith("num_batches_tracked")}


def load_whitening(path):
    """{P, m} -> ('lw', {...}); {weight, bias} -> ('fc', {...})."""
    if path.endswith(".npz"):
        d = dict(np.load(path))
    else:
        d = torch.load(path, map_location="cpu")
        if not isinstance(d, dict):
            raise ConvertError("%s: want a dict with P and m (or weight and bias)" % path)
    if "P" in d and "m" in d:
        P = _as_tensor(d["P"], "P").double()
        m = _as_tensor(d["m"], "m").double().reshape(-1)
        return "lw", {"whiten.P": P.float(), "whiten.m": m.float()}
    if "weight" in d and "bias" in d:
        return "fc", {"whiten.weight": _as_tensor(d["weight"], "weight").float(),
                      "whiten.bias": _as_tensor(d["bias"], "bias").float().reshape(-1)}
    raise ConvertError("%s: want keys P and m (learned whitening) or weight and bias "
                       "(FC whitening); got %s" % (path, sorted(d)))


def convert_state(sd, meta, config_in, args):
    """Returns (tensors with imago names, partial config dict)."""
    layout = args.layout or detect_layout(sd)
    info = {"layout": layout}
    tensors = {}
    whitening = "none"
    if layout == "torchvision-resnet":
        arch = resnet_arch(sd)
        tensors = {"backbone." + k: _as_tensor(v, k)
                   for k, v in _drop(sd, ("fc.",)).items()}
        info.update(backbone=arch, head=args.head or "gem", pooling=args.pooling or "gem")
        if info["pooling"] == "gem":
            tensors["pool.p"] = torch.tensor([float(args.p)])
    elif layout == "cirtorch":
        meta = meta or {}
        out = {}
        unexpected = []
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                continue
            m = re.match(r"^features\.(\d+)\.(.*)$", k)
            if m and m.group(1) in CIRTORCH_INDEX:
                out["backbone.%s.%s" % (CIRTORCH_INDEX[m.group(1)], m.group(2))] = v
            elif k == "pool.p":
                out["pool.p"] = _as_tensor(v, k).reshape(-1)[:1].float()
            elif k in ("whiten.weight", "whiten.bias"):
                out[k] = v
            else:
                unexpected.append(k)
        if unexpected:
            raise ConvertError("cnnimageretrieval checkpoint: unexpected keys %s (local "
                               "whitening, regional pooling and other layers are not "
                               "supported)" % reference._abbrev(unexpected))
        tensors = {k: _as_tensor(v, k) for k, v in out.items()}
        arch = meta.get("architecture") or resnet_arch(tensors, "backbone.")
        if arch not in reference.RESNET_BLOCKS:
            raise ConvertError("cnnimageretrieval architecture %r is not supported (resnet50, "
                               "resnet101, resnet152)" % arch)
        if resnet_arch(tensors, "backbone.") != arch:
            raise ConvertError("meta says %s but the state dict has %s blocks" %
                               (arch, list(_blocks(tensors, "backbone."))))
        for flag in ("local_whitening", "regional"):
            if meta.get(flag):
                raise ConvertError("cnnimageretrieval meta['%s'] = True is not supported" % flag)
        pooling = args.pooling or meta.get("pooling", "gem")
        if pooling not in imago_model.POOLINGS:
            raise ConvertError("pooling %r is not supported (gem, spoc, mac)" % pooling)
        if pooling != "gem":
            tensors.pop("pool.p", None)
        elif "pool.p" not in tensors:
            raise ConvertError("GeM checkpoint without pool.p")
        if "whiten.weight" in tensors:
            whitening = "fc"
        info.update(backbone=arch, head="gem", pooling=pooling)
        if args.lw:
            if whitening == "fc":
                raise ConvertError("this network has an FC whitening layer (whiten.weight); a "
                                   "learned whitening on top of it cannot be expressed")
            lw = meta.get("Lw") or {}
            if args.lw not in lw:
                raise ConvertError("meta['Lw'] has no %r (has %s)" % (args.lw, sorted(lw)))
            if args.lw_mode not in lw[args.lw]:
                raise ConvertError("meta['Lw'][%r] has no %r (has %s)"
                                   % (args.lw, args.lw_mode, sorted(lw[args.lw])))
            w = lw[args.lw][args.lw_mode]
            tensors["whiten.P"] = _as_tensor(w["P"], "Lw P").float()
            tensors["whiten.m"] = _as_tensor(w["m"], "Lw m").float().reshape(-1)
            whitening = "lw"
            info["lw"] = "%s/%s" % (args.lw, args.lw_mode)
        if meta.get("mean") is not None and args.mean is None:
            info["mean"] = [float(v) for v in meta["mean"]]
        if meta.get("std") is not None and args.std is None:
            info["std"] = [float(v) for v in meta["std"]]
    elif layout == "torchvision-mobilenet_v2":
        tensors = {"backbone." + k: _as_tensor(v, k)
                   for k, v in _drop(sd, ("classifier.",)).items()}
        info.update(backbone="mobilenet_v2", head=args.head or "gem",
                    pooling=args.pooling or "gem")
        if info["pooling"] == "gem":
            tensors["pool.p"] = torch.tensor([float(args.p)])
    elif layout == "imago-reference":
        tensors = {k: _as_tensor(v, k) for k, v in _drop(sd, ()).items()}
        cfg = config_in or {}
        if any(k.startswith("backbone.features.") for k in tensors):
            arch = "mobilenet_v2"
        else:
            arch = resnet_arch(tensors, "backbone.")
        head = "gem"
        if any(k.startswith("agem.") for k in tensors):
            head = "agem"
        elif any(k.startswith("glam.") for k in tensors):
            head = "glam"
        elif any(k.startswith("apgem.") for k in tensors):
            head = "apgem"
        elif any(k.startswith("glap.") for k in tensors):
            head = "glap"
        pooling = args.pooling or (imago_model.pooling_type(cfg) if cfg else "gem")
        if head in ("glam", "apgem", "glap"):
            pooling = "gem"
        if cfg.get("last_stride"):
            info["last_stride"] = int(cfg["last_stride"])
        if "normalize_pooled" in cfg:
            info["normalize_pooled"] = bool(cfg["normalize_pooled"])
        info.update(backbone=cfg.get("backbone", arch), head=cfg.get("head", head),
                    pooling=pooling)
        if info["backbone"] != arch or info["head"] != head:
            raise ConvertError("the embedded config says %s/%s but the tensors are %s/%s"
                               % (info["backbone"], info["head"], arch, head))
        if cfg.get("whitening") not in (None, "none"):
            whitening = cfg["whitening"]
        elif "whiten.P" in tensors:
            whitening = "lw"
        elif "whiten.weight" in tensors:
            whitening = "fc"
        for key in ("mean", "std"):
            if cfg.get("input", {}).get(key) is not None and getattr(args, key) is None:
                info[key] = cfg["input"][key]
        if cfg.get("padding") and args.padding is None:
            info["padding"] = cfg["padding"]
    else:
        raise ConvertError("unknown --layout %r" % layout)

    if args.whiten:
        if whitening != "none":
            raise ConvertError("--whiten given but the checkpoint already has %s whitening"
                               % whitening)
        whitening, wt = load_whitening(args.whiten)
        tensors.update(wt)
    if info["head"] == "agem" and layout != "imago-reference":
        raise ConvertError("--head agem needs attention weights: only the imago reference "
                           "checkpoints carry them")
    if info["head"] in ("glam", "apgem", "glap") and layout != "imago-reference":
        raise ConvertError("--head %s needs attention weights: only the imago reference "
                           "checkpoints carry them" % info["head"])
    info["whitening"] = whitening
    return tensors, info


def build_config(tensors, info, args, source_path):
    backbone = info["backbone"]
    head = info["head"]
    stages = imago_model.whitening_stages(info["whitening"])
    c = 1280 if backbone == "mobilenet_v2" else 2048
    if stages:
        dim = tensors["whiten.P" if stages[-1] == "lw" else "whiten.weight"].shape[0]
    elif head == "glam":
        dim = tensors["glam.fc.weight"].shape[0]
    elif head == "glap":
        dim = tensors["glap.fc.weight"].shape[0] if "glap.fc.weight" in tensors else c
    else:
        dim = c
    padding = args.padding or info.get("padding") or "torch"
    mean = args.mean or info.get("mean") or imago_model.IMAGENET_MEAN
    std = args.std or info.get("std") or imago_model.IMAGENET_STD
    name = args.name or os.path.splitext(os.path.basename(source_path))[0]
    src = "converted from %s (%s layout%s) by tools/convert.py" % (
        os.path.basename(source_path), info["layout"],
        ", whitening %s" % info["lw"] if "lw" in info else "")
    return imago_model.make_config(
        name, backbone, head, info["pooling"], dim, info["whitening"], max_side=args.max_side,
        mean=mean, std=std, scales=args.scales or info.get("scales"), padding=padding,
        source=args.source or src, trained=not args.untrained,
        last_stride=info.get("last_stride", 2),
        normalize_pooled=info.get("normalize_pooled", True))


def convert(args):
    obj = load_checkpoint(args.input)
    if (args.layout or ("dirtorch" if is_dirtorch(obj) else None)) == "dirtorch":
        if not is_dirtorch(obj):
            raise ConvertError("%s is not a dirtorch checkpoint (a dict with state_dict "
                               "holding adpool.p and fc.*, and model_options)" % args.input)
        tensors, info = convert_dirtorch(obj, args)
    else:
        sd, meta, config_in = unwrap(obj)
        tensors, info = convert_state(sd, meta, config_in, args)
    config = build_config(tensors, info, args, args.input)
    # Validate against the reference architecture: every tensor it needs, no
    # more, with the right shapes.
    try:
        net = reference.ImagoNet(config, {k: list(v.shape) for k, v in tensors.items()})
        net.load_file_tensors(tensors)
    except (KeyError, ValueError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ConvertError("%s (%s layout): %s" % (args.input, info["layout"], msg)) from None
    out = {k: v.float() for k, v in tensors.items()}
    n = imago_model.save(args.out, out, config, dtype=args.dtype)
    return config, n


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    floats = lambda s: [float(t) for t in s.split(",") if t.strip()]  # noqa: E731
    ap.add_argument("input", help="checkpoint (.pth / .pt)")
    ap.add_argument("--out", "-o", required=True, help="output .safetensors")
    ap.add_argument("--layout", choices=("torchvision-resnet", "cirtorch",
                                         "torchvision-mobilenet_v2", "imago-reference",
                                         "dirtorch"),
                    help="skip detection")
    ap.add_argument("--pca-set", default="Landmarks_clean",
                    help="dirtorch: the checkpoint's pca[SET] (default Landmarks_clean)")
    ap.add_argument("--whitenp", type=float, default=0.25,
                    help="dirtorch: PCA whitening power, P = diag(ev^-WHITENP) components_ "
                         "(default 0.25, the README's numbers; 0.5 = full whitening)")
    ap.add_argument("--head", choices=imago_model.HEADS, default=None,
                    help="gem for plain backbones (agem/glam only from imago reference "
                         "checkpoints)")
    ap.add_argument("--p", type=float, default=3.0, help="GeM p written as pool.p (torchvision "
                    "ResNet / MobileNetV2 inputs)")
    ap.add_argument("--pooling", choices=imago_model.POOLINGS, default=None)
    ap.add_argument("--whiten", help="whitening file (.npz/.pt): {P, m} or {weight, bias}")
    ap.add_argument("--lw", metavar="DATASET", help="cnnimageretrieval meta['Lw'][DATASET]")
    ap.add_argument("--lw-mode", choices=("ss", "ms"), default="ms")
    ap.add_argument("--mean", type=floats, default=None)
    ap.add_argument("--std", type=floats, default=None)
    ap.add_argument("--padding", choices=imago_model.PADDINGS, default=None)
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--scales", type=floats, default=None, help="default 1,0.70710678,0.5")
    ap.add_argument("--dtype", choices=("f32", "f16", "bf16"), default="f32")
    ap.add_argument("--name", default=None)
    ap.add_argument("--source", default=None, help="config 'source' text")
    ap.add_argument("--untrained", action="store_true",
                    help="mark the weights as not trained (random test checkpoints)")
    args = ap.parse_args(argv)
    for key in ("mean", "std"):
        v = getattr(args, key)
        if v is not None and len(v) != 3:
            ap.error("--%s wants 3 comma-separated values" % key)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        config, n = convert(args)
    except ConvertError as e:
        print("convert.py: error: %s" % e, file=sys.stderr)
        return 2
    w = config["whitening"]
    print("wrote %s: %s, %s head, %s pooling, whitening %s, dim %d, padding %s (%d bytes)"
          % (args.out, config["backbone"], config["head"], config["pooling"]["type"],
             ",".join(w) if isinstance(w, list) else w, config["dim"], config["padding"], n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
