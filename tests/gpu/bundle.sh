#!/usr/bin/env bash
# Packs what a bare GPU machine lacks to run the GPU suite and the GPU
# benchmark into one relocatable tarball (docs/gpu.md):
#
#   imago-gpu/bin/      imago, engine_extract, test_gpu_parity, test_engine_cuda_kernels
#                       and imago-env (the wrapper: LD_LIBRARY_PATH = the bundle's lib/
#                       + cuDNN/cuBLAS/NVRTC of the GPU machine's PyTorch or CUDA install;
#                       IMAGO_SHARED = the bundle's photos)
#   imago-gpu/lib/imago/imago_cuda.so   the CUDA backend plugin, where the engine looks
#                       first (../lib/imago/ from the executable's directory)
#   imago-gpu/lib/      libcudart.so.13 and every Debian library the binaries need beyond
#                       glibc, libstdc++ and libgcc_s (from ldd); no driver, cuDNN or cuBLAS
#   imago-gpu/tools/    bench_gpu, bench_server, reference.py, imago_model.py,
#                       make_test_model.py (torch + numpy only)
#   imago-gpu/shared/data/photos/   the shared photos (not in the repository)
#   imago-gpu/shared/bench/photo_1024x768.jpg   the benchmark input (a crop of a large photo)
#   imago-gpu/models/   the real MobileNetV2 converted with tools/convert.py (TF SAME
#                       padding), when ../shared/models has the checkpoint and torch is here
#   imago-gpu/run.sh    tests/gpu/run.sh;  imago-gpu/MANIFEST  what was packed, from where
#
#   tests/gpu/bundle.sh [--build DIR] [--out FILE.tar.xz|FILE.tar] [--no-model]
#                       [--xz-level N] [--no-build]
#
# --build: an existing build dir (default: a release build made here in build-gpu-release);
# its targets are brought up to date first, unless --no-build (pack them as they are).
# --out: default DIR/imago-gpu.tar.xz; a name ending in .tar is left uncompressed (the
# container test). Fails when the bundle is over 60 MiB. Prints the tarball's path last.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=
OUT=
WITH_MODEL=1
XZ_LEVEL=9
NO_BUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --no-model) WITH_MODEL=0; shift ;;
    --no-build) NO_BUILD=1; shift ;;
    --xz-level) XZ_LEVEL=$2; shift 2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bundle.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
SHARED=${IMAGO_SHARED:-$SRC/../shared}
[ -d "$SHARED/data/photos" ] || SHARED=/work/shared
[ -d "$SHARED/data/photos" ] || { echo "bundle.sh: no shared photos (set IMAGO_SHARED)" >&2; exit 1; }
CUDA_LIB=${CUDA_LIB:-/usr/local/cuda/lib64}

if [ -z "$BUILD" ]; then
    BUILD=$SRC/build-gpu-release
    if [ ! -f "$BUILD/build.ninja" ]; then
        meson setup "$BUILD" "$SRC" --buildtype=release -Dwerror=true >&2
    fi
fi
BUILD=$(cd "$BUILD" && pwd)
if [ $NO_BUILD = 0 ]; then
    ninja -C "$BUILD" server/imago server/engine_extract tests/gpu/test_gpu_parity >&2
    ninja -C "$BUILD" engine/imago_cuda.so >&2 ||
        { echo "bundle.sh: the build has no CUDA plugin (engine/imago_cuda.so): configure with CUDA" >&2; exit 1; }
    ninja -C "$BUILD" engine/test_engine_cuda_kernels >&2 || true
fi
for f in server/imago server/engine_extract tests/gpu/test_gpu_parity engine/imago_cuda.so; do
    [ -f "$BUILD/$f" ] || { echo "bundle.sh: $BUILD/$f is missing" >&2; exit 1; }
done
OUT=${OUT:-$BUILD/imago-gpu.tar.xz}

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/imago-gpu-stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
B=$STAGE/imago-gpu
mkdir -p "$B/bin" "$B/lib/imago" "$B/tools" "$B/shared/data/photos" "$B/models"

# ---- binaries -------------------------------------------------------------
bins=("$BUILD/server/imago" "$BUILD/server/engine_extract" "$BUILD/tests/gpu/test_gpu_parity")
[ -x "$BUILD/engine/test_engine_cuda_kernels" ] && bins+=("$BUILD/engine/test_engine_cuda_kernels")
for f in "${bins[@]}"; do
    install -m 755 "$f" "$B/bin/"
    strip --strip-unneeded "$B/bin/$(basename "$f")" 2>/dev/null || true
done
install -m 755 "$BUILD/engine/imago_cuda.so" "$B/lib/imago/"
strip --strip-unneeded "$B/lib/imago/imago_cuda.so" 2>/dev/null || true

# ---- shared libraries ---------------------------------------------------------
# Left out: glibc, libstdc++ and libgcc_s (every Linux has them, and a newer
# one than Debian 12's on the GPU machines), the driver (libcuda) and the big
# CUDA libraries the GPU machine's PyTorch brings (cuDNN, cuBLAS, NVRTC, ...).
# libcudart.so.13 is small and goes in.
skip_lib() {
    case "$1" in
    linux-vdso.so.* | ld-linux*.so.* | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | \
        librt.so.* | libresolv.so.* | libutil.so.* | libstdc++.so.* | libgcc_s.so.*) return 0 ;;
    libcuda.so.* | libnvidia-*.so.*) return 0 ;;
    libcudart.so.*) return 1 ;;
    libcudnn*.so.* | libcublas*.so.* | libnvrtc*.so.* | libnvJitLink.so.* | libcufft*.so.* | \
        libcurand.so.* | libcusparse*.so.* | libcusolver*.so.* | libnccl.so.*) return 0 ;;
    esac
    return 1
}
declare -A seen=()
queue=("$B"/bin/* "$B/lib/imago/imago_cuda.so")
while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    while read -r name path; do
        [ -n "$name" ] || continue
        skip_lib "$name" && continue
        [ -n "${seen[$name]:-}" ] && continue
        seen[$name]=1
        if [ "$path" = "not" ] || [ ! -e "$path" ]; then
            echo "bundle.sh: $name (needed by $(basename "$f")) is not found here" >&2
            exit 1
        fi
        cp -L "$path" "$B/lib/$name"
        chmod 644 "$B/lib/$name"
        queue+=("$B/lib/$name")
    done < <(LD_LIBRARY_PATH="$CUDA_LIB" ldd "$f" 2>/dev/null | awk '/=>/ {print $1, $3}')
done

# ---- tools, photos, model ------------------------------------------------------
for t in bench_gpu bench_server reference.py imago_model.py make_test_model.py; do
    install -m 755 "$SRC/tools/$t" "$B/tools/"
done
install -m 755 "$SRC/tests/gpu/run.sh" "$B/run.sh"
find "$SHARED/data/photos" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.png' \) \
    -exec cp {} "$B/shared/data/photos/" \;
[ -f "$SHARED/data/photos/SOURCES.md" ] && cp "$SHARED/data/photos/SOURCES.md" "$B/shared/data/photos/"
# the benchmark photo: exactly 1024x768 (centre 4:3 crop, Lanczos), so that the
# end-to-end server benchmark decodes the same input size as bench_gpu
mkdir -p "$B/shared/bench"
big=$SHARED/data/photos/large/Elephants_5640x3172.jpg
[ -f "$big" ] || big=$SHARED/data/photos/aloeL.jpg
/usr/bin/python3 - "$big" "$B/shared/bench/photo_1024x768.jpg" <<'PY' >&2 ||
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
w, h = im.size
cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
im.resize((1024, 768), Image.LANCZOS).save(sys.argv[2], quality=92)
PY
    cp "$SHARED/data/photos/aloeL.jpg" "$B/shared/bench/photo_1024x768.jpg"

model_note="none"
CKPT=$SHARED/models/mobilenet_v2_imagenet.pth
if [ $WITH_MODEL = 1 ] && [ -f "$CKPT" ]; then
    cache=$BUILD/gpu-bundle-cache/mobilenet_v2_imagenet_tfsame.safetensors
    if [ ! -f "$cache" ]; then
        mkdir -p "$(dirname "$cache")"
        if /usr/bin/python3 "$SRC/tools/convert.py" "$CKPT" --padding tf_same --mean 0.5,0.5,0.5 \
            --std 0.5,0.5,0.5 --max-side 1024 --p 3 --scales 1 --out "$cache.tmp" >&2; then
            mv "$cache.tmp" "$cache"
        else
            rm -f "$cache.tmp"
            echo "bundle.sh: MobileNetV2 conversion failed; bundled without it" >&2
        fi
    fi
    if [ -f "$cache" ]; then
        cp "$cache" "$B/models/"
        model_note="models/$(basename "$cache") (tools/convert.py of $CKPT, TF SAME padding, GeM p 3)"
    fi
fi

# ---- the wrapper -----------------------------------------------------------
cat > "$B/bin/imago-env" <<'EOF'
#!/usr/bin/env bash
# imago-env CMD [ARG]...: runs CMD with the bundle's libraries and the GPU
# machine's cuDNN / cuBLAS / NVRTC (from PyTorch's pip packages nvidia.*, torch/lib,
# then /usr/local/cuda/lib64 and CUDA_HOME/lib64) on LD_LIBRARY_PATH and the
# bundle's photos in IMAGO_SHARED. The engine finds the CUDA plugin itself, in
# ../lib/imago/ from bin/.
# `imago-env --print-libdirs` prints the directories found.
B=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dirs=()
add() {
    for d in "$@"; do
        [ -d "$d" ] || continue
        for e in "${dirs[@]}"; do [ "$e" = "$d" ] && continue 2; done
        dirs+=("$d")
    done
}
want='libcudnn.so.9 libcublas.so.13 libcublasLt.so.13 libnvrtc.so.13 libnvJitLink.so.13'
py=${IMAGO_PYTHON:-python3}
if command -v "$py" > /dev/null 2>&1; then
    roots=$("$py" -c 'import nvidia, os; print("\n".join(os.path.realpath(p) for p in nvidia.__path__))' 2>/dev/null)
    for r in $roots; do
        for lib in $want; do
            while IFS= read -r hit; do add "$(dirname "$hit")"; done < <(find "$r" -maxdepth 4 -name "$lib" 2>/dev/null)
        done
    done
    tl=$("$py" -c 'import importlib.util as u, os; s = u.find_spec("torch"); print(os.path.join(os.path.dirname(s.origin), "lib") if s else "")' 2>/dev/null)
    [ -n "$tl" ] && add "$tl"
fi
add /usr/local/cuda/lib64 ${CUDA_HOME:+"$CUDA_HOME/lib64"}
if [ "${1:-}" = "--print-libdirs" ]; then printf '%s\n' "$B/lib" "${dirs[@]}"; exit 0; fi
extra=$(IFS=:; echo "${dirs[*]}")
export LD_LIBRARY_PATH="$B/lib${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export IMAGO_SHARED="${IMAGO_BUNDLE_SHARED:-$B/shared}"
exec "$@"
EOF
chmod 755 "$B/bin/imago-env"

{
    echo "imago GPU bundle"
    echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
    echo "commit: $(git -C "$SRC" rev-parse HEAD 2>/dev/null)$(git -C "$SRC" diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
    echo "build: $BUILD ($(sed -n "s/^ *buildtype *: *//p" "$BUILD/meson-logs/meson-log.txt" 2>/dev/null | tail -n 1))"
    echo "model: $model_note"
    echo "files:"
    (cd "$B" && find . -type f | sort | while read -r f; do printf '  %10d %s\n' "$(stat -c %s "$f")" "$f"; done)
} > "$B/MANIFEST"

mkdir -p "$(dirname "$OUT")"
case "$OUT" in
*.tar) tar -C "$STAGE" -cf "$OUT" imago-gpu ;;
*) tar -C "$STAGE" -cf - imago-gpu | xz -T0 "-$XZ_LEVEL" > "$OUT" ;;
esac
size=$(stat -c %s "$OUT")
echo "bundle.sh: $OUT: $((size / 1024 / 1024)) MiB ($size bytes), $(du -sb "$B" | cut -f1) bytes unpacked" >&2
case "$OUT" in
*.tar) ;;
*) if [ "$size" -gt $((60 * 1024 * 1024)) ]; then
       echo "bundle.sh: over the 60 MiB limit" >&2
       exit 1
   fi ;;
esac
echo "$OUT"
