#!/usr/bin/python3
"""tools/convert.py on naver deep-image-retrieval (dirtorch) AP-GeM checkpoints.

    test_tools_convert_dirtorch.py ENGINE_EXTRACT      (meson test --suite parity)

The test writes checkpoints in dirtorch's layout itself: a torchvision
ResNet-50 with random weights whose BatchNorm statistics are measured on the
shared photos (tools/make_test_model.py), keys under 'module.', adpool.p, a
random fc (2048 x 2048, non-zero bias), 'model_options' {'arch':
'resnet50_rmac', 'norm_features'}, 'preprocess' {mean, std} and 'pca'
{'Landmarks_clean': a scikit-learn PCA(whiten=True) fitted on fc outputs},
pickled under the old module name sklearn.decomposition.pca (what the
published checkpoints hold). Each is converted, then `imago extract`
(ENGINE_EXTRACT) must equal the test's own dirtorch-style forward
    GeM(p) -> [L2N if norm_features] -> fc -> L2N -> (d - mean_) components_^T
    / explained_variance_^whitenp -> L2N
at cosine >= 0.99999 on two inputs (a synthetic odd-sized one and a real
photo), for norm_features False and True and whitenp 0.25 (default) and
0.5. Errors: no 'pca', an unknown arch, a PCA that cannot be unpickled, a
missing --pca-set.
"""

import os
import subprocess
import sys
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
import taplib  # noqa: E402

taplib.need_torch()
try:
    import sklearn.decomposition  # noqa: E402
    import sklearn.decomposition._pca as sk_pca  # noqa: E402
except ImportError as e:
    taplib.skip_all("needs scikit-learn (python3-sklearn, deploy/install-deps): %s" % e)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import imago_model  # noqa: E402
import reference as R  # noqa: E402

torch.set_num_threads(2)
COS = 0.99999
TOOLS = os.path.join(taplib.ROOT, "tools")
MEAN, STD = [0.48, 0.46, 0.41], [0.23, 0.22, 0.23]


def backbone_state(tmp):
    """A calibrated random ResNet-50 (make_test_model.py) as torchvision keys + p."""
    path = os.path.join(tmp, "r50.safetensors")
    subprocess.run([sys.executable, os.path.join(TOOLS, "make_test_model.py"), "--backbone",
                    "resnet50", "--head", "gem", "--seed", "41", "--threads", "2", "--out",
                    path], check=True, stdout=subprocess.DEVNULL)
    tensors, _cfg, _ = imago_model.load(path)
    sd = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    return sd, tensors["pool.p"]


def dirtorch_forward(net, p, fc, norm_features, pca, whitenp, x):
    """The dirtorch inference, written here from its definition."""
    with torch.no_grad():
        f = net.layer4(net.layer3(net.layer2(net.layer1(
            net.maxpool(net.relu(net.bn1(net.conv1(x))))))))
        g = f.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        if norm_features:
            g = g / g.norm(dim=1, keepdim=True)
        d = fc(g)
        d = (d / d.norm(dim=1, keepdim=True)).double().numpy()
    z = (d - pca.mean_) @ pca.components_.T
    z = z / pca.explained_variance_ ** whitenp
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def save_old_sklearn(obj, path):
    """torch.save with the PCA class recorded as sklearn.decomposition.pca.PCA."""
    cls = sklearn.decomposition.PCA
    old = cls.__module__
    sys.modules["sklearn.decomposition.pca"] = sk_pca
    cls.__module__ = "sklearn.decomposition.pca"
    try:
        torch.save(obj, path)
    finally:
        cls.__module__ = old
        del sys.modules["sklearn.decomposition.pca"]
    if obj.get("pca") and isinstance(next(iter(obj["pca"].values())), cls):
        with open(path, "rb") as fh:
            assert b"sklearn.decomposition.pca" in fh.read(), "old module name not in the pickle"


def convert(tap, src, out, *extra):
    r = subprocess.run([sys.executable, os.path.join(TOOLS, "convert.py"), src, "--out", out,
                        "--untrained"] + list(extra), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    return r.returncode, r.stdout + r.stderr


def extract(exe, model, inputs, out):
    r = subprocess.run([exe, "--model", model, "--threads", "2", "--out", out] + inputs,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return None, r.stderr
    return np.load(out), ""


def main(tap):
    if len(sys.argv) != 2:
        raise SystemExit("usage: test_tools_convert_dirtorch.py ENGINE_EXTRACT")
    exe = sys.argv[1]
    tmp = taplib.tmpdir("imago_dirtorch_")
    sd, p = backbone_state(tmp)
    g = torch.Generator().manual_seed(5)
    net = torchvision.models.resnet50(weights=None)
    del net.fc
    missing = net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    tap.ok(not missing.missing_keys and not missing.unexpected_keys,
           "the torchvision ResNet-50 takes the calibrated weights")
    net.eval()
    fc = torch.nn.Linear(2048, 2048)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(2048, 2048, generator=g) / 2048 ** 0.5)
        fc.bias.copy_(torch.randn(2048, generator=g) * 0.5)   # large: L2N before fc matters

    # inputs: an odd-sized synthetic tensor and a real photo (normalised here)
    photos = os.path.join(taplib.SHARED, "data", "photos")
    xs = {"synth": torch.randn(1, 3, 131, 197, generator=g)}
    photo = os.path.join(photos, "building.jpg")
    if os.path.exists(photo):
        xs["building"] = R.normalize(R.load_rgb(photo, 320), MEAN, STD)
    files = []
    for name, x in xs.items():
        files.append(os.path.join(tmp, name + ".npy"))
        np.save(files[-1], x.numpy())

    # the PCA is fitted on fc outputs of random pooled vectors: 400 samples give
    # 400 components, a reduction 2048 -> 400
    with torch.no_grad():
        gs = torch.rand(400, 2048, generator=g) * torch.rand(1, 2048, generator=g) * 2
        d = fc(gs)
        d = (d / d.norm(dim=1, keepdim=True)).double().numpy()
    pca = sklearn.decomposition.PCA(whiten=True).fit(d)
    tap.ok(pca.components_.shape == (400, 2048) and pca.whiten,
           "sklearn PCA(whiten=True) with %d components" % pca.components_.shape[0])

    def checkpoint(norm_features, **drop):
        state = {"module." + k: v.clone() for k, v in sd.items()}
        state["module.adpool.p"] = p.clone()
        state["module.fc.weight"] = fc.weight.detach().clone()
        state["module.fc.bias"] = fc.bias.detach().clone()
        obj = {"state_dict": state,
               "model_options": {"arch": "resnet50_rmac", "out_dim": 2048, "pooling": "gem",
                                 "gemp": 3, "norm_features": norm_features},
               "preprocess": {"mean": MEAN, "std": STD},
               "pca": {"Landmarks_clean": pca, "Landmarks": pca}}
        for k, v in drop.items():
            if v is None:
                obj.pop(k, None)
            else:
                obj[k] = v
        return obj

    for norm_features, whitenp in ((False, None), (True, None), (False, 0.5)):
        label = "norm_features %s, whitenp %s" % (norm_features, whitenp or "0.25 (default)")
        src = os.path.join(tmp, "ck.pt")
        save_old_sklearn(checkpoint(norm_features), src)
        out = os.path.join(tmp, "m.safetensors")
        extra = ["--whitenp", str(whitenp)] if whitenp else []
        rc, msg = convert(tap, src, out, *extra)
        if not tap.ok(rc == 0, "%s: convert.py detects and converts the checkpoint" % label,
                      msg):
            continue
        tensors, cfg, _ = imago_model.load(out)
        tap.ok(cfg["whitening"] == ["fc", "lw"] and cfg["head"] == "gem"
               and cfg["scales"] == [1.0] and cfg.get("normalize_pooled", True) == norm_features
               and cfg["dim"] == 400 and cfg["input"]["mean"] == MEAN,
               "%s: config gem + [fc, lw], single scale, normalize_pooled %s, dim 400, the "
               "checkpoint's preprocess" % (label, norm_features), repr(cfg))
        got, err = extract(exe, out, files, os.path.join(tmp, "e.npy"))
        if not tap.ok(got is not None, "%s: imago extract runs" % label, err):
            continue
        for i, (name, x) in enumerate(xs.items()):
            want = dirtorch_forward(net, p, fc, norm_features, pca, whitenp or 0.25, x)
            cos = taplib.cosine(got[i], want[0])
            tap.cmp(cos, ">=", COS, "%s: %s (%dx%d): imago extract == dirtorch forward, "
                    "cosine" % (label, name, x.shape[3], x.shape[2]))
        if norm_features is False and whitenp is None:
            # the L2N before fc must matter here, or the test could not tell
            other = dirtorch_forward(net, p, fc, True, pca, 0.25, xs["synth"])
            tap.cmp(taplib.cosine(got[0], other[0]), "<", 0.999,
                    "the fc bias makes norm_features matter (the check discriminates)")

    # errors
    src = os.path.join(tmp, "bad.pt")
    out = os.path.join(tmp, "bad.safetensors")
    save_old_sklearn(checkpoint(False, pca=None), src)
    rc, msg = convert(tap, src, out)
    tap.ok(rc != 0 and "has no 'pca'" in msg, "a checkpoint without pca: clear error", msg)
    ck = checkpoint(False)
    ck["model_options"]["arch"] = "vgg16_rmac"
    save_old_sklearn(ck, src)
    rc, msg = convert(tap, src, out)
    tap.ok(rc != 0 and "arch 'vgg16_rmac' is not supported" in msg,
           "an unknown arch: clear error", msg)
    save_old_sklearn(checkpoint(False), src)
    rc, msg = convert(tap, src, out, "--pca-set", "Paris")
    tap.ok(rc != 0 and "no set 'Paris'" in msg and "Landmarks_clean" in msg,
           "a missing --pca-set: clear error naming the sets", msg)
    # a PCA whose class cannot be found when unpickling
    mod = types.ModuleType("imago_gone_pca")

    class GonePCA:
        pass
    GonePCA.__module__ = "imago_gone_pca"
    GonePCA.__qualname__ = "GonePCA"
    mod.GonePCA = GonePCA
    sys.modules["imago_gone_pca"] = mod
    gone = GonePCA()
    gone.components_ = pca.components_
    torch.save(checkpoint(False, pca={"Landmarks_clean": gone}), src)
    del sys.modules["imago_gone_pca"]
    rc, msg = convert(tap, src, out)
    tap.ok(rc != 0 and "imago_gone_pca.GonePCA that cannot be loaded" in msg,
           "a PCA that cannot be unpickled: clear error naming the class", msg)
    rc, msg = convert(tap, src, out, "--layout", "torchvision-resnet")
    tap.ok(rc != 0 and "cannot be loaded" in msg, "... whatever the --layout", msg)


taplib.Tap().run(main)
