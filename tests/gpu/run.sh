#!/usr/bin/env bash
# Runs the GPU suite and the GPU benchmark from a relocatable bundle
# (tests/gpu/bundle.sh) on a bare GPU machine; see docs/gpu.md.
#
#   tests/gpu/run.sh [--bundle DIR|FILE.tar.xz|FILE.tar] [--build DIR] [--out DIR]
#                    [--only STEP,...] [--bench-args "ARGS"] [--no-server]
#
# Without --bundle it first makes one (tests/gpu/bundle.sh [--build DIR]).
# Steps (--only picks some; default all, in this order):
#   env      the machine: nvidia-smi, python3/torch, the library dirs found, ldd of
#            every bundled binary and of the plugin
#   kernels  bin/test_engine_cuda_kernels (each CUDA kernel vs a CPU reference)
#   parity   bin/test_gpu_parity (CUDA vs the CPU fp32 backend; with the bundled real
#            MobileNetV2 as IMAGO_GPU_MODEL); IMAGO_GPU_PARITY_* pass through
#   bench    tools/bench_gpu (imago fp16/bf16 vs PyTorch bf16, ResNet-101 + AGeM,
#            1024x768, batch 1/8/32) and, unless --no-server, tools/bench_server
#            against `imago serve --engine.backend cuda`; Python: $IMAGO_BENCH_PYTHON,
#            else python3 (outside imago-env)
# Each step writes STEP.log under the results dir (--out, else $OUT, else
# the unpacked bundle's results/), plus bench_gpu.json, bench_server_cuda.txt
# and summary.txt. When nvidia-smi sees a GPU, IMAGO_GPU_REQUIRE=1: a device
# the tests cannot open is then a failure, not a skip.
# Exit: 0 every step passed; 1 a step failed; 77 nothing failed but the GPU
# steps were skipped (no GPU here).
set -uo pipefail

SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
BUNDLE=
BUILD=
RESULTS=${OUT:-}
ONLY=env,kernels,parity,bench
BENCH_ARGS=
SERVER=1
while [ $# -gt 0 ]; do
    case "$1" in
    --bundle) BUNDLE=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) RESULTS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --bench-args) BENCH_ARGS=$2; shift 2 ;;
    --no-server) SERVER=0; shift ;;
    -h | --help) sed -n '2,25p' "$SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

# ---- the bundle ---------------------------------------------------------
if [ -z "$BUNDLE" ]; then
    # inside an unpacked bundle run.sh sits next to bin/imago-env
    if [ -x "$(dirname "$SELF")/bin/imago-env" ]; then
        BUNDLE=$(dirname "$SELF")
    else
        src=$(cd "$(dirname "$SELF")/../.." && pwd)
        BUNDLE=$("$src/tests/gpu/bundle.sh" ${BUILD:+--build "$BUILD"} | tail -n 1) ||
            { echo "run.sh: making the bundle failed" >&2; exit 1; }
    fi
fi
if [ -f "$BUNDLE" ]; then
    dest=$(mktemp -d "${TMPDIR:-/tmp}/imago-gpu-run.XXXXXX")
    if [ "${BUNDLE%.xz}" != "$BUNDLE" ] && ! command -v xz > /dev/null 2>&1; then
        # no xz(1) on the machine: Python's tarfile reads .tar.xz
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
            "$BUNDLE" "$dest"
    else
        tar -C "$dest" -xf "$BUNDLE"
    fi || { echo "run.sh: cannot unpack $BUNDLE" >&2; exit 1; }
    B=$dest/imago-gpu
else
    B=$(cd "$BUNDLE" && pwd)
fi
[ -x "$B/bin/imago-env" ] || { echo "run.sh: $B is not an imago GPU bundle (no bin/imago-env)" >&2; exit 1; }
E=$B/bin/imago-env
RESULTS=${RESULTS:-$B/results}
mkdir -p "$RESULTS"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imago-gpu-work.XXXXXX")
export IMAGO_SHARED=$B/shared
PY=${IMAGO_BENCH_PYTHON:-python3}   # the Python with torch (the GPU machines: python3)

have_gpu=0
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
    have_gpu=1
    export IMAGO_GPU_REQUIRE=1
fi

declare -A RC=()
step_on() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }
run_step() { # NAME TIMEOUT CMD...: runs CMD with its output in NAME.log, records the exit code
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" | tee "$RESULTS/$name.log"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$RESULTS/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$RESULTS/$name.log"
    RC[$name]=$rc
}

# ---- env ----------------------------------------------------------------------
if step_on env; then
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -n)  kernel: $(uname -r)"
        sed -n '1,5p' "$B/MANIFEST"
        if command -v nvidia-smi > /dev/null 2>&1; then
            nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
        else
            echo "nvidia-smi: not found (no GPU driver here)"
        fi
        echo "python: $(command -v "$PY" || echo "$PY: none")"
        "$PY" -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "numpy", numpy.__version__)' 2>&1 | tail -n 1
        echo "library dirs (imago-env):"
        "$E" --print-libdirs | sed 's/^/  /'
        for f in "$B"/bin/* "$B"/lib/imago/imago_cuda.so; do
            [ "$(basename "$f")" = imago-env ] && continue
            missing=$("$E" ldd "$f" 2>&1 | awk '/not found/ {print $1}' | tr '\n' ' ')
            echo "ldd $(basename "$f"): ${missing:+not found: }${missing:-all resolved}"
        done
    } > "$RESULTS/env.log" 2>&1
    cat "$RESULTS/env.log"
    RC[env]=0
fi

# ---- the gpu suite -------------------------------------------------------------
if step_on kernels; then
    if [ -x "$B/bin/test_engine_cuda_kernels" ]; then
        run_step kernels "${RUN_TIMEOUT_KERNELS:-300}" "$E" "$B/bin/test_engine_cuda_kernels"
    else
        echo "kernels: bin/test_engine_cuda_kernels is not in this bundle" | tee "$RESULTS/kernels.log"
        RC[kernels]=1
    fi
fi
if step_on parity; then
    model=$(find "$B/models" -name '*.safetensors' 2> /dev/null | sort | head -n 1)
    run_step parity "${RUN_TIMEOUT_PARITY:-540}" env ${model:+IMAGO_GPU_MODEL="$model"} \
        "$E" "$B/bin/test_gpu_parity"
fi

# ---- the benchmark ------------------------------------------------------------------
if step_on bench; then
    # python3 runs outside imago-env (the bundle's Debian libraries stay out of
    # PyTorch's process); the imago binaries it starts go through imago-env.
    if ! "$PY" -c 'import torch, numpy' > /dev/null 2>&1; then
        echo "bench: SKIP: no $PY with torch and numpy here" | tee "$RESULTS/bench.log"
        RC[bench]=77
    else
        printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$E" "$B/bin/imago" > "$WORK/imago"
        chmod 755 "$WORK/imago"
        srv=()
        [ $SERVER = 1 ] && srv=(--server --imago "$WORK/imago"
                                --server-image "$B/shared/bench/photo_1024x768.jpg")
        # shellcheck disable=SC2086
        run_step bench "${RUN_TIMEOUT_BENCH:-560}" env PYTHONUNBUFFERED=1 \
            IMAGO_SHARED="$B/shared" "$PY" "$B/tools/bench_gpu" \
            --extract "$E $B/bin/engine_extract" --model-dir "$WORK/models" --out "$RESULTS" \
            --image "$B/shared/bench/photo_1024x768.jpg" "${srv[@]}" $BENCH_ARGS
    fi
fi

# ---- summary ----------------------------------------------------------------------------
status=0
{
    echo "imago GPU run on $(uname -n), $(date -u +%Y-%m-%dT%H:%M:%SZ), GPU: $([ $have_gpu = 1 ] && nvidia-smi -L | head -n 1 || echo none)"
    for s in env kernels parity bench; do
        [ -n "${RC[$s]:-}" ] || continue
        case ${RC[$s]} in
        0) word=pass ;;
        77) word="skipped ($(grep -m1 -o -E 'SKIP.*|no GPU.*' "$RESULTS/$s.log" 2> /dev/null || echo 'exit 77'))" ;;
        124 | 137) word="TIMED OUT" ;;
        *) word="FAILED (exit ${RC[$s]})" ;;
        esac
        printf '  %-8s %s\n' "$s" "$word"
    done
    grep -h -E '^(PASS|FAIL)|^  FAIL|batch 32 .*PyTorch' "$RESULTS"/parity.log "$RESULTS"/bench.log 2> /dev/null
} > "$RESULTS/summary.txt"
for s in "${!RC[@]}"; do
    case ${RC[$s]} in
    0) ;;
    77) [ $status = 0 ] && status=77 ;;
    *) status=1 ;;
    esac
done
cat "$RESULTS/summary.txt"
rm -rf "$WORK"
if [ -n "${dest:-}" ]; then
    case "$RESULTS" in
    "$dest"/*) echo "run.sh: results in $RESULTS" ;;
    *) rm -rf "$dest" ;;
    esac
fi
exit $status
