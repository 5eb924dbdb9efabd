#!/usr/bin/env bash
# device_pack.sh: prepare what the GPU machine (the `device` tool) needs to build
# captiongo, which it cannot download: a trimmed Go toolchain and a `go mod vendor`
# copy of the dependencies, both in .device/ (git-ignored).
# Also, when a CUDA torch wheel of the device's version is unpacked here (DEVICE_TORCH,
# default third_party/test-torch-2.11.0/torch, which TestSetupNewerLibtorch installs)
# a CUDA-linked binary (against a gotch copy patched as setup does, in third_party/),
# .device/bin/captiongo-cuda-<version>, and the model package's test binary
# (model.test-cuda-<version>, for its CUDA tests): they save the device the
# 2-minute C++ build. The binary has the data-parallel collectives (the c10d tag,
# with gloo's headers) and NCCL (the nccl tag, with the CUDA headers that
# scripts/fetch_cuda_headers.py fetches from PyPI once), as make builds them.
# It cannot be run here (the CUDA libraries it needs are not installed), so it is
# linked with --allow-shlib-undefined; device_bench.sh tries it and builds there
# if it does not start.
# Then, from the device tool: run `bash scripts/device_bench.sh` with carry [".device"]
# (about 62 MiB of the 64 the tool carries: keep nothing else in .device/).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device
GOROOT=$(go env GOROOT)
# The toolchain: the go command, the compile/link/asm/cgo tools (and vet, which go test -c wants), the standard
# library's sources without tests, and the runtime's C headers (cgo needs them).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/go/bin" "$tmp/go/pkg/tool/linux_amd64"
cp "$GOROOT/bin/go" "$tmp/go/bin/"
for t in compile link asm cgo vet; do cp "$GOROOT/pkg/tool/linux_amd64/$t" "$tmp/go/pkg/tool/linux_amd64/"; done
cp -R "$GOROOT/pkg/include" "$tmp/go/pkg/"
cp "$GOROOT/VERSION" "$GOROOT/go.env" "$tmp/go/" 2>/dev/null || true
(cd "$GOROOT" && find src -type d -name testdata -prune -o -type f ! -name '*_test.go' -print) | \
  (cd "$GOROOT" && tar -cf - -T -) | tar -xf - -C "$tmp/go"
tar -cJf .device/go.tar.xz -C "$tmp" go
# The dependencies, as `go mod vendor` lays them out (only the packages the build imports).
GOWORK=off go mod vendor -o "$tmp/vendor"
tar -cJf .device/vendor.tar.xz -C "$tmp" vendor
# gloo's headers (Debian's libgloo-dev; c10d's ProcessGroupGloo.hpp includes them and
# the device has none), so that the device's build has the data-parallel collectives.
rm -rf .device/gloo-include
if [ -f /usr/include/gloo/config.h ]; then
  mkdir -p .device/gloo-include && cp -R /usr/include/gloo .device/gloo-include/
fi
DT=${DEVICE_TORCH:-third_party/test-torch-2.11.0/torch}
rm -rf .device/bin # never leave binaries of an older build behind
if [ -f "$DT/lib/libtorch_cuda.so" ]; then
  DT=$(cd "$DT" && pwd)
  V=$(sed -n 's/^__version__ = .\([0-9.]*\).*/\1/p' "$DT/version.py")
  # gotch as setup builds it (scripts/patch_gotch.sh), in a fixed place so that Go's
  # cache keeps the compiled C++ wrapper between packs.
  G=$PWD/third_party/device-gotch-v0.9.1-libtorch-$V
  rm -rf "$G"
  cp -R "$(go env GOMODCACHE)/github.com/sugarme/gotch@v0.9.1" "$G" && chmod -R u+w "$G"
  bash scripts/patch_gotch.sh "$G" "$V" "${PYTHON:-python3}"
  gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
  printf 'go %s\n\nuse %s\n\nreplace github.com/sugarme/gotch v0.9.1 => %s\n' "$gover" "$PWD" "$G" > "$tmp/go.work"
  ABI=1
  grep -q "_ZN3c105ErrorC2ENS_14SourceLocationESs" "$DT/lib/libc10.so" && ABI=0
  # The data-parallel collectives, as make sets them up: c10d (gloo's headers, packed
  # above) and NCCL when nccl.h and the CUDA headers libtorch's CUDA headers include
  # are found. A pip-installed CUDA torch lacks CUDA 13's crt/ and cccl (and the wheel
  # here lacks more): scripts/fetch_cuda_headers.py fetches the include/ folders of
  # the versions torch pins, once, into third_party/. The device then needs no headers.
  TAGS= INC=
  if [ -d .device/gloo-include ]; then
    TAGS=c10d INC=" -I$PWD/.device/gloo-include"
    H=$PWD/third_party/device-cuda-include-$V
    [ -f "$H/.captiongo-ok" ] || "${PYTHON:-python3}" scripts/fetch_cuda_headers.py "$DT" "$H" \
      || echo "no CUDA headers fetched (the packed binary will have no NCCL)"
    if CUDA_INC=$(bash scripts/nccl_includes.sh "$DT" "$H" 2> "$tmp/nccl.txt"); then
      TAGS=c10d,nccl INC="$INC $CUDA_INC"
    else
      echo "the packed binary has no NCCL: $(head -c 300 "$tmp/nccl.txt")"
    fi
  fi
  mkdir -p .device/bin
  echo "building .device/bin/captiongo-cuda-$V and model.test-cuda-$V against $DT (ABI $ABI, tags: ${TAGS:-none})"
  GOWORK=$tmp/go.work CGO_ENABLED=1 GOFLAGS="${TAGS:+-tags=$TAGS}" \
    CGO_CPPFLAGS="-I$DT/include -I$DT/include/torch/csrc/api/include -D_GLIBCXX_USE_CXX11_ABI=$ABI$INC" \
    CGO_CXXFLAGS="-O1 -g0" \
    CGO_LDFLAGS="-L$DT/lib -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -ltorch_cpu -lc10 -Wl,--as-needed \
-Wl,--allow-shlib-undefined" \
    sh -c "go build -o .device/bin/captiongo-cuda-$V . && go test -c -o .device/bin/model.test-cuda-$V ./model"
  go version -m ".device/bin/captiongo-cuda-$V" | grep -q "=>[[:space:]]*$G" \
    || { echo "the packed binary is not built against $G"; exit 1; }
  [ -z "$TAGS" ] || go version -m ".device/bin/captiongo-cuda-$V" | grep -q "build[[:space:]]*-tags=$TAGS$" \
    || { echo "the packed binary is not built with the tags $TAGS"; exit 1; }
fi
du -h .device/*.tar.xz .device/bin/* 2>/dev/null
