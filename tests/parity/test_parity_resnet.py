#!/usr/bin/python3
"""Parity of imago's CPU engine (oneDNN) with the PyTorch reference networks.

    test_parity_resnet.py ENGINE_EXTRACT        (meson test --suite parity)

ENGINE_EXTRACT is tests/parity/engine_extract.c (the `imago extract` command)
built by meson. Seeded test models are written by tools/make_test_model.py
into $IMAGO_BUILD_ROOT/parity-models (kept between runs). Both sides get the
same normalised float tensors (raw .npy inputs: synthetic images of odd sizes
and real photos from $IMAGO_SHARED/data/photos preprocessed by
tools/reference.py), except one end-to-end case where the engine decodes the
image files itself. Descriptors are compared per image:

  fp32: cosine >= 0.99999 and max |difference| <= 1e-4
  bf16: ResNet-50 + GeM: cosine >= 0.999 against the fp32 reference;
        ResNet-101 + AGeM + lw: the mean bf16 error (1 - cosine) over the
        inputs must be within 3x PyTorch's own bf16 error (autocast) on the
        same inputs, and every cosine >= 0.5. Random-weight deep AGeM models
        with learned whitening (centred on the calibration mean) are too
        ill-conditioned for an absolute 0.999: PyTorch bf16 itself scores
        0.79-0.99 on them, and rounding only the folded weights to bf16 (fp32
        everywhere else) already gives 0.90-0.996. Both numbers are printed.

Prints TAP. Set IMAGO_PARITY_QUICK=1 for a smaller subset.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SRC = os.environ.get("IMAGO_SOURCE_ROOT",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tools"))

import torch  # noqa: E402
import reference  # noqa: E402
from PIL import Image  # noqa: E402

THREADS = 2
DEFAULT_SCALES = [1.0, 0.70710678, 0.5]

# name -> make_test_model.py arguments
MODELS = {
    "r50-gem": ["--backbone", "resnet50", "--head", "gem", "--seed", "11"],
    "r50-agem-lw": ["--backbone", "resnet50", "--head", "agem", "--whitening", "lw",
                    "--seed", "12"],
    "r101-gem-lw": ["--backbone", "resnet101", "--head", "gem", "--whitening", "lw",
                    "--seed", "13"],
    "r101-agem-lw": ["--backbone", "resnet101", "--head", "agem", "--whitening", "lw",
                     "--seed", "14"],
}

n_test = 0
failed = 0


def tap(cond, msg):
    global n_test, failed
    n_test += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n_test, msg), flush=True)


def diag(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


def shared_dir():
    s = os.environ.get("IMAGO_SHARED")
    return s if s else os.path.join(SRC, "..", "shared")


def model_path(cache, name):
    path = os.path.join(cache, name + ".safetensors")
    if not os.path.exists(path):
        tmp = path + ".tmp"
        t0 = time.time()
        subprocess.run([sys.executable, os.path.join(SRC, "tools", "make_test_model.py"),
                        "--out", tmp, "--threads", str(THREADS)] + MODELS[name],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, path)
        diag("generated %s in %.1f s" % (name, time.time() - t0))
    return path


def setup(script):
    """The common start of a parity driver: (ENGINE_EXTRACT from argv, the
    photos folder, the model cache folder); exits with the usage (2) or a TAP
    skip (77, no photos)."""
    if len(sys.argv) != 2:
        print("usage: %s ENGINE_EXTRACT" % script, file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(THREADS)
    photos = os.path.join(shared_dir(), "data", "photos")
    if not os.path.isdir(photos):
        print("1..0 # SKIP no photos at %s" % photos)
        sys.exit(77)
    build = os.environ.get("IMAGO_BUILD_ROOT", tempfile.gettempdir())
    cache = os.path.join(build, "parity-models")
    os.makedirs(cache, exist_ok=True)
    return sys.argv[1], photos, cache


def cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run_engine(exe, model, inputs, scales, precision, out, max_side=None):
    cmd = [exe, "--model", model, "--scales", ",".join("%.8g" % s for s in scales),
           "--precision", precision, "--threads", str(THREADS), "--out", out] + inputs
    if max_side:
        cmd += ["--max-side", str(max_side)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        diag(r.stderr)
        return None
    return np.load(out)


class Inputs:
    """Normalised float inputs shared by the engine (.npy files) and torch."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.arrays = {}
        self.files = {}

    def add(self, name, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        path = os.path.join(self.tmp, name + ".npy")
        np.save(path, x)
        self.arrays[name] = x
        self.files[name] = path

    def synthetic(self, name, h, w, seed):
        rng = np.random.default_rng(seed)
        # smooth structure + noise, roughly the range of normalised photos
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        x = np.stack([np.sin(xx / (7 + 5 * c) + c) * np.cos(yy / (11 + 3 * c)) for c in range(3)])
        x = 1.5 * x + 0.5 * rng.standard_normal((3, h, w)).astype(np.float32)
        self.add(name, x[None])

    def photo(self, name, path, max_side, mean, std, size=None):
        if size:
            im = Image.open(path).convert("RGB").resize(size, Image.LANCZOS)
            rgb = np.asarray(im)
        else:
            rgb = reference.load_rgb(path, max_side)
        self.add(name, reference.normalize(rgb, mean, std).numpy())


def check_case(label, exe, model_file, net, inputs, names, scales, precision, tmp,
               torch_bf16=False):
    out = os.path.join(tmp, "engine.npy")
    t0 = time.time()
    got = run_engine(exe, model_file, [inputs.files[n] for n in names], scales, precision, out)
    t_engine = time.time() - t0
    tap(got is not None, "%s: engine ran" % label)
    if got is None:
        return
    t0 = time.time()
    want = np.concatenate([reference.extract(net, torch.from_numpy(inputs.arrays[n]), scales)
                           .numpy() for n in names])
    t_ref = time.time() - t0
    tb = None
    if torch_bf16:
        tb = np.concatenate([reference.extract(net, torch.from_numpy(inputs.arrays[n]), scales,
                                               dtype="bf16").numpy() for n in names])
    tap(got.shape == want.shape, "%s: shape %s" % (label, got.shape))
    if got.shape != want.shape:
        return
    cos = cosines(got, want)
    err = np.abs(got - want).max(axis=1)
    diag("%s: engine %.1f s, reference %.1f s" % (label, t_engine, t_ref))
    for i, n in enumerate(names):
        shape = "x".join(str(s) for s in inputs.arrays[n].shape[2:][::-1])
        if precision == "fp32":
            tap(cos[i] >= 0.99999 and err[i] <= 1e-4,
                "%s %s (%s): cosine %.8f, max abs err %.3g" % (label, n, shape, cos[i], err[i]))
        elif tb is None:
            tap(cos[i] >= 0.999, "%s %s (%s): bf16 cosine %.6f vs fp32 reference"
                % (label, n, shape, cos[i]))
        else:
            ct = cosines(tb[i:i + 1], want[i:i + 1])[0]
            tap(cos[i] >= 0.5, "%s %s (%s): bf16 cosine %.6f vs fp32 reference "
                "(PyTorch bf16: %.6f)" % (label, n, shape, cos[i], ct))
    if tb is not None:
        ours, theirs = float(np.mean(1 - cos)), float(np.mean(1 - cosines(tb, want)))
        tap(ours <= 3 * theirs + 1e-3,
            "%s: mean bf16 error (1 - cosine) %.5f within 3x PyTorch's own bf16 error %.5f"
            % (label, ours, theirs))


def main():
    exe, photos, cache = setup("test_parity_resnet.py")
    quick = os.environ.get("IMAGO_PARITY_QUICK") == "1"
    t_start = time.time()

    with tempfile.TemporaryDirectory(prefix="imago-parity-") as tmp:
        models = {}

        def model(name):
            if name not in models:
                path = model_path(cache, name)
                net, cfg = reference.load_model(path)
                models[name] = (path, net, cfg)
            return models[name]

        path50, net50, cfg = model("r50-gem")
        mean, std = cfg["input"]["mean"], cfg["input"]["std"]
        inp = Inputs(tmp)
        inp.synthetic("synth_97x203", 97, 203, 1)    # name: W x H below
        inp.synthetic("synth_333x517", 333, 517, 2)
        inp.photo("apple_320", os.path.join(photos, "apple.jpg"), 320, mean, std)
        inp.photo("building_384", os.path.join(photos, "building.jpg"), 384, mean, std)
        inp.photo("parrot_256", os.path.join(photos, "coral_parrot.jpg"), 256, mean, std)
        inp.photo("basketball_288", os.path.join(photos, "basketball1.png"), 288, mean, std)
        synth = ["synth_97x203", "synth_333x517"]
        real = ["apple_320", "building_384", "parrot_256", "basketball_288"]

        check_case("r50-gem fp32 single-scale", exe, path50, net50, inp, synth + real, [1.0],
                   "fp32", tmp)
        check_case("r50-gem fp32 3 scales", exe, path50, net50, inp, synth + real[:2],
                   DEFAULT_SCALES, "fp32", tmp)
        check_case("r50-gem bf16 single-scale", exe, path50, net50, inp, real[:2], [1.0],
                   "bf16", tmp)

        # end to end: the engine decodes and resizes the files itself
        files = [os.path.join(photos, "home.jpg"), os.path.join(photos, "coral_cat.png")]
        out = os.path.join(tmp, "e2e.npy")
        got = run_engine(exe, path50, files, DEFAULT_SCALES, "fp32", out, max_side=256)
        tap(got is not None, "r50-gem end-to-end from image files: engine ran")
        if got is not None:
            want = np.concatenate([reference.extract(
                net50, reference.normalize(reference.load_rgb(f, 256), mean, std),
                DEFAULT_SCALES).numpy() for f in files])
            for i, f in enumerate(files):
                c = cosines(got[i:i + 1], want[i:i + 1])[0]
                e = np.abs(got[i] - want[i]).max()
                tap(c >= 0.99999 and e <= 1e-4,
                    "r50-gem end-to-end %s at max_side 256: cosine %.8f, max abs err %.3g"
                    % (os.path.basename(f), c, e))

        if not quick:
            p, net, _ = model("r50-agem-lw")
            check_case("r50-agem-lw fp32 3 scales", exe, p, net, inp,
                       ["synth_333x517", "apple_320", "building_384"], DEFAULT_SCALES, "fp32",
                       tmp)
            p, net, _ = model("r101-gem-lw")
            check_case("r101-gem-lw fp32 single-scale", exe, p, net, inp,
                       ["synth_333x517"] + real[1:3], [1.0], "fp32", tmp)

        p, net, _ = model("r101-agem-lw")
        check_case("r101-agem-lw fp32 single-scale", exe, p, net, inp,
                   ["synth_97x203", "apple_320"], [1.0], "fp32", tmp)
        check_case("r101-agem-lw fp32 3 scales", exe, p, net, inp, synth + real[2:],
                   DEFAULT_SCALES, "fp32", tmp)
        check_case("r101-agem-lw bf16 3 scales", exe, p, net, inp, real, DEFAULT_SCALES,
                   "bf16", tmp, torch_bf16=True)
        if not quick:
            inp.photo("aloe_1024x768", os.path.join(photos, "aloeL.jpg"), 0, mean, std,
                      size=(1024, 768))
            check_case("r101-agem-lw fp32 3 scales 1024x768", exe, p, net, inp,
                       ["aloe_1024x768"], DEFAULT_SCALES, "fp32", tmp)

    diag("parity suite: %.0f s" % (time.time() - t_start))
    print("1..%d" % n_test)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
