#!/usr/bin/python3
"""tools/imago_model.py: safetensors round trip (F32/F16/BF16, metadata,
8-byte alignment, little-endian bytes) and rejection of malformed files."""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import taplib  # noqa: E402

taplib.need_torch()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import imago_model as im  # noqa: E402


def raw_file(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main(t):
    tmp = taplib.tmpdir("imago_st_")
    g = torch.Generator().manual_seed(5)
    tensors = {
        "backbone.conv1.weight": torch.randn(4, 3, 3, 3, generator=g),
        "odd": torch.randn(7, generator=g),             # 28 / 14 bytes: forces padding
        "pool.p": torch.tensor([3.25]),
        "scalar": torch.tensor(1.5),
        "whiten.P": torch.randn(5, 9, generator=g),
        "empty": torch.zeros(0, 4),
        "big": torch.randn(3, 1000, generator=g) * 1e3,
    }
    config = im.make_config("t", "resnet50", "gem", "gem", 2048, "none")
    for dt in ("F32", "F16", "BF16"):
        path = os.path.join(tmp, "m_%s.safetensors" % dt)
        im.save(path, tensors, config, dtype=dt.lower())
        got, cfg, meta = im.load(path)
        t.is_eq(sorted(got), sorted(tensors), "%s: same tensor names" % dt)
        same = all(tuple(got[k].shape) == tuple(v.shape) for k, v in tensors.items())
        t.ok(same, "%s: same shapes" % dt)
        tdt = im.DTYPES[dt][0]
        exact = all(got[k].dtype == tdt and torch.equal(got[k], v.to(tdt))
                    for k, v in tensors.items())
        t.ok(exact, "%s: values equal the torch conversion bit for bit" % dt)
        t.is_eq(cfg, config, "%s: imago.config round-trips" % dt)
        t.ok(isinstance(meta.get("imago.config"), str), "%s: __metadata__ holds a JSON string" % dt)
        header, _meta, start = im.header_info(path)
        t.is_eq(start % 8, 0, "%s: data area starts 8-byte aligned" % dt)
        mis = [k for k, v in header.items() if v["data_offsets"][0] % 8]
        t.is_eq(mis, [], "%s: every tensor starts 8-byte aligned" % dt)
        with open(path, "rb") as f:
            raw = f.read()
        (hlen,) = struct.unpack("<Q", raw[:8])
        t.ok(raw[8 + hlen - 1:8 + hlen] in (b" ", b"}"), "%s: header padded with spaces" % dt)
        f32 = im.load(path, as_float32=True)[0]
        t.ok(all(v.dtype == torch.float32 for v in f32.values()), "%s: as_float32" % dt)

    # exact little-endian encodings
    for dt, want in (("F32", b"\x00\x00\x80\x3f\x00\x00\x00\xc0"),
                     ("F16", b"\x00\x3c\x00\xc0"), ("BF16", b"\x80\x3f\x00\xc0")):
        path = os.path.join(tmp, "le_%s.safetensors" % dt)
        im.save(path, {"x": torch.tensor([1.0, -2.0])}, dtype=dt)
        header, _m, start = im.header_info(path)
        b, e = header["x"]["data_offsets"]
        with open(path, "rb") as f:
            raw = f.read()
        t.is_eq(raw[start + b:start + e], want, "%s bytes of [1, -2] are little-endian" % dt)

    # BF16 is round-to-nearest-even of the fp32 value (torch semantics)
    v = torch.tensor([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8])
    path = os.path.join(tmp, "rne.safetensors")
    im.save(path, {"v": v}, dtype="bf16")
    got = im.load(path, as_float32=True)[0]["v"]
    t.ok(torch.equal(got, torch.tensor([1.0, 1.0 + 4 * 2 ** -8])), "BF16 rounds half to even",
         got)

    # determinism
    a = os.path.join(tmp, "d1.safetensors")
    b = os.path.join(tmp, "d2.safetensors")
    im.save(a, tensors, config)
    im.save(b, dict(reversed(list(tensors.items()))), config)
    t.ok(open(a, "rb").read() == open(b, "rb").read(), "bytes independent of dict order")

    # malformed files
    good = os.path.join(tmp, "m_F32.safetensors")
    raw = open(good, "rb").read()
    bad = os.path.join(tmp, "bad.safetensors")
    E = im.ModelFormatError

    def write(data):
        with open(bad, "wb") as f:
            f.write(data)

    write(raw[:-5])
    t.raises(lambda: im.load(bad), E, "truncated data is rejected", "past the end")
    write(raw[:40])
    t.raises(lambda: im.load(bad), E, "truncated header is rejected", "past the end")
    write(raw[:5])
    t.raises(lambda: im.load(bad), E, "file shorter than 8 bytes is rejected", "too short")
    raw_file(bad, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                   "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24)
    t.raises(lambda: im.load(bad), E, "overlapping tensors are rejected", "overlap")
    raw_file(bad, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, b"\0" * 16)
    t.raises(lambda: im.load(bad), E, "size inconsistent with shape is rejected", "want 12")
    raw_file(bad, {"a": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 16)
    t.raises(lambda: im.load(bad), E, "unsupported dtype is rejected", "I64")
    raw_file(bad, {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4)
    t.raises(lambda: im.load(bad), E, "negative dimension is rejected", "non-negative")
    raw_file(bad, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8)
    t.raises(lambda: im.load(bad), E, "end before begin is rejected", "end")
    write(struct.pack("<Q", 1 << 62) + b"{}")
    t.raises(lambda: im.load(bad), E, "absurd header length is rejected", "past the end")
    write(struct.pack("<Q", 3) + b"[1]")
    t.raises(lambda: im.load(bad), E, "non-object header is rejected", "not a JSON object")
    write(struct.pack("<Q", 4) + b"{x:1")
    t.raises(lambda: im.load(bad), E, "invalid JSON is rejected", "not valid JSON")
    raw_file(bad, {"__metadata__": {"imago.config": "{nope"}}, b"")
    t.raises(lambda: im.load(bad), E, "invalid imago.config JSON is rejected", "imago.config")
    raw_file(bad, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}, b"\0" * 8)
    t.ok(len(im.load(bad)[0]) == 2, "an empty tensor inside another's span is not an overlap")


taplib.Tap().run(main)
