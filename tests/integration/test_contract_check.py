#!/usr/bin/env python3
"""The contract check itself (imago_contract + the harness hook) must be able
to fail: known-good responses pass, and each kind of drift it exists for is
caught, naming the route, the status and the schema path. The responses come
from a stub HTTP server on port 0 (loopback) read through the harness's own
Server.request, so the hook is tested too; no imago needed. Prints TAP.

usage: test_contract_check.py
"""
import http.server
import json
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import imago_testlib as hc  # noqa: E402

from imago_testlib import ok, is_eq  # noqa: E402

ERR = {"error": {"code": "not_found", "message": "no such image"}}
INFO = {"version": "0.1.0", "ready": True, "model": None,
        "backend": {"name": "cpu", "precision": "fp32", "device": None},
        "index": {"type": "Flat", "size": 0, "seq": 0}}
JOB = {"id": 1, "kind": "ingest", "state": "done", "total": None, "done": 0, "failed": 0,
       "rate": 0.0, "eta_s": None, "created_at": 1, "updated_at": 1, "errors": []}
J = "application/json"

# path -> (status, content type, body bytes, extra headers), by method
CANNED = {
    ("GET", "/v1/info"): (200, J, INFO, {}),
    ("GET", "/v1/info?extra"): (200, J, dict(INFO, uptime_s=3), {}),
    ("GET", "/v1/info?type"): (200, J, dict(INFO, ready="yes"), {}),
    ("GET", "/v1/info?missing"): (200, J, {k: v for k, v in INFO.items() if k != "backend"}, {}),
    ("GET", "/v1/info?status"): (500, J, {"error": {"code": "internal", "message": "x"}}, {}),
    ("GET", "/v1/info?ctype"): (200, "text/plain", b"version 0.1.0", {}),
    ("GET", "/v1/info?notjson"): (200, J, b"{version", {}),
    ("GET", "/v1/admin/jobs/7"): (200, J, JOB, {}),
    ("GET", "/v1/admin/jobs/8"): (200, J, dict(JOB, state="paused"), {}),
    ("GET", "/v1/images/3"): (404, J, ERR, {}),
    ("GET", "/v1/images/4"): (404, J, {"error": {"code": "forbidden", "message": "x"}}, {}),
    ("GET", "/v1/images/5"): (404, J, {"error": {"code": "gone", "message": "x"}}, {}),
    ("DELETE", "/v1/images/3"): (204, None, b"", {}),
    ("DELETE", "/v1/images/4"): (200, J, {"id": 4, "deleted": True}, {}),
    ("GET", "/v1/nope"): (404, J, ERR, {}),
    ("GET", "/v1/nope2"): (200, J, {}, {}),
    ("PUT", "/v1/images/3"): (405, J, {"error": {"code": "method_not_allowed", "message": "x"}},
                              {"Allow": "GET, HEAD, DELETE"}),
    ("PUT", "/v1/images/4"): (405, J, {"error": {"code": "method_not_allowed", "message": "x"}}, {}),
    ("HEAD", "/healthz"): (200, J, b"", {}),
    ("GET", "/v1/nope%0aX"): (400, J, {"error": {"code": "invalid_request", "message": "x"}}, {}),
    ("GET", "/v1/images/59%00junk"): (200, J, {"id": 59}, {}),
    ("OPTIONS", "/v1/search"): (204, None, b"", {}),
    ("GET", "/v1/images/3/thumbnail"): (200, "image/jpeg", b"\xff\xd8\xff", {}),
    ("GET", "/readyz"): (503, J, {"error": {"code": "not_ready", "message": "loading"}},
                         {"Retry-After": "1"}),
    ("GET", "/readyz?noretry"): (503, J, {"error": {"code": "not_ready", "message": "x"}}, {}),
}


class Stub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        status, ctype, body, extra = CANNED[(self.command, self.path)]
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, *a):
        pass


def main():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    srv = hc.Server.__new__(hc.Server)  # the harness's request path, without an imago
    srv.port = httpd.server_address[1]

    found = []
    probe = hc._ContractCheck(report=lambda cond, name, diag=None: found.append(diag))
    real, hc.CONTRACT = hc.CONTRACT, probe
    if probe.error:  # python3-jsonschema / python3-yaml missing
        hc.CONTRACT = real
        ok(False, "contract check available", probe.error)
        return hc.done(tempfile.mkdtemp())

    def drift(method, path):
        del found[:]
        srv.request(method, path)
        return "\n".join(str(f) for f in found)

    good = [("GET", "/v1/info"), ("GET", "/v1/admin/jobs/7"), ("GET", "/v1/images/3"),
            ("DELETE", "/v1/images/3"), ("GET", "/v1/nope"), ("PUT", "/v1/images/3"),
            ("HEAD", "/healthz"), ("GET", "/v1/nope%0aX"), ("OPTIONS", "/v1/search"), ("GET", "/v1/images/3/thumbnail"),
            ("GET", "/readyz")]
    for m, p in good:
        is_eq(drift(m, p), "", "conforming: %s %s" % (m, p))

    bad = [
        ("GET", "/v1/info?extra", "GET /v1/info -> 200: Additional properties are not allowed "
         "('uptime_s' was unexpected) at $ (schema path #/components/schemas/Info/additionalProperties)",
         "undocumented field"),
        ("GET", "/v1/info?type", "'yes' is not of type 'boolean' at $.ready "
         "(schema path #/components/schemas/Info/properties/ready/type)", "wrong type"),
        ("GET", "/v1/info?missing", "'backend' is a required property at $ "
         "(schema path #/components/schemas/Info/required)", "missing required field"),
        ("GET", "/v1/info?status", "GET /v1/info -> 500: status not documented "
         "(#/paths/~1v1~1info/get/responses documents 200, 400)", "undocumented status"),
        ("GET", "/v1/info?ctype", "GET /v1/info -> 200: Content-Type 'text/plain' not in "
         "#/paths/~1v1~1info/get/responses/200/content", "undocumented content type"),
        ("GET", "/v1/info?notjson", "GET /v1/info -> 200: body is not JSON", "body not JSON"),
        ("GET", "/v1/admin/jobs/8", "'paused' is not one of ['queued', 'running', 'done', "
         "'failed', 'cancelled'] at $.state (schema path "
         "#/components/schemas/JobStatus/properties/state/enum)", "value outside an enum"),
        ("GET", "/v1/images/4", "GET /v1/images/{id} -> 404: error code forbidden belongs to "
         "status 403", "error code with another status"),
        ("GET", "/v1/images/5", "'gone' is not one of", "unknown error code"),
        ("DELETE", "/v1/images/4", "DELETE /v1/images/{id} -> 200: status not documented "
         "(#/paths/~1v1~1images~1{id}/delete/responses documents 204,", "DELETE answering 200"),
        ("GET", "/v1/nope2", "GET /v1/nope2 (no documented path) -> 200: unknown paths are 404",
         "unknown path answering 200"),
        ("PUT", "/v1/images/4", "PUT /v1/images/{id} -> 405: no Allow header", "405 without Allow"),
        ("GET", "/v1/images/59%00junk", "GET /v1/images/59%00junk (NUL or control character in "
         "the path) -> 200: such a path is 400 invalid_request on any route", "NUL path truncated"),
        ("GET", "/readyz?noretry", "GET /readyz -> 503: required header Retry-After missing "
         "(#/components/responses/Unavailable/headers/Retry-After)", "503 without Retry-After"),
    ]
    for m, p, want, name in bad:
        got = drift(m, p)
        ok(want in got, "caught: %s (%s %s)" % (name, m, p), "want %r in\n%s" % (want, got))
    is_eq((probe.checked, len(probe.drift)), (len(good) + len(bad), len(bad)),
          "every response counted, one kind of drift per bad one")
    drift("DELETE", "/v1/images/4")
    is_eq((len(found), probe.drift.get([k for k in probe.drift if "DELETE" in k][0])), (0, 2),
          "a kind of drift seen again is counted, not reported twice")
    hc.CONTRACT = real
    httpd.shutdown()
    return hc.done(tempfile.mkdtemp())


if __name__ == "__main__":
    hc.run(main)
