package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// refProc is a PyTorch reference script kept running while captiongo is timed:
// it answers "NAME REPS" requests with its mean milliseconds per run (see
// refserve.py), so each round of a case times both sides back to back.
type refProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// refCommand runs opt.Python with args in this process's environment, with
// the allocator library -ref-alloc chose preloaded.
func refCommand(opt Options, args ...string) *exec.Cmd {
	cmd := exec.Command(opt.Python, args...)
	if opt.refPreload != "" {
		cmd.Env = append(os.Environ(), "LD_PRELOAD="+opt.refPreload, "MALLOC_CONF="+refMallocConf())
	}
	return cmd
}

// jemallocConf is the jemalloc configuration -ref-alloc jemalloc runs the
// reference with, unless MALLOC_CONF is set: never hand freed pages back
// (jemalloc's default does after 10 s of decay, and measured slower than glibc
// here), the same choice as captiongo's buffer cache.
const jemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1"

// refMallocConf is the MALLOC_CONF the jemalloc reference runs with: the
// user's, or jemallocConf.
func refMallocConf() string {
	if c := os.Getenv("MALLOC_CONF"); c != "" {
		return c
	}
	return jemallocConf
}

// jemallocPaths are where Debian, Ubuntu and Fedora put libjemalloc.so.2.
var jemallocPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
	"/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
	"/usr/lib64/libjemalloc.so.2",
	"/usr/lib/libjemalloc.so.2",
	"/usr/local/lib/libjemalloc.so.2",
}

// refPreload is the library to preload into the reference for -ref-alloc
// (CAPTIONGO_JEMALLOC names it, or it is found in the usual folders).
func refPreload(alloc string) (string, error) {
	switch alloc {
	case "", "default":
		return "", nil
	case "jemalloc":
		paths := jemallocPaths
		if p := os.Getenv("CAPTIONGO_JEMALLOC"); p != "" {
			paths = []string{p}
		}
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf(
			"-ref-alloc jemalloc: no libjemalloc.so.2 in %v (install libjemalloc2, or set CAPTIONGO_JEMALLOC to the library)",
			paths,
		)
	}
	return "", fmt.Errorf("-ref-alloc %q: use default or jemalloc", alloc)
}

// startRef starts bench/SCRIPT with args and decodes the header line it prints
// once its model and inputs are ready into header.
func startRef(opt Options, script string, header any, args ...string) (*refProc, error) {
	_, self, _, _ := runtime.Caller(0)
	cmd := refCommand(opt, append([]string{filepath.Join(filepath.Dir(self), script)}, args...)...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("PyTorch reference %s: %v", script, err)
	}
	r := &refProc{cmd: cmd, in: in, out: bufio.NewReaderSize(outp, 1<<20)}
	line, err := r.out.ReadBytes('\n')
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("PyTorch reference %s exited before it was ready: %v", script, err)
	}
	if err := json.Unmarshal(line, header); err != nil {
		r.Close()
		return nil, fmt.Errorf("PyTorch reference %s printed %q: %v", script, line, err)
	}
	return r, nil
}

// Time asks the reference for its mean milliseconds per run of case name.
func (r *refProc) Time(name string, reps int) (float64, error) {
	if _, err := fmt.Fprintf(r.in, "%s %d\n", name, reps); err != nil {
		return 0, fmt.Errorf("PyTorch reference: %v", err)
	}
	line, err := r.out.ReadBytes('\n')
	if err != nil {
		return 0, fmt.Errorf("PyTorch reference died timing %s: %v", name, err)
	}
	var ms float64
	if err := json.Unmarshal(line, &ms); err != nil {
		return 0, fmt.Errorf("PyTorch reference answered %q for %s: %v", line, name, err)
	}
	return ms, nil
}

// Close ends the reference process.
func (r *refProc) Close() error {
	r.in.Close()
	return r.cmd.Wait()
}

// timing is one case measured in interleaved rounds.
type timing struct {
	Go, Py   float64 // median milliseconds per run over the rounds
	Lo, Hi   float64 // lowest and highest per-round speedup (PyTorch / captiongo)
	Rounds   int
	RepsEach int
}

// Speedup is PyTorch's median time over captiongo's.
func (t timing) Speedup() float64 { return t.Py / t.Go }

// Note says how the medians were taken.
func (t timing) Note() string {
	if t.Rounds == 1 {
		return fmt.Sprintf("1 round of %d runs each", t.RepsEach)
	}
	return fmt.Sprintf(
		"medians of %d interleaved rounds of %d runs each side; per-round speedup %.2f-%.2f",
		t.Rounds,
		t.RepsEach,
		t.Lo,
		t.Hi,
	)
}

// benchDevice resolves -device for the Go side; sync waits for its queued
// work (a no-op on the CPU), as the reference calls torch.cuda.synchronize.
func benchDevice(name torch.DeviceName) (dev gotch.Device, sync func(), err error) {
	if name != torch.DeviceCUDA {
		return gotch.CPU, func() {}, nil
	}
	dev, err = torch.Device(torch.DeviceCUDA)
	if err != nil {
		return gotch.CPU, nil, err
	}
	return dev, func() { ts.CudaSynchronize() }, nil
}

// interleave times case name on both sides in rounds of reps runs each,
// alternating which side goes first, after one untimed warm-up run of goRun
// (the reference warmed up before its header). sync runs after each side's
// runs, inside its timing.
func interleave(ref *refProc, name string, rounds, reps int, sync func(), goRun func()) (timing, error) {
	goRun()
	sync()
	var gos, pys, sp []float64
	timeGo := func() float64 {
		t0 := time.Now()
		for i := 0; i < reps; i++ {
			goRun()
		}
		sync()
		return float64(time.Since(t0).Nanoseconds()) / 1e6 / float64(reps)
	}
	for r := 0; r < rounds; r++ {
		var g, p float64
		var err error
		if r%2 == 0 {
			g = timeGo()
			p, err = ref.Time(name, reps)
		} else {
			p, err = ref.Time(name, reps)
			g = timeGo()
		}
		if err != nil {
			return timing{}, err
		}
		gos, pys, sp = append(gos, g), append(pys, p), append(sp, p/g)
	}
	sort.Float64s(sp)
	return timing{Go: median(gos), Py: median(pys), Lo: sp[0], Hi: sp[len(sp)-1], Rounds: rounds, RepsEach: reps}, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
