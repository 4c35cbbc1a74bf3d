#!/usr/bin/python3
"""Parity of imago's image preprocessing (engine/image*.c) with Pillow.

    test_preprocess.py DUMP_IMAGE        (meson test --suite parity)

DUMP_IMAGE is tests/parity/dump_image.c built by meson: it decodes a file
with imago_image_decode and writes a binary PPM to stdout. reference()
implements docs/preprocessing.md with Pillow (draft + exif_transpose + crop
rectangle + resize with box). For every photo in $IMAGO_SHARED/data/photos
(several max_side / box settings, and the 5640x3172 photo at 1024 with and
without a box) the two must differ by at most 1 level; the fraction of
exactly equal bytes is reported. Prints TAP.
"""
import glob
import os
import subprocess
import sys

try:
    import numpy as np
    from PIL import Image, ImageOps
except ImportError as e:  # not Debian's python3 (meson -Dpython=...)
    if __name__ == "__main__":
        # meson's TAP protocol reads the SKIP plan; a non-zero exit would be
        # an ERROR there, so exit 0
        print("1..0 # SKIP %s: needs numpy and Pillow (Debian's /usr/bin/python3)" % e)
        sys.exit(0)
    raise


def round_half_even(v):
    return int(round(v))  # Python rounds half to even


def target_size(cw, ch, max_side):
    lng, shrt = max(cw, ch), min(cw, ch)
    if max_side <= 0 or lng <= max_side:
        return cw, ch
    s = max(1, round_half_even(shrt * max_side / lng))
    return (max_side, s) if cw >= ch else (s, max_side)


def dct_scale(cw, ch, tw, th):
    for k in (8, 4, 2):
        if max(cw, ch) // k >= max(tw, th):
            return k
    return 1


def to_rgb(im):
    # 16-bit gray: the contract takes the high byte (Pillow's convert clips)
    if im.mode in ("I;16", "I;16B", "I"):
        a = np.asarray(im).astype(np.uint32) >> 8
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")


def reference(path, max_side, box=None, allow_dct=True):
    """The preprocessing contract, computed with Pillow. Returns an RGB image."""
    im = Image.open(path)
    w0, h0 = im.size
    orient = im.getexif().get(0x0112) if im.format == "JPEG" else None
    swap = orient in (5, 6, 7, 8)
    w, h = (h0, w0) if swap else (w0, h0)
    if box is None:
        c = (0, 0, w, h)
    else:
        c = (min(max(round_half_even(box[0]), 0), w), min(max(round_half_even(box[1]), 0), h),
             min(max(round_half_even(box[2]), 0), w), min(max(round_half_even(box[3]), 0), h))
        if c[2] <= c[0] or c[3] <= c[1]:
            raise ValueError("empty box")
    cw, ch = c[2] - c[0], c[3] - c[1]
    tw, th = target_size(cw, ch, max_side)
    k = dct_scale(cw, ch, tw, th) if (im.format == "JPEG" and allow_dct) else 1
    if k > 1:
        im.draft("RGB", (w0 // k, h0 // k))
        assert im.size == ((w0 + k - 1) // k, (h0 + k - 1) // k), (im.size, k)
    if im.format == "JPEG":
        im = ImageOps.exif_transpose(im)
    im = to_rgb(im)
    dw, dh = im.size
    rect = (c[0] / k, c[1] / k, min(c[2] / k, dw), min(c[3] / k, dh))
    if rect == (0, 0, dw, dh) and (tw, th) == (dw, dh):
        return im
    return im.resize((tw, th), Image.LANCZOS, box=rect)


def read_ppm(data):
    parts = data.split(b"\n", 3)
    assert parts[0] == b"P6", parts[0]
    w, h = map(int, parts[1].split())
    assert parts[2] == b"255"
    return np.frombuffer(parts[3], np.uint8).reshape(h, w, 3)


def main():
    if len(sys.argv) < 2:
        print("usage: test_preprocess.py DUMP_IMAGE", file=sys.stderr)
        return 2
    dump = sys.argv[1]
    shared = os.environ.get("IMAGO_SHARED", os.path.join(os.path.dirname(__file__),
                                                          "..", "..", "..", "shared"))
    photos = sorted(glob.glob(os.path.join(shared, "data", "photos", "*.jpg")) +
                    glob.glob(os.path.join(shared, "data", "photos", "*.png")))
    large = os.path.join(shared, "data", "photos", "large", "Elephants_5640x3172.jpg")
    if not photos:
        print("1..0 # SKIP no photos under %s/data/photos" % shared)
        return 0
    cases = []
    for p in photos:
        w, h = Image.open(p).size
        cases.append((p, 1024, None))
        cases.append((p, 300, None))  # resize; DCT scale 2 for the larger JPEGs
        cases.append((p, 200, (0.1 * w + 0.25, 0.15 * h, 0.85 * w + 0.5, 0.9 * h - 0.3)))
    if os.path.exists(large):
        cases.append((large, 1024, None))
        cases.append((large, 1024, (812.4, 500.5, 4790.5, 2950.7)))
        cases.append((large, 224, (1000, 700, 1900, 1500)))
    print("1..%d" % len(cases))
    total = equal = 0
    worst = 0
    for i, (p, ms, box) in enumerate(cases, 1):
        args = [dump, p, str(ms)] + ([repr(float(v)) for v in box] if box else [])
        name = "%s max_side=%d box=%s" % (os.path.basename(p), ms,
                                           ",".join("%g" % v for v in box) if box else "-")
        r = subprocess.run(args, capture_output=True)
        if r.returncode != 0:
            print("not ok %d - %s: dump_image failed: %s" % (i, name,
                                                            r.stderr.decode().strip()))
            continue
        got = read_ppm(r.stdout)
        want = np.asarray(reference(p, ms, box))
        if got.shape != want.shape:
            print("not ok %d - %s: shape %s, want %s" % (i, name, got.shape, want.shape))
            continue
        d = np.abs(got.astype(np.int16) - want.astype(np.int16))
        mx = int(d.max())
        worst = max(worst, mx)
        total += d.size
        eq = int((d == 0).sum())
        equal += eq
        print("%s %d - %s: %dx%d, max diff %d, %.4f%% bytes equal" % (
            "ok" if mx <= 1 else "not ok", i, name, got.shape[1], got.shape[0], mx,
            100.0 * eq / d.size))
    if total:
        print("# overall: %d bytes compared, %.4f%% exactly equal, max diff %d" % (
            total, 100.0 * equal / total, worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
