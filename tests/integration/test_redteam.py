#!/usr/bin/env python3
"""Regression tests of the faults a red-team run found (one block each, in
the order of the report): the job runner under bursts of jobs (a
use-after-free), the k / qe_k limits, a chunked body over the limit, request
smuggling with two Content-Lengths or Content-Length + chunked, NUL and
control characters in the path, log injection, manifests that reveal what
exists outside ingest.roots, a job whose listing fails, a FIFO in a manifest,
and DELETE /v1/images/{id} -> 204. Starts the real `imago serve`. Prints TAP.

usage: test_redteam.py path/to/imago
"""
import json
import os
import socket
import sys
import tempfile
import time

import imago_testlib as hc
from imago_testlib import (Server, check_error, is_eq, jget, ok, raw_exchange, status_of,
                           wait_job)


def submit(srv, body, headers):
    r, data = srv.request("POST", "/v1/admin/jobs", json.dumps(body).encode(), headers)
    if r.status != 202:
        return None, r.status, data
    return json.loads(data)["job_id"], r.status, data


def read_until_close(sock, timeout=5):
    """Everything the server sends until it closes the connection (or timeout)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got, True
            got += chunk
    except socket.timeout:
        return got, False
    except ConnectionResetError:
        return got, True


def answers(srv, req):
    """Sends req on a new connection: (first status, number of answers, closed by the server)."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(req)
    got, closed = read_until_close(s)
    s.close()
    return status_of(got), got.count(b"HTTP/1.1 "), closed


def main():
    why = hc.cannot_run()
    if why:
        print("1..0 # SKIP " + why)
        return 0
    imago = sys.argv[1]
    photos = hc.shared_photos()
    tmp = tempfile.mkdtemp(prefix="imago-redteam-")
    root = os.path.join(tmp, "root")
    outside = os.path.join(tmp, "outside")
    os.makedirs(root)
    os.makedirs(outside)
    names = hc.copy_photos(photos, root)[:4]
    secret = os.path.join(outside, "secret.jpg")
    with open(secret, "wb") as f:
        f.write(open(os.path.join(root, names[0]), "rb").read())
    tok = "redteam-admin-token"
    A = {"Authorization": "Bearer " + tok}
    J = dict(A, **{"Content-Type": "application/json"})
    srv = Server(imago, os.path.join(tmp, "data"),
                 ["--auth.admin-token", tok, "--ingest.roots", root, "--ingest.parallelism", "2"])
    r, data = srv.wait_ready()
    ok(r.status == 200, "server ready", data)

    # ---- 1. a burst of small jobs with ingest.parallelism 2 (use-after-free
    # in runner_main; an empty folder made UBSan see qsort(NULL, 0)) ----
    small = []
    for i in range(6):
        d = os.path.join(root, "burst%d" % i)
        os.makedirs(d)
        if i % 3:
            with open(os.path.join(d, "a.jpg"), "wb") as f:
                f.write(open(os.path.join(root, names[i % len(names)]), "rb").read())
        small.append(d)
    jids = []
    for i in range(30):
        jid, status, data = submit(srv, {"source": {"dir": small[i % len(small)]}}, J)
        if jid is None:
            ok(False, "burst job %d accepted" % i, "%d %s" % (status, data[:200]))
            break
        jids.append(jid)
        time.sleep(0.25 if i % 5 == 0 else 0.02)
    states = [wait_job(srv, jid, A).get("state") for jid in jids]
    is_eq(states.count("done"), 30, "30 burst jobs (empty folders among them) all end done")
    ok(srv.proc.poll() is None, "the server survived the burst")
    code, _ = jget(srv, "/healthz")
    is_eq(code, 200, "healthz after the burst")

    # ---- 2. the documented limits of k and qe_k are the enforced ones ----
    img = open(os.path.join(root, names[0]), "rb").read()
    IMG = {"Content-Type": "image/jpeg"}
    r, data = srv.request("POST", "/v1/search?k=1000&qe=true&qe_k=100", img, IMG)
    is_eq(r.status, 200, "k=1000 with qe_k=100 (the contract's maxima) -> 200")
    r, data = srv.request("POST", "/v1/search?k=5&qe=true&qe_k=65", img, IMG)
    is_eq(r.status, 200, "qe_k=65 -> 200 (was refused by the index's own cap of 64)")
    check_error(srv, "POST", "/v1/search?k=1001", 400, "invalid_parameter", "k=1001",
                img, IMG)
    check_error(srv, "POST", "/v1/search?qe_k=101", 400, "invalid_parameter", "qe_k=101",
                img, IMG)

    # ---- 3. a chunked body over the limit stops being read (64 KiB limit) ----
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    sent, refused = 0, False
    part = b"\xff" * 16384
    try:
        while sent < (8 << 20):  # far more than the limit: the server must stop first
            s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            sent += len(part)
    except (BrokenPipeError, ConnectionResetError):
        refused = True
    got, closed = read_until_close(s)
    s.close()
    ok(refused or closed, "chunked body over the limit: connection closed before 8 MiB was read",
       "sent %d bytes" % sent)
    ok(status_of(got) in (413, None) and (status_of(got) == 413 or refused),
       "chunked body over the limit: 413 (or a reset while still sending)", got[:200])
    ok(sent < (8 << 20), "the server stopped reading after %d bytes" % sent)

    # ---- 4. request smuggling: two Content-Lengths, Content-Length + chunked ----
    smuggled = b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"{}" + smuggled
    req = (b"POST /v1/admin/reindex HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           b"Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: %d\r\n\r\n"
           % (tok.encode(), len(body))) + body
    is_eq(answers(srv, req), (400, 1, True),
          "two Content-Lengths -> one 400 and the connection closes (no smuggled request)")
    req = (b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
           b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") + smuggled
    is_eq(answers(srv, req), (400, 1, True),
          "Content-Length with chunked -> one 400 and the connection closes")
    raw = raw_exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n")
    is_eq(status_of(raw), 400, "a Content-Length that is not a number -> 400")

    # ---- 5. NUL and control characters in the path ----
    check_error(srv, "GET", "/v1/images/1%00junk", 400, "invalid_request", "%00 in an image path")
    check_error(srv, "GET", "/static/app.js%00.png", 400, "invalid_request", "%00 in a static path")
    check_error(srv, "GET", "/v1/info%0d", 400, "invalid_request", "%0d in a path")
    r, data = srv.request("POST", "/v1/search?k=3&filter=%7B%0A%7D", img, IMG)
    is_eq(r.status, 200, "a control character in the query string (not the path) is fine")

    # ---- 6. log injection: %0a in the path writes no line of its own ----
    forged = "FORGED-LINE-%d" % os.getpid()
    srv.request("GET", "/nope%0a" + forged + "%20200")
    time.sleep(0.3)
    lines = [l for l in "".join(srv.log).splitlines() if forged in l]
    ok(len(lines) == 1 and not lines[0].startswith(forged) and "\\x0a" in lines[0],
       "a %0a in the path is escaped in the access log", lines)

    # ---- 7. manifest items outside ingest.roots: same answer, existing or not ----
    man = os.path.join(root, "probe.jsonl")
    with open(man, "w") as f:
        f.write(json.dumps({"path": secret}) + "\n")
        f.write(json.dumps({"path": os.path.join(outside, "nothere.jpg")}) + "\n")
        f.write(json.dumps({"path": os.path.join(root, "burst0", "..", "..", "outside",
                                                 "secret.jpg")}) + "\n")
        f.write(json.dumps({"path": os.path.join(root, "missing.jpg")}) + "\n")
    jid, status, data = submit(srv, {"source": {"manifest": man}}, J)
    st = wait_job(srv, jid, A) if jid else {}
    errs = {e["path"]: e for e in st.get("errors", [])}
    e1 = errs.get(secret, {})
    e2 = errs.get(os.path.join(outside, "nothere.jpg"), {})
    e3 = errs.get(os.path.join(root, "burst0", "..", "..", "outside", "secret.jpg"), {})
    is_eq((st.get("state"), st.get("failed")), ("done", 4), "probe manifest: 4 items failed")
    ok(e1.get("code") == e2.get("code") == e3.get("code") and e1.get("code") is not None,
       "an existing and a missing file outside the roots get the same error code",
       (e1, e2, e3))
    ok(e1.get("message", "").replace(secret, "P") == e2.get("message", "x").replace(
        os.path.join(outside, "nothere.jpg"), "P"),
       "... and the same message but for the path", (e1, e2))
    is_eq(errs.get(os.path.join(root, "missing.jpg"), {}).get("code"), "not_found",
          "a missing file inside the roots -> not_found")

    # ---- 8. a job whose listing fails ends failed, with the reason ----
    bad = os.path.join(root, "bad.jsonl")
    with open(bad, "w") as f:
        f.write("this is not json\n")
    jid, status, data = submit(srv, {"source": {"manifest": bad}}, J)
    st = wait_job(srv, jid, A, 30) if jid else {}
    is_eq(st.get("state"), "failed", "a non-JSON manifest: the job ends failed")
    ok(st.get("error") and st.get("errors") and "line 1" in st["errors"][0]["message"],
       "... with the reason in its errors", st)
    huge = os.path.join(root, "huge.jsonl")
    with open(huge, "w") as f:
        f.write('{"path": "' + "a" * (10 << 20) + '"}\n')
    jid2, status, data = submit(srv, {"source": {"manifest": huge}}, J)
    st2 = wait_job(srv, jid2, A, 30) if jid2 else {}
    is_eq(st2.get("state"), "failed", "a 10 MB manifest line: the job ends failed")
    ok("longer than" in (st2.get("error") or ""), "... saying the line is too long", st2)

    # ---- 9. a FIFO in a manifest does not block an ingest thread ----
    fifo = os.path.join(root, "pipe.jpg")
    os.mkfifo(fifo)
    man2 = os.path.join(root, "fifo.jsonl")
    with open(man2, "w") as f:
        f.write(json.dumps({"path": fifo}) + "\n")
        f.write(json.dumps({"path": names[1]}) + "\n")
    jid, status, data = submit(srv, {"source": {"manifest": man2}}, J)
    st = wait_job(srv, jid, A, 30) if jid else {}
    is_eq((st.get("state"), st.get("done"), st.get("failed")), ("done", 1, 1),
          "a FIFO in a manifest fails its item, the job completes")
    fe = [e for e in st.get("errors", []) if e["path"] == fifo]
    ok(fe and "not a regular file" in fe[0]["message"], "... as not a regular file", fe)

    # ---- 10. DELETE /v1/images/{id} -> 204 with no body ----
    r, data = srv.request("POST", "/v1/search?k=1", open(os.path.join(root, names[1]), "rb").read(),
                          IMG)
    hit = json.loads(data)["results"][0]["id"] if r.status == 200 else None
    r, data = srv.request("DELETE", "/v1/images/%d" % (hit or 0), None, A)
    is_eq((r.status, data), (204, b""), "DELETE /v1/images/{id} -> 204, no body")

    ok(srv.proc.poll() is None, "the server is still up after all of it")
    rc, log = srv.stop()
    is_eq(rc, 0, "clean shutdown")
    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
