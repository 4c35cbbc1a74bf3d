#!/usr/bin/env python3
"""Bounded load test of POST /v1/search on the real server over loopback:
32 concurrent clients, a fixed number of requests each (stops by itself).
Phase 1 (normal queue): every answer is 200. Phase 2 (deliberate overload:
engine.queue_depth 4): only 200 or 503 busy with Retry-After, never another
5xx, and some requests still succeed. In both phases the server's RSS (from
/proc) stays bounded, and p50/p99 latencies are printed (not asserted).
Prints TAP.

usage: test_load_search.py path/to/imago [requests-per-client]
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import imago_testlib as hc  # noqa: E402

from imago_testlib import ok, is_eq  # noqa: E402

ADM = "adm-load"
A = {"Authorization": "Bearer " + ADM}
CLIENTS = 32
RSS_BOUND_MB = 600  # growth allowed over the idle server during the load


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def run_load(srv, images, per_client):
    statuses, lat, bad = [], [], []
    lock = threading.Lock()

    def client(ci):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        for i in range(per_client):
            img, ct = images[(ci + i) % len(images)]
            t0 = time.time()
            try:
                conn.request("POST", "/v1/search?k=5", img, dict(A, **{"Content-Type": ct}))
                r = conn.getresponse()
                data = r.read()
                hc.check_response("POST", "/v1/search?k=5", r, data)
                st = r.status
                ra = r.getheader("Retry-After")
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            except Exception as e:  # counted as a failure below
                st, data, ra = None, str(e).encode(), None
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            dt = time.time() - t0
            with lock:
                statuses.append(st)
                if st == 200:
                    lat.append(dt)
                elif not (st == 503 and hc.err_code(data) == "busy" and ra):
                    bad.append((st, data[:200]))
        conn.close()

    base = rss_mb(srv.proc.pid)
    peak = [base]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(srv.proc.pid))
            time.sleep(0.05)
    smp = threading.Thread(target=sampler)
    smp.start()
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0
    stop.set()
    smp.join()
    return statuses, lat, bad, base, peak[0], wall


def main():
    if len(sys.argv) < 2:
        print("1..0 # SKIP usage: test_load_search.py IMAGO [requests-per-client]")
        return 0
    imago = sys.argv[1]
    per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    photos_dir = hc.shared_photos()
    if not os.path.isdir(photos_dir):
        print("1..0 # SKIP no photos in $IMAGO_SHARED/data/photos")
        return 0
    names = sorted(n for n in os.listdir(photos_dir)
                   if n.lower().endswith((".jpg", ".png")) and os.path.getsize(
                       os.path.join(photos_dir, n)) < 400 * 1024)[:12]
    images = [(open(os.path.join(photos_dir, n), "rb").read(),
               "image/png" if n.endswith(".png") else "image/jpeg") for n in names]
    import tempfile
    tmp = tempfile.mkdtemp(prefix="imago_load_")
    for phase, extra in (("normal", []), ("overload", ["--engine.queue-depth", "4"])):
        srv = hc.Server(imago, os.path.join(tmp, "data"),
                        ["--auth.admin-token", ADM, "--server.max-body-bytes", "1MiB",
                         "--server.threads", "4"] + extra)
        r, _ = srv.wait_ready()
        is_eq(r.status, 200, "%s: server ready" % phase)
        if phase == "normal":
            added = 0
            for (img, ct), n in zip(images, names):
                b, mh = hc.multipart([("external_id", n.encode()), ("image", img, ct, n)])
                rr, _ = srv.request("POST", "/v1/images", b, dict(mh, **A))
                added += rr.status in (200, 201)
            is_eq(added, len(images), "indexed %d photos" % len(images))
        statuses, lat, bad, base, peak, wall = run_load(srv, images, per_client)
        n200 = statuses.count(200)
        n503 = statuses.count(503)
        print("# %s: %d requests from %d clients in %.1f s: %d x 200, %d x 503; "
              "p50 %.0f ms, p99 %.0f ms; RSS %.0f -> peak %.0f MB"
              % (phase, len(statuses), CLIENTS, wall, n200, n503, 1000 * pct(lat, 50),
                 1000 * pct(lat, 99), base, peak))
        is_eq(len(statuses), CLIENTS * per_client, "%s: every request answered" % phase)
        ok(not bad, "%s: no answer other than 200 or 503 busy + Retry-After" % phase, bad[:5])
        if phase == "normal":
            is_eq(n200, len(statuses), "normal: every search -> 200")
        else:
            ok(n503 > 0 and n200 > 0, "overload: some 503 busy, some 200 (%d / %d)" % (n503, n200))
        ok(peak - base < RSS_BOUND_MB, "%s: RSS growth %.0f MB < %d MB"
           % (phase, peak - base, RSS_BOUND_MB))
        rr, _ = srv.request("GET", "/readyz")
        is_eq(rr.status, 200, "%s: still ready after the load" % phase)
        rc, _ = srv.stop()
        is_eq(rc, 0, "%s: clean shutdown" % phase)
    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
