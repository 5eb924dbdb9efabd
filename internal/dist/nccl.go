//go:build c10d && nccl

package dist

// The nccl tag (make sets it on a CUDA libtorch when nccl.h is found): CUDA
// tensors' collectives run on c10d's ProcessGroupNCCL. (torch 2.11's
// CUDAEvent.h, which ProcessGroupNCCL.hpp includes, aligns a struct to
// std::hardware_destructive_interference_size, which GCC warns about: harmless
// here, so not shown.)

// #cgo CXXFLAGS: -DCAPTIONGO_NCCL -DUSE_C10D_NCCL -Wno-interference-size
import "C"

// NCCL reports whether CUDA tensors' collectives run on NCCL.
const NCCL = true
