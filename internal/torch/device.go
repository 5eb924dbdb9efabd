package torch

import (
	"fmt"

	"github.com/sugarme/gotch"
)

// Device resolves a config's device name ("auto", "cpu" or "cuda") to a gotch
// device. "auto" picks CUDA when libtorch sees a GPU and the CPU otherwise;
// "cuda" on a machine without one is an error that says why.
func Device(name string) (gotch.Device, error) {
	switch name {
	case "", "auto":
		if gotch.CUDA.IsAvailable() {
			return gotch.CudaBuilder(0), nil
		}
		return gotch.CPU, nil
	case "cpu":
		return gotch.CPU, nil
	case "cuda":
		if !gotch.CUDA.IsAvailable() {
			return gotch.CPU, fmt.Errorf(
				"device = \"cuda\" but CUDA is not available: %s",
				cudaWhyNot(Inspect().CUDALinked),
			)
		}
		return gotch.CudaBuilder(0), nil
	}
	return gotch.CPU, fmt.Errorf("device %q: want auto, cpu or cuda", name)
}
