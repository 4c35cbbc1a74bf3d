"""imago model files: a small, dependency-free safetensors reader/writer.

The layout (docs/models.md, the model file) is the standard safetensors one:

    [8 bytes]  N, little-endian uint64: length of the JSON header
    [N bytes]  JSON: {"__metadata__": {"imago.config": "<json string>"},
                      name: {"dtype": "F32"|"F16"|"BF16", "shape": [...],
                             "data_offsets": [begin, end]}, ...}
    [rest]     raw little-endian tensor data; offsets are relative to the
               first byte after the header.

Conventions of the files this module writes:
  * the header is padded with spaces so that the data area starts at a
    multiple of 8 bytes;
  * every tensor's data starts at a multiple of 8 bytes (relative to the
    data area, hence also absolute).  Tensors whose byte size is a multiple
    of 8 are written first (sorted by name), the others after them (sorted by
    name), with zero padding bytes where needed.  Note: the official Rust
    safetensors library refuses files with such gaps; the imago engine and
    this reader accept them (they only require offsets inside the data area,
    sizes consistent with dtype x shape, and no overlaps);
  * the byte output is a pure function of (tensors, config), so a seeded
    generator produces byte-identical files.

The reader rejects: a file shorter than 8 bytes, a header length beyond the
end of the file, a header that is not a JSON object, unknown dtypes, bad
shapes, offsets outside the data area or inconsistent with dtype x shape, and
overlapping tensors.  Errors are raised as ModelFormatError (a ValueError)
naming the offending tensor or key.

Tensors are handled as torch tensors (torch is needed for BF16 anyway).
"""

import json
import struct

import numpy as np
import torch

DTYPES = {
    # safetensors name: (torch dtype, item size, numpy dtype of the raw bits)
    "F32": (torch.float32, 4, np.dtype("<f4")),
    "F16": (torch.float16, 2, np.dtype("<f2")),
    "BF16": (torch.bfloat16, 2, np.dtype("<u2")),
}
TORCH_TO_ST = {v[0]: k for k, v in DTYPES.items()}
SHORT_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16",
                "fp32": "F32", "fp16": "F16"}

ALIGN = 8
MAX_HEADER = 100 * 1024 * 1024


class ModelFormatError(ValueError):
    """A model file that does not follow the safetensors / imago layout."""


def st_dtype(name):
    """'f32' | 'f16' | 'bf16' | 'F32' | ... -> the safetensors dtype name."""
    if name in DTYPES:
        return name
    try:
        return SHORT_DTYPES[name.lower()]
    except KeyError:
        raise ValueError("unknown dtype %r (want f32, f16 or bf16)" % name) from None


def _tensor_bytes(t, dtype):
    """Raw little-endian bytes of tensor t converted to safetensors dtype."""
    tdtype = DTYPES[dtype][0]
    t = t.detach().to("cpu").contiguous()
    if not t.is_floating_point():
        raise ValueError("only floating-point tensors can be stored (got %s)" % t.dtype)
    t = t.to(tdtype).contiguous()
    if dtype == "BF16":
        arr = t.view(torch.int16).numpy().astype("<i2", copy=False)
    else:
        arr = t.numpy().astype(DTYPES[dtype][2], copy=False)
    return arr.tobytes(order="C")


def save(path, tensors, config=None, dtype="F32", dtypes=None, metadata=None):
    """Writes tensors ({name: torch.Tensor or np.ndarray}) to path.

    dtype: the storage dtype of every tensor (F32/F16/BF16 or f32/f16/bf16);
    dtypes: optional {name: dtype} overrides.  config: a dict stored as the
    JSON string __metadata__["imago.config"].  metadata: extra string
    key/values for __metadata__.  Returns the number of bytes written.
    """
    dtype = st_dtype(dtype)
    dtypes = {k: st_dtype(v) for k, v in (dtypes or {}).items()}
    blobs = {}
    shapes = {}
    kinds = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError("bad tensor name %r" % (name,))
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        d = dtypes.get(name, dtype)
        blobs[name] = _tensor_bytes(t, d)
        shapes[name] = [int(s) for s in t.shape]
        kinds[name] = d
    order = sorted(blobs, key=lambda n: (len(blobs[n]) % ALIGN != 0, n))
    header = {}
    meta = {}
    if config is not None:
        meta["imago.config"] = json.dumps(config, sort_keys=False, separators=(", ", ": "))
    for k, v in (metadata or {}).items():
        if not isinstance(v, str):
            raise ValueError("metadata values must be strings (%r)" % k)
        meta[k] = v
    if meta:
        header["__metadata__"] = meta
    off = 0
    chunks = []
    for name in order:
        pad = (-off) % ALIGN
        if pad:
            chunks.append(b"\0" * pad)
            off += pad
        b = blobs[name]
        header[name] = {"dtype": kinds[name], "shape": shapes[name],
                        "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    hjson += b" " * ((-(8 + len(hjson))) % ALIGN)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for c in chunks:
            f.write(c)
    return 8 + len(hjson) + off


def _check_int(v, what):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ModelFormatError("%s: expected a non-negative integer, got %r" % (what, v))
    return v


def parse_header(buf):
    """Validates the header of a file image (bytes).  Returns
    (header dict without __metadata__, metadata dict, data start offset)."""
    if len(buf) < 8:
        raise ModelFormatError("file too short (%d bytes) for a safetensors header" % len(buf))
    (hlen,) = struct.unpack("<Q", buf[:8])
    if hlen > len(buf) - 8:
        raise ModelFormatError("header length %d runs past the end of the file (%d bytes)"
                               % (hlen, len(buf)))
    if hlen > MAX_HEADER:
        raise ModelFormatError("header length %d is too large" % hlen)
    try:
        header = json.loads(bytes(buf[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError("header is not valid JSON: %s" % e) from None
    if not isinstance(header, dict):
        raise ModelFormatError("header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ModelFormatError("__metadata__ must be an object of strings")
    data_start = 8 + hlen
    data_len = len(buf) - data_start
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise ModelFormatError("tensor %r: entry is not an object" % name)
        dt = info.get("dtype")
        if dt not in DTYPES:
            raise ModelFormatError("tensor %r: unsupported dtype %r (F32, F16, BF16)" % (name, dt))
        shape = info.get("shape")
        if not isinstance(shape, list):
            raise ModelFormatError("tensor %r: shape is not a list" % name)
        numel = 1
        for s in shape:
            numel *= _check_int(s, "tensor %r shape" % name)
        offs = info.get("data_offsets")
        if not isinstance(offs, list) or len(offs) != 2:
            raise ModelFormatError("tensor %r: data_offsets must be [begin, end]" % name)
        b = _check_int(offs[0], "tensor %r data_offsets" % name)
        e = _check_int(offs[1], "tensor %r data_offsets" % name)
        if e < b:
            raise ModelFormatError("tensor %r: data_offsets end %d < begin %d" % (name, e, b))
        if e > data_len:
            raise ModelFormatError("tensor %r: data [%d, %d) runs past the end of the data "
                                   "area (%d bytes; file truncated?)" % (name, b, e, data_len))
        if e - b != numel * DTYPES[dt][1]:
            raise ModelFormatError("tensor %r: %d bytes for shape %s x %s (want %d)"
                                   % (name, e - b, shape, dt, numel * DTYPES[dt][1]))
        if e > b:
            spans.append((b, e, name))
    spans.sort()
    for (b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ModelFormatError("tensors %r and %r overlap" % (n0, n1))
    return header, meta, data_start


def load(path, as_float32=False):
    """Reads a model file.  Returns (tensors, config, metadata):
    tensors {name: torch.Tensor} in the file's dtype (fp32 copies when
    as_float32), config the parsed imago.config dict (None when absent),
    metadata the raw __metadata__ dict."""
    with open(path, "rb") as f:
        buf = f.read()
    return loads(buf, as_float32=as_float32)


def loads(buf, as_float32=False):
    header, meta, start = parse_header(buf)
    tensors = {}
    for name, info in header.items():
        dt = info["dtype"]
        b, e = info["data_offsets"]
        tdtype, _size, npdt = DTYPES[dt]
        arr = np.frombuffer(buf, dtype=npdt, count=(e - b) // npdt.itemsize,
                            offset=start + b).copy()
        if dt == "BF16":
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(arr.astype(npdt.newbyteorder("="), copy=False))
        t = t.reshape(info["shape"])
        if as_float32:
            t = t.float()
        tensors[name] = t
    config = None
    if "imago.config" in meta:
        try:
            config = json.loads(meta["imago.config"])
        except json.JSONDecodeError as e:
            raise ModelFormatError("__metadata__['imago.config'] is not valid JSON: %s" % e) from None
        if not isinstance(config, dict):
            raise ModelFormatError("__metadata__['imago.config'] is not a JSON object")
    return tensors, config, meta


def header_info(path):
    """(header, metadata, data_start) of a file, for inspection and tests."""
    with open(path, "rb") as f:
        buf = f.read()
    return parse_header(buf)


# ---------------------------------------------------------------------------
# imago.config helpers

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
DEFAULT_SCALES = [1.0, 0.70710678, 0.5]
BACKBONES = ("resnet50", "resnet101", "resnet152", "mobilenet_v2")
HEADS = ("gem", "agem", "glam", "apgem", "glap")
POOLINGS = ("gem", "spoc", "mac")
WHITENINGS = ("none", "lw", "fc")
PADDINGS = ("torch", "tf_same")


def whitening_stages(whitening):
    """"none" | "lw" | "fc" | ["fc", "lw"] (or "fc,lw") -> the list of stages."""
    if isinstance(whitening, (list, tuple)):
        stages = list(whitening)
    elif whitening in ("none", "", None):
        stages = []
    else:
        stages = whitening.split(",")
    for s in stages:
        if s not in ("lw", "fc"):
            raise ValueError("whitening stage %r not in ('lw', 'fc')" % (s,))
    if len(set(stages)) != len(stages):
        raise ValueError("whitening %r repeats a stage" % (whitening,))
    return stages


def make_config(name, backbone, head, pooling, dim, whitening, max_side=1024,
                mean=None, std=None, scales=None, padding="torch", source="",
                trained=True, last_stride=2, normalize_pooled=True):
    """The imago.config dict (docs/models.md, the model file), validated.  whitening: "none",
    "lw", "fc" or a list of stages such as ["fc", "lw"]."""
    if backbone not in BACKBONES:
        raise ValueError("backbone %r not in %s" % (backbone, BACKBONES))
    if head not in HEADS:
        raise ValueError("head %r not in %s" % (head, HEADS))
    if head == "agem" and not backbone.startswith("resnet"):
        raise ValueError("the agem head needs a ResNet backbone")
    if pooling not in POOLINGS:
        raise ValueError("pooling %r not in %s" % (pooling, POOLINGS))
    stages = whitening_stages(whitening)
    # one stage as its name, several as the JSON list
    whitening = stages if len(stages) > 1 else (stages[0] if stages else "none")
    if last_stride not in (1, 2):
        raise ValueError("last_stride %r is not 1 or 2" % (last_stride,))
    if last_stride == 1 and not backbone.startswith("resnet"):
        raise ValueError("last_stride 1 needs a ResNet backbone")
    if padding not in PADDINGS:
        raise ValueError("padding %r not in %s" % (padding, PADDINGS))
    pool = {"type": pooling}
    if pooling == "gem":
        pool["p"] = "from tensor pool.p"
    cfg = {
        "format": 1,
        "name": name,
        "backbone": backbone,
        "head": head,
        "pooling": pool,
        "dim": int(dim),
        "whitening": whitening,
        "input": {"max_side": int(max_side),
                  "mean": [float(v) for v in (mean or IMAGENET_MEAN)],
                  "std": [float(v) for v in (std or IMAGENET_STD)]},
        "scales": [float(s) for s in (scales or DEFAULT_SCALES)],
        "padding": padding,
        "trained": bool(trained),
        "source": source,
    }
    if last_stride != 2:
        cfg["last_stride"] = last_stride
    if not normalize_pooled:
        cfg["normalize_pooled"] = False
    return cfg


def pooling_type(config):
    p = config.get("pooling", "gem")
    if isinstance(p, dict):
        p = p.get("type", "gem")
    return p
