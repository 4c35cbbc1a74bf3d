#!/bin/bash
# meson test runner of the browser test (suite integration, protocol
# exitcode): exits 77 with the reason when node, Debian's chromium or
# playwright-core is missing (tests/browser/setup.sh installs them), else
# runs test_web.mjs (TAP on stdout; 0 = all passed, 1 = a failure).
#
# usage: run.sh path/to/imago
set -u
here=$(cd "$(dirname "$0")" && pwd)
chromium=${IMAGO_CHROMIUM:-/usr/bin/chromium}
skip() {
    echo "1..0 # SKIP $*"
    exit 77
}
command -v node >/dev/null 2>&1 || skip "node is not installed (apt-get install nodejs; see tests/browser/setup.sh)"
major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$major" -ge 20 ] 2>/dev/null || skip "node $(node --version 2>/dev/null) is too old: playwright-core needs node >= 20"
[ -x "$chromium" ] || skip "$chromium is missing: run tests/browser/setup.sh (apt-get install chromium)"
[ -f "$here/node_modules/playwright-core/package.json" ] ||
    skip "playwright-core is not installed in tests/browser/node_modules: run tests/browser/setup.sh"
[ $# -ge 1 ] && [ -x "$1" ] || skip "no imago binary given"
exec node "$here/test_web.mjs" "$@"
