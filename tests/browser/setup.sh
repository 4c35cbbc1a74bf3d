#!/bin/sh
# Installs what the browser test (tests/browser/run.sh) needs, idempotently:
#   - Debian's chromium (apt-get, when running as root and it is missing),
#     and node + npm when missing;
#   - playwright-core, pinned by package-lock.json, into
#     tests/browser/node_modules (gitignored) with `npm ci`.
# playwright-core is the driver only: it never downloads a browser; the test
# launches /usr/bin/chromium.
set -eu
here=$(cd "$(dirname "$0")" && pwd)

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
    else
        echo "setup.sh: missing:$missing; install them as root (apt-get install$missing)" >&2
        exit 1
    fi
fi

cd "$here"
if [ -f node_modules/playwright-core/package.json ] &&
    node -e 'const w=require("./package-lock.json").packages["node_modules/playwright-core"].version;
             process.exit(require("./node_modules/playwright-core/package.json").version===w?0:1)'; then
    echo "setup.sh: playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version') already installed"
else
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi
echo "setup.sh: chromium $(/usr/bin/chromium --version 2>/dev/null || echo '?'), node $(node --version)"
