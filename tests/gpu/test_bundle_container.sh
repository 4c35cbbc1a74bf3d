#!/usr/bin/env bash
# The GPU bundle (tests/gpu/bundle.sh) on a bare Debian: packs the build's
# binaries into an uncompressed bundle, unpacks it at another path inside a
# debian:bookworm-slim container (podman, no network) and checks there that
#   - every bundled ELF file's libraries resolve from the bundle (ldd), except
#     the driver and the CUDA libraries a GPU machine's PyTorch brings
#     (libcuda.so.1, libcudnn*, libcublas*, libnvrtc*, libnvJitLink*);
#   - test_gpu_parity and test_engine_cuda_kernels exit 77 with a reason;
#   - `imago extract --engine.backend cpu` computes a descriptor of a photo;
#   - run.sh runs every step and exits 77 (GPU steps skipped), with a summary.
# Exit 0 pass, 1 fail, 77 skipped (no podman, not root, no base image, or a
# build without the CUDA plugin).
#   tests/gpu/test_bundle_container.sh BUILD_DIR [SHARED_DIR]
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:?usage: test_bundle_container.sh BUILD_DIR [SHARED_DIR]}
SHARED=${2:-${IMAGO_SHARED:-$SRC/../shared}}
skip() { echo "SKIP: $*"; exit 77; }

command -v podman > /dev/null 2>&1 || skip "podman is not installed"
[ "$(id -u)" = 0 ] || skip "podman needs root here (rootless storage is not configured)"
podman image exists debian:bookworm-slim 2> /dev/null ||
    skip "no debian:bookworm-slim image (the container suite's test_container.sh makes it)"
[ -f "$BUILD/engine/imago_cuda.so" ] || skip "this build has no CUDA plugin (engine/imago_cuda.so)"
RUNTIME_ARGS=(--runtime runc)
command -v runc > /dev/null 2>&1 || RUNTIME_ARGS=()
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)

TMP=$(mktemp -d /tmp/imago-gpu-ctest.XXXXXX)
NAME=imago-gpu-ctest-$$
trap 'podman rm -f "$NAME" > /dev/null 2>&1; rm -rf "$TMP"' EXIT

t0=$SECONDS
if ! IMAGO_SHARED=$SHARED "$SRC/tests/gpu/bundle.sh" --build "$BUILD" --no-build --no-model \
    --out "$TMP/imago-gpu.tar" > "$TMP/bundle.log" 2>&1; then
    tail -20 "$TMP/bundle.log"
    echo "FAIL: bundle.sh failed"
    exit 1
fi
echo "bundle made in $((SECONDS - t0)) s: $(tail -n 2 "$TMP/bundle.log" | head -n 1)"

cat > "$TMP/check.sh" <<'EOF'
set -u
fail=0
ok() { if [ "$1" = 0 ]; then echo "ok   $2"; else echo "FAIL $2"; fail=1; fi; }
mkdir -p /opt/moved && tar -C /opt/moved -xf /in/imago-gpu.tar
B=/opt/moved/imago-gpu
E=$B/bin/imago-env
echo "in $(. /etc/os-release; echo "$PRETTY_NAME"), bundle at $B"

# 1. libraries
allowed='^(libcuda\.so\.1|libcudnn[a-z_]*\.so\.[0-9]+|libcublas(Lt)?\.so\.[0-9]+|libnvrtc[a-z-]*\.so\.[0-9]+|libnvJitLink\.so\.[0-9]+)$'
for f in "$B"/bin/* "$B"/lib/* "$B"/lib/imago/*; do
    [ -f "$f" ] || continue
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    missing=$(LD_LIBRARY_PATH=$B/lib ldd "$f" 2>&1 | awk '/not found/ {print $1}')
    bad=$(echo "$missing" | grep -v -E "$allowed" | grep . | tr '\n' ' ')
    expected=$(echo "$missing" | grep -E "$allowed" | tr '\n' ' ')
    [ -z "$bad" ]
    ok $? "ldd $(basename "$f"): ${bad:+NOT FOUND: $bad}${bad:-resolves}${expected:+ (from the GPU machine: $expected)}"
done

# 2. the GPU tests skip with a reason
for t in test_gpu_parity test_engine_cuda_kernels; do
    [ -x "$B/bin/$t" ] || { echo "--   $t is not in the bundle"; continue; }
    out=$("$E" "$B/bin/$t" 2>&1)
    rc=$?
    echo "$out" | tail -n 3 | sed 's/^/     | /'
    [ $rc = 77 ] && echo "$out" | grep -qi 'skip'
    ok $? "$t exits 77 with a reason (exit $rc)"
done

# 3. the CPU engine works from the bundle
out=$("$E" "$B/bin/imago" extract --engine.backend cpu --demo resnet50-gem --max-side 96 \
      --threads 2 "$B/shared/data/photos/apple.jpg" 2> /tmp/extract.err)
rc=$?
[ $rc = 0 ] && echo "$out" | grep -q '"dim": 2048, "descriptor": \['
ok $? "imago extract --engine.backend cpu on apple.jpg: 2048-d descriptor (exit $rc)"
[ $rc = 0 ] || sed 's/^/     | /' /tmp/extract.err

# 4. run.sh: every step runs, the GPU ones skip
"$B/run.sh" --out /tmp/results > /tmp/run.log 2>&1
rc=$?
sed 's/^/     | /' /tmp/results/summary.txt
[ $rc = 77 ] && grep -q 'parity *skipped' /tmp/results/summary.txt
ok $? "run.sh exits 77 with the GPU steps skipped (exit $rc)"
[ $rc = 77 ] || tail -20 /tmp/run.log | sed 's/^/     | /'
exit $fail
EOF

t1=$SECONDS
podman run --rm --name "$NAME" "${RUNTIME_ARGS[@]}" "${LIMITS[@]}" --pull=never --network none \
    -v "$TMP:/in:ro" debian:bookworm-slim bash /in/check.sh
rc=$?
echo "container checks: exit $rc in $((SECONDS - t1)) s"
[ $rc = 0 ] && echo PASS || echo FAIL
exit $(( rc != 0 ))
