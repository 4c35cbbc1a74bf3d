#!/usr/bin/env python3
"""The source tree's structural rules, checked (docs/architecture.md, "Modules").

  tools/check_layout.py [SRCROOT]      exit 0 when every rule holds, 1 otherwise

Rules, over the product's C/C++/CUDA sources (common config engine index
proto server; tests/ and tools/ are white-box code and may reach inside a
module, but the include rules below still hold for them):

  1. Every quoted include resolves: a header of the including file's own
     directory by its plain name, any other by its path from the source root
     ("engine/engine.h"). A plain name that only resolves in another
     directory is refused: the build exports only the root.
  2. Product code includes, from another module, only that module's public
     header (PUBLIC below): one door per module.
  3. The modules' dependencies (from those includes) form no cycle, and
     follow LAYERS: a module includes only modules of lower layers.
  4. No include cycle between files.
  5. The server's transport (TRANSPORT below: libmicrohttpd, requests,
     responses) calls no other file of server/: it reaches the handlers only
     through the route table it is given, so the transport and the handlers
     cannot call each other in a circle. (Tables of function pointers count
     as calls; data does not.) Call cycles between the other source files of
     a module are listed as notes, not failures: a module split into files
     along its banners shares private helpers both ways.

Prints each violation as FILE: what, and a summary line.
"""
import os
import re
import sys

MODULES = ["common", "config", "proto", "engine", "index", "server"]
PUBLIC = {
    "common": {"common/common.h"},
    "config": {"config/config.h"},
    "proto": {"proto/proto.h"},
    "engine": {"engine/engine.h"},
    "index": {"index/index.h"},
    "server": {"server/server.h"},
}
# a module may include modules of a lower layer only: common <- config <-
# {engine, index, proto} <- server (engine and index do not know each other)
# the transport and what it is given: auth checks and the metrics registry
TRANSPORT = {"server/http.c", "server/http_util.c", "server/auth.c", "server/metrics.c"}
LAYERS = {"common": 0, "config": 1, "proto": 2, "engine": 2, "index": 2, "server": 3}
EXTS = (".c", ".h", ".cu", ".cpp")
SKIP_DIRS = {"node_modules", "build", ".git"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
# a function definition at the start of a line: type ... name(args) then '{'
# on the same or the next line; static ones are file-local
DEFN = re.compile(r"^(?!static\b)(?:[A-Za-z_][\w \t\*]*?[\s\*])([A-Za-z_]\w*)\s*\([^;{]*?\)\s*\{",
                  re.M | re.S)
IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
STRING = re.compile(r'"(?:\\.|[^"\\\n])*"')


def sources(root, top):
    base = os.path.join(root, top)
    for dp, dn, fn in os.walk(base):
        dn[:] = sorted(d for d in dn if d not in SKIP_DIRS and not d.startswith("build"))
        for f in sorted(fn):
            if f.endswith(EXTS):
                yield os.path.relpath(os.path.join(dp, f), root)


def module_of(rel):
    top = rel.split("/", 1)[0]
    return top if top in MODULES else None


def strip(text):
    return STRING.sub('""', COMMENT.sub(" ", text))


def find_cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    files = []
    for top in MODULES + ["tests", "tools"]:
        if os.path.isdir(os.path.join(root, top)):
            files.extend(sources(root, top))
    present = set(files)
    problems = []
    notes = []
    inc_graph = {}
    mod_graph = {m: set() for m in MODULES}
    texts = {}

    for rel in files:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        texts[rel] = text
        here = os.path.dirname(rel)
        mod = module_of(rel)
        inc_graph.setdefault(rel, set())
        for name in INCLUDE.findall(text):
            local = os.path.normpath(os.path.join(here, name))
            if local in present:
                target = local
            elif name in present:
                target = name
            elif rel.startswith("tests/") and "tests/" + name in present:
                target = "tests/" + name  # the test harness (tap.h, testutil.h)
            elif "/" not in name and any(p.endswith("/" + name) for p in present):
                problems.append("%s: includes \"%s\" by its plain name from another directory "
                                "(name it by its path from the source root)" % (rel, name))
                continue
            else:
                continue  # generated (imago_build.h, web_assets) or system-like
            inc_graph[rel].add(target)
            tmod = module_of(target)
            if mod and tmod and tmod != mod:
                if target not in PUBLIC[tmod]:
                    problems.append("%s: includes %s, a private header of %s/ (its door is %s)"
                                    % (rel, target, tmod, ", ".join(sorted(PUBLIC[tmod]))))
                mod_graph[mod].add(tmod)
                if LAYERS[tmod] >= LAYERS[mod]:
                    problems.append("%s: %s/ includes %s/, which is not a lower layer"
                                    % (rel, mod, tmod))

    for comp in find_cycles(inc_graph):
        problems.append("include cycle: " + " -> ".join(comp))
    for comp in find_cycles(mod_graph):
        problems.append("module cycle: " + " -> ".join(comp))

    # rule 5: call cycles between the source files of each module
    n_calls = 0
    for mod in MODULES:
        srcs = [f for f in files if module_of(f) == mod and f.endswith((".c", ".cpp", ".cu"))]
        defined = {}
        for rel in srcs:
            for name in DEFN.findall(strip(texts[rel])):
                if name not in ("if", "for", "while", "switch", "return", "sizeof", "main"):
                    defined.setdefault(name, set()).add(rel)
        # a name defined in several files (a program's own helpers, fakes) is
        # no edge between them
        defined = {n: o for n, o in defined.items() if len(o) == 1}
        calls = {rel: set() for rel in srcs}
        for rel in srcs:
            body = strip(texts[rel])
            for ident in set(IDENT.findall(body)):
                for owner in defined.get(ident, ()):
                    if owner != rel:
                        calls[rel].add(owner)
                        n_calls += 1
        for rel in sorted(calls):
            if rel in TRANSPORT:
                for b in sorted(calls[rel] - TRANSPORT):
                    problems.append("%s: the transport calls into %s (only the route table may "
                                    "lead out of it)" % (rel, b))
        for comp in find_cycles(calls):
            detail = []
            for a in comp:
                for b in comp:
                    if b in calls[a]:
                        names = sorted(n for n, o in defined.items() if b in o and
                                       re.search(r"\b%s\b" % re.escape(n), strip(texts[a])))
                        detail.append("%s -> %s (%s)" % (a, b, ", ".join(names[:4])))
            notes.append("note: call cycle in %s/: %s" % (mod, "; ".join(detail)))

    for p in notes + problems:
        print(p)
    print("check_layout: %d files, %d includes, %d cross-file calls: %s"
          % (len(files), sum(len(v) for v in inc_graph.values()), n_calls,
             "%d problem(s)" % len(problems) if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
