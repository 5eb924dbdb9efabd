#!/usr/bin/env bash
# patch_gotch.sh DIR LIBTORCH_VERSION [PYTHON]: turn a copy of gotch v0.9.1's files in DIR
# (setup's build copy of the module, or vendor/github.com/sugarme/gotch on the GPU machine)
# into the gotch captiongo builds against. The module cache itself is never changed.
#  1. libtch/lib.go names no libtorch path or CUDA library: the flags come from
#     CGO_CPPFLAGS/CGO_LDFLAGS (the Makefile's), as gotch's own setup rewrites that file.
#  2. gotch gives every tensor handle it creates a 100 KB Go allocation (ts/tensor.go,
#     `x.d = new(bigStruct)`) so that Go's collector feels libtorch's memory and runs
#     finalizers. captiongo frees its tensors explicitly (MustDrop), and that allocation
#     made every libtorch op cost about 16 us instead of 1.3 us on this project's CPUs,
#     almost all of it garbage collection: on a GPU it was most of a fine-tuning step's
#     forward pass. It is removed.
#  3. For libtorch newer than 2.1.0 (gotch v0.9.1 is generated against 2.1.0), the
#     generated wrappers whose ATen signatures changed (STUBBED_WRAPPERS, also listed in
#     internal/torch's StubbedWrappers) get a body that raises a clear runtime error
#     (scripts/stub_wrappers.py).
set -euo pipefail
dir=$1 v=$2 py=${3:-python3}
here=$(cd "$(dirname "$0")" && pwd)
STUBBED_WRAPPERS="atg__cslt_sparse_mm atg__scaled_mm atg__scaled_mm_out"
die() { echo "patch_gotch: $*" >&2; exit 1; }
[ -f "$dir/libtch/lib.go" ] && [ -f "$dir/ts/tensor.go" ] || die "$dir is not a copy of gotch (no libtch/lib.go or" \
  "ts/tensor.go)"
cp "$here/gotch_lib.go.in" "$dir/libtch/lib.go"
t=$dir/ts/tensor.go
line='	x.d = new(bigStruct)'
n=$(grep -cxF "$line" "$t" || true)
[ "$n" = 1 ] || die "$t: expected one line '$line' (gotch v0.9.1), found $n"
sed -i 's|^\tx\.d = new(bigStruct)$|\t// x.d = new(bigStruct): removed by captiongo, see scripts/patch_gotch.sh|' "$t"
grep -qxF "$line" "$t" && die "$t: the bigStruct line is still there"
if [ "$v" != 2.1.0 ]; then
  "$py" "$here/stub_wrappers.py" "$dir/libtch/torch_api_generated.cpp.h" "$v" $STUBBED_WRAPPERS
fi
