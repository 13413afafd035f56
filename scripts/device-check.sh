#!/usr/bin/env bash
# The GPU device check (issue: GPU path), in one call on a lent H200 machine
# that has nvcc, CMake, ninja and a CUDA torch but no package registry.
#
#   scripts/device-check.sh prepare   here, with Debian's registry: fetch the
#                                     few -dev packages ckptw builds against and
#                                     unpack them into .device-deps/ (git-ignored;
#                                     carry it to the device machine)
#   scripts/device-check.sh rehearse  here, as root: the build and the GPU
#                                     tests' skip path, in a mount namespace
#                                     where those packages' own files are
#                                     masked, so only .device-deps serves them
#                                     (what the device machine will see)
#   scripts/device-check.sh [GiB]     on the device machine: build against its
#                                     torch, run the GPU tests (ctest -L gpu),
#                                     then measure on a GiB-sized GPU state dict
#                                     (default 8): D2H peak, staging, write_async
#                                     blocking, end-to-end write, the disk's
#                                     O_DIRECT limit, torch.save of the same
#                                     GPU state dict. Figures go to $OUT (or
#                                     ./device-check-out) as JSON and text.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPS=$ROOT/.device-deps
PACKAGES=(liburing-dev liburing2 libisal-dev libisal2 libgtest-dev libgmock-dev libbenchmark-dev
  libbenchmark1debian libcli11-dev nlohmann-json3-dev zlib1g-dev)

if [ "${1:-}" = prepare ]; then
  rm -rf "$DEPS" && mkdir -p "$DEPS/debs" "$DEPS/root"
  (cd "$DEPS/debs" && apt-get download "${PACKAGES[@]}")
  for deb in "$DEPS"/debs/*.deb; do dpkg-deb -x "$deb" "$DEPS/root"; done
  rm -rf "$DEPS/debs"
  # Absolute links (libz.so -> /lib/...) would point into the device
  # machine's own tree: make them relative, inside the unpacked root.
  find "$DEPS/root" -type l -lname '/*' | while read -r link; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$DEPS/root$(readlink "$link")")" "$link"
  done
  du -sh "$DEPS"
  exit 0
fi

if [ "${1:-}" = rehearse ]; then
  [ -d "$DEPS/root" ] || { echo "no $DEPS: run '$0 prepare' first" >&2; exit 1; }
  # Mask every file the packages installed here (runtime libz.so.1 aside:
  # every tool links it) so that a header or library found outside
  # .device-deps fails the build instead of passing unnoticed.
  masked=$(dpkg -L "${PACKAGES[@]}" 2>/dev/null | grep -E '^/usr/(include|lib|share/cmake|share/pkgconfig|src)/' |
    grep -v 'libz\.so\.1' | while read -r f; do if [ -f "$f" ] && ! [ -L "$f" ]; then echo "$f"; fi; done)
  # The device machine has no pkg-config either: hide this one's binaries.
  for tool in pkg-config pkgconf x86_64-linux-gnu-pkg-config; do
    if command -v "$tool" >/dev/null; then masked+=$'\n'$(realpath "$(command -v "$tool")"); fi
  done
  export PYTHON=${PYTHON:-$ROOT/.venv/bin/python} CKPTW_DEVICE_REHEARSAL=1 OUT=${OUT:-/tmp/ckptw-device-rehearsal}
  exec unshare -m bash -c 'mount --make-rprivate / && for f in $1; do mount --bind /dev/null "$f"; done && shift && exec "$@"' \
    rehearse "$masked" "$0" "${2:-8}"
fi

GIB=${1:-8}
OUT=${OUT:-$ROOT/device-check-out}
mkdir -p "$OUT"
log() { printf '[device-check %s] %s\n' "$(date +%T)" "$*" | tee -a "$OUT/log.txt" >&2; }
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" || true
TORCH_PREFIX=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee "$OUT/torch.txt"

SYS=$DEPS/root/usr
export LD_LIBRARY_PATH=$SYS/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
BUILD=${CKPTW_DEVICE_BUILD:-$ROOT/build-device}
log "configuring against $TORCH_PREFIX"
# Every package location spelled out: the device machine need not be a
# Debian multiarch system, where CMake would look in lib/x86_64-linux-gnu.
LIB=$SYS/lib/x86_64-linux-gnu
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$SYS" -DCMAKE_LIBRARY_PATH="$LIB" -DCKPTW_CUDA_ARCHITECTURES=90 \
  -DTORCH_CUDA_ARCH_LIST=9.0 -DGTest_DIR="$LIB/cmake/GTest" -Dbenchmark_DIR="$LIB/cmake/benchmark" \
  -DCLI11_DIR="$SYS/share/cmake/CLI11" -Dnlohmann_json_DIR="$SYS/share/cmake/nlohmann_json" \
  -DISAL_INCLUDE_DIR="$SYS/include" -DISAL_LIBRARY="$LIB/libisal.so" \
  -DLIBURING_INCLUDE_DIR="$SYS/include" -DLIBURING_LIBRARY="$LIB/liburing.so" \
  -DZLIB_INCLUDE_DIR="$SYS/include" -DZLIB_LIBRARY="$LIB/libz.a" \
  -DCKPTW_PYTHON="$(command -v $PY)" -DCKPTW_BUILD_EXAMPLES=OFF -DCKPTW_BUILD_PYTHON=OFF >"$OUT/configure.txt" 2>&1 ||
  { tail -30 "$OUT/configure.txt"; exit 1; }
log "building"
cmake --build "$BUILD" -j"$(nproc)" --target ckptw_cli gpu_test writer_test gpu_stage_bench >"$OUT/build.txt" 2>&1 ||
  { grep -E "error|Error" "$OUT/build.txt" | head -30; exit 1; }
"$BUILD/ckptw" --version | tee "$OUT/version.txt"

log "GPU tests"
status=0
# -V: gtest's line per case (a skip names its reason) lands in gpu_tests.txt.
(cd "$BUILD" && ctest -L gpu -V) 2>&1 | tee "$OUT/gpu_tests.txt" | tail -15 || status=1
(cd "$BUILD" && CKPTW_CLI=$BUILD/ckptw tests/writer_test --gtest_filter='WriteAsync.*:AsyncCheckpointer.*') 2>&1 | tail -5 |
  tee -a "$OUT/gpu_tests.txt" || status=1
if [ -n "${CKPTW_DEVICE_REHEARSAL:-}" ]; then log "rehearsal: stopping before the measurements, which need a GPU"; exit $status; fi

DIR=${CKPTW_DEVICE_DIR:-$ROOT/device-check-data}
mkdir -p "$DIR"
df -hT "$DIR" | tee "$OUT/filesystem.txt"
log "staging and write figures ($GIB GiB on cuda:0)"
# The staging repetitions need no disk: a tmpfs takes their files when it has
# room for two of them, so only the end-to-end writes wait for the disk.
BYTES=$($PY -c "print(int($GIB * (1 << 30)))")
STAGE_DIR=$DIR/stage
need=$((BYTES * 22 / 10))
if [ -d /dev/shm ] && [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt "$need" ]; then STAGE_DIR=/dev/shm/ckptw-stage; fi
log "staging repetitions write into $STAGE_DIR"
# A failed step is recorded and the next steps still run: the device time is short.
"$BUILD/bench/gpu_stage_bench" --gib "$GIB" --dir "$DIR/stage" --stage-dir "$STAGE_DIR" | tee "$OUT/gpu_stage.json" ||
  { log "gpu_stage_bench FAILED"; status=1; }
rm -rf "$DIR/stage/ckpt" /dev/shm/ckptw-stage  # keeps stage/small for torch.load below
log "disk limit (raw O_DIRECT) and CPU write and write_async, same size"
"$BUILD/ckptw" bench --size "$BYTES" --backend auto --repeat 1 --warmup 0 --no-torch \
  --dir "$DIR" --json "$OUT/bench.json" |
  tee "$OUT/bench.txt" || { log "ckptw bench FAILED"; status=1; }
log "torch.save of the same GPU state dict (fsync included), and torch.load of a ckptw file onto the GPU"
$PY - "$GIB" "$DIR" <<'PY' | tee "$OUT/torch_save.json" || { log "torch.save / torch.load step FAILED"; status=1; }
import json, os, sys, time
import torch
gib, d = float(sys.argv[1]), sys.argv[2]
n = int(gib * (1 << 30)) // 4 // 64
sd = {f"layer{i}": torch.full((n,), float(i), device="cuda") for i in range(64)}
torch.cuda.synchronize()
times = []
for i in range(1):  # one run: the device time is short, and torch.save's speed is not what is checked
    path = os.path.join(d, f"torch_save_{i}.pt")
    t = time.perf_counter()
    with open(path, "wb") as f:
        torch.save(sd, f)
        f.flush()
        os.fsync(f.fileno())
    times.append(time.perf_counter() - t)
    os.remove(path)
# A ckptw file of 10,000 device tensors (gpu_stage_bench's): torch.load without
# map_location must put every one back on cuda:0, with its values.
ckptw_file = torch.load(os.path.join(d, "stage", "small", "checkpoint_0.pt"), weights_only=True)
on_gpu = sum(t.device == torch.device("cuda", 0) for t in ckptw_file.values())
right = sum(bool((t == 1.0).all()) for t in ckptw_file.values())
print(json.dumps({"torch_save_gbps": round(n * 4 * 64 / min(times) / 1e9, 3), "torch_save_secs": [round(x, 3) for x in times],
                  "torch_load_of_ckptw_file": {"tensors": len(ckptw_file), "on_cuda0": on_gpu, "values_right": right}}))
PY
rm -rf "$DIR/stage"
log "done (status $status)"
exit $status
