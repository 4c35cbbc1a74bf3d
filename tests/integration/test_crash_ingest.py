#!/usr/bin/env python3
"""Crash test: kill -9 of `imago serve` in the middle of a bulk ingest job,
then a restart on the same data dir. Checks that every acknowledged write
survives (an image added with POST /v1/images before the kill, the job items
counted done before the kill), that the interrupted job resumes by itself and
completes with the right counts, with no image indexed twice, and that every
photo is searchable afterwards. Bounded: 36 photos at 128 px. Prints TAP.

usage: test_crash_ingest.py path/to/imago
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_testlib as hc  # noqa: E402

from imago_testlib import ok, is_eq, jget  # noqa: E402

ADM = "adm-crash"
A = {"Authorization": "Bearer " + ADM}
J = dict(A, **{"Content-Type": "application/json"})


def main():
    why = hc.cannot_run()
    if why:
        print("1..0 # SKIP " + why)
        return 0
    imago = sys.argv[1]
    tmp, root, names = hc.photo_tree("imago_crash_")
    data_dir = os.path.join(tmp, "data")
    # one runner thread: the job takes long enough to be killed in the middle
    common = ["--auth.admin-token", ADM, "--ingest.roots", root, "--ingest.parallelism", "1",
              "--server.max-body-bytes", "4MiB"]
    srv = hc.Server(imago, data_dir, common)
    r, _ = srv.wait_ready()
    is_eq(r.status, 200, "server ready")

    # an acknowledged single add before the job
    one = open(os.path.join(root, names[0]), "rb").read()
    b, mh = hc.multipart([("external_id", b"acked-1"), ("image", one, "image/jpeg", "a.jpg")])
    r, data = srv.request("POST", "/v1/images", b, dict(mh, **A))
    acked_id = json.loads(data).get("id", 0) if r.status == 201 else 0
    ok(r.status == 201 and acked_id > 0, "POST /v1/images acknowledged (201)", data)

    r, data = srv.request("POST", "/v1/admin/jobs", json.dumps({"source": {"dir": root}}).encode(), J)
    jid = json.loads(data).get("job_id", 0) if r.status == 202 else 0
    ok(r.status == 202 and jid > 0, "job accepted", data)
    st = {}
    deadline = time.time() + 120
    while time.time() < deadline:
        code, st = jget(srv, "/v1/admin/jobs/%d" % jid, A)
        if st.get("done", 0) >= 5 or st.get("state") in ("done", "failed"):
            break
        time.sleep(0.02)
    done_before = st.get("done", 0)
    code, info = jget(srv, "/v1/info", A)
    size_before = info.get("index", {}).get("size", 0)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    ok(st.get("state") == "running" and 5 <= done_before < len(names),
       "killed with -9 in the middle of the job (%d of %d done)" % (done_before, len(names)), st)

    srv = hc.Server(imago, data_dir, common)
    r, _ = srv.wait_ready()
    is_eq(r.status, 200, "restart after kill -9: ready")
    code, info = jget(srv, "/v1/info", A)
    ok(info.get("index", {}).get("size", 0) >= size_before,
       "no acknowledged image lost: size %d >= %d before the kill"
       % (info.get("index", {}).get("size", 0), size_before))
    code, rec = jget(srv, "/v1/images/%d" % acked_id, A)
    is_eq((code, rec.get("external_id")), (200, "acked-1"), "the acknowledged add is there")
    st = hc.wait_job(srv, jid, A, timeout=180)
    is_eq((st.get("state"), st.get("total"), st.get("done"), st.get("failed")),
          ("done", len(names), len(names), 0), "the job resumed by itself and completed")
    ok(any("resuming job %d" % jid in line for line in srv.log), "the log says the job resumed")
    code, info = jget(srv, "/v1/info", A)
    # the job's images plus the single add (same bytes, another external id)
    is_eq(info.get("index", {}).get("size"), len(names) + 1, "no image indexed twice")
    wrong = []
    for n in names:
        img = open(os.path.join(root, n), "rb").read()
        ct = "image/png" if n.endswith(".png") else "image/jpeg"
        r, data = srv.request("POST", "/v1/search?k=2", img, dict(A, **{"Content-Type": ct}))
        res = json.loads(data).get("results", []) if r.status == 200 else []
        ids = [x["external_id"] for x in res]
        if n not in ids[:2]:
            wrong.append((n, r.status, ids))
    ok(not wrong, "every photo is searchable after the crash (itself in the top 2)", wrong)
    rc, log = srv.stop()
    is_eq(rc, 0, "clean shutdown")
    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
