#!/usr/bin/env python3
"""The crasher (after Qdrant's): a bounded, seeded mixed workload against the
real `imago serve` with a kill -9 in every round, then a restart on the same
data dir and the invariants checked against an oracle of what the server
acknowledged.

Each round two client threads (disjoint external_ids, each its own seeded
random stream) add images (POST /v1/images), replace them (same external_id,
other bytes and metadata: the API's metadata update), re-add the same bytes
(200, nothing changes), delete (204) and delete again (404), re-add deleted
ones, read them back, search (the thread's own deletes absent at once, its
own latest bytes found), start bulk jobs from fresh folders below
ingest.roots (some with a corrupt file and an empty folder; in half the
rounds one of 16..24 images first, so the kill tends to land in it) and
reindex (compaction) jobs. When the seeded op number K has been sent, the server
gets SIGKILL (after a seeded delay of 0..30 ms, so some ops die in flight and
some are applied but never answered: both outcomes are allowed for those, and
only those). Snapshots run every second, so kills land in them too.

After each restart (TAP lines per round):
  I1 the server comes back ready;
  I2 every acknowledged job is there, terminal or resumable, and all end
     terminal with exact counts (total, done, failed);
  I3 every acknowledged write is present with its latest bytes (sha256) and
     metadata, and with the id it was acknowledged with;
  I4 deletes are absent from GET (404 not_found) and from search;
  I5 the full listing (a search with k above the collection size) has no
     duplicate id or external_id and nothing the oracle does not know;
  I6 index size (/v1/info) = store count (SQLite, live rows) = listing = oracle;
  I7 a sample of live images found by their latest bytes (top 5, score >= 0.999);
  I8 every acknowledged response during the round had its exact status.
The last round ends with SIGTERM instead: exit 0, and one more start checks
the same invariants from the shutdown snapshot.

Seeded and reproducible: IMAGO_CRASHER_SEED (default 19) picks every op,
image, kill point and delay; IMAGO_CRASHER_ROUNDS (default 12) the rounds.
Thread interleaving is the one thing the seed does not fix; each thread's
ops and the kill point (an op number) are. Prints TAP.

usage: test_crasher.py path/to/imago
"""
import hashlib
import http.client
import io
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_testlib as hc  # noqa: E402

from imago_testlib import ok, is_eq, jget  # noqa: E402

ADM = "adm-crasher"
A = {"Authorization": "Bearer " + ADM}
J = dict(A, **{"Content-Type": "application/json"})
SEED = int(os.environ.get("IMAGO_CRASHER_SEED", "19"))
ROUNDS = int(os.environ.get("IMAGO_CRASHER_ROUNDS", "12"))
THREADS = 2
MAX_LIVE = 70         # per thread; the whole collection stays below K_ALL
K_ALL = 1000          # k of a full listing (the documented maximum of k is >= 1000)
KILL_OPS = (12, 40)   # the kill comes when op number K (all threads) has been sent
DELAYS_MS = (0, 0, 2, 10, 30)
SIDE = 128            # the server's engine.max_side: no resize work in the server


class Lost(Exception):
    """The request may have reached the server; its outcome is unknown."""


class Refused(Exception):
    """The request never reached the server (nothing listens any more)."""


def sha(b):
    return hashlib.sha256(b).hexdigest()


class Pictures:
    """Seeded image variants of the shared photos: each has bytes of its own
    (a serial number stamped into a corner), so sha256 tells them apart."""

    def __init__(self, photos_dir):
        from PIL import Image, ImageDraw
        self.Image, self.Draw = Image, ImageDraw
        self.bases = []
        for n in sorted(os.listdir(photos_dir)):
            if n.lower().endswith((".jpg", ".jpeg", ".png")):
                im = Image.open(os.path.join(photos_dir, n)).convert("RGB")
                im.thumbnail((SIDE, SIDE))
                if min(im.size) >= 32:
                    self.bases.append(im)

    def make(self, rng, serial):
        im = rng.choice(self.bases).copy()
        t = rng.choice(["none", "flip", "flop", "rot180", "crop"])
        if t == "flip":
            im = im.transpose(self.Image.FLIP_LEFT_RIGHT)
        elif t == "flop":
            im = im.transpose(self.Image.FLIP_TOP_BOTTOM)
        elif t == "rot180":
            im = im.transpose(self.Image.ROTATE_180)
        elif t == "crop":
            w, h = im.size
            im = im.crop((w // 8, h // 8, w - w // 8, h - h // 8))
        d = self.Draw.Draw(im)
        w, h = im.size
        x, y = rng.randrange(w // 2), rng.randrange(h // 2)
        d.rectangle((x, y, x + w // 4, y + h // 4),
                    fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        for i in range(24):  # the serial, one bit per pixel, bottom row
            im.putpixel((w - 1 - i, h - 1), (255, 255, 255) if serial >> i & 1 else (0, 0, 0))
        buf = io.BytesIO()
        if rng.random() < 0.3:
            im.save(buf, format="PNG")
            return buf.getvalue(), "image/png", ".png"
        im.save(buf, format="JPEG", quality=90)
        return buf.getvalue(), "image/jpeg", ".jpg"


def call(port, method, path, body=None, headers=None, on_sent=None):
    """One request on a fresh connection, through the harness's contract
    check. Raises Refused when nothing listens, Lost when the connection
    broke after the request may have been sent."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.connect()
    except OSError as e:
        c.close()
        raise Refused(str(e))
    try:
        c.request(method, path, body=body, headers=headers or {})
        if on_sent:
            on_sent()
        r = c.getresponse()
        data = r.read()
    except (OSError, http.client.HTTPException) as e:
        c.close()
        raise Lost("%s %s: %r" % (method, path, e))
    c.close()
    hc.check_response(method, path, r, data)
    return r, data


def body_json(data):
    try:
        return json.loads(data)
    except Exception:
        return {}


# ---- the oracle ---------------------------------------------------------------------
# A key (external_id) has a list of candidate states; one when its last write
# was acknowledged, two when the write was in flight at the kill. A state is
# None (absent: never stored, or deleted; with "id" the id it had) or a dict
# {"id": int or None, "sha", "meta", "bytes", "ctype"}.

def absent(id_=None):
    return {"absent": True, "id": id_}


def live(id_, sha_, meta, b, ctype):
    return {"absent": False, "id": id_, "sha": sha_, "meta": meta, "bytes": b, "ctype": ctype}


class Worker:
    def __init__(self, t, crasher):
        self.t = t
        self.cr = crasher
        self.keys = {}   # external_id -> [candidate states]
        self.n = 0       # serial of this thread's external ids
        self.pics_n = 0  # serial of this thread's pictures
        self.jobs = []   # jobs this thread started (dicts, see start_job)
        self.bad = []    # unexpected answers: the I8 failures
        self.acked = 0
        self.lost = []   # ops whose outcome the kill made unknown

    def certain(self, ext):
        c = self.keys[ext]
        return c[0] if len(c) == 1 else None

    def live_keys(self):
        return sorted(k for k in self.keys if self.certain(k) and not self.certain(k)["absent"])

    def dead_keys(self):
        return sorted(k for k in self.keys if self.certain(k) and self.certain(k)["absent"])

    def run(self, rng, rnd, port, big_job=False):
        ops = 0
        if big_job:  # a job long enough for the kill to land in it, usually
            try:
                self.op_job(rng, rnd, port, [], [], n_files=rng.randint(16, 24))
            except Refused:
                return
            except Lost as e:
                self.lost.append(str(e))
                return
        while ops < 400:
            ops += 1
            live_k, dead_k = self.live_keys(), self.dead_keys()
            choices = [("get", 8), ("search", 6), ("job", 3)]
            if len(live_k) < MAX_LIVE:
                choices.append(("add", 30))
            if live_k:
                choices += [("replace", 18), ("same", 5), ("delete", 14)]
            if dead_k:
                choices += [("readd", 5), ("delete404", 3)]
            if self.t == 0:
                choices.append(("reindex", 1))
            op = rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
            try:
                getattr(self, "op_" + op)(rng, rnd, port, live_k, dead_k)
            except Refused:
                return
            except Lost as e:
                self.lost.append(str(e))
                return

    def picture(self, rng):
        self.pics_n += 1
        return self.cr.pics.make(rng, self.t << 20 | self.pics_n)

    def sent(self):
        self.cr.count_sent()

    def expect(self, cond, what, r, data):
        if cond:
            self.acked += 1
        else:
            self.bad.append("%s -> %d %s" % (what, r.status, data[:200]))
        return cond

    def post_image(self, port, ext, b, ctype, meta, on_lost):
        body, mh = hc.multipart([("external_id", ext.encode()),
                                 ("metadata", json.dumps(meta).encode()),
                                 ("image", b, ctype, "x" + ctype[6:])])
        try:
            return call(port, "POST", "/v1/images", body, dict(mh, **A), self.sent)
        except Lost:
            on_lost()
            raise

    def op_add(self, rng, rnd, port, live_k, dead_k):
        self.n += 1
        ext = "t%d-%d" % (self.t, self.n)
        self.write(rng, rnd, port, ext, absent(), "add")

    def op_readd(self, rng, rnd, port, live_k, dead_k):
        ext = rng.choice(dead_k)
        self.write(rng, rnd, port, ext, self.certain(ext), "re-add after delete")

    def op_replace(self, rng, rnd, port, live_k, dead_k):
        ext = rng.choice(live_k)
        self.write(rng, rnd, port, ext, self.certain(ext), "replace")

    def write(self, rng, rnd, port, ext, prev, what):
        b, ctype, _ = self.picture(rng)
        meta = {"owner": self.t, "round": rnd, "v": rng.randrange(1 << 30),
                "tag": rng.choice(["a", "b", "c"])}
        new = live(prev["id"] if not prev["absent"] else None, sha(b), meta, b, ctype)
        self.keys.setdefault(ext, [prev])

        def lost():
            self.keys[ext] = [prev, new]
        r, data = self.post_image(port, ext, b, ctype, meta, lost)
        js = body_json(data)
        if prev["absent"]:
            good = r.status == 201 and js.get("replaced") is False and js.get("id", 0) > 0 \
                and js.get("external_id") == ext
        else:
            good = r.status == 201 and js.get("replaced") is True and js.get("id") == prev["id"]
        if self.expect(good, "%s %s" % (what, ext), r, data):
            new["id"] = js["id"]
            self.keys[ext] = [new]
        else:
            self.keys[ext] = [prev, new]  # unknown: let the restart check decide

    def op_same(self, rng, rnd, port, live_k, dead_k):
        ext = rng.choice(live_k)
        cur = self.certain(ext)
        meta = {"ignored": True}  # the same bytes again: nothing is recomputed or changed
        r, data = self.post_image(port, ext, cur["bytes"], cur["ctype"], meta, lambda: None)
        js = body_json(data)
        self.expect(r.status == 200 and js.get("id") == cur["id"] and js.get("replaced") is False,
                    "same bytes again %s" % ext, r, data)

    def op_delete(self, rng, rnd, port, live_k, dead_k):
        ext = rng.choice(live_k)
        cur = self.certain(ext)
        gone = absent(cur["id"])

        def lost():
            self.keys[ext] = [cur, gone]
        try:
            r, data = call(port, "DELETE", "/v1/images/%d" % cur["id"], None, A, self.sent)
        except Lost:
            lost()
            raise
        if self.expect(r.status == 204 and data == b"", "delete %s" % ext, r, data):
            self.keys[ext] = [gone]
        else:
            lost()

    def op_delete404(self, rng, rnd, port, live_k, dead_k):
        ext = rng.choice(dead_k)
        cur = self.certain(ext)
        if cur["id"] is None:
            return
        r, data = call(port, "DELETE", "/v1/images/%d" % cur["id"], None, A, self.sent)
        self.expect(r.status == 404 and hc.err_code(data) == "not_found",
                    "delete again %s" % ext, r, data)

    def op_get(self, rng, rnd, port, live_k, dead_k):
        keys = live_k + [k for k in dead_k if self.certain(k)["id"]]
        if not keys:
            return
        ext = rng.choice(keys)
        cur = self.certain(ext)
        r, data = call(port, "GET", "/v1/images/%d" % cur["id"], None, A, self.sent)
        js = body_json(data)
        if cur["absent"]:
            self.expect(r.status == 404 and hc.err_code(data) == "not_found",
                        "GET deleted %s" % ext, r, data)
        else:
            self.expect(r.status == 200 and js.get("sha256") == cur["sha"]
                        and js.get("metadata") == cur["meta"] and js.get("external_id") == ext,
                        "GET %s (latest sha256, metadata)" % ext, r, data)

    def op_search(self, rng, rnd, port, live_k, dead_k):
        if not live_k:
            return
        ext = rng.choice(live_k)
        cur = self.certain(ext)
        r, data = call(port, "POST", "/v1/search?k=%d" % K_ALL, cur["bytes"],
                       dict(A, **{"Content-Type": cur["ctype"]}), self.sent)
        hits = body_json(data).get("results", [])
        by_id = {h["id"]: h for h in hits}
        dead_ids = {self.certain(k)["id"] for k in dead_k} - {None}
        mine = by_id.get(cur["id"], {})
        self.expect(r.status == 200 and not (dead_ids & set(by_id))
                    and mine.get("score", 0) >= 0.999 and mine.get("external_id") == ext,
                    "search by %s: own deletes absent, itself found" % ext, r,
                    data if r.status != 200 else
                    ("deleted ids present %s; own hit %s" % (sorted(dead_ids & set(by_id)),
                                                            mine)).encode())

    def op_job(self, rng, rnd, port, live_k, dead_k, n_files=None):
        self.n += 1
        rel = "jobs/r%dt%dn%d" % (rnd, self.t, self.n)
        folder = os.path.join(self.cr.root, rel)
        os.makedirs(folder)
        files = {}
        for i in range(n_files or rng.randint(1, 8)):
            b, _, ext = self.picture(rng)
            name = "img%d%s" % (i, ext)
            sub = "" if rng.random() < 0.7 else "sub/"
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
            with open(os.path.join(folder, sub + name), "wb") as f:
                f.write(b)
            files[rel + "/" + sub + name] = (sha(b), b, "image/png" if ext == ".png" else "image/jpeg")
        corrupt = rng.random() < 0.4
        if corrupt:
            with open(os.path.join(folder, "broken.jpg"), "wb") as f:
                f.write(b"\xff\xd8\xff\xe0 not really a JPEG")
        if rng.random() < 0.5:
            os.makedirs(os.path.join(folder, "empty", "deeper"))
        job = {"id": None, "kind": "ingest", "rel": rel, "files": files, "owner": self.t,
               "total": len(files) + corrupt, "failed": int(corrupt), "uncertain": True}
        self.jobs.append(job)
        with self.cr.job_lock:
            r, data = call(port, "POST", "/v1/admin/jobs",
                           json.dumps({"source": {"dir": folder, "recursive": True}}).encode(), J,
                           self.sent)
        jid = body_json(data).get("job_id", 0)
        if self.expect(r.status == 202 and jid > 0, "job %s" % rel, r, data):
            job["id"], job["uncertain"] = jid, False

    def op_reindex(self, rng, rnd, port, live_k, dead_k):
        job = {"id": None, "kind": "reindex", "owner": self.t, "uncertain": True}
        self.jobs.append(job)
        with self.cr.job_lock:
            r, data = call(port, "POST", "/v1/admin/reindex", b"{}", J, self.sent)
        jid = body_json(data).get("job_id", 0)
        if self.expect(r.status == 202 and jid > 0, "reindex", r, data):
            job["id"], job["uncertain"] = jid, False


class Crasher:
    def __init__(self, imago, tmp, pics):
        self.imago = imago
        self.tmp = tmp
        self.root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(self.root, "jobs"))
        self.data = os.path.join(tmp, "data")
        self.pics = pics
        self.workers = [Worker(t, self) for t in range(THREADS)]
        self.args = ["--auth.admin-token", ADM, "--ingest.roots", self.root,
                     "--ingest.parallelism", "2", "--server.max-body-bytes", "4MiB",
                     "--index.snapshot-interval-s", "1", "--server.threads", "4"]
        self.srv = None
        self.lock = threading.Lock()
        self.sent_n = 0
        self.kill_at = None
        self.kill_evt = threading.Event()
        # one job POST in flight at a time: at most one job the kill leaves
        # unacknowledged, found after the restart by elimination
        self.job_lock = threading.Lock()

    def count_sent(self):
        with self.lock:
            self.sent_n += 1
            if self.sent_n == self.kill_at:
                self.kill_evt.set()

    def start(self):
        self.srv = hc.Server(self.imago, self.data, self.args)
        r, data = self.srv.wait_ready()
        return r.status, data

    # ---- one round of workload, ending with kill -9 -------------------------------
    def workload(self, rnd, rng):
        self.sent_n = 0
        self.kill_at = rng.randint(*KILL_OPS)
        delay = rng.choice(DELAYS_MS)
        self.kill_evt.clear()
        for w in self.workers:
            w.bad, w.lost, w.acked = [], [], 0
        seeds = [rng.randrange(1 << 30) for _ in self.workers]
        big = rng.random() < 0.5  # thread 1 starts the round with a 16..24-image job
        port = self.srv.port
        threads = [threading.Thread(target=w.run, args=(random.Random(s), rnd, port,
                                                        big and w.t == 1))
                   for w, s in zip(self.workers, seeds)]
        for th in threads:
            th.start()
        # until op K is sent, or every thread stopped (the server died by itself)
        while not self.kill_evt.wait(0.02) and any(th.is_alive() for th in threads):
            pass
        fired = self.kill_evt.is_set()
        time.sleep(delay / 1000.0)
        died_before = self.srv.proc.poll()
        self.srv.proc.send_signal(signal.SIGKILL)
        self.srv.proc.wait()
        for th in threads:
            th.join(120)
        return fired, delay, died_before, big

    # ---- the invariants after a restart -------------------------------------------
    def check(self, rnd, label):
        port = self.srv.port
        # I2: every acknowledged job is known and terminal or resumable; an
        # unacknowledged one (its POST was in flight) may exist: by elimination
        code, lst = jget(self.srv, "/v1/admin/jobs", A)
        listed = {j["id"]: j for j in lst.get("jobs", [])}
        jobs = [j for w in self.workers for j in w.jobs]
        known = {j["id"] for j in jobs if j["id"]}
        extra = sorted(set(listed) - known)
        for j in jobs:
            if j["uncertain"]:
                if extra and listed[extra[0]]["kind"] == j["kind"]:
                    j["id"] = extra.pop(0)
                j["uncertain"] = False  # adopted, or never created
        missing = [j["id"] for j in jobs if j["id"] and j["id"] not in listed
                   and j.get("final") is None]
        states = {listed[i]["state"] for i in listed}
        ok(code == 200 and not missing and not extra
           and states <= {"queued", "running", "done", "failed"},
           "%s: I2 every acknowledged job present, terminal or resumable (%d jobs: %s)"
           % (label, len(listed), ", ".join(sorted(states)) or "none"),
           "missing %s, unknown %s, states %s" % (missing, extra, states))
        jobs = [j for j in jobs if j["id"] and j.get("final") is None]
        wrong = []
        deadline = time.time() + 240
        for j in jobs:
            st = {}
            while time.time() < deadline:
                c, st = jget(self.srv, "/v1/admin/jobs/%d" % j["id"], A)
                if st.get("state") in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            if j["kind"] == "ingest":
                want = ("done", j["total"], j["total"] - j["failed"], j["failed"])
            else:
                want = ("done",)
            got = (st.get("state"), st.get("total"), st.get("done"), st.get("failed"))[:len(want)]
            if got != want:
                wrong.append("job %d %s: got %s, want %s" % (j["id"], j.get("rel", "reindex"),
                                                              got, want))
            j["final"] = st
        ok(not wrong, "%s: I2 jobs end terminal with exact counts (%d checked)"
           % (label, len(jobs)), "\n".join(wrong))
        # the images of finished ingest jobs join their owner's keys
        for j in jobs:
            if j["kind"] == "ingest" and j["final"].get("state") == "done":
                w = self.workers[j["owner"]]
                for ext, (s, b, ct) in j["files"].items():
                    w.keys[ext] = [live(None, s, {}, b, ct)]

        # the full listing: every live image, by a search with k over the size
        q = self.pics.bases[0]
        buf = io.BytesIO()
        q.save(buf, format="PNG")
        r, data = call(port, "POST", "/v1/search?k=%d" % K_ALL, buf.getvalue(),
                       dict(A, **{"Content-Type": "image/png"}))
        hits = body_json(data).get("results", []) if r.status == 200 else None
        is_eq(r.status, 200, "%s: full listing (search, k=%d)" % (label, K_ALL))
        hits = hits or []
        ids = [h["id"] for h in hits]
        exts = [h["external_id"] for h in hits]
        by_ext = {h["external_id"]: h for h in hits}
        dup_i = sorted({i for i in ids if ids.count(i) > 1})
        dup_e = sorted({e for e in exts if exts.count(e) > 1})
        all_keys = {}
        for w in self.workers:
            all_keys.update(w.keys)
        phantom = sorted(set(exts) - set(all_keys))
        ok(not dup_i and not dup_e and not phantom,
           "%s: I5 listing: no duplicate id or external_id, nothing unknown (%d images)"
           % (label, len(hits)), "dup ids %s, dup external_ids %s, unknown %s"
           % (dup_i, dup_e, phantom))

        # I3 / I4: resolve each key against what is there
        lost_w, deleted_bad, ambiguous = [], [], 0
        present_n = deleted_n = 0
        for w in self.workers:
            for ext in sorted(w.keys):
                cands = w.keys[ext]
                h = by_ext.get(ext)
                rec = None
                if h is not None:
                    c, rec = jget(self.srv, "/v1/images/%d" % h["id"], A)
                    if c != 200:
                        lost_w.append("%s: listed as %d but GET -> %d" % (ext, h["id"], c))
                        continue
                match = None
                for s in cands:
                    if s["absent"] and h is None:
                        match = s
                    elif not s["absent"] and h is not None and rec.get("sha256") == s["sha"] \
                            and rec.get("metadata") == s["meta"] and h.get("metadata") == s["meta"] \
                            and (s["id"] is None or s["id"] == h["id"]):
                        match = dict(s, id=h["id"])
                    if match:
                        break
                if match is None:
                    lost_w.append("%s: candidates %s, found %s" % (
                        ext, [("absent" if s["absent"] else (s["id"], s["sha"][:12], s["meta"]))
                              for s in cands],
                        None if h is None else (h["id"], rec.get("sha256", "")[:12],
                                                rec.get("metadata"))))
                    continue
                ambiguous += len(cands) > 1
                w.keys[ext] = [match]
                if match["absent"]:
                    deleted_n += 1
                    if match["id"]:
                        c, _ = jget(self.srv, "/v1/images/%d" % match["id"], A)
                        if c != 404:
                            deleted_bad.append("%s (id %d): GET -> %d" % (ext, match["id"], c))
                else:
                    present_n += 1
        ok(not lost_w, "%s: I3 every acknowledged write present with its latest bytes and "
           "metadata (%d live; %d in-flight writes resolved)" % (label, present_n, ambiguous),
           "\n".join(lost_w[:20]))
        ok(not deleted_bad, "%s: I4 deletes absent from GET (404) and from the listing (%d)"
           % (label, deleted_n), "\n".join(deleted_bad[:20]))

        # I6: sizes agree
        code, info = jget(self.srv, "/v1/info", A)
        size = info.get("index", {}).get("size")
        store = self.store_count()
        is_eq((size, store, len(hits)), (present_n, present_n, present_n),
              "%s: I6 index size = store count = listing = oracle (%d)" % (label, present_n))

        # I7: a sample of live images found by their latest bytes
        rng = random.Random("%d-%s" % (SEED, label))
        live_all = [(w, k) for w in self.workers for k in w.live_keys()]
        sample = rng.sample(live_all, min(6, len(live_all)))
        miss = []
        for w, k in sample:
            s = w.certain(k)
            r, data = call(port, "POST", "/v1/search?k=5", s["bytes"],
                           dict(A, **{"Content-Type": s["ctype"]}))
            hits = body_json(data).get("results") or []
            mine = [h for h in hits if h.get("id") == s["id"]]
            # top 5, not rank 1: variants of one photo may score within
            # float noise of each other; >= 0.999 says the vector is the new one
            if r.status != 200 or not mine or mine[0].get("score", 0) < 0.999:
                miss.append("%s (id %s): %d, hits %s" % (k, s["id"], r.status, hits))
        ok(not miss, "%s: I7 latest bytes of %d sampled images find them (top 5, score >= 0.999)"
           % (label, len(sample)), "\n".join(miss))

    def store_count(self):
        """Live rows in the SQLite store, read beside the running server."""
        try:
            db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.data, "imago.db"),
                                 uri=True, timeout=10)
            n = db.execute("SELECT count(*) FROM images WHERE deleted = 0").fetchone()[0]
            db.close()
            return n
        except sqlite3.Error as e:
            return "sqlite: %s" % e


def main():
    if len(sys.argv) < 2:
        print("1..0 # SKIP usage: test_crasher.py IMAGO")
        return 0
    photos_dir = hc.shared_photos()
    if not os.path.isdir(photos_dir):
        print("1..0 # SKIP no photos in $IMAGO_SHARED/data/photos")
        return 0
    try:
        pics = Pictures(photos_dir)
    except ImportError:
        print("1..0 # SKIP needs PIL (Debian python3-pil) to make the images")
        return 0
    tmp = tempfile.mkdtemp(prefix="imago_crasher_")
    print("# seed %d (IMAGO_CRASHER_SEED), %d rounds (IMAGO_CRASHER_ROUNDS), %d client threads"
          % (SEED, ROUNDS, THREADS))
    cr = Crasher(sys.argv[1], tmp, pics)
    t0 = time.time()
    st, data = cr.start()
    is_eq(st, 200, "first start: ready")
    master = random.Random(SEED)
    for rnd in range(1, ROUNDS + 1):
        rng = random.Random(master.randrange(1 << 62))
        t1 = time.time()
        fired, delay, died, big = cr.workload(rnd, rng)
        t2 = time.time()
        ops = sum(w.acked for w in cr.workers)
        lost = [x for w in cr.workers for x in w.lost]
        print("# round %d: %skill -9 after op %d (+%d ms): %d answers as expected, %d in flight "
              "at the kill%s" % (rnd, "a 16..24-image job first, " if big else "",
                                 cr.kill_at, delay, ops, len(lost),
                                 "".join("\n#   in flight: " + x for x in lost)))
        ok(fired and died is None,
           "round %d: the server was alive until the kill -9 (op %d sent)" % (rnd, cr.kill_at),
           "kill point reached: %s, exit status before the kill: %s\n%s"
           % (fired, died, "".join(cr.srv.log)[-3000:]))
        bad = [x for w in cr.workers for x in w.bad]
        ok(not bad, "round %d: I8 every answer before the kill had its exact status (%d)"
           % (rnd, ops), "\n".join(bad[:20]))
        st, data = cr.start()
        t3 = time.time()
        is_eq(st, 200, "round %d: I1 restart after kill -9: ready" % rnd)
        if st != 200:
            break
        cr.check(rnd, "round %d" % rnd)
        print("# round %d: workload %.1f s, restart %.1f s, checks %.1f s"
              % (rnd, t2 - t1, t3 - t2, time.time() - t3))
    # a clean stop, and a start from the shutdown snapshot
    rc, log = cr.srv.stop()
    is_eq(rc, 0, "SIGTERM: exit status 0")
    st, data = cr.start()
    is_eq(st, 200, "start after SIGTERM: ready")
    if st == 200:
        cr.check(ROUNDS + 1, "after SIGTERM")
    rc, log = cr.srv.stop()
    n_keys = sum(len(w.keys) for w in cr.workers)
    n_jobs = sum(len(w.jobs) for w in cr.workers)
    print("# %d rounds, %d external ids, %d jobs in %.0f s (seed %d)"
          % (ROUNDS, n_keys, n_jobs, time.time() - t0, SEED))
    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
