#!/bin/sh
# ThreadSanitizer run of the job runner and the server's other threads
# (docs/architecture.md, where the rules live: job bookkeeping race-free under any ingest.parallelism).
# Builds `imago` in BUILDDIR (default build-tsan: -Db_sanitize=thread, no
# CUDA, no test executables) and runs against that `imago serve`:
#   - tests/integration/test_redteam.py: its first block is the burst of 30
#     small jobs (empty folders among them) with ingest.parallelism 2 that
#     found the use-after-free in runner_main; the rest exercises the HTTP
#     paths with their own threads;
#   - tests/integration/test_crasher.py, 3 rounds (IMAGO_CRASHER_ROUNDS):
#     two client threads adding, deleting and searching while bulk jobs,
#     reindex jobs and snapshots run, with kill -9 and restarts.
# Fails on any TSan report (halt_on_error: the server stops at the first
# one, and every report is also kept under BUILDDIR/tsan-logs/) or a
# failing test. OpenMP and OpenBLAS run one thread each: they are not
# instrumented, and their threads would show as false races.
#   usage: tests/tsan/run.sh [BUILDDIR]
set -eu
cd "$(dirname "$0")/../.."
BUILDDIR=${1:-build-tsan}
start=$(date +%s)
# only the server: the tests below need nothing else (deps: deploy/install-deps)
if [ ! -f "$BUILDDIR/build.ninja" ]; then
    werror=""
    [ "${IMAGO_WERROR:-0}" = 1 ] && werror=-Dwerror=true
    meson setup "$BUILDDIR" -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debugoptimized \
        -Dcuda=disabled -Dcudnn=disabled -Dtests=false $werror
fi
meson compile -C "$BUILDDIR" server/imago
built=$(date +%s)

PY=/usr/bin/python3
LOGS="$BUILDDIR/tsan-logs"
rm -rf "$LOGS"
mkdir -p "$LOGS"
export IMAGO_SOURCE_ROOT="$PWD"
if [ -z "${IMAGO_SHARED:-}" ]; then
    if [ -d ../shared ]; then IMAGO_SHARED="$PWD/../shared"; else IMAGO_SHARED=/work/shared; fi
fi
export IMAGO_SHARED
export IMAGO_ENGINE_BACKEND=cpu IMAGO_ENGINE_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export TSAN_OPTIONS="halt_on_error=${IMAGO_TSAN_HALT:-1} exitcode=66 second_deadlock_stack=1 log_path=$PWD/$LOGS/tsan suppressions=$PWD/tests/tsan/suppressions.txt"
IMAGO="$BUILDDIR/server/imago"

rc=0
for t in redteam crasher; do
    echo "=== tsan: $t"
    t0=$(date +%s)
    if ! IMAGO_CRASHER_ROUNDS=${IMAGO_CRASHER_ROUNDS:-3} \
        "$PY" "tests/integration/test_$t.py" "$IMAGO" >"$LOGS/$t.tap" 2>&1; then
        rc=1
    fi
    grep -v '^ok' "$LOGS/$t.tap" || true
    echo "=== tsan: $t: $(grep -c '^ok' "$LOGS/$t.tap") ok, $(grep -c '^not ok' "$LOGS/$t.tap") not ok in $(( $(date +%s) - t0 )) s"
done
reports=$(grep -l 'ThreadSanitizer' "$LOGS"/tsan.* 2>/dev/null || true)
if [ -n "$reports" ]; then
    echo "=== tsan: reports in $reports:"
    cat $reports | head -200
    rc=1
fi
echo "=== tsan: build $(( built - start )) s, tests $(( $(date +%s) - built )) s: $([ $rc = 0 ] && echo clean || echo FAILED)"
exit $rc
