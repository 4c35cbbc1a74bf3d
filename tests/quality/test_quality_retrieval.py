#!/usr/bin/python3
"""Retrieval quality of the whole pipeline with real MobileNetV2 weights.

    test_quality_retrieval.py IMAGO        (meson test --suite slow)

IMAGO is the built `imago` executable. The test
  1. converts $IMAGO_SHARED/models/mobilenet_v2_imagenet.pth with
     tools/convert.py (tf_same padding, mean = std = 0.5, max_side 512) into
     $IMAGO_BUILD_ROOT/quality/ (kept between runs);
  2. writes seeded transformed copies of every photo of
     $IMAGO_SHARED/data/photos (top level) with PIL into the build dir: three
     copies with a random crop (55-90 % of each side), a rotation within
     8 degrees, a rescale by 0.4-1.0, brightness and contrast jitter and JPEG
     quality 35-80, and one grey copy (lightly cropped);
  3. starts the real `imago serve` (port 0, fresh data dir), indexes the
     photos with a bulk ingest job (POST /v1/admin/jobs) and queries every
     copy with POST /v1/search, without and with alpha-QE (qe=true, qe_k 2,
     alpha 0); then again after POST /v1/admin/reindex {"dba": true} (DBA
     k 2, beta 1); and the same four settings for the demo model
     (mobilenet_v2-gem, random weights). Three scales; query sizes are
     rounded to multiples of 32 px so that the engine builds primitives for
     a bounded number of shapes;
  4. asserts, for the real weights without DBA/QE: recall@1 >= 0.9 (the top
     hit is the photo the copy was made from or a known view of the same
     scene: SOURCES.md's pairs, "usable as positives"; the stricter rate
     where only the source photo counts is printed as exact@1), every query
     finds its source photo in the top 3, and, querying each member of
     every known pair with the original file, its partner in the top 3 (the
     query itself excluded); and that the real weights beat the demo model's
     mAP. mAP counts the source photo and its known partners as positives.

Prints TAP; a "1..0 # SKIP" plan (exit 0) when the weights or the photos are
absent.
"""
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

SRC = os.environ.get("IMAGO_SOURCE_ROOT",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SHARED = os.environ.get("IMAGO_SHARED") or os.path.join(SRC, "..", "shared")
PHOTOS = os.path.join(SHARED, "data", "photos")
PTH = os.path.join(SHARED, "models", "mobilenet_v2_imagenet.pth")
BUILD = os.environ.get("IMAGO_BUILD_ROOT", os.path.join(SRC, "build"))
WORK = os.path.join(BUILD, "quality")
TOKEN = "quality-admin-token-0123456789"
MAX_SIDE = 512
SCALES = "1,0.70710678,0.5"
SNAP = 32   # query sizes are multiples of this (see make_queries)
K = 40

n_test = 0
failed = 0


def tap(cond, msg):
    global n_test, failed
    n_test += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n_test, msg), flush=True)
    return cond


def diag(msg):
    for line in str(msg).splitlines():
        print("# " + line, flush=True)


def photo_names():
    return sorted(f for f in os.listdir(PHOTOS)
                  if f.lower().endswith((".jpg", ".jpeg", ".png"))
                  and os.path.isfile(os.path.join(PHOTOS, f)))


def known_pairs(names):
    """Pairs listed in SOURCES.md ("a.jpg / b.jpg")."""
    text = open(os.path.join(PHOTOS, "SOURCES.md"), encoding="utf-8").read()
    text = text[text.find("Pairs"):]
    pairs = re.findall(r"([\w.-]+\.(?:jpg|png))\s*/\s*([\w.-]+\.(?:jpg|png))", text)
    return [(a, b) for a, b in pairs if a in names and b in names]


# ---------------------------------------------------------------------------
# queries

def snap(w, h):
    """Rounds a query size to multiples of SNAP (at most MAX_SIDE): the engine
    builds its primitives once per input shape, and a few hundred distinct
    shapes would spend the test's time building them (the aspect ratio
    changes by a few percent at most)."""
    return (max(2 * SNAP, min(MAX_SIDE, SNAP * round(w / SNAP))),
            max(2 * SNAP, min(MAX_SIDE, SNAP * round(h / SNAP))))


def make_queries(names, qdir, seed=20261123):
    from PIL import Image, ImageEnhance, ImageOps
    if os.path.isdir(qdir):
        shutil.rmtree(qdir)
    os.makedirs(qdir)
    rng = random.Random(seed)
    queries = []   # (path, source name, kind)
    for name in names:
        im = ImageOps.exif_transpose(Image.open(os.path.join(PHOTOS, name))).convert("RGB")
        w, h = im.size
        stem = os.path.splitext(name)[0]
        for c in range(3):
            fw, fh = rng.uniform(0.55, 0.9), rng.uniform(0.55, 0.9)
            cw, ch = max(8, int(w * fw)), max(8, int(h * fh))
            x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
            q = im.crop((x0, y0, x0 + cw, y0 + ch))
            q = q.rotate(rng.uniform(-8, 8), resample=Image.BILINEAR, expand=False,
                         fillcolor=(128, 128, 128))
            s = rng.uniform(0.4, 1.0)
            s = min(s, MAX_SIDE / max(cw, ch))
            q = q.resize(snap(cw * s, ch * s), Image.LANCZOS)
            q = ImageEnhance.Brightness(q).enhance(rng.uniform(0.75, 1.25))
            q = ImageEnhance.Contrast(q).enhance(rng.uniform(0.75, 1.25))
            path = os.path.join(qdir, "%s_t%d.jpg" % (stem, c))
            q.save(path, quality=rng.randint(35, 80))
            queries.append((path, name, "transformed"))
        f = rng.uniform(0.85, 0.95)
        cw, ch = int(w * f), int(h * f)
        x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
        q = im.crop((x0, y0, x0 + cw, y0 + ch)).convert("L").convert("RGB")
        s = min(1.0, MAX_SIDE / max(cw, ch))
        q = q.resize(snap(cw * s, ch * s), Image.LANCZOS)
        path = os.path.join(qdir, "%s_grey.jpg" % stem)
        q.save(path, quality=rng.randint(35, 80))
        queries.append((path, name, "grey"))
    # Queries of one shape run one after the other: the engine keeps an LRU of
    # a few per-shape plans, and a random order would rebuild them each time.
    sizes = {}
    for path, _, _ in queries:
        with Image.open(path) as q:
            sizes[path] = q.size
    queries.sort(key=lambda q: (sizes[q[0]], q[0]))
    return queries


# ---------------------------------------------------------------------------
# the server

class Server:
    def __init__(self, imago, datadir, extra):
        args = [imago, "serve", "--port", "0", "--server.listen", "127.0.0.1",
                "--index.data-dir", datadir, "--auth.admin-token", TOKEN,
                "--ingest.roots", PHOTOS, "--engine.max-side", str(MAX_SIDE),
                "--engine.scales", SCALES, "--engine.threads", "1"] + extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=dict(os.environ, IMAGO_SERVER_LOG_FORMAT="text"))
        self.log = []
        self.port = None
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.time() + 60
        while time.time() < deadline and self.port is None and self.proc.poll() is None:
            for line in list(self.log):
                m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.02)
        if self.port is None:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.log[-30:]))

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self.log.append(raw.decode("utf-8", "replace"))

    def request(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, data
        finally:
            c.close()

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, _ = self.request("GET", "/readyz")
            if st == 200:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def job(self, path, body, timeout=600):
        st, data = self.request("POST", path, json.dumps(body),
                                {"Content-Type": "application/json",
                                 "Authorization": "Bearer " + TOKEN})
        if st != 202:
            raise RuntimeError("%s refused: %d %s" % (path, st, data[:300]))
        job = json.loads(data)["job_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, data = self.request("GET", "/v1/admin/jobs/%s" % job,
                                    headers={"Authorization": "Bearer " + TOKEN})
            j = json.loads(data)
            if j.get("state") in ("done", "failed", "cancelled"):
                return j
            time.sleep(0.2)
        raise RuntimeError("ingest job did not finish in %d s" % timeout)

    def search(self, path, qe):
        with open(path, "rb") as f:
            img = f.read()
        ctype = "image/png" if path.endswith(".png") else "image/jpeg"
        q = "/v1/search?k=%d&qe=%s" % (K, "true&qe_k=2&qe_alpha=0" if qe else "false")
        st, data = self.request("POST", q, img, {"Content-Type": ctype})
        if st != 200:
            raise RuntimeError("search %s: %d %s" % (path, st, data[:300]))
        return [r["external_id"] for r in json.loads(data)["results"]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------
# metrics

def average_precision(ranked, positives):
    hits, s = 0, 0.0
    for i, r in enumerate(ranked):
        if r in positives:
            hits += 1
            s += hits / (i + 1)
    return s / len(positives)


def evaluate(rankings, queries, partners, misses=None):
    """(mAP, recall@1, exact@1, worst rank of the source): a hit at 1 is the
    source photo or a known view of the same scene (SOURCES.md pairs, the
    positives of mAP); exact@1 counts only the source photo itself."""
    aps, r1, e1, worst = [], [], [], 0
    for ranked, (path, src, _) in zip(rankings, queries):
        pos = {src} | partners.get(src, set())
        aps.append(average_precision(ranked, pos))
        r1.append(1.0 if ranked and ranked[0] in pos else 0.0)
        e1.append(1.0 if ranked and ranked[0] == src else 0.0)
        rank = ranked.index(src) + 1 if src in ranked else len(ranked) + 1
        worst = max(worst, rank)
        if misses is not None and e1[-1] == 0.0:
            misses.append("%s: top-1 %s, source at rank %s" % (
                os.path.basename(path), ranked[0] if ranked else None, rank))
    n = len(queries)
    return sum(aps) / n, sum(r1) / n, sum(e1) / n, worst


def run_collection(imago, label, datadir, engine_args, queries, names, partners,
                   pairs=None):
    """Indexes the photos (bulk ingest job, DBA off) and runs the queries
    without and with QE, then turns DBA on (POST /v1/admin/reindex) and runs
    them again. Returns {(dba, qe): (mAP, recall@1)} and the pair ranks
    (without DBA/QE; when pairs are given)."""
    if os.path.isdir(datadir):
        shutil.rmtree(datadir)
    os.makedirs(datadir)
    srv = Server(imago, datadir, engine_args + ["--index.dba", "false"])
    out, pair_ranks = {}, {}
    try:
        if not srv.wait_ready():
            raise RuntimeError("server not ready:\n" + "".join(srv.log[-30:]))
        t0 = time.time()
        job = srv.job("/v1/admin/jobs", {"source": {"dir": PHOTOS, "recursive": False}})
        tap(job.get("state") == "done" and job.get("done") == len(names)
            and not job.get("failed"),
            "%s: ingest job %s, %s/%d done, %s failed (%.1f s)"
            % (label, job.get("state"), job.get("done"), len(names), job.get("failed"),
               time.time() - t0))
        for dba in (False, True):
            if dba:
                job = srv.job("/v1/admin/reindex", {"dba": True})
                tap(job.get("state") == "done", "%s: reindex with DBA %s" % (label,
                                                                          job.get("state")))
            for qe in (False, True):
                t0 = time.time()
                rankings = [srv.search(p, qe) for p, _, _ in queries]
                misses = []
                out[(dba, qe)] = evaluate(rankings, queries, partners, misses)
                if pairs and not dba and not qe:
                    diag("%s: %d queries whose top hit is not their source:\n  %s"
                         % (label, len(misses), "\n  ".join(misses)))
                diag("%s%s%s: %d queries in %.1f s" % (label, " +DBA" if dba else "",
                                                       " +QE" if qe else "", len(queries),
                                                       time.time() - t0))
            if pairs and not dba:
                for a, b in pairs:
                    for q, want in ((a, b), (b, a)):
                        ranked = [r for r in srv.search(os.path.join(PHOTOS, q), False)
                                  if r != q]
                        pair_ranks[(q, want)] = (ranked.index(want) + 1 if want in ranked
                                                 else None)
    finally:
        srv.stop()
    return out, pair_ranks


def convert_model():
    """The shared MobileNetV2 converted with tools/convert.py into WORK (kept
    between runs); its path, or None (a failed test printed) on failure."""
    os.makedirs(WORK, exist_ok=True)
    model = os.path.join(WORK, "mnv2-imagenet-tf_same-512.safetensors")
    if not os.path.exists(model) or os.path.getmtime(model) < os.path.getmtime(PTH):
        # the two quality tests may convert at the same time: each into its own
        # file, then an atomic rename (both write the same model)
        tmp = "%s.%d.tmp" % (model, os.getpid())
        r = subprocess.run([sys.executable, os.path.join(SRC, "tools", "convert.py"), PTH,
                            "--out", tmp, "--layout", "torchvision-mobilenet_v2",
                            "--padding", "tf_same", "--mean", "0.5,0.5,0.5", "--std",
                            "0.5,0.5,0.5", "--max-side", str(MAX_SIDE)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not tap(r.returncode == 0, "tools/convert.py converted the shared MobileNetV2"):
            diag(r.stdout)
            return None
        os.replace(tmp, model)
    return model


def main():
    if len(sys.argv) != 2:
        print("usage: test_quality_retrieval.py IMAGO", file=sys.stderr)
        return 2
    imago = sys.argv[1]
    if not os.path.exists(PTH):
        print("1..0 # SKIP no real weights at %s" % PTH)
        return 0
    if not os.path.isdir(PHOTOS):
        print("1..0 # SKIP no photos at %s" % PHOTOS)
        return 0
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        print("1..0 # SKIP %s has no PIL" % sys.executable)
        return 0
    t_start = time.time()
    model = convert_model()
    if not model:
        print("1..%d" % n_test)
        return 1

    names = photo_names()
    pairs = known_pairs(names)
    partners = {}
    for a, b in pairs:
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    tap(len(pairs) >= 5, "%d known pairs parsed from SOURCES.md" % len(pairs))
    queries = make_queries(names, os.path.join(WORK, "queries"))
    diag("%d photos, %d queries (%d transformed, %d grey), max_side %d, scales %s"
         % (len(names), len(queries), sum(q[2] == "transformed" for q in queries),
            sum(q[2] == "grey" for q in queries), MAX_SIDE, SCALES))

    real = ["--engine.model", model]
    demo = ["--engine.demo-arch", "mobilenet_v2-gem"]
    results = {}
    pair_ranks = {}
    for label, args in (("real", real), ("demo", demo)):
        res, pr = run_collection(imago, label, os.path.join(WORK, "data-" + label), args,
                                 queries, names, partners, pairs if label == "real" else None)
        results[label] = res
        if pr:
            pair_ranks = pr

    diag("%-22s %7s %9s %8s %12s" % ("model", "mAP", "recall@1", "exact@1",
                                      "worst source rank"))
    for label in ("real", "demo"):
        for dba in (False, True):
            for qe in (False, True):
                m, r, e, w = results[label][(dba, qe)]
                name = "%s%s%s" % (label, " +DBA" if dba else "", " +QE" if qe else "")
                diag("%-22s %7.4f %9.4f %8.4f %12d" % (name, m, r, e, w))

    m, r1, e1, worst = results["real"][(False, False)]
    tap(r1 >= 0.9, "real MobileNetV2, no DBA/QE: recall@1 %.4f >= 0.9 (%d queries; top hit "
        "the source or a known view of the same scene; the source itself: %.4f)"
        % (r1, len(queries), e1))
    tap(worst <= 3, "real MobileNetV2, no DBA/QE: every query finds its source photo in the "
        "top 3 (worst rank %d)" % worst)
    for (q, want), rank in sorted(pair_ranks.items()):
        tap(rank is not None and rank <= 3,
            "pair %s -> %s at rank %s (<= 3)" % (q, want, rank))
    md, rd = results["demo"][(False, False)][:2]
    tap(m > md, "real weights mAP %.4f > demo model mAP %.4f (recall@1 %.4f vs %.4f)"
        % (m, md, r1, rd))
    diag("quality suite: %.0f s" % (time.time() - t_start))
    print("1..%d" % n_test)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
