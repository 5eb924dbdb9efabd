#!/usr/bin/env bash
# nccl_includes.sh TORCH_DIR [DIR...]: the -I flags under which c10d's
# ProcessGroupNCCL compiles against the libtorch in TORCH_DIR: nccl.h and the CUDA
# headers libtorch's CUDA headers include, looked for in the Python wheels'
# TORCH_DIR/../nvidia/*/include, each DIR's nvidia/*/include, $CUDA_HOME/include and
# /usr/local/cuda/include. Prints them (one line) when `#include <nccl.h>` and
# <ATen/cuda/CUDAContext.h> preprocess with them; otherwise prints nothing, leaves
# the preprocessor's error on stderr and exits 1. The one rule for the nccl build
# tag: the Makefile, scripts/device_pack.sh and scripts/device_bench.sh use it.
set -uo pipefail
T=$1
shift
inc=
for d in "$T"/../nvidia/*/include; do [ -d "$d" ] && inc+=" -I$d"; done
for x in "$@"; do
  for d in "$x"/nvidia/*/include; do [ -d "$d" ] && inc+=" -I$d"; done
done
for d in ${CUDA_HOME:+"$CUDA_HOME/include"} /usr/local/cuda/include; do [ -d "$d" ] && inc+=" -I$d"; done
# shellcheck disable=SC2086 # $inc is a list of flags
printf '#include <nccl.h>\n#include <ATen/cuda/CUDAContext.h>\n' |
  "${CXX:-g++}" -std=c++17 -E -x c++ -I"$T/include" -I"$T/include/torch/csrc/api/include" $inc - > /dev/null \
  || exit 1
echo "${inc# }"
