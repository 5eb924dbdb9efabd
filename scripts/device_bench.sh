#!/usr/bin/env bash
# device_bench.sh: on the GPU machine (the `device` tool, which has a Python with a
# CUDA build of torch and torchvision but no Go and no network), get a captiongo
# binary linked against that Python's libtorch with CUDA, then run on the GPU:
#   0. the model package's CUDA tests (CPU and CUDA results of the same model
#      agree; cuDNN gets one flat LSTM weight buffer) (tests_cuda.log);
#   1. the decode and train bench cases, both sides on CUDA (bench_cuda.jsonl);
#   2. the built-in experiment, experiments/shapes.toml, with device = "cuda"
#      (demo_cuda.log: per-epoch loss and metrics, wall time);
#   3. one epoch of full fine-tuning (train_cnn = true) of a tiny experiment on
#      CUDA (finetune_cuda.log), the path that needs grad mode on the locked thread;
#   4. (STEPS=nccl, not in the default) a data-parallel run at world size 1 on CUDA,
#      its collectives and DDP's reducer on c10d's NCCL (nccl_cuda.log); this needs a
#      binary built there with the c10d and nccl tags (gloo's headers from .device/,
#      nccl.h and the CUDA headers from the Python's nvidia wheels), which it builds.
# Needs .device/ from scripts/device_pack.sh (carry [".device"]). The binary is
# .device/bin/captiongo-cuda-<torch version> when device_pack.sh could build it
# here for the device's torch version and it starts there; otherwise this script
# builds one there (about 2 minutes) as `make setup LIBTORCH=auto` does: gotch patched
# by scripts/patch_gotch.sh, the ABI read from libc10, CUDA libraries linked.
# STEPS picks steps (default: tests bench demo finetune). Each step has its own time limit and writes
# to $OUT as it goes, so a step that
# fails or runs long still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/captiongo-device}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
T=$("$PY" -c 'import importlib.util; print(list(importlib.util.find_spec("torch").submodule_search_locations)[0])')
V=$(sed -n 's/^__version__ = .\([0-9.]*\).*/\1/p' "$T/version.py")
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

STEPS=${STEPS:-tests bench demo finetune}
has() { [[ " $STEPS " == *" $1 "* ]]; }
BIN=.device/bin/captiongo-cuda-$V
if [ -x "$BIN" ] && LD_LIBRARY_PATH=$T/lib "$BIN" doctor > "$OUT/doctor.txt" 2>&1 &&
  ! { has nccl && ! grep -q "NCCL (CUDA tensors)" "$OUT/doctor.txt"; }; then
  echo "libtorch $V at $T: using the binary built by device_pack.sh"
  export LD_LIBRARY_PATH=$T/lib
else
  [ -x "$BIN" ] && { echo "the packed binary does not start here:"; cat "$OUT/doctor.txt"; }
  BIN=bin/captiongo
  (
    set -e
    tar -xJf .device/go.tar.xz -C /tmp
    export PATH=/tmp/go/bin:$PATH GOROOT=/tmp/go GOTOOLCHAIN=local GOPROXY=off GOWORK=off GOFLAGS=-mod=vendor
    rm -rf vendor && tar -xJf .device/vendor.tar.xz
    # A vendor/ folder makes every later go command in this checkout use it: remove it on exit.
    trap 'rm -rf vendor' EXIT
    ABI=1
    grep -q "_ZN3c105ErrorC2ENS_14SourceLocationESs" "$T/lib/libc10.so" && ABI=0
    bash scripts/patch_gotch.sh vendor/github.com/sugarme/gotch "$V" "$PY"
    LIBS="-ltorch_cpu -lc10"
    [ -f "$T/lib/libtorch_cuda.so" ] \
      && LIBS="-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,--as-needed"
    export CGO_ENABLED=1 GODEBUG=goindex=0
    export CGO_CPPFLAGS="-I$T/include -I$T/include/torch/csrc/api/include -D_GLIBCXX_USE_CXX11_ABI=$ABI"
    export CGO_CXXFLAGS="-O1 -g0"
    export CGO_LDFLAGS="-L$T/lib -Wl,-rpath,$T/lib $LIBS"
    # The collectives (as make sets them up): Gloo with the packed headers, and NCCL
    # when nccl.h and the CUDA headers libtorch's CUDA headers include are here.
    TAGS=
    if [ -d .device/gloo-include ]; then
      CGO_CPPFLAGS="$CGO_CPPFLAGS -I$PWD/.device/gloo-include"
      TAGS=c10d
      if INC=$(bash scripts/nccl_includes.sh "$T" 2> "$OUT/nccl_headers.txt"); then
        CGO_CPPFLAGS="$CGO_CPPFLAGS $INC"
        TAGS=c10d,nccl
      else
        echo "no NCCL build: $(head -c 300 "$OUT/nccl_headers.txt")"
      fi
    fi
    export GOFLAGS="$GOFLAGS${TAGS:+ -tags=$TAGS}"
    echo "libtorch $V at $T (ABI $ABI, tags: ${TAGS:-none}): building"
    time go build -o "$BIN" .
    go test -c -o ".device/bin/model.test-cuda-$V" ./model
  ) || { echo "build failed"; exit 1; }
  "$BIN" doctor > "$OUT/doctor.txt" 2>&1
fi
cat "$OUT/doctor.txt"

step() { # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name" 2>&1
  local rc=$?
  echo "rc $rc after $((SECONDS - t0)) s" >> "$OUT/$name"
  tail -n 25 "$OUT/$name"
}
TEST=$PWD/.device/bin/model.test-cuda-$V
has tests && (cd model && step tests_cuda.log 120 "$TEST" -test.v -test.count=1 -test.run 'CUDA|LSTMWarning')
if has bench; then
  step bench_train.jsonl 200 "$BIN" bench -case train -device "$DEVICE" -python "$PY"
  step bench_decode.jsonl 120 "$BIN" bench -case decode -device "$DEVICE" -python "$PY"
fi
# gcoff (not in the default): the train cases again with Go's garbage collector off,
# to see how much of captiongo's time is collection.
has gcoff && step bench_train_gogc_off.jsonl 200 env GOGC=off "$BIN" bench -case train -device "$DEVICE" -python "$PY"
has demo && step demo_cuda.log 180 "$BIN" train -config experiments/shapes.toml -set device="$DEVICE" \
  -set out_dir=/tmp/runs
if has nccl; then
  # World size 1, as torchrun would start it: rank 0 alone, its GPU's collectives on NCCL.
  rm -rf /tmp/runs/nccl
  step nccl_cuda.log 180 env CAPTIONGO_DIST_WORLD1=1 RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 \
    MASTER_PORT=29533 \
    "$BIN" train -config experiments/shapes.toml -set device="$DEVICE" -set epochs=2 -set out_dir=/tmp/runs \
    -set name=nccl
  if [ "$DEVICE" = cuda ]; then
    grep -q "^data-parallel: .*NCCL (CUDA)" "$OUT/nccl_cuda.log" && echo "NCCL ran: $(grep -m1 "^data-parallel:" \
      "$OUT/nccl_cuda.log")" || echo "NCCL did not run (see nccl_cuda.log's data-parallel line)"
  fi
fi
has finetune || exit 0
cat > /tmp/finetune.toml <<'EOF'
data = "synth"
synth_n = 200
freq_threshold = 1
image_size = 299
crop = 0
random_crop = false
train_cnn = true
feature_cache = false
embed_size = 256
hidden_size = 256
epochs = 2
batch_size = 32
eval_images = 8
sample_images = 1
max_len = 10
EOF
step finetune_cuda.log 90 "$BIN" train -config /tmp/finetune.toml -set device="$DEVICE" -set out_dir=/tmp/runs
