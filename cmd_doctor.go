package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/torch"
)

func init() {
	register("doctor", command{
		summary: "libtorch path, version, ABI and CUDA, the JPEG decoder, in plain words",
		usage:   "",
		setup: func(fs *flag.FlagSet) func([]string) error {
			return func([]string) error { return torch.Run(func() error { return doctor(os.Stdout) }) }
		},
	})
}

// doctor prints what `captiongo doctor` reports.
func doctor(w io.Writer) error {
	in := torch.Inspect()
	fmt.Fprintf(w, "libtorch (compiled against): %s\n", in.CompiledVersion)
	if in.LibtorchDir == "" {
		return errors.New("libtorch_cpu.so is not loaded in this process; rebuild with `make build`")
	}
	loaded := in.LoadedVersion
	if loaded == "" {
		loaded = "unknown (no include/ beside lib/)"
	}
	fmt.Fprintf(w, "libtorch (loaded):           %s from %s\n", loaded, in.LibtorchDir)
	fmt.Fprintf(
		w,
		"C++ ABI:                     binary %s, libtorch %s\n",
		torch.ABIName(in.CompiledABI),
		torch.ABIName(in.LibraryABI),
	)
	fmt.Fprintf(w, "CPU threads (intra-op):      %d\n", in.Threads)
	if in.CUDAAvailable {
		fmt.Fprintf(
			w,
			"CUDA:                        available, %d device(s), cuDNN %v\n",
			in.CUDADevices,
			in.CudnnAvailable,
		)
	} else {
		fmt.Fprintf(w, "CUDA:                        not available: %s\n", in.CUDAWhyNot)
	}
	var problems []string
	if in.LoadedVersion != "" && in.LoadedVersion != in.CompiledVersion {
		problems = append(
			problems,
			fmt.Sprintf(
				"the loaded libtorch (%s) is not the one this binary was compiled against (%s)",
				in.LoadedVersion,
				in.CompiledVersion,
			),
		)
	}
	if in.CompiledVersion != torch.GotchVersion {
		fmt.Fprintf(
			w,
			"gotch:                       v0.9.1, generated for libtorch %s; built here against %s with %d wrappers stubbed "+
				"(%s raise an error; nothing captiongo does calls them)\n",
			torch.GotchVersion,
			in.CompiledVersion,
			len(torch.StubbedWrappers),
			strings.Join(torch.StubbedWrappers, ", "),
		)
	}
	if b := torch.GoBytesPerTensor(); b < torch.PatchedGotchMaxBytes {
		fmt.Fprintf(
			w,
			"gotch build:                 captiongo's patched copy (%.0f bytes of Go heap per tensor handle)\n",
			b,
		)
	} else {
		fmt.Fprintf(w, "gotch build:                 stock module, %.0f KB of Go heap per tensor handle: every libtorch op "+
			"pays for garbage collection (build with make, which uses the copy make setup patches)\n", b/1024)
	}
	fmt.Fprintf(w, "CPU tensor buffer cache:     %s\n", torch.CPUCache().Why)
	if data.JPEGMatchesPIL {
		fmt.Fprintf(
			w,
			"JPEG decoder:                %s (pixels equal PIL's, as torchvision reads them)\n",
			data.JPEGDecoder,
		)
	} else {
		fmt.Fprintf(w, "JPEG decoder:                %s: pixels are not PIL's (on Flickr8k 1.5 levels apart on average, up "+
			"to 48) and decoding takes about 4x as long; install libjpeg-turbo's header (Debian/Ubuntu: libjpeg62-turbo-dev) "+
			"and rebuild with make\n", data.JPEGDecoder)
	}
	switch {
	case dist.NCCL:
		fmt.Fprintf(w, "data-parallel collectives:   c10d Gloo (CPU tensors), NCCL (CUDA tensors)\n")
	case dist.Built:
		fmt.Fprintf(w, "data-parallel collectives:   c10d Gloo (CUDA tensors staged through the host: this build has no "+
			"NCCL, which make adds on a CUDA libtorch when nccl.h and the CUDA headers are found: docs/SETUP.md)\n")
	default:
		fmt.Fprintf(w, "data-parallel collectives:   none: %v\n", dist.ErrNotBuilt)
	}
	if in.LibraryABI >= 0 && in.LibraryABI != in.CompiledABI {
		problems = append(problems, "C++ ABI mismatch between this binary and libtorch")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(w, "status:                      ok")
	return nil
}
