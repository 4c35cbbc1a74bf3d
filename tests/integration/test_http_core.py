#!/usr/bin/env python3
"""Integration test of the HTTP core: starts the real `imago serve` on port 0
(the port is read back from the log), then checks health/readiness/info,
404/405, auth (401 vs 403), body limits (413, early and chunked), content
types (415), parameter and body validation (400 with exact codes), metrics,
keep-alive, the generated admin token, and the graceful shutdown (a request
in flight at SIGTERM still gets its answer). Prints TAP.

usage: test_http_core.py path/to/imago
"""
import http.client
import json
import os
import re
import threading
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time

import imago_testlib as hc
from imago_testlib import (Server, check_error, err_code, err_msg, is_eq, multipart, ok,
                           raw_exchange, status_of)


def main():
    if len(sys.argv) < 2:
        print("1..0 # SKIP usage: test_http_core.py IMAGO")
        return 77
    imago = sys.argv[1]
    photos = hc.shared_photos()
    jpeg = None
    p = None
    if os.path.isdir(photos):
        for name in sorted(os.listdir(photos)):
            if name.lower().endswith(".jpg"):
                p = os.path.join(photos, name)
                if os.path.getsize(p) < 60 * 1024:
                    jpeg = open(p, "rb").read()
                    break
    tmp = tempfile.mkdtemp(prefix="imago_it_")
    jpeg_path = p if jpeg is not None else None
    if jpeg is None:  # no shared photos: a synthetic photo-like JPEG
        try:
            from PIL import Image
            img = Image.effect_mandelbrot((320, 240), (-2, -1.2, 1, 1.2), 64).convert("RGB")
            jpeg_path = os.path.join(tmp, "synthetic.jpg")
            img.save(jpeg_path, quality=90)
            jpeg = open(jpeg_path, "rb").read()
        except Exception:
            print("1..0 # SKIP no photo in $IMAGO_SHARED/data/photos and no PIL to make one")
            return 77
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    gif = b"GIF89a" + b"\x00" * 32

    ADM, SRCH = "adm-token-123", "search-token-456"
    srv = Server(imago, os.path.join(tmp, "data"),
                 ["--auth.admin-token", ADM, "--auth.search-token", SRCH])
    ok(srv.port > 0, "port 0 -> the real port is logged (%d)" % srv.port)
    A = {"Authorization": "Bearer " + ADM}
    S = {"Authorization": "Bearer " + SRCH}

    # ---- probes, info ----
    r, data = srv.request("GET", "/healthz")
    is_eq((r.status, json.loads(data)), (200, {"status": "ok"}), "GET /healthz -> 200 ok")
    r, data = srv.request("HEAD", "/healthz")
    is_eq((r.status, data), (200, b""), "HEAD /healthz -> 200 without a body")
    r, data = srv.request("GET", "/readyz")
    ok((r.status == 503 and err_code(data) == "not_ready" and err_msg(data) == "the model is loading"
        and r.getheader("Retry-After") == "1") or r.status == 200,
       "GET /readyz while loading -> 503 not_ready 'the model is loading' + Retry-After (or 200)",
       "%d %s" % (r.status, data))
    r, data = srv.wait_ready()
    is_eq((r.status, json.loads(data)), (200, {"status": "ready", "model": "loaded",
                                              "index": "ready"}),
          "GET /readyz -> 200 once the model is loaded")
    r, data = srv.request("GET", "/v1/info")
    info = json.loads(data) if r.status == 200 else {}
    ver = subprocess.run([imago, "version"], capture_output=True, text=True).stdout.split()[1]
    model = info.get("model") or {}
    is_eq((r.status, info.get("version"), info.get("ready"), model.get("name"), model.get("dim"),
           model.get("demo"), (info.get("backend") or {}).get("name")),
          (200, ver, True, "demo-resnet50-gem", 2048, True, "cpu"),
          "GET /v1/info -> version, ready, demo model, dim, backend")
    check_error(srv, "GET", "/v1/info?x=1", 400, "invalid_parameter", "GET /v1/info?x=1",
                msg_prefix="x: unknown parameter")

    # ---- 404 / 405 ----
    check_error(srv, "GET", "/v1/nope", 404, "not_found", "GET /v1/nope")
    check_error(srv, "GET", "/nope", 404, "not_found", "GET /nope")
    r, data = srv.request("GET", "/")
    is_eq((r.status, r.getheader("Content-Type"), data[:15]),
          (200, "text/html; charset=utf-8", b"<!doctype html>"), "GET / -> 200 the web page")
    r, data = check_error(srv, "PUT", "/v1/images/3", 405, "method_not_allowed", "PUT /v1/images/3")
    is_eq(r.getheader("Allow"), "GET, HEAD, DELETE", "405 carries Allow")
    check_error(srv, "GET", "/v1/search", 405, "method_not_allowed", "GET /v1/search")

    # keep-alive survives an error answer on a body-less request
    c = srv.conn()
    c.request("GET", "/v1/nope")
    r1 = c.getresponse(); hc.check_response("GET", "/v1/nope", r1, r1.read())
    c.request("GET", "/healthz")
    r2 = c.getresponse(); hc.check_response("GET", "/healthz", r2, r2.read())
    is_eq((r1.status, r2.status), (404, 200), "404 then 200 on one keep-alive connection")
    c.close()

    # ---- auth ----
    body, mh = multipart([("image", jpeg, "image/jpeg", "q.jpg")])
    r, _ = check_error(srv, "POST", "/v1/search", 401, "unauthorized", "search without a token",
                       body, mh)
    ok((r.getheader("WWW-Authenticate") or "").startswith("Bearer"), "401 carries WWW-Authenticate: Bearer")
    check_error(srv, "POST", "/v1/search", 401, "unauthorized", "search with a wrong token", body,
                dict(mh, Authorization="Bearer nope"))
    check_error(srv, "POST", "/v1/search", 401, "unauthorized", "search with Basic auth", body,
                dict(mh, Authorization="Basic YTpi"))
    r, data = srv.request("POST", "/v1/search", body, dict(mh, **S))
    is_eq((r.status, (json.loads(data) if r.status == 200 else {}).get("results")), (200, []),
          "search with the search token on the empty index -> 200, no results")
    r, data = srv.request("POST", "/v1/search", body, dict(mh, **A))
    is_eq(r.status, 200, "search with the admin token -> 200")
    check_error(srv, "POST", "/v1/images", 403, "forbidden", "add image with the search token",
                body, dict(mh, **S))
    check_error(srv, "POST", "/v1/images", 401, "unauthorized", "add image without a token", body, mh)
    check_error(srv, "DELETE", "/v1/images/5", 403, "forbidden", "delete with the search token",
                None, S)
    check_error(srv, "GET", "/v1/admin/jobs/1", 401, "unauthorized", "job status without a token")
    check_error(srv, "GET", "/v1/images/5", 401, "unauthorized", "image metadata without a token")
    check_error(srv, "GET", "/v1/images/5", 404, "not_found", "image metadata with the search token",
                None, S)

    # ---- 413 ----
    head = ("POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" % SRCH).encode()
    raw = raw_exchange(srv.port, head)
    is_eq((status_of(raw), err_code(raw.partition(b"\r\n\r\n")[2])), (413, "payload_too_large"),
          "Content-Length over server.max_body_bytes -> 413 before the body is sent")
    big = b"x" * (70 * 1024)
    chunked = head.replace(b"Content-Length: 100000", b"Transfer-Encoding: chunked")
    for i in range(0, len(big), 8192):
        part = big[i:i + 8192]
        chunked += b"%x\r\n" % len(part) + part + b"\r\n"
    chunked += b"0\r\n\r\n"
    raw = raw_exchange(srv.port, chunked)
    is_eq((status_of(raw), err_code(raw.partition(b"\r\n\r\n")[2])), (413, "payload_too_large"),
          "chunked body over the limit -> 413")
    raw = raw_exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    is_eq((status_of(raw), err_code(raw.partition(b"\r\n\r\n")[2])), (413, "payload_too_large"),
          "GET with a body -> 413")
    raw = raw_exchange(srv.port, ("POST /v1/admin/jobs HTTP/1.1\r\nHost: x\r\n"
                                  "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                  "Content-Length: %d\r\n\r\n{" % (ADM, (1 << 20) + 2)).encode())
    is_eq((status_of(raw), err_code(raw.partition(b"\r\n\r\n")[2])), (413, "payload_too_large"),
          "JSON body over 1 MiB -> 413")

    # ---- 415 ----
    check_error(srv, "POST", "/v1/search", 415, "unsupported_media_type", "text/plain body",
                b"hello", dict(S, **{"Content-Type": "text/plain"}))
    check_error(srv, "POST", "/v1/search", 415, "unsupported_media_type", "no Content-Type",
                jpeg, dict(S, **{"Content-Type": ""}))
    check_error(srv, "POST", "/v1/admin/jobs", 415, "unsupported_media_type",
                "job with an image Content-Type", b"{}", dict(A, **{"Content-Type": "image/jpeg"}))
    b2, h2 = multipart([("image", gif, "image/gif", "a.gif")])
    check_error(srv, "POST", "/v1/search", 415, "unsupported_media_type", "multipart image/gif part",
                b2, dict(h2, **S))
    check_error(srv, "POST", "/v1/search", 415, "unsupported_media_type", "octet-stream GIF bytes",
                gif, dict(S, **{"Content-Type": "application/octet-stream"}))

    # ---- 400 ----
    def search(qs, body, headers, status, code, name, prefix=None):
        check_error(srv, "POST", "/v1/search" + qs, status, code, name, body, dict(headers, **S),
                    msg_prefix=prefix)

    search("?k=0", body, mh, 400, "invalid_parameter", "k=0", "k:")
    search("?k=1001", body, mh, 400, "invalid_parameter", "k=1001", "k:")
    search("?k=5&k=6", body, mh, 400, "invalid_parameter", "k twice", "k: given more than once")
    search("?bbox=3,2,1,4", body, mh, 400, "invalid_parameter", "bbox with x1 > x2", "bbox:")
    search("?foo=1", body, mh, 400, "invalid_parameter", "unknown query parameter",
           "foo: unknown parameter")
    search("?filter=%7Bbad", body, mh, 400, "invalid_json", "filter not JSON", "filter:")
    search("?filter=%5B1%5D", body, mh, 400, "invalid_parameter", "filter not an object", "filter:")
    b3, h3 = multipart([("k", b"7"), ("image", jpeg, "image/jpeg")])
    search("?k=5", b3, h3, 400, "invalid_parameter", "k in query and multipart", "k: given more")
    b3, h3 = multipart([("qe", b"maybe"), ("image", jpeg, "image/jpeg")])
    search("", b3, h3, 400, "invalid_parameter", "multipart field qe=maybe", "qe:")
    b3, h3 = multipart([("color", b"red"), ("image", jpeg, "image/jpeg")])
    search("", b3, h3, 400, "invalid_parameter", "unknown multipart field", "color: unknown")
    b3, h3 = multipart([("k", b"3")])
    search("", b3, h3, 400, "invalid_parameter", "multipart without an image field", "image:")
    b3, h3 = multipart([("image", jpeg), ("image", jpeg)])
    search("", b3, h3, 400, "invalid_parameter", "two image fields", "image:")
    search("", body[:-10], mh, 400, "invalid_request", "multipart without the final boundary",
           "multipart:")
    search("", b"--x\r\n\r\n--x--", {"Content-Type": "multipart/form-data"}, 400, "invalid_request",
           "multipart Content-Type without boundary", "Content-Type:")
    search("", b"garbage", {"Content-Type": "image/jpeg"}, 400, "invalid_image",
           "image/jpeg body that is not a JPEG", "image:")
    search("", b"", {"Content-Type": "image/png"}, 400, "invalid_image", "empty image body", "image:")
    search("?k=3&bbox=0,0,10,10&qe=true&qe_k=2&qe_alpha=1&with_metadata=false&"
           "filter=%7B%22a%22%3A1%7D", png, {"Content-Type": "image/png"}, 400, "invalid_image",
           "all parameters valid, a PNG signature without an image -> invalid_image")
    # ---- /v1/extract on the engine (deferred through the batcher) ----
    r, data = srv.request("POST", "/v1/extract", body, dict(mh, **S))
    got = json.loads(data) if r.status == 200 else {}
    is_eq((r.status, got.get("dim"), len(got.get("descriptor") or [])), (200, 2048, 2048),
          "POST /v1/extract (multipart JPEG) -> 200 with 2048 floats")
    desc = got.get("descriptor") or [0.0]
    norm = sum(x * x for x in desc) ** 0.5
    ok(abs(norm - 1) < 1e-5, "descriptor is L2-normalised (norm %.7f)" % norm)
    if jpeg_path:
        cli = subprocess.run([imago, "extract", jpeg_path, "--demo", "resnet50-gem",
                              "--max-side", "128", "--scales", "1"], capture_output=True, text=True)
        ref = json.loads(cli.stdout.splitlines()[0])["descriptor"] if cli.returncode == 0 else []
        diff = max((abs(a - b) for a, b in zip(desc, ref)), default=1.0) if len(ref) == len(desc) else 1.0
        ok(diff <= 1e-6, "server descriptor equals `imago extract` (max abs diff %.3g)" % diff)
    r, data = srv.request("POST", "/v1/extract?bbox=0,0,40,40", jpeg, dict(S, **{"Content-Type": "image/jpeg"}))
    crop = json.loads(data).get("descriptor", []) if r.status == 200 else []
    ok(r.status == 200 and len(crop) == 2048 and max(abs(a - b) for a, b in zip(crop, desc)) > 1e-3,
       "raw JPEG with bbox -> 200, a different descriptor than the full image")
    check_error(srv, "POST", "/v1/extract", 400, "invalid_image", "truncated JPEG",
                jpeg[:len(jpeg) // 3], dict(S, **{"Content-Type": "image/jpeg"}), msg_prefix="image:")
    check_error(srv, "POST", "/v1/extract?k=0", 400, "invalid_parameter", "extract with k=0",
                jpeg, dict(S, **{"Content-Type": "image/jpeg"}), msg_prefix="k:")
    results = [None] * 4

    def one_extract(i):
        try:
            rr, dd = srv.request("POST", "/v1/extract", jpeg, dict(S, **{"Content-Type": "image/jpeg"}))
            results[i] = (rr.status, json.loads(dd).get("descriptor"))
        except Exception as e:  # reported by the check below
            results[i] = (None, str(e))
    threads = [threading.Thread(target=one_extract, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok(all(res and res[0] == 200 and res[1] == desc for res in results),
       "4 concurrent extracts (suspended connections) -> 4 x 200, identical descriptors",
       [(res[0] if res else None) for res in results])
    b4, h4 = multipart([("external_id", b"ext-1"), ("metadata", b'{"title":"x"}'),
                        ("image", jpeg, "image/jpeg", "a.jpg")])
    r, data = srv.request("POST", "/v1/images", b4, dict(h4, **A))
    is_eq((r.status, (json.loads(data) if r.status == 201 else {}).get("external_id")),
          (201, "ext-1"), "valid add-image -> 201")
    b4, h4 = multipart([("metadata", b"[1,2]"), ("image", jpeg, "image/jpeg")])
    check_error(srv, "POST", "/v1/images", 400, "invalid_parameter", "metadata not an object",
                b4, dict(h4, **A), msg_prefix="metadata:")
    b4, h4 = multipart([("k", b"5"), ("image", jpeg, "image/jpeg")])
    check_error(srv, "POST", "/v1/images", 400, "invalid_parameter", "search parameter on add-image",
                b4, dict(h4, **A), msg_prefix="k: unknown")
    check_error(srv, "GET", "/v1/images/abc", 400, "invalid_parameter", "non-numeric image id",
                None, S, msg_prefix="id:")
    check_error(srv, "GET", "/v1/images/0", 400, "invalid_parameter", "image id 0", None, S)
    check_error(srv, "GET", "/v1/images/12/thumbnail", 404, "not_found", "thumbnail of an unknown id",
                None, S)
    J = dict(A, **{"Content-Type": "application/json"})
    check_error(srv, "POST", "/v1/admin/jobs", 400, "invalid_json", "job body not JSON", b"{", J)
    check_error(srv, "POST", "/v1/admin/jobs", 400, "invalid_json", "empty job body", b"", J)
    check_error(srv, "POST", "/v1/admin/jobs", 400, "invalid_parameter", "job without a source",
                b"{}", J, msg_prefix="source:")
    check_error(srv, "POST", "/v1/admin/jobs", 400, "invalid_parameter", "job with an unknown field",
                b'{"source":{"dir":"/d","depth":2}}', J, msg_prefix="source.depth:")
    check_error(srv, "POST", "/v1/admin/jobs", 403, "forbidden", "valid job body, no ingest.roots",
                b'{"source":{"dir":"/d","recursive":true}}', J)
    r, data = srv.request("POST", "/v1/admin/reindex", None, A)
    is_eq(r.status, 202, "reindex with no body -> 202")
    check_error(srv, "POST", "/v1/admin/reindex", 400, "invalid_parameter", "reindex bad dba",
                b'{"dba":"yes"}', J, msg_prefix="dba:")
    check_error(srv, "GET", "/v1/admin/jobs/x1", 400, "invalid_parameter", "bad job id", None, A)

    # ---- metrics ----
    r, data = srv.request("GET", "/metrics")
    text = data.decode()
    is_eq((r.status, (r.getheader("Content-Type") or "").split(";")[0]), (200, "text/plain"),
          "GET /metrics -> 200 text/plain")
    ok('imago_http_requests_total{route="/healthz",method="GET",status="200"} 2\n' in text,
       "healthz GET 200 counted exactly twice", text[:2000])
    ok('imago_http_requests_total{route="/healthz",method="HEAD",status="200"} 1\n' in text,
       "healthz HEAD counted once")
    ok('imago_http_requests_total{route="/v1/search",method="POST",status="401"} 3\n' in text,
       "three 401s on /v1/search")
    ok('imago_http_requests_total{route="unmatched",method="GET",status="404"} 3\n' in text,
       "three unmatched 404s")
    ok(re.search(r'imago_http_request_duration_seconds_bucket\{route="/v1/search",method="POST",'
                 r'status="200",le="\+Inf"\} \d+', text) is not None, "latency histogram by route")

    # ---- graceful shutdown with a request in flight ----
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    payload = jpeg
    s.sendall(("POST /v1/extract HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (SRCH, len(payload))
               ).encode() + payload[:50])
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    ok(srv.proc.poll() is None, "server waits for the request in flight after SIGTERM")
    s.sendall(payload[50:])
    got = b""
    try:
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    s.close()
    is_eq(status_of(got), 200 if jpeg_path else 400,
          "the in-flight extract is answered during the drain")
    rc, log = srv.stop(signal.SIGTERM)
    is_eq(rc, 0, "exit status 0 after SIGTERM")
    ok("stopped" in log, "log says stopped")
    ok(re.search(r"http: GET /healthz 200 - in=0 out=15 [0-9.]+ms route=/healthz client=127\.0\.0\.1",
                 log) is not None, "access log line for GET /healthz", log[-1500:])
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        ok(False, "port closed after shutdown")
    except OSError:
        ok(True, "port closed after shutdown")

    # ---- generated admin token ----
    data2 = os.path.join(tmp, "data2")
    srv2 = Server(imago, data2, ["--engine.queue-depth", "1", "--engine.max-batch", "1"])
    tokfile = os.path.join(data2, "admin.token")
    ok(os.path.exists(tokfile) and stat.S_IMODE(os.stat(tokfile).st_mode) == 0o600,
       "admin token generated with mode 0600")
    tok = open(tokfile).read().strip() if os.path.exists(tokfile) else ""
    ok(any(tok in line for line in srv2.log) and len(tok) == 64, "the generated token is logged once")
    check_error(srv2, "POST", "/v1/admin/reindex", 503, "not_ready", "generated token works", None,
                {"Authorization": "Bearer " + tok})
    check_error(srv2, "POST", "/v1/admin/reindex", 401, "unauthorized", "other tokens do not", None,
                {"Authorization": "Bearer " + "0" * 64})
    r, _ = srv2.request("POST", "/v1/search", jpeg, {"Content-Type": "image/jpeg"})
    is_eq(r.status, 503, "search is open without a search token (503 not_ready, not 401)")
    if jpeg_path:
        srv2.wait_ready()
        over = [None] * 8

        def burst(i):
            try:
                rr, dd = srv2.request("POST", "/v1/extract", jpeg, {"Content-Type": "image/jpeg"})
                over[i] = (rr.status, err_code(dd) if rr.status != 200 else "ok",
                           rr.getheader("Retry-After"))
            except Exception as e:
                over[i] = (None, str(e), None)
        threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        okays = sum(1 for o in over if o and o[0] == 200)
        busy = sum(1 for o in over if o and o[0] == 503 and o[1] == "busy" and o[2] == "1")
        ok(okays >= 1 and okays + busy == 8,
           "overload (queue_depth 1, 8 at once): every request is 200 or 503 busy + Retry-After "
           "(%d ok, %d busy)" % (okays, busy), over)
    rc, log2 = srv2.stop(signal.SIGINT)
    ok(rc == 0, "exit status 0 after SIGINT", "rc %r\n%s" % (rc, log2[-1500:]))
    srv3 = Server(imago, data2, ["--server.cors-origin", "https://example.org",
                                 "--engine.max-pixels", "1000"])
    ok(not any(tok in line for line in srv3.log), "second start reuses the token without printing it")
    r, _ = check_error(srv3, "POST", "/v1/admin/reindex", 503, "not_ready",
                       "same token after a restart", None, {"Authorization": "Bearer " + tok})
    is_eq(r.getheader("Access-Control-Allow-Origin"), "https://example.org",
          "CORS origin on an error answer")
    r, data = srv3.request("OPTIONS", "/v1/search", None,
                           {"Origin": "https://example.org",
                            "Access-Control-Request-Method": "POST"})
    is_eq((r.status, r.getheader("Access-Control-Allow-Origin"),
           "Authorization" in (r.getheader("Access-Control-Allow-Headers") or "")),
          (204, "https://example.org", True), "CORS preflight -> 204 with the allowed headers")
    if jpeg_path:
        srv3.wait_ready()
        check_error(srv3, "POST", "/v1/extract", 413, "image_too_large",
                    "image over engine.max_pixels", jpeg,
                    {"Content-Type": "image/jpeg"})
    srv3.stop()

    # ---- TLS (libmicrohttpd + GnuTLS), with a throwaway self-signed certificate ----
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    gen = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                          "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                         capture_output=True) if shutil.which("openssl") else None
    if gen is None or gen.returncode != 0:
        print("ok %d - # SKIP openssl not available to make a test certificate" % (hc.N + 1))
        hc.N += 1
    else:
        srv4 = Server(imago, data2, ["--server.tls-cert", cert, "--server.tls-key", key],
                      scheme="https")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", srv4.port, timeout=10, context=ctx)
        c.request("GET", "/healthz")
        r = c.getresponse()
        data = r.read()
        hc.check_response("GET", "/healthz", r, data)
        is_eq((r.status, data), (200, b'{"status":"ok"}'), "GET /healthz over TLS")
        c.close()
        srv4.stop()

    # ---- port in use ----
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    bport = busy.getsockname()[1]
    p = subprocess.run([imago, "serve", "--port", str(bport), "--server.listen", "127.0.0.1",
                        "--index.data-dir", data2], capture_output=True, text=True, timeout=20)
    busy.close()
    ok(p.returncode == 1 and "cannot listen" in p.stderr, "port in use -> exit 1 with a message",
       p.stderr[-500:])

    return hc.done(tmp)


if __name__ == "__main__":
    hc.run(main)
