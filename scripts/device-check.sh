#!/usr/bin/env bash
# The GPU device check, in two calls on a lent H100/H200 machine that has
# nvcc, CMake, ninja and a CUDA torch but no package registry. Each call fits
# well inside the device tool's 10 minutes (every step has a timeout and the
# whole call a deadline), and leaves at most 8 files under $OUT, summary.txt
# first: it alone says what ran, with which torch, and what passed.
#
#   scripts/device-check.sh prepare   here, with Debian's and Python's
#                                     registries: the -dev packages ckptw builds
#                                     against, unpacked into .device-deps/root,
#                                     and scikit-build-core's wheels into
#                                     .device-deps/wheels (git-ignored; carry it)
#   scripts/device-check.sh rehearse build|measure
#                                     here, as root: that call with the
#                                     packages' own files masked (what the device
#                                     machine sees); GPU steps skip
#   scripts/device-check.sh build     call 1 (about 5 minutes on 16 cores):
#                                     configure against the machine's torch (stops
#                                     at once when CUDA or NCCL is "none"), build,
#                                     the GPU tests (ctest -L gpu), write_async's
#                                     tests, then the Python package installed
#                                     from this tree and tests/gpu/python_check.py
#                                     (ProcessGroupBarrier over an NCCL group of
#                                     one rank, write_async with crc_on_gpu on and
#                                     off, reading onto cuda:0, the console script)
#   scripts/device-check.sh measure [GiB]
#                                     call 2 (about 4 minutes at 8 GiB): D2H
#                                     peak, staging, write_async blocking,
#                                     end-to-end write, the disk's O_DIRECT
#                                     limit, torch.save of the same GPU state
#                                     dict, torch.load of a ckptw file onto the
#                                     GPU, dcp.save of it through the stock
#                                     writer and ckptw.dcp's (files compared);
#                                     builds first if call 1's tree is gone
# docs/development.md ("The device check") says how to call them.
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
  # What `pip install --no-build-isolation` of the package needs beyond
  # CMake and ninja; pure-Python wheels, so any interpreter version takes them.
  # tomli and exceptiongroup serve interpreters before 3.11.
  pip_download() { ${PYTHON:-$ROOT/.venv/bin/python} -m pip download -q --only-binary=:all: -d "$DEPS/wheels" "$@"; }
  pip_download scikit-build-core
  pip_download --no-deps --platform any --python-version 3.9 --implementation py tomli exceptiongroup typing_extensions
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
  # This machine's 2 cores build about 8 times slower than the device's 16:
  # every step's limit and the call's deadline are stretched to match.
  export PYTHON=${PYTHON:-$ROOT/.venv/bin/python} CKPTW_DEVICE_REHEARSAL=1 OUT=${OUT:-/tmp/ckptw-device-rehearsal}
  export CKPTW_DEVICE_STEP_SCALE=${CKPTW_DEVICE_STEP_SCALE:-10} CKPTW_DEVICE_CALL_SECS=${CKPTW_DEVICE_CALL_SECS:-5400}
  exec unshare -m bash -c 'mount --make-rprivate / && for f in $1; do mount --bind /dev/null "$f"; done && shift && exec "$@"' \
    rehearse "$masked" "$0" "${@:2}"
fi

# From here on a failed command is recorded by step() and the call goes on:
# the device time is short, and every later step still says something.
set +e
MODE=${1:-}
case "$MODE" in build | measure) ;; *) echo "usage: $0 prepare | rehearse build|measure | build | measure [GiB]" >&2; exit 2 ;; esac
OUT=${OUT:-$ROOT/device-check-out}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
# The whole call ends by this deadline, however the steps went (the tool's
# limit is 600 s; the rest is for start-up and returning $OUT).
DEADLINE=$((SECONDS + ${CKPTW_DEVICE_CALL_SECS:-540}))
status=0
say() { printf '[%s +%ss] %s\n' "$MODE" "$SECONDS" "$*" | tee -a "$SUMMARY" >&2; }
# step LIMIT NAME CMD...: runs CMD under `timeout`, never past the deadline;
# says PASS/FAIL/TIMEOUT with its seconds. Output goes where CMD sends it.
step() {
  local limit=$(($1 * ${CKPTW_DEVICE_STEP_SCALE:-1})) name=$2 left=$((DEADLINE - SECONDS)) started=$SECONDS rc=0
  shift 2
  ((limit < left)) || limit=$left
  if ((limit < 10)); then say "SKIP $name: the call's deadline is reached"; status=1; return 1; fi
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  if ((rc == 0)); then say "PASS $name ($((SECONDS - started)) s)"; return 0; fi
  if ((rc == 124 || rc == 137)); then say "TIMEOUT $name after ${limit} s"; else say "FAIL $name (exit $rc, $((SECONDS - started)) s)"; fi
  status=1
  return 1
}
finish() { say "done: status $status"; exit $status; }

PY=${PYTHON:-python3}
gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | paste -sd';')
say "GPU: ${gpus:-none (nvidia-smi saw none)}"
say "torch: $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "at", torch.__file__)' 2>&1)"
TORCH_PREFIX=$($PY -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
SYS=$DEPS/root/usr
LIB=$SYS/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
BUILD=${CKPTW_DEVICE_BUILD:-$ROOT/build-device}
# The binding needs the interpreter's headers, which a device image may lack.
PY_HEADERS=$($PY -c 'import os, sysconfig; p = sysconfig.get_paths()["include"]; print("yes" if os.path.exists(os.path.join(p, "Python.h")) else "no")')
BINDING=OFF
[ "$PY_HEADERS" = yes ] && [ -d "$DEPS/wheels" ] && BINDING=ON
say "Python headers: $PY_HEADERS, scikit-build-core wheels: $([ -d "$DEPS/wheels" ] && echo yes || echo no) -> binding $BINDING"

build_tree() {
  # Every package location spelled out: the device machine need not be a
  # Debian multiarch system, where CMake would look in lib/x86_64-linux-gnu.
  if [ ! -f "$BUILD/build.ninja" ]; then
    step 150 "configure against $TORCH_PREFIX" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$SYS" -DCMAKE_LIBRARY_PATH="$LIB" -DCKPTW_CUDA_ARCHITECTURES=90 \
      -DTORCH_CUDA_ARCH_LIST=9.0 -DGTest_DIR="$LIB/cmake/GTest" -Dbenchmark_DIR="$LIB/cmake/benchmark" \
      -DCLI11_DIR="$SYS/share/cmake/CLI11" -Dnlohmann_json_DIR="$SYS/share/cmake/nlohmann_json" \
      -DISAL_INCLUDE_DIR="$SYS/include" -DISAL_LIBRARY="$LIB/libisal.so" \
      -DLIBURING_INCLUDE_DIR="$SYS/include" -DLIBURING_LIBRARY="$LIB/liburing.so" \
      -DZLIB_INCLUDE_DIR="$SYS/include" -DZLIB_LIBRARY="$LIB/libz.a" \
      -DCKPTW_PYTHON="$(command -v "$PY")" -DPython_EXECUTABLE="$(command -v "$PY")" -DCKPTW_BUILD_EXAMPLES=OFF \
      -DCKPTW_BUILD_PYTHON=$BINDING >"$OUT/configure.txt" 2>&1 || { tail -30 "$OUT/configure.txt" >>"$SUMMARY"; finish; }
  fi
  local found
  found=$(grep -ho 'ckptw: CUDA [^,]*, NCCL [^,]*' "$OUT/configure.txt" "$BUILD/configure-line.txt" 2>/dev/null | tail -1)
  [ -n "$found" ] && echo "$found" >"$BUILD/configure-line.txt"
  say "configure: ${found:-no 'ckptw: CUDA ..., NCCL ...' line}"
  if [ -z "${CKPTW_DEVICE_REHEARSAL:-}" ] && { [ -z "$found" ] || [[ $found == *"CUDA none"* ]] || [[ $found == *"NCCL none"* ]]; }; then
    say "STOP: this build has no CUDA or no NCCL, so no GPU test could mean anything (configure.txt says why)"
    status=1
    finish
  fi
  local targets=(ckptw_cli gpu_test writer_test gpu_stage_bench)
  [ "$BINDING" = ON ] && targets+=(ckptw_python)
  step 330 "build ${targets[*]}" cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" >"$OUT/build.txt" 2>&1 ||
    { grep -E "error:|FAILED:|Error [0-9]" "$OUT/build.txt" | head -30 >>"$SUMMARY"; finish; }
  say "built: $("$BUILD/ckptw" --version 2>&1 | paste -sd' ')"
}

if [ "$MODE" = build ]; then
  build_tree
  TESTS=$OUT/gpu_tests.txt
  # -V: gtest's line per case (a skip names its reason) lands in gpu_tests.txt.
  step 150 "ctest -L gpu" ctest --test-dir "$BUILD" -L gpu -V --timeout 120 >"$TESTS" 2>&1
  # One line per test case (with its time), ctest's count last.
  sed 's/^[0-9]*: //' "$TESTS" | grep -E '^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z_]+\.[A-Za-z_]+ \(|tests (passed|failed)' \
    >>"$SUMMARY" || true
  step 120 "write_async tests" env -C "$BUILD" CKPTW_CLI="$BUILD/ckptw" tests/writer_test \
    --gtest_filter='WriteAsync.*:AsyncCheckpointer.*:StagedWrite.*' >>"$TESTS" 2>&1
  tail -40 "$TESTS" | grep -E '^\[  FAILED  \] [A-Za-z_]|^\[==========\] [0-9]+ tests? from .* ran|^\[  PASSED  \]' \
    >>"$SUMMARY" || true
  if [ "$BINDING" = ON ]; then
    # Installed next to symbolic links to the machine's torch and nvidia
    # packages, so the package's RUNPATH ($ORIGIN/../torch/lib ...) resolves as
    # in a real site-packages, without writing into the machine's own.
    SITE=$BUILD/site
    TORCH_SITE=$($PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
    rm -rf "$SITE" "$BUILD/tools" && mkdir -p "$SITE"
    for pkg in torch nvidia; do [ -e "$TORCH_SITE/$pkg" ] && ln -s "$TORCH_SITE/$pkg" "$SITE/$pkg"; done
    step 60 "scikit-build-core from .device-deps/wheels" $PY -m pip install -q --no-index --find-links "$DEPS/wheels" \
      --target "$BUILD/tools" scikit-build-core >"$OUT/python.txt" 2>&1 &&
      PYTHONPATH=$BUILD/tools step 240 "the Python package into $SITE" $PY -m pip install -q --no-index \
        --no-build-isolation --no-deps --target "$SITE" -C build-dir="$BUILD" . >>"$OUT/python.txt" 2>&1 &&
      if [ -n "${CKPTW_DEVICE_REHEARSAL:-}" ]; then
        PYTHONPATH=$SITE step 60 "console script from the installed package" env LD_LIBRARY_PATH="$LIB" \
          "$SITE/bin/ckptw" --version >>"$OUT/python.txt" 2>&1
      else
        WORK=$(mktemp -d "${CKPTW_DEVICE_DIR:-$ROOT/device-check-data}.XXXX")
        PYTHONPATH=$SITE CKPTW_CLI_LIBRARY_PATH=$LIB step 240 "tests/gpu/python_check.py" \
          $PY tests/gpu/python_check.py "$WORK" "$SITE/bin/ckptw" >>"$OUT/python.txt" 2>&1
        rm -rf "$WORK"
      fi
    grep -E '^(PASS|FAIL|SKIP) ' "$OUT/python.txt" >>"$SUMMARY" || true
  else
    say "SKIP the Python checks: binding not built (see the line above)"
  fi
  finish
fi

# measure
[ -x "$BUILD/bench/gpu_stage_bench" ] && [ -x "$BUILD/ckptw" ] || { say "call 1's build is gone: building again"; build_tree; }
if [ -n "${CKPTW_DEVICE_REHEARSAL:-}" ]; then say "rehearsal: stopping before the measurements, which need a GPU"; finish; fi
GIB=${2:-8}
DIR=${CKPTW_DEVICE_DIR:-$ROOT/device-check-data}
mkdir -p "$DIR"
say "filesystem: $(df -hT "$DIR" | tail -1)"
# The staging repetitions need no disk: a tmpfs takes their files when it has
# room for two of them, so only the end-to-end writes wait for the disk.
BYTES=$($PY -c "print(int($GIB * (1 << 30)))")
STAGE_DIR=$DIR/stage
need=$((BYTES * 22 / 10))
if [ -d /dev/shm ] && [ "$(df --output=avail -B1 /dev/shm | tail -1)" -gt "$need" ]; then STAGE_DIR=/dev/shm/ckptw-stage; fi
say "staging and write figures: $GIB GiB on cuda:0, staging repetitions into $STAGE_DIR"
step 210 "gpu_stage_bench" "$BUILD/bench/gpu_stage_bench" --gib "$GIB" --dir "$DIR/stage" --stage-dir "$STAGE_DIR" \
  >"$OUT/gpu_stage.json" 2>"$OUT/gpu_stage_err.txt"
cat "$OUT/gpu_stage.json" >>"$SUMMARY"
rm -rf "$DIR/stage/ckpt" /dev/shm/ckptw-stage  # keeps stage/small for torch.load below
step 150 "ckptw bench: disk limit (raw O_DIRECT), CPU write and write_async, same size" "$BUILD/ckptw" bench \
  --size "$BYTES" --backend auto --repeat 1 --warmup 0 --no-torch --dir "$DIR" --json "$OUT/bench.json" >"$OUT/bench.txt" 2>&1
tail -25 "$OUT/bench.txt" >>"$SUMMARY"
step 120 "torch.save of the same GPU state dict (fsync included), torch.load of a ckptw file onto the GPU" \
  $PY - "$GIB" "$DIR" >"$OUT/torch_save.json" 2>>"$OUT/gpu_stage_err.txt" <<'PY'
import json, os, sys, time
import torch
gib, d = float(sys.argv[1]), sys.argv[2]
n = int(gib * (1 << 30)) // 4 // 64
sd = {f"layer{i}": torch.full((n,), float(i), device="cuda") for i in range(64)}
torch.cuda.synchronize()
path = os.path.join(d, "torch_save.pt")
t = time.perf_counter()
with open(path, "wb") as f:  # one run: the device time is short, and torch.save's speed is not what is checked
    torch.save(sd, f)
    f.flush()
    os.fsync(f.fileno())
secs = time.perf_counter() - t
os.remove(path)
# A ckptw file of 10,000 device tensors (gpu_stage_bench's): torch.load without
# map_location must put every one back on cuda:0, with its values.
ckptw_file = torch.load(os.path.join(d, "stage", "small", "checkpoint_0.pt"), weights_only=True)
on_gpu = sum(t.device == torch.device("cuda", 0) for t in ckptw_file.values())
right = sum(bool((t == 1.0).all()) for t in ckptw_file.values())
print(json.dumps({"torch_save_gbps": round(n * 4 * 64 / secs / 1e9, 3), "torch_save_secs": round(secs, 3),
                  "torch_load_of_ckptw_file": {"tensors": len(ckptw_file), "on_cuda0": on_gpu, "values_right": right}}))
PY
cat "$OUT/torch_save.json" >>"$SUMMARY"
rm -rf "$DIR/stage"
# DCP of the same GPU state, one process: the stock FileSystemWriter, then
# ckptw.dcp's (device shards streamed through ckptw's ring), files compared.
if [ -d "$BUILD/site/ckptw" ]; then
  step 150 "dcp.save of the GPU state dict: stock FileSystemWriter against ckptw.dcp" env PYTHONPATH="$BUILD/site" \
    LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}" $PY - "$GIB" "$DIR" >>"$OUT/torch_save.json" 2>>"$OUT/gpu_stage_err.txt" <<'PY'
import hashlib, json, os, shutil, sys, time, warnings
import torch
import torch.distributed.checkpoint as dcp
import ckptw.dcp
gib, d = float(sys.argv[1]), sys.argv[2]
n = int(gib * (1 << 30)) // 4 // 64
sd = {f"layer{i}": torch.full((n,), float(i), device="cuda") for i in range(64)}
warnings.simplefilter("ignore")  # "single process"
out, digests = {}, {}
for name, writer in (("dcp", dcp.FileSystemWriter), ("ckptw.dcp", ckptw.dcp.FileSystemWriter)):
    target = os.path.join(d, name)
    torch.cuda.synchronize()
    t = time.perf_counter()
    dcp.save(sd, storage_writer=writer(target), no_dist=True)
    out[f"{name}_gbps"] = round(n * 4 * 64 / (time.perf_counter() - t) / 1e9, 3)
    digests[name] = {e.name: hashlib.sha256(open(e.path, "rb").read()).hexdigest()
                     for e in os.scandir(target) if e.name.endswith(".distcp")}
    shutil.rmtree(target)
out["data_files_identical"] = digests["dcp"] == digests["ckptw.dcp"]
print(json.dumps(out))
PY
  tail -1 "$OUT/torch_save.json" >>"$SUMMARY"  # one file more would pass the 8 that come back
else
  say "SKIP dcp.save of the GPU state dict: the Python package is not installed (call 1 installs it)"
fi
finish
