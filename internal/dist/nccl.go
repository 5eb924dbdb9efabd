//go:build c10d && nccl

package dist

// The nccl tag (make sets it on a CUDA libtorch when nccl.h is found): CUDA
// tensors' collectives run on c10d's ProcessGroupNCCL.

// #cgo CXXFLAGS: -DCAPTIONGO_NCCL -DUSE_C10D_NCCL
import "C"

// NCCL reports whether CUDA tensors' collectives run on NCCL.
const NCCL = true
