#!/usr/bin/python3
"""Decode benchmark, imago vs Pillow side by side (run with Debian's python3).

    /usr/bin/python3 tools/bench_decode.py BUILDDIR/engine/bench_decode [FILE] [RUNS] [MAX_SIDE]

Runs the C benchmark (imago: DCT-scaled decode + resize vs full decode +
resize, same resize code) and then the same job in Pillow, the peer:
draft + LANCZOS resize (what the reference does) and full decode + resize.
Prints medians of the thread CPU time (robust to other jobs on the machine,
unlike wall time), images/s and ratios. Everything is single-threaded. Build
bench_decode first: ninja -C BUILDDIR engine/bench_decode.
"""
import os
import statistics
import subprocess
import sys
import time

from PIL import Image


def pillow(path, max_side, draft):
    t0 = time.thread_time()
    im = Image.open(path)
    w0, h0 = im.size
    lng = max(w0, h0)
    if lng > max_side:
        s = max(1, round(min(w0, h0) * max_side / lng))
        tw, th = (max_side, s) if w0 >= h0 else (s, max_side)
    else:
        tw, th = w0, h0
    k = 1
    for kk in (8, 4, 2):
        if lng // kk >= max(tw, th):
            k = kk
            break
    if draft and k > 1:
        im.draft("RGB", (w0 // k, h0 // k))
    im = im.convert("RGB")
    box = (0, 0, w0 / k, h0 / k) if draft else None
    out = im.resize((tw, th), Image.LANCZOS, box=box)
    return time.thread_time() - t0, out.size


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    shared = os.environ.get("IMAGO_SHARED", os.path.join(os.path.dirname(__file__), "..", "..",
                                                          "shared"))
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        shared, "data", "photos", "large", "Elephants_5640x3172.jpg")
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    max_side = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    r = subprocess.run([exe, path, str(runs), str(max_side)], capture_output=True, text=True,
                       check=True)
    print(r.stdout, end="")
    vals = dict(kv.split("=") for kv in r.stdout.split() if kv.startswith("imago_"))
    dct_ms, full_ms = float(vals["imago_dct_ms"]), float(vals["imago_full_ms"])
    pillow(path, max_side, True)  # warm-up
    pd, pf = [], []
    for _ in range(runs):
        t, size = pillow(path, max_side, True)
        pd.append(t)
        t, _ = pillow(path, max_side, False)
        pf.append(t)
    pd_ms, pf_ms = 1e3 * statistics.median(pd), 1e3 * statistics.median(pf)
    print("%-34s %10.1f %10.2f" % ("Pillow draft + resize (peer)", pd_ms, 1e3 / pd_ms))
    print("%-34s %10.1f %10.2f" % ("Pillow full decode + resize", pf_ms, 1e3 / pf_ms))
    print("side by side (median CPU ms): imago DCT %.1f | imago full %.1f | Pillow draft %.1f | "
          "Pillow full %.1f" % (dct_ms, full_ms, pd_ms, pf_ms))
    print("ratios: imago full/DCT %.2fx; Pillow draft / imago DCT %.2fx; "
          "Pillow full/draft %.2fx" % (full_ms / dct_ms, pd_ms / dct_ms, pf_ms / pd_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
