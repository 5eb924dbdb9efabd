package torch

import (
	"fmt"

	"github.com/sugarme/gotch"
)

// DeviceName is where a run computes, as configs and flags spell it.
type DeviceName string

// The device names.
const (
	DeviceAuto DeviceName = "auto" // CUDA when libtorch sees a GPU, else the CPU
	DeviceCPU  DeviceName = "cpu"
	DeviceCUDA DeviceName = "cuda" // the first GPU
)

// DeviceNames lists them.
var DeviceNames = []DeviceName{DeviceAuto, DeviceCPU, DeviceCUDA}

// Device resolves a device name to a gotch device. "auto" (and "") picks CUDA
// when libtorch sees a GPU and the CPU otherwise; "cuda" on a machine without
// one is an error that says why.
func Device(name DeviceName) (gotch.Device, error) {
	switch name {
	case "", DeviceAuto:
		if gotch.CUDA.IsAvailable() {
			return gotch.CudaBuilder(0), nil
		}
		return gotch.CPU, nil
	case DeviceCPU:
		return gotch.CPU, nil
	case DeviceCUDA:
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
