//go:build !(c10d && nccl)

package dist

// NCCL reports whether CUDA tensors' collectives run on NCCL (the nccl
// build tag; without it they run on Gloo, staged through the host).
const NCCL = false
