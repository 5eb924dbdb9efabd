package torch

// #cgo CXXFLAGS: -std=c++17
// #cgo LDFLAGS: -lstdc++
// int captiongo_cxx11_abi();
// const char *captiongo_torch_version();
// int captiongo_get_num_threads();
// void captiongo_set_num_threads(int n);
// #include <stdint.h>
// void captiongo_manual_seed(int64_t seed);
import "C"

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Info describes the libtorch this process runs on, as `captiongo doctor` prints it.
type Info struct {
	CompiledVersion string   // TORCH_VERSION of the headers this binary was compiled against
	CompiledABI     int      // _GLIBCXX_USE_CXX11_ABI this binary was compiled with
	LoadedVersion   string   // version of the libtorch folder the loader picked ("" if unknown)
	LibtorchDir     string   // folder holding the libtorch_cpu.so that is loaded
	LibraryABI      int      // ABI of the loaded libc10.so (-1 if it cannot be told)
	Libraries       []string // libtorch and c10 libraries mapped into this process
	CUDALinked      bool     // libtorch_cuda.so is loaded
	CUDAAvailable   bool
	CUDADevices     int
	CudnnAvailable  bool
	CUDAWhyNot      string // plain words, when CUDAAvailable is false
	Threads         int    // libtorch's intra-op threads
}

// SetThreads sets libtorch's intra-op thread count (at::set_num_threads).
func SetThreads(n int) { C.captiongo_set_num_threads(C.int(n)) }

// ManualSeed seeds libtorch's random generators, as torch.manual_seed does.
func ManualSeed(seed int64) { C.captiongo_manual_seed(C.int64_t(seed)) }

// Threads returns libtorch's intra-op thread count.
func Threads() int { return int(C.captiongo_get_num_threads()) }

// Inspect reports on the libtorch this process has loaded.
func Inspect() Info {
	in := Info{
		CompiledVersion: C.GoString(C.captiongo_torch_version()),
		CompiledABI:     int(C.captiongo_cxx11_abi()),
		LibraryABI:      -1,
		Threads:         Threads(),
	}
	in.Libraries = loadedTorchLibraries()
	for _, l := range in.Libraries {
		switch filepath.Base(l) {
		case "libtorch_cpu.so":
			in.LibtorchDir = filepath.Dir(filepath.Dir(l))
		case "libc10.so":
			in.LibraryABI = libraryABI(l)
		case "libtorch_cuda.so":
			in.CUDALinked = true
		}
	}
	if in.LibtorchDir != "" {
		// torch/version.h declares the version up to libtorch 2.8; later releases
		// moved the numbers to torch/headeronly/version.h.
		inc := filepath.Join(in.LibtorchDir, "include", "torch")
		in.LoadedVersion = headerVersion(filepath.Join(inc, "csrc", "api", "include", "torch", "version.h"))
		if in.LoadedVersion == "" {
			in.LoadedVersion = headerVersion(filepath.Join(inc, "headeronly", "version.h"))
		}
	}
	in.CUDAAvailable = gotch.CUDA.IsAvailable()
	if in.CUDAAvailable {
		in.CUDADevices = int(gotch.CUDA.DeviceCount())
		in.CudnnAvailable = gotch.CUDA.CudnnIsAvailable()
	} else {
		in.CUDAWhyNot = cudaWhyNot(in.CUDALinked)
	}
	return in
}

func cudaWhyNot(linked bool) string {
	if !linked {
		return "this is a CPU build (libtorch_cuda is not linked); on a machine with an NVIDIA GPU run `make setup CUDA=1 " +
			"&& make build`, or `make setup LIBTORCH=auto && make build` to use the CUDA of an installed PyTorch"
	}
	if _, err := os.Stat("/proc/driver/nvidia/version"); err != nil {
		return "libtorch_cuda is linked, but no NVIDIA driver is loaded on this machine (/proc/driver/nvidia/version is " +
			"absent)"
	}
	if v := os.Getenv("CUDA_VISIBLE_DEVICES"); v != "" {
		return fmt.Sprintf("an NVIDIA driver is loaded, but libtorch sees no device (CUDA_VISIBLE_DEVICES=%q)", v)
	}
	return "an NVIDIA driver is loaded, but libtorch sees no usable device (is the driver older than the CUDA this " +
		"libtorch was built for? check nvidia-smi)"
}

// loadedTorchLibraries lists the libtorch/c10 shared objects in /proc/self/maps.
func loadedTorchLibraries() []string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := fields[len(fields)-1]
		b := filepath.Base(p)
		if (strings.HasPrefix(b, "libtorch") || strings.HasPrefix(b, "libc10")) && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// libraryABI tells the C++ ABI of a libc10.so from how it mangles std::string in
// c10::Error's constructor: "Ss" before the C++11 ABI, "NSt7__cxx11..." after.
func libraryABI(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	switch {
	case bytes.Contains(b, []byte("_ZN3c105ErrorC2ENS_14SourceLocationESs")):
		return 0
	case bytes.Contains(b, []byte("_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_string")):
		return 1
	}
	return -1
}

var versionRe = regexp.MustCompile(`TORCH_VERSION_(MAJOR|MINOR|PATCH) (\d+)`)

func headerVersion(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	parts := map[string]string{}
	for _, m := range versionRe.FindAllSubmatch(b, -1) {
		parts[string(m[1])] = string(m[2])
	}
	if len(parts) != 3 {
		return ""
	}
	return parts["MAJOR"] + "." + parts["MINOR"] + "." + parts["PATCH"]
}

// GotchVersion is the libtorch release gotch v0.9.1's wrappers are generated from.
const GotchVersion = "2.1.0"

// StubbedWrappers are gotch's generated wrappers that `make setup` replaces with a
// runtime error when it builds against a libtorch newer than GotchVersion (their
// ATen signatures changed; the list is scripts/patch_gotch.sh's STUBBED_WRAPPERS,
// see scripts/stub_wrappers.py). Nothing captiongo does calls them.
var StubbedWrappers = []string{"_cslt_sparse_mm", "_scaled_mm", "_scaled_mm_out"}

// GoBytesPerTensor measures how many bytes of Go heap gotch allocates for each
// tensor handle it creates. Stock gotch v0.9.1 gives every handle a 100 KB block
// (so that Go's collector feels libtorch's memory), which makes each libtorch op
// pay for garbage collection; the copy `make setup` builds removes it
// (scripts/patch_gotch.sh), leaving a few hundred bytes.
func GoBytesPerTensor() float64 {
	x := ts.MustOnes([]int64{1}, gotch.Float, gotch.CPU)
	defer x.MustDrop()
	const n = 64
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		x.MustView([]int64{1}, false).MustDrop()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / n
}

// PatchedGotchMaxBytes separates the two builds: below it GoBytesPerTensor
// says captiongo's patched gotch, far above it (100 KB) the stock module.
const PatchedGotchMaxBytes = 16 << 10

// ABIName names an _GLIBCXX_USE_CXX11_ABI value in words.
func ABIName(abi int) string {
	switch abi {
	case 0:
		return "pre-C++11 (_GLIBCXX_USE_CXX11_ABI=0)"
	case 1:
		return "C++11 (_GLIBCXX_USE_CXX11_ABI=1)"
	}
	return "unknown"
}
