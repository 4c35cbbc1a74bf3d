"""The harness shared by imago's integration and load tests: TAP output (ok,
is_eq, the counters N and FAILED), the real `imago serve` on port 0 (Server;
every one started is killed at exit by run()), HTTP helpers (jget,
check_error, multipart, raw_exchange) and the end of a test (done, run).
Read the counters as imago_testlib.N / .FAILED (they change as tests run).

Every response read through Server.request (so jget and check_error too) is
checked against proto/openapi.yaml (imago_contract): an undocumented status
or a body that does not match its schema is a failing test line naming the
route, the status and the schema path, and done() adds one line summing the
check up. check_response() does the same for a response read elsewhere.
raw_exchange is left out: it speaks broken HTTP on purpose.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import imago_contract

N = 0
FAILED = 0
SERVERS = []  # every server started, killed at exit whatever happens
# the demo model, small and fast: ResNet-50 + GeM at 128 px, one scale
ENGINE = ["--engine.demo-arch", "resnet50-gem", "--engine.max-side", "128", "--engine.scales", "1"]


_LOCK = threading.RLock()  # ok() from the load test's client threads


def ok(cond, name, diag=None):
    global N, FAILED
    with _LOCK:
        N += 1
        if not cond:
            FAILED += 1
        print(("ok" if cond else "not ok") + " %d - %s" % (N, name))
        if not cond and diag is not None:
            for line in str(diag).splitlines():
                print("#   " + line)
        sys.stdout.flush()
    return cond


class _ContractCheck:
    """Counts the responses checked; each kind of drift (route, status,
    problem) fails one test line the first time, and done() sums up."""

    def __init__(self, report=None):
        self.report = report or ok  # report(False, name, diag) for each new kind
        self.contract = None
        self.error = imago_contract.MISSING
        self.checked = 0
        self.drift = {}  # problem -> times seen

    def check(self, method, path, status, headers, body):
        with _LOCK:
            if self.contract is None and self.error is None:
                try:
                    self.contract = imago_contract.Contract()
                except Exception as e:
                    self.error = "cannot load %s: %s" % (imago_contract.default_path(), e)
            if self.error is not None:
                return
            probs = self.contract.check(method, path, status, headers, body)
            self.checked += 1
            for p in probs:
                self.drift[p] = self.drift.get(p, 0) + 1
                if self.drift[p] == 1:
                    self.report(False, "contract: " + p.split(": ", 1)[0],
                       "%s\nbody: %r" % (p, body[:300]))

    def summary(self):
        if self.error is not None:
            ok(False, "contract check of the responses against proto/openapi.yaml", self.error)
        elif self.checked or SERVERS:
            seen = sum(self.drift.values())
            ok(self.checked > 0 and not self.drift,
               "contract: %d responses checked against proto/openapi.yaml, %d kinds of drift"
               % (self.checked, len(self.drift)),
               "\n".join("%dx %s" % (n, p) for p, n in sorted(self.drift.items()))
               + "\n(%d drifting responses)" % seen)


CONTRACT = _ContractCheck()


def check_response(method, path, r, data):
    """Checks one response (http.client.HTTPResponse r, its body data) of
    method + path (query included or not) against proto/openapi.yaml."""
    CONTRACT.check(method, path, r.status, r.msg, data)


def is_eq(got, want, name):
    return ok(got == want, name, "got %r, want %r" % (got, want))


class Server:
    def __init__(self, imago, datadir, extra, scheme="http"):
        args = [imago, "serve", "--port", "0", "--server.listen", "127.0.0.1",
                "--index.data-dir", datadir, "--server.threads", "2",
                "--server.max-body-bytes", "64KiB"] + ENGINE + extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=dict(os.environ, IMAGO_SERVER_LOG_FORMAT="text"))
        SERVERS.append(self.proc)
        self.log = []
        self.port = None
        # a thread drains stderr (the access log) so the pipe never fills
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        deadline = time.time() + 30
        while time.time() < deadline and self.port is None and self.proc.poll() is None:
            for line in list(self.log):
                m = re.search(scheme + r"://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.02)
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start:\n" + "".join(self.log))

    def _read(self):
        for raw in iter(self.proc.stderr.readline, b""):
            self.log.append(raw.decode("utf-8", "replace"))

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, data = self.request("GET", "/readyz")
            if r.status == 200:
                return r, data
            if "failed" in err_msg(data):
                return r, data
            time.sleep(0.1)
        return r, data

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method, path, body=None, headers=None):
        c = self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        check_response(method, path, r, data)
        return r, data

    def stop(self, sig=signal.SIGTERM, timeout=15):
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.reader.join(5)
            return None, "".join(self.log)
        self.reader.join(5)
        return self.proc.returncode, "".join(self.log)


def err_code(data):
    try:
        return json.loads(data)["error"]["code"]
    except Exception:
        return None


def err_msg(data):
    try:
        return json.loads(data)["error"]["message"]
    except Exception:
        return ""


def check_error(srv, method, path, status, code, name, body=None, headers=None, msg_prefix=None):
    r, data = srv.request(method, path, body, headers)
    good = r.status == status and err_code(data) == code
    if good and msg_prefix is not None:
        good = err_msg(data).startswith(msg_prefix)
    ok(good, "%s -> %d %s%s" % (name, status, code,
                                (" (message starts '%s')" % msg_prefix) if msg_prefix else ""),
       "got %d %s" % (r.status, data[:300]))
    return r, data


def multipart(fields, boundary="imagoTestBoundary"):
    out = b""
    for f in fields:
        name, value = f[0], f[1]
        ctype = f[2] if len(f) > 2 else None
        filename = f[3] if len(f) > 3 else None
        out += b"--" + boundary.encode() + b"\r\n"
        disp = 'Content-Disposition: form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        out += disp.encode() + b"\r\n"
        if ctype:
            out += ("Content-Type: %s\r\n" % ctype).encode()
        out += b"\r\n" + value + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, {"Content-Type": "multipart/form-data; boundary=" + boundary}


def raw_exchange(port, data, read_timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got:
                head, _, rest = got.partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", head, re.I)
                if m and len(rest) >= int(m.group(1)):
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


def status_of(raw):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def shared_photos():
    """The real photos: $IMAGO_SHARED/data/photos (../shared when unset)."""
    return os.path.join(os.environ.get("IMAGO_SHARED", "../shared"), "data", "photos")


def copy_photos(src, dst):
    """Copies the .jpg/.jpeg/.png files of folder src into dst; returns their names, sorted."""
    names = sorted(n for n in os.listdir(src)
                   if n.lower().endswith((".jpg", ".jpeg", ".png"))
                   and os.path.isfile(os.path.join(src, n)))
    for n in names:
        shutil.copy(os.path.join(src, n), os.path.join(dst, n))
    return names


def cannot_run(numpy=False, pil=False, photos=True):
    """Why this test cannot run here, or None: the IMAGO argument, the Python
    modules it needs, the shared photos. A test prints "1..0 # SKIP <why>"."""
    if len(sys.argv) < 2:
        return "usage: %s IMAGO" % os.path.basename(sys.argv[0])
    for module, wanted in (("numpy", numpy), ("PIL.Image", pil)):
        if wanted:
            try:
                __import__(module)
            except ImportError:
                return "%s has no %s" % (sys.executable, module.split(".")[0])
    if photos and not os.path.isdir(shared_photos()):
        return "no photos in %s" % shared_photos()
    return None


def photo_tree(prefix):
    """A new temp folder holding root/, a copy of the shared photos: (tmp, root, names)."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix=prefix)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    return tmp, root, copy_photos(shared_photos(), root)


def jget(srv, path, headers=None):
    """GET path; returns (status, parsed JSON body or {} when it is not JSON)."""
    r, data = srv.request("GET", path, None, headers)
    try:
        return r.status, json.loads(data)
    except Exception:
        return r.status, {}


def whiten_ref(X, dim, power):
    """numpy float64 reference of the collection-learned whitening of the rows
    of X (the raw descriptors): returns f(V) = L2N((V - m) P^T) with
    P = diag((lambda + eps)^-power) U_dim^T, eps = 1e-6 lambda_max."""
    import numpy as np
    X = np.asarray(X, dtype=np.float64)
    m = X.mean(axis=0)
    C = (X - m).T @ (X - m) / (len(X) - 1)
    lam, U = np.linalg.eigh(C)
    lam, U = lam[::-1], U[:, ::-1]
    eps = 1e-6 * lam[0]
    P = np.diag((np.maximum(lam[:dim], 0) + eps) ** -power) @ U[:, :dim].T

    def f(V):
        Y = (np.asarray(V, dtype=np.float64) - m) @ P.T
        return Y / np.linalg.norm(Y, axis=1, keepdims=True)
    return f


def extract(srv, path, headers=None):
    """The raw descriptor of an image file through POST /v1/extract."""
    img = open(path, "rb").read()
    ct = "image/png" if path.endswith(".png") else "image/jpeg"
    r, data = srv.request("POST", "/v1/extract", img, dict(headers or {}, **{"Content-Type": ct}))
    return json.loads(data)["descriptor"] if r.status == 200 else None


def top_scores(db, q, k):
    """The k best inner products of q with the rows of db, best first."""
    import numpy as np
    s = np.asarray(db) @ np.asarray(q)
    return sorted(s.tolist(), reverse=True)[:k]


def wait_job(srv, jid, headers, timeout=180):
    """Polls GET /v1/admin/jobs/{jid} until it is done, failed or cancelled."""
    deadline = time.time() + timeout
    st = {}
    while time.time() < deadline:
        code, st = jget(srv, "/v1/admin/jobs/%d" % jid, headers)
        if st.get("state") in ("done", "failed", "cancelled"):
            break
        time.sleep(0.1)
    return st


def done(tmp):
    """Sums up the contract check, prints the TAP plan, removes the scratch
    folder tmp, returns the exit status."""
    CONTRACT.summary()
    print("1..%d" % N)
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if FAILED else 0


def run(main):
    """Runs main() and exits with its status, killing every server left running."""
    try:
        rc = main()
    finally:
        for proc in SERVERS:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    sys.exit(rc)
