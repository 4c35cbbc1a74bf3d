"""Minimal TAP output for the Python tests of tools/ (run by meson with
protocol 'tap').  Plan printed at the end; exit 1 when a test failed; a
'1..0 # SKIP reason' plan and exit 0 when a prerequisite is missing."""

import atexit
import os
import shutil
import sys
import tempfile
import traceback

ROOT = os.environ.get("IMAGO_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SHARED = os.environ.get("IMAGO_SHARED") or os.path.join(ROOT, "..", "shared")
if not os.path.isdir(SHARED) and os.path.isdir("/work/shared"):
    SHARED = "/work/shared"
sys.path.insert(0, os.path.join(ROOT, "tools"))


def tmpdir(prefix="imago_tools_"):
    """A temporary folder removed when the test exits."""
    d = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, d, True)
    return d


def skip_all(reason):
    # under meson's TAP protocol the SKIP plan marks the skip; a non-zero exit
    # (even 77) would be an error
    print("1..0 # SKIP %s" % reason)
    sys.stdout.flush()
    sys.exit(0)


def need_torch():
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        import PIL  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        skip_all("needs torch, torchvision, Pillow and numpy (run with /usr/bin/python3): %s" % e)


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        cond = bool(cond)
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name))
        if not cond:
            self.failed += 1
            if diag:
                for line in str(diag).splitlines():
                    print("# " + line)
        sys.stdout.flush()
        return cond

    def is_eq(self, got, want, name):
        return self.ok(got == want, name, "got:  %r\nwant: %r" % (got, want))

    def cmp(self, got, op, bound, name):
        res = {"<": got < bound, "<=": got <= bound, ">": got > bound, ">=": got >= bound}[op]
        return self.ok(res, "%s (%.9g %s %.9g)" % (name, got, op, bound))

    def raises(self, fn, exc, name, match=None):
        try:
            fn()
        except exc as e:
            if match and match not in str(e):
                return self.ok(False, name, "message %r lacks %r" % (str(e), match))
            return self.ok(True, name)
        except Exception as e:  # wrong exception type
            return self.ok(False, name, "raised %s: %s" % (type(e).__name__, e))
        return self.ok(False, name, "did not raise")

    def note(self, msg):
        for line in str(msg).splitlines():
            print("# " + line)
        sys.stdout.flush()

    def run(self, fn):
        """Runs fn(tap); an unexpected exception is a failed test."""
        try:
            fn(self)
        except Exception:
            self.ok(False, "unexpected exception", traceback.format_exc())
        print("1..%d" % self.n)
        sys.stdout.flush()
        sys.exit(1 if self.failed else 0)


def cosine(a, b):
    import numpy as np
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
