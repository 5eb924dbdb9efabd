#!/usr/bin/env bash
# device_bench.sh: on the GPU machine (the `device` tool, which has a Python with a
# CUDA build of torch and torchvision but no Go and no network), build captiongo
# against that Python's libtorch with CUDA, as `make setup LIBTORCH=auto` does
# (gotch's three changed wrappers stubbed, C++11 ABI), then run the decode and train
# bench cases with both sides on CUDA. Needs .device/ from scripts/device_pack.sh
# (carry [".device"]). Writes doctor.txt, gpu.txt and bench_cuda.jsonl to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/captiongo-device}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
tar -xJf .device/go.tar.xz -C /tmp
export PATH=/tmp/go/bin:$PATH GOROOT=/tmp/go GOTOOLCHAIN=local GOPROXY=off GOWORK=off GOFLAGS=-mod=vendor
rm -rf vendor && tar -xJf .device/vendor.tar.xz
# A vendor/ folder makes every later go command in this checkout use it: remove it on exit.
trap 'rm -rf vendor' EXIT
T=$("$PY" -c 'import importlib.util; print(list(importlib.util.find_spec("torch").submodule_search_locations)[0])')
V=$(sed -n 's/^__version__ = .\([0-9.]*\).*/\1/p' "$T/version.py")
ABI=1
grep -q "_ZN3c105ErrorC2ENS_14SourceLocationESs" "$T/lib/libc10.so" && ABI=0
L=vendor/github.com/sugarme/gotch/libtch
cp scripts/gotch_lib.go.in "$L/lib.go"
if [ "$V" != 2.1.0 ]; then
  "$PY" scripts/stub_wrappers.py "$L/torch_api_generated.cpp.h" "$V" atg__cslt_sparse_mm atg__scaled_mm atg__scaled_mm_out
fi
LIBS="-ltorch_cpu -lc10"
[ -f "$T/lib/libtorch_cuda.so" ] && LIBS="-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,--as-needed"
export CGO_ENABLED=1 GODEBUG=goindex=0
export CGO_CPPFLAGS="-I$T/include -I$T/include/torch/csrc/api/include -D_GLIBCXX_USE_CXX11_ABI=$ABI"
export CGO_CXXFLAGS="-O1 -g0"
export CGO_LDFLAGS="-L$T/lib -Wl,-rpath,$T/lib $LIBS"
echo "libtorch $V at $T (ABI $ABI): building" >&2
time go build -o bin/captiongo .
nvidia-smi -L > "$OUT/gpu.txt" 2>&1 || true
bin/captiongo doctor | tee "$OUT/doctor.txt"
DEVICE=${DEVICE:-cuda}
for c in decode train; do
  bin/captiongo bench -case $c -device "$DEVICE" -python "$PY" | tee -a "$OUT/bench_$DEVICE.jsonl"
done
