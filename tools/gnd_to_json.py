#!/usr/bin/env python3
"""Convert an official revisited Oxford/Paris ground truth (gnd_roxford5k.pkl,
gnd_rparis6k.pkl from revisitop) into the JSON that `imago eval` reads:

  {"imlist": [...], "qimlist": [...],
   "gnd": [{"easy": [...], "hard": [...], "junk": [...], "bbx": [x1,y1,x2,y2]}, ...]}

Indices are into imlist, as in the .pkl. Usage:
  gnd_to_json.py gnd_roxford5k.pkl roxford5k.json
"""
import json
import pickle
import sys


def to_list(v):
    try:
        return [x.item() if hasattr(x, "item") else x for x in v]
    except TypeError:
        return v


def convert(cfg):
    for key in ("imlist", "qimlist", "gnd"):
        if key not in cfg:
            raise ValueError(f"not a revisitop ground truth: no '{key}'")
    out = {"imlist": list(cfg["imlist"]), "qimlist": list(cfg["qimlist"]), "gnd": []}
    if len(cfg["gnd"]) != len(out["qimlist"]):
        raise ValueError("gnd and qimlist differ in length")
    n = len(out["imlist"])
    for i, g in enumerate(cfg["gnd"]):
        e = {}
        for key in ("easy", "hard", "junk"):
            vals = [int(x) for x in to_list(g.get(key, []))]
            bad = [x for x in vals if x < 0 or x >= n]
            if bad:
                raise ValueError(f"gnd[{i}].{key} has indices outside imlist: {bad[:3]}")
            e[key] = vals
        if "bbx" in g and g["bbx"] is not None:
            e["bbx"] = [float(x) for x in to_list(g["bbx"])]
        out["gnd"].append(e)
    return out


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1], "rb") as f:
        cfg = pickle.load(f)
    out = convert(cfg)
    with open(argv[2], "w") as f:
        json.dump(out, f)
    sys.stderr.write(f"{argv[2]}: {len(out['imlist'])} images, {len(out['qimlist'])} queries\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
