#!/usr/bin/env bash
# Installs what ckptw needs, creates the project's Python environment with the
# newest torch, configures and builds. Idempotent: a second run only rebuilds
# what changed. Used by scripts/test.sh and scripts/ckptw.sh.
#
#   CKPTW_BUILD_DIR   build directory (default: build)
#   CKPTW_TORCH_DIR   use this LibTorch (directory holding share/cmake/Torch)
#                     instead of the torch in .venv
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/build-env.sh
BUILD_DIR=${CKPTW_BUILD_DIR:-build}

# Each line carries the seconds since set-up started, so a CI log shows which
# step a slow set-up spent its time in.
log() { printf '[setup +%ss] %s\n' "$SECONDS" "$*" >&2; }

# 1. Debian packages. python3-torch is Debian's torch 1.13, for the old-version
#    interop tests; --no-install-recommends keeps its libtorch-dev (1.13 CMake
#    files) off the machine so it cannot shadow the LibTorch we build against.
#    libgloo-dev only provides declarations for the Gloo barrier tests (the
#    torch wheel ships no gloo headers).
APT_PACKAGES=(build-essential cmake ninja-build ccache
  liburing-dev libisal-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev libgloo-dev python3-torch python3-venv python3-dev unzip
  clang libclang-rt-14-dev)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The project's virtual environment with the newest torch. uv installs it:
#    its cache (~/.cache/uv) keeps the unpacked wheels and a new .venv gets
#    hard links to them. On this workplace's machines the registry's answers
#    do not revalidate, so every new .venv downloads and unpacks the 5 GB
#    again into a new cache entry, and the one it replaces stays behind
#    unreachable: 50 GB of them had piled up on a CI machine whose TSan
#    build then ran out of disk. `uv cache prune` after each install removes
#    the unreachable entries (a .venv that still links one keeps its files).
#    pip is the fallback where uv cannot be installed.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
# scikit-build-core builds the ckptw package (step 4); safetensors and
# torch_checkpointing (pinned: pre-1.0, its API moves) are rows of `ckptw bench`.
# scripts/python-overrides.txt leaves out triton (1 GB; only torch.compile
# uses it, and nothing here compiles), since a machine's free disk varies and
# a set-up that runs out of it fails before any test.
PYTHON_PACKAGES=(pip torch numpy pytest scikit-build-core safetensors torch_checkpointing==0.1.1)
if ! .venv/bin/python -c "import torch, numpy, pytest, scikit_build_core, safetensors, torch_checkpointing" 2>/dev/null; then
  log "installing ${PYTHON_PACKAGES[*]} into .venv (large download on a fresh machine)"
  uv_cache=${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}
  mkdir -p "$uv_cache"
  for dir in .venv "$uv_cache"; do
    free_mib=$(df --output=avail -BM "$dir" | tail -1 | tr -dc 0-9)
    if [ "${free_mib:-0}" -lt 6000 ]; then
      log "warning: only ${free_mib} MiB free on the filesystem of $dir; torch and its CUDA libraries take about 4.5 GiB unpacked (less where uv's cache already holds them)"
    fi
  done
  if [ -x .venv/bin/uv ] || .venv/bin/python -m pip install -q uv; then
    .venv/bin/uv pip install -q --python .venv/bin/python --override scripts/python-overrides.txt \
      --upgrade "${PYTHON_PACKAGES[@]}"
    log "pruning uv's cache of unreachable entries"
    .venv/bin/uv cache prune -q || log "warning: uv cache prune failed; the install stands"
  else
    log "uv could not be installed; installing with pip"
    .venv/bin/python -m pip install -q --upgrade "${PYTHON_PACKAGES[@]}"
  fi
fi
# Byte-code for every module in .venv, made once: uv installs sources only,
# and this machine's environment sets PYTHONDONTWRITEBYTECODE, so without it
# each Python process compiled torch's modules afresh (an `import torch` took
# 2.7 CPU-s instead of 1.4, and the suite starts well over a hundred).
bytecode_stamp=.venv/.ckptw-bytecode
torch_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("torch"))')
if [ "$(cat "$bytecode_stamp" 2>/dev/null)" != "$torch_version" ]; then
  log "compiling .venv's modules to byte-code"
  # Not fatal: a wheel may carry a module that does not compile (a template).
  .venv/bin/python -m compileall -q -j0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
  echo "$torch_version" >"$bytecode_stamp"
fi

# 3. Configure (once) and build.
if [ -n "${CKPTW_TORCH_DIR:-}" ]; then
  TORCH_PREFIX=$CKPTW_TORCH_DIR/share/cmake
else
  TORCH_PREFIX=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  log "configuring $BUILD_DIR against LibTorch in $TORCH_PREFIX"
  # CMAKE_PREFIX_PATH (not Torch_DIR alone) so that LibTorch's own Caffe2
  # config and libraries are found before any system-wide copy.
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache \
    -DCKPTW_PYTHON="$ROOT/.venv/bin/python" -DPython_EXECUTABLE="$ROOT/.venv/bin/python" >/dev/null
fi
log "building"
if ! ckptw_build "$BUILD_DIR"; then
  log "building $BUILD_DIR failed"
  exit 1
fi
test -x "$BUILD_DIR/ckptw"

# 4. The Python package (ckptw._C, the CLI as the `ckptw` console script) into
#    .venv, from the tree just built: scikit-build-core reconfigures it with
#    the same settings and installs the `python` component, so nothing is
#    compiled twice. Without build isolation, so it builds against .venv's
#    torch rather than fetching another.
if [ -z "${CKPTW_TORCH_DIR:-}" ]; then
  log "installing the ckptw Python package into .venv"
  if ! .venv/bin/python -m pip install -q --no-build-isolation --no-deps -C build-dir="$BUILD_DIR" . >"$BUILD_DIR/pip-install.log" 2>&1; then
    cat "$BUILD_DIR/pip-install.log" >&2
    log "installing the Python package failed"
    exit 1
  fi
fi
log "done"
