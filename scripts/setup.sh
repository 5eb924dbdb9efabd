#!/usr/bin/env bash
# setup.sh: everything captiongo needs before `go build`, idempotent (a no-op when done).
#
#   scripts/setup.sh libtorch   libtorch 2.1.0 + gotch's cgo flags (enough to build and run)
#   scripts/setup.sh venv       .venv with the Python side used by tests and `make bench`
#   scripts/setup.sh all        both
#
# Inputs (environment, as the Makefile passes them):
#   CUDA=1            libtorch with CUDA (the full torch==2.1.0 wheel and its nvidia-* wheels)
#   LIBTORCH=/path    use a libtorch 2.1.0 you already have (lib/ and include/ inside)
#   LIBTORCH=auto     use the libtorch of the torch installed for `python3` on PATH
#   PYTHON=python3    the interpreter that makes .venv and downloads the wheel
# Output: .build/libtorch.mk, read by the Makefile (LIBTORCH_DIR, LIBTORCH_ABI, LIBTORCH_CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
CUDA=${CUDA:-0}
LIBTORCH=${LIBTORCH:-}
GOTCH_VERSION=v0.9.1
TORCH_VERSION=2.1.0

die() { echo "captiongo setup: $*" >&2; exit 1; }
say() { echo "captiongo setup: $*"; }

need_tools() {
  command -v go >/dev/null 2>&1 || die "Go is not installed (need Go 1.26 or newer: https://go.dev/dl/)."
  command -v g++ >/dev/null 2>&1 || die "no C++ compiler: install g++ (Debian/Ubuntu: apt-get install g++) - cgo compiles gotch's libtorch wrapper with it."
  command -v "$PYTHON" >/dev/null 2>&1 || die "no Python 3 ('$PYTHON' not found): install python3 with pip and venv (Debian/Ubuntu: apt-get install python3-pip python3-venv)."
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) and sys.version_info < (3, 12) else 1)' \
    || die "$("$PYTHON" --version 2>&1) cannot install torch==2.1.0 (it has wheels for Python 3.8-3.11): set PYTHON=python3.11 (or 3.8-3.10)."
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work: install pip (Debian/Ubuntu: apt-get install python3-pip)."
}

# abi_of DIR: prints 0 (pre-C++11) or 1 (C++11) from how libc10 mangles std::string.
abi_of() {
  local so=$1/lib/libc10.so
  if grep -q "_ZN3c105ErrorC2ENS_14SourceLocationESs" "$so"; then echo 0
  elif grep -q "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_string" "$so"; then echo 1
  else die "cannot tell the C++ ABI of $so (is it libtorch?)"; fi
}

# version_of DIR: the TORCH_VERSION its headers declare.
version_of() {
  local h=$1/include/torch/csrc/api/include/torch/version.h
  [ -f "$h" ] || die "LIBTORCH=$1 is not a libtorch folder: $h is missing (expected lib/ and include/ inside; the libtorch zip from pytorch.org unpacks to such a folder)."
  sed -n 's/.*TORCH_VERSION_MAJOR \([0-9]*\).*/\1/p; s/.*TORCH_VERSION_MINOR \([0-9]*\).*/\1/p; s/.*TORCH_VERSION_PATCH \([0-9]*\).*/\1/p' "$h" | paste -sd.
}

check_libtorch() {
  local dir=$1
  [ -d "$dir" ] || die "LIBTORCH=$dir does not exist: point LIBTORCH at a libtorch 2.1.0 folder (with lib/ and include/), use LIBTORCH=auto, or leave it unset to download one."
  [ -f "$dir/lib/libtorch_cpu.so" ] || die "LIBTORCH=$dir has no lib/libtorch_cpu.so: point it at the libtorch folder itself (the one holding lib/ and include/)."
  local v; v=$(version_of "$dir")
  [ "$v" = "$TORCH_VERSION" ] || die "LIBTORCH=$dir is libtorch $v, but gotch $GOTCH_VERSION is generated against libtorch $TORCH_VERSION exactly: use libtorch $TORCH_VERSION (leave LIBTORCH unset and setup downloads it)."
}

setup_libtorch() {
  local dir cuda=0
  case "$LIBTORCH" in
    "")
      if [ "$CUDA" = 1 ]; then
        local target=third_party/libtorch-$TORCH_VERSION-cuda
        if [ ! -f "$target/.captiongo-ok" ]; then
          say "installing torch==$TORCH_VERSION with its nvidia-* CUDA wheels into $target (about 2.5 GB)"
          rm -rf "$target.tmp"
          "$PYTHON" -m pip install --quiet --target "$target.tmp" "torch==$TORCH_VERSION" \
            || die "pip could not install torch==$TORCH_VERSION for CUDA; check the network."
          rm -rf "$target"; mv "$target.tmp" "$target"; touch "$target/.captiongo-ok"
        fi
        dir=$ROOT/$target/torch; cuda=1
      else
        local target=third_party/libtorch-$TORCH_VERSION-cpu
        if [ ! -f "$target/.captiongo-ok" ]; then
          "$PYTHON" scripts/fetch_libtorch.py "$target" third_party/.wheels
          touch "$target/.captiongo-ok"
        fi
        dir=$ROOT/$target/torch
      fi ;;
    auto)
      dir=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null) \
        || die "LIBTORCH=auto: '$PYTHON' has no torch installed (pip install torch==$TORCH_VERSION, or leave LIBTORCH unset)."
      [ "$CUDA" = 1 ] && cuda=1 ;;
    *)
      dir=$(cd "$LIBTORCH" 2>/dev/null && pwd) || die "LIBTORCH=$LIBTORCH does not exist: point LIBTORCH at a libtorch 2.1.0 folder (with lib/ and include/), or leave it unset to download one."
      [ "$CUDA" = 1 ] && cuda=1 ;;
  esac
  check_libtorch "$dir"
  if [ "$cuda" = 1 ] && [ ! -f "$dir/lib/libtorch_cuda.so" ]; then
    die "CUDA=1 but $dir/lib has no libtorch_cuda.so: that libtorch is CPU-only."
  fi
  local abi; abi=$(abi_of "$dir")
  mkdir -p .build
  cat > .build/libtorch.mk.tmp <<MK
# Written by scripts/setup.sh; delete it (or run make setup again) to change libtorch.
LIBTORCH_DIR := $dir
LIBTORCH_VERSION := $(version_of "$dir")
LIBTORCH_ABI := $abi
LIBTORCH_CUDA := $cuda
MK
  mv .build/libtorch.mk.tmp .build/libtorch.mk
  say "libtorch $(version_of "$dir") at $dir (C++11 ABI: $abi, CUDA: $cuda)"
  rewrite_gotch
}

# rewrite_gotch: gotch's libtch/lib.go hard-codes libtorch paths and CUDA libraries;
# gotch's own setup-gotch.sh rewrites it in the module cache, and so do we, with a
# file that names no path (the Makefile passes them in CGO_CPPFLAGS/CGO_LDFLAGS).
rewrite_gotch() {
  go mod download github.com/sugarme/gotch
  local modcache; modcache=$(go env GOMODCACHE)
  local lib=$modcache/github.com/sugarme/gotch@$GOTCH_VERSION/libtch/lib.go
  [ -f "$lib" ] || die "gotch $GOTCH_VERSION is not in the module cache ($lib missing) after go mod download."
  if ! cmp -s "$lib" scripts/gotch_lib.go.in; then
    local d; d=$(dirname "$lib")
    chmod u+w "$d" "$lib"
    [ -f "$d/lib.go.orig" ] || cp "$lib" "$d/lib.go.orig"
    cp scripts/gotch_lib.go.in "$lib.tmp" && mv "$lib.tmp" "$lib"
    chmod a-w "$lib" "$d/lib.go.orig" "$d"
    say "rewrote $lib (cgo flags now come from the Makefile)"
  fi
}

setup_venv() {
  local req=scripts/requirements-test.txt stamp=.venv/.captiongo-requirements
  if [ -f "$stamp" ] && cmp -s "$stamp" "$req" && [ -x .venv/bin/python ]; then return; fi
  say "creating .venv with $(paste -sd' ' "$req") (tests and the PyTorch reference only)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || die "'$PYTHON -m venv' failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)."
  .venv/bin/python -m pip install --quiet -r "$req" || die "pip could not install $req into .venv; check the network."
  cp "$req" "$stamp"
}

need_tools
case "${1:-all}" in
  libtorch) setup_libtorch ;;
  venv) setup_venv ;;
  all) setup_libtorch; setup_venv ;;
  *) die "unknown step '$1' (libtorch, venv or all)" ;;
esac
