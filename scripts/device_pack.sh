#!/usr/bin/env bash
# device_pack.sh: prepare what the GPU machine (the `device` tool) needs to build
# captiongo, which it cannot download: a trimmed Go toolchain and a `go mod vendor`
# copy of the dependencies, both in .device/ (git-ignored).
# Then, from the device tool: run `bash scripts/device_bench.sh` with carry [".device"].
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device
GOROOT=$(go env GOROOT)
# The toolchain: the go command, the compile/link/asm/cgo tools, the standard
# library's sources without tests, and the runtime's C headers (cgo needs them).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/go/bin" "$tmp/go/pkg/tool/linux_amd64"
cp "$GOROOT/bin/go" "$tmp/go/bin/"
for t in compile link asm cgo; do cp "$GOROOT/pkg/tool/linux_amd64/$t" "$tmp/go/pkg/tool/linux_amd64/"; done
cp -R "$GOROOT/pkg/include" "$tmp/go/pkg/"
cp "$GOROOT/VERSION" "$GOROOT/go.env" "$tmp/go/" 2>/dev/null || true
(cd "$GOROOT" && find src -type d -name testdata -prune -o -type f ! -name '*_test.go' -print) | \
  (cd "$GOROOT" && tar -cf - -T -) | tar -xf - -C "$tmp/go"
tar -cJf .device/go.tar.xz -C "$tmp" go
# The dependencies, as `go mod vendor` lays them out (only the packages the build imports).
GOWORK=off go mod vendor -o "$tmp/vendor"
tar -cJf .device/vendor.tar.xz -C "$tmp" vendor
du -h .device/*.tar.xz
