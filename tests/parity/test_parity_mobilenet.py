#!/usr/bin/python3
"""Parity of imago's CPU engine (oneDNN) with the PyTorch reference on MobileNetV2.

    test_parity_mobilenet.py ENGINE_EXTRACT     (meson test --suite parity)

Same protocol and helpers as test_parity_resnet.py (imported, not copied):
seeded MobileNetV2 test models from tools/make_test_model.py (cached in
$IMAGO_BUILD_ROOT/parity-models), both padding modes ("torch" and
"tf_same"), GeM / SPoC pooling, learned whitening, synthetic inputs of odd
sizes (where TF SAME pads asymmetrically at every stride-2 layer) and real
photos from $IMAGO_SHARED/data/photos, single and multi-scale, plus an
end-to-end case where the engine decodes the files itself. When
$IMAGO_SHARED/models/mobilenet_v2_imagenet.pth exists, the real ImageNet
weights are converted with tools/convert.py (tf_same, mean = std = 0.5) and
checked the same way.

  fp32: cosine >= 0.99999 and max |difference| <= 1e-4 (per image)
  bf16: cosine >= 0.999 against the fp32 reference (per image)

Prints TAP. Set IMAGO_PARITY_QUICK=1 for a smaller subset.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import test_parity_resnet as R  # noqa: E402  (tap, Inputs, check_case, run_engine, ...)
import reference  # noqa: E402  (on sys.path through test_parity_resnet)

HALF = ["--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"]
R.MODELS.update({
    "mnv2-gem-torch": ["--backbone", "mobilenet_v2", "--head", "gem", "--padding", "torch",
                       "--seed", "21"],
    "mnv2-gem-tf_same": ["--backbone", "mobilenet_v2", "--head", "gem", "--padding",
                         "tf_same", "--seed", "22"] + HALF,
    "mnv2-spoc-lw-tf_same": ["--backbone", "mobilenet_v2", "--head", "gem", "--pooling",
                             "spoc", "--whitening", "lw", "--whiten-dim", "512",
                             "--padding", "tf_same", "--seed", "23"] + HALF,
})
DEFAULT_SCALES = R.DEFAULT_SCALES


def real_model(cache):
    """The shared ImageNet MobileNetV2 converted to an imago file (or None)."""
    pth = os.path.join(R.shared_dir(), "models", "mobilenet_v2_imagenet.pth")
    if not os.path.exists(pth):
        return None
    path = os.path.join(cache, "mnv2-imagenet-tf_same.safetensors")
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(pth):
        tmp = path + ".tmp"
        t0 = time.time()
        subprocess.run([sys.executable, os.path.join(R.SRC, "tools", "convert.py"), pth,
                        "--out", tmp, "--layout", "torchvision-mobilenet_v2", "--padding",
                        "tf_same", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
                        "--max-side", "512"],
                       check=True, stdout=subprocess.DEVNULL)
        os.replace(tmp, path)
        R.diag("converted %s in %.1f s" % (os.path.basename(pth), time.time() - t0))
    return path


def main():
    exe, photos, cache = R.setup("test_parity_mobilenet.py")
    quick = os.environ.get("IMAGO_PARITY_QUICK") == "1"
    t_start = time.time()

    with tempfile.TemporaryDirectory(prefix="imago-parity-mnv2-") as tmp:
        models = {}

        def model(name):
            if name not in models:
                path = R.model_path(cache, name)
                net, cfg = reference.load_model(path)
                models[name] = (path, net, cfg)
            return models[name]

        # Inputs per normalisation (ImageNet mean/std for the torch model,
        # 0.5/0.5 for the tf_same ones, like the real weights).
        inputs = {}

        def inputs_for(cfg):
            key = (tuple(cfg["input"]["mean"]), tuple(cfg["input"]["std"]))
            if key in inputs:
                return inputs[key]
            mean, std = list(key[0]), list(key[1])
            d = os.path.join(tmp, "in%d" % len(inputs))
            os.makedirs(d)
            inp = R.Inputs(d)
            inp.synthetic("synth_97x203", 97, 203, 1)    # names: W x H
            inp.synthetic("synth_333x517", 333, 517, 2)
            inp.synthetic("synth_45x33", 33, 45, 3)      # odd at every stride-2 layer
            inp.photo("apple_320", os.path.join(photos, "apple.jpg"), 320, mean, std)
            inp.photo("building_384", os.path.join(photos, "building.jpg"), 384, mean, std)
            inp.photo("parrot_256", os.path.join(photos, "coral_parrot.jpg"), 256, mean, std)
            inp.photo("graf_289", os.path.join(photos, "graf1.png"), 289, mean, std)
            inputs[key] = inp
            return inp

        synth = ["synth_97x203", "synth_333x517", "synth_45x33"]
        real = ["apple_320", "building_384", "parrot_256", "graf_289"]

        for name in ("mnv2-gem-torch", "mnv2-gem-tf_same"):
            p, net, cfg = model(name)
            inp = inputs_for(cfg)
            R.check_case("%s fp32 single-scale" % name, exe, p, net, inp, synth + real, [1.0],
                         "fp32", tmp)
            R.check_case("%s fp32 3 scales" % name, exe, p, net, inp, synth[1:2] + real[:2],
                         DEFAULT_SCALES, "fp32", tmp)
            R.check_case("%s bf16 single-scale" % name, exe, p, net, inp, synth[1:2] + real[2:],
                         [1.0], "bf16", tmp)
            if not quick and name.endswith("tf_same"):
                R.check_case("%s bf16 3 scales" % name, exe, p, net, inp, real[:2],
                             DEFAULT_SCALES, "bf16", tmp)

        # end to end: the engine decodes and resizes the files itself
        p, net, cfg = model("mnv2-gem-tf_same")
        mean, std = cfg["input"]["mean"], cfg["input"]["std"]
        files = [os.path.join(photos, "home.jpg"), os.path.join(photos, "coral_cat.png")]
        out = os.path.join(tmp, "e2e.npy")
        got = R.run_engine(exe, p, files, DEFAULT_SCALES, "fp32", out, max_side=301)
        R.tap(got is not None, "mnv2-gem-tf_same end-to-end from image files: engine ran")
        if got is not None:
            want = np.concatenate([reference.extract(
                net, reference.normalize(reference.load_rgb(f, 301), mean, std),
                DEFAULT_SCALES).numpy() for f in files])
            for i, f in enumerate(files):
                c = R.cosines(got[i:i + 1], want[i:i + 1])[0]
                e = np.abs(got[i] - want[i]).max()
                R.tap(c >= 0.99999 and e <= 1e-4,
                      "mnv2-gem-tf_same end-to-end %s at max_side 301: cosine %.8f, "
                      "max abs err %.3g" % (os.path.basename(f), c, e))

        if not quick:
            p, net, cfg = model("mnv2-spoc-lw-tf_same")
            inp = inputs_for(cfg)
            R.check_case("mnv2-spoc-lw-tf_same fp32 3 scales", exe, p, net, inp,
                         synth[:2] + real[1:3], DEFAULT_SCALES, "fp32", tmp)

        rp = real_model(cache)
        if rp is None:
            R.tap(True, "# SKIP real MobileNetV2 weights: no %s/models/mobilenet_v2_imagenet.pth"
                  % R.shared_dir())
        else:
            net, cfg = reference.load_model(rp)
            inp = inputs_for(cfg)
            R.check_case("mnv2-imagenet (real weights, tf_same) fp32 single-scale", exe, rp,
                         net, inp, synth[2:] + real, [1.0], "fp32", tmp)
            R.check_case("mnv2-imagenet (real weights, tf_same) fp32 3 scales", exe, rp, net,
                         inp, real[1:3], DEFAULT_SCALES, "fp32", tmp)
            R.check_case("mnv2-imagenet (real weights, tf_same) bf16 3 scales", exe, rp, net,
                         inp, real[::2], DEFAULT_SCALES, "bf16", tmp)

    R.diag("mobilenet parity suite: %.0f s" % (time.time() - t_start))
    print("1..%d" % R.n_test)
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
