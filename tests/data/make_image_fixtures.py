#!/usr/bin/python3
"""Generates the tiny image fixtures of the engine image tests (tests/data/img_*).

Run once with Debian's python3 (it has Pillow) and commit the output:
    /usr/bin/python3 tests/data/make_image_fixtures.py
Deterministic: the same files come out every time. The expected outputs
(*.golden.png) are what Pillow computes for the preprocessing contract
(docs/preprocessing.md); the PNG decoding tests compute their expected
values from the formula in png_pattern() instead (see test_engine_image_png.c).
"""
import io
import os
import random
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "parity"))
from test_preprocess import reference  # noqa: E402  (the contract, in Pillow)


def out(name):
    return os.path.join(HERE, name)


def scene(w, h, seed):
    """A smooth test picture with some detail (compresses well as JPEG)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 11.0)
    g = 255 * x / max(w - 1, 1)
    b = 255 * y / max(h - 1, 1)
    img = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    # a dark asymmetric marker in the top-left quadrant makes orientation visible
    img[h // 8:h // 3, w // 10:w // 4] = [20, 30, 200]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def exif_app1(orientation, big_endian):
    """An APP1 Exif payload (without the marker) with IFD0 = {Orientation}."""
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1)  # one entry
    tiff += struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    tiff += struct.pack(e + "I", 0)  # no next IFD
    return b"Exif\0\0" + tiff


def with_app1(jpeg, payload):
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


def jpeg_bytes(img, **kw):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=kw.pop("quality", 85), **kw)
    return b.getvalue()


def save_png(img, name, **kw):
    img.save(out(name), "PNG", optimize=True, **kw)


def png_pattern(x, y, c):
    """The formula the PNG tests recompute in C."""
    return (x * 7 + y * 13 + c * 50) & 255


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(
        ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def main():
    # ---- orientation: one 20x13 picture stored with each EXIF orientation --
    base = scene(20, 13, 1)
    plain = jpeg_bytes(base, quality=95)
    for o in range(1, 9):
        data = with_app1(plain, exif_app1(o, big_endian=False))
        open(out(f"img_orient_{o}.jpg"), "wb").write(data)
        want = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        save_png(want, f"img_orient_{o}.golden.png")
    data = with_app1(plain, exif_app1(6, big_endian=True))
    open(out("img_orient_6_be.jpg"), "wb").write(data)
    # malformed: IFD0 offset far outside the segment -> orientation ignored
    bad = bytearray(exif_app1(6, big_endian=False))
    bad[6 + 4:6 + 8] = struct.pack("<I", 0x7FFFFFF0)
    open(out("img_orient_badifd.jpg"), "wb").write(with_app1(plain, bytes(bad)))
    # malformed: entry count larger than the segment
    bad = bytearray(exif_app1(6, big_endian=False))
    bad[6 + 8:6 + 10] = struct.pack("<H", 5000)
    open(out("img_orient_badcount.jpg"), "wb").write(with_app1(plain, bytes(bad)))
    # Pillow keeps the entries read before the damage: badcount stays rotated
    for name, want_o in [("badifd", None), ("badcount", 6)]:
        im = Image.open(out(f"img_orient_{name}.jpg"))
        assert im.getexif().get(0x0112) == want_o, (name, im.getexif().get(0x0112))
        save_png(ImageOps.exif_transpose(im).convert("RGB"), f"img_orient_{name}.golden.png")

    # ---- a larger oriented JPEG for DCT scaling + box golden outputs -------
    big = scene(240, 160, 2)
    data = with_app1(jpeg_bytes(big, quality=80), exif_app1(6, big_endian=False))
    open(out("img_scene_o6.jpg"), "wb").write(data)
    for name, max_side, box in [("ms40", 40, None), ("ms100", 100, None),
                                ("box", 30, (10.5, 20.5, 130.0, 190.0)),
                                ("boxhalf", 0, (2.5, 3.5, 61.5, 80.5))]:
        ref = reference(out("img_scene_o6.jpg"), max_side, box, True)
        save_png(ref, f"img_scene_o6.{name}.golden.png")
    ref = reference(out("img_scene_o6.jpg"), 40, None, False)
    save_png(ref, "img_scene_o6.ms40nodct.golden.png")

    # ---- other JPEG flavours through the pipeline (DCT scaling + resize) ----
    small = scene(120, 80, 6)
    for name, kw in [("444", {"subsampling": 0}), ("422", {"subsampling": 1}),
                     ("prog", {"progressive": True})]:
        open(out(f"img_scene_{name}.jpg"), "wb").write(jpeg_bytes(small, quality=75, **kw))
    open(out("img_scene_gray.jpg"), "wb").write(jpeg_bytes(small.convert("L"), quality=75))
    for name, max_side in [("444", 30), ("422", 30), ("prog", 30), ("gray", 50),
                           ("prog", 13)]:
        ref = reference(out(f"img_scene_{name}.jpg"), max_side, None, True)
        save_png(ref, f"img_scene_{name}.ms{max_side}.golden.png")
    # CMYK (Pillow writes Adobe-inverted CMYK and reads every CMYK JPEG so)
    open(out("img_cmyk.jpg"), "wb").write(jpeg_bytes(scene(64, 48, 7).convert("CMYK"),
                                                     quality=80))
    for max_side in (0, 16):
        save_png(reference(out("img_cmyk.jpg"), max_side, None, True),
                 f"img_cmyk.ms{max_side}.golden.png")

    # ---- resize golden: random RGB, Pillow's Lanczos with boxes ------------
    rng = np.random.default_rng(3)
    src = Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8), "RGB")
    save_png(src, "img_resize_src.png")
    cases = [("a", (16, 10), (0, 0, 37, 23)),
             ("b", (11, 7), (2.5, 1.25, 30.75, 20.5)),
             ("c", (50, 31), (0, 0, 37, 23)),
             ("d", (37, 10), (0, 0, 37, 23)),
             ("e", (9, 23), (0, 0, 37, 23)),
             ("f", (5, 4), (36.0, 22.0, 37.0, 23.0))]
    with open(out("img_resize_cases.txt"), "w") as f:
        for name, size, box in cases:
            f.write("%s %d %d %.9g %.9g %.9g %.9g\n" % ((name,) + size + tuple(box)))
            save_png(src.resize(size, Image.LANCZOS, box=box), f"img_resize_{name}.golden.png")

    # ---- PNG variants (values from png_pattern) -----------------------------
    w, h = 13, 9
    ys, xs = np.mgrid[0:h, 0:w]
    rgb = np.stack([png_pattern(xs, ys, c) for c in range(3)], -1).astype(np.uint8)
    gray = rgb[..., 0]
    low = ((xs * 31 + ys * 17) & 255).astype(np.uint16)  # low bytes: must be dropped
    alpha = ((xs * 19 + ys * 5) & 255).astype(np.uint8)
    save_png(Image.fromarray(rgb, "RGB"), "img_png_rgb8.png")
    save_png(Image.fromarray(rgb, "RGB"), "img_png_rgb8_interlaced.png")  # rewritten below
    save_png(Image.fromarray(gray, "L"), "img_png_gray8.png")
    save_png(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "img_png_rgba8.png")
    save_png(Image.fromarray(np.dstack([gray, alpha]), "LA"), "img_png_graya8.png")
    pal = Image.fromarray(((xs + ys) % 16).astype(np.uint8), "P")
    palette = []
    for i in range(256):
        palette += [png_pattern(i, 0, 0), png_pattern(i, 0, 1), png_pattern(i, 0, 2)]
    pal.putpalette(palette)
    save_png(pal, "img_png_palette.png", transparency=3)
    # 16-bit files are written by hand (Pillow cannot write 16-bit RGB)
    def write_png(name, color_type, depth, rows, interlace=0):
        ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, interlace)
        raw = b"".join(b"\0" + r for r in rows)
        data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
                png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))
        open(out(name), "wb").write(data)
    rgb16 = (rgb.astype(np.uint16) << 8) | low[..., None]
    write_png("img_png_rgb16.png", 2, 16, [r.astype(">u2").tobytes() for r in rgb16])
    g16 = (gray.astype(np.uint16) << 8) | low
    write_png("img_png_gray16.png", 0, 16, [r.astype(">u2").tobytes() for r in g16])
    # 2-bit gray: value v in 0..3 -> 85 v
    g2 = ((xs + 2 * ys) & 3).astype(np.uint8)
    rows = []
    for r in g2:
        bits = 0
        b = bytearray()
        for i, v in enumerate(r):
            bits = (bits << 2) | int(v)
            if i % 4 == 3:
                b.append(bits)
                bits = 0
        if len(r) % 4:
            b.append(bits << (2 * (4 - len(r) % 4)))
        rows.append(bytes(b))
    write_png("img_png_gray2.png", 0, 2, rows)
    # Adam7 interlaced RGB through Pillow's encoder? Pillow cannot write
    # interlaced PNGs either: build the passes by hand.
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        for y in range(y0, h, dy):
            px = rgb[y, x0::dx]
            if px.size:
                raw += b"\0" + px.tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))
    open(out("img_png_rgb8_interlaced.png"), "wb").write(data)

    # ---- broken inputs --------------------------------------------------------
    small = jpeg_bytes(scene(64, 48, 4), quality=90)
    open(out("img_ok.jpg"), "wb").write(small)
    open(out("img_truncated.jpg"), "wb").write(small[:len(small) * 2 // 3])
    # corrupt entropy-coded data: scramble bytes after the SOS header
    sos = small.index(b"\xff\xda")
    body = bytearray(small)
    r = random.Random(5)
    for i in range(sos + 20, len(body) - 10):
        body[i] = r.randrange(0, 255)  # never 0xFF: no fake markers
    # garbage Huffman data may well decode; an unknown marker inside the scan
    # makes the damage detectable
    mid = (sos + len(body)) // 2
    body[mid:mid + 2] = b"\xff\x02"
    open(out("img_corrupt.jpg"), "wb").write(bytes(body))
    # fatal: SOF precision 13 bits
    sof = small.index(b"\xff\xc0")
    body = bytearray(small)
    body[sof + 4] = 13
    open(out("img_badsof.jpg"), "wb").write(bytes(body))
    # a header declaring 60000x60000 (the data is a 64x48 picture's)
    body = bytearray(small)
    body[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    open(out("img_huge.jpg"), "wb").write(bytes(body))
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + png_chunk(b"IEND", b""))
    open(out("img_huge.png"), "wb").write(data)
    okpng = open(out("img_png_rgb8.png"), "rb").read()
    open(out("img_truncated.png"), "wb").write(okpng[:len(okpng) // 2])
    body = bytearray(okpng)
    body[20] ^= 0x55  # IHDR CRC mismatch
    open(out("img_badcrc.png"), "wb").write(bytes(body))
    open(out("img_text.txt"), "wb").write(b"this is not an image\n")


if __name__ == "__main__":
    main()
