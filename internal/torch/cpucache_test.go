package torch

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// faultsPerCycle allocates, fills and frees a 64 MB tensor ten times on a
// libtorch thread and returns the page faults the process took per cycle after
// the first. Without a cache glibc maps every such block afresh: 16,384 faults.
func faultsPerCycle(t *testing.T) float64 {
	var per float64
	err := Run(func() error {
		cycle := func() {
			x := ts.MustEmpty([]int64{16 << 20}, gotch.Float, gotch.CPU)
			InPlace(x, func() { x.MustFill_(ts.FloatScalar(1)) })
			x.MustDrop()
		}
		cycle()
		var a, b syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &a)
		for i := 0; i < 10; i++ {
			cycle()
		}
		syscall.Getrusage(syscall.RUSAGE_SELF, &b)
		per = float64(b.Minflt-a.Minflt) / 10
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return per
}

// child runs this test binary's test name in a child process with env added
// and returns what the child printed as JSON on its line "RESULT {...}".
func child(t *testing.T, name string, out any, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$")
	cmd.Env = append(append(os.Environ(), "CAPTIONGO_TEST_CHILD=1"), env...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s %v: %v\n%s", name, env, err, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			if err := json.Unmarshal([]byte(rest), out); err != nil {
				t.Fatalf("child %s: %q: %v", name, rest, err)
			}
			return
		}
	}
	t.Fatalf("child %s %v printed no RESULT line:\n%s", name, env, b)
}

func report(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.WriteString("\nRESULT " + string(b) + "\n")
}

// TestCPUCacheReusesBuffers: a large CPU tensor freed and allocated again
// reuses its pages instead of faulting in 64 MB afresh. In a child process
// with CAPTIONGO_CPU_CACHE=0 the cache is off and the same measurement sees
// glibc's page faults, which shows the measurement can fail.
func TestCPUCacheReusesBuffers(t *testing.T) {
	type res struct {
		On     bool
		Why    string
		Faults float64
	}
	if os.Getenv("CAPTIONGO_TEST_CHILD") == "1" {
		c := CPUCache()
		report(res{c.On, c.Why, faultsPerCycle(t)})
		return
	}
	c := CPUCache()
	if !c.On {
		t.Fatalf("the CPU buffer cache is off in a test process: %s", c.Why)
	}
	before := CPUCache()
	if f := faultsPerCycle(t); f > 500 {
		t.Errorf("%.0f page faults per 64 MB tensor after the first: freed buffers are not reused", f)
	}
	after := CPUCache()
	if after.Hits-before.Hits < 10 {
		t.Errorf("cache hits went from %d to %d over 10 cycles", before.Hits, after.Hits)
	}
	var off res
	child(t, "TestCPUCacheReusesBuffers", &off, "CAPTIONGO_CPU_CACHE=0")
	if off.On || !strings.Contains(off.Why, "CAPTIONGO_CPU_CACHE=0") {
		t.Errorf("CAPTIONGO_CPU_CACHE=0: %+v", off)
	}
	if off.Faults < 8000 {
		t.Errorf(
			"without the cache: %.0f page faults per 64 MB cycle, expected ~16,384 (is the measurement blind?)",
			off.Faults,
		)
	}
}

// TestCPUCacheCapAndContents: with a 100 MiB cap, tensors of many sizes never
// leave more than 100 MiB cached (a full cache is given back when it cannot
// serve a request); live tensors of one size class never share a buffer; a
// 100 KB request takes at most 12.5% more; a request takes a cached buffer up
// to a quarter larger than it, and not one larger still; a cap that is not a
// number turns the cache off and says why.
func TestCPUCacheCapAndContents(t *testing.T) {
	type res struct {
		On               bool
		MaxCached, Cap   int64
		Emptied          int64
		Sums             []float64
		LiveGrowth       int64
		NearHit, FarHit  int64
		ShortWhy, BadWhy string
	}
	if os.Getenv("CAPTIONGO_TEST_CHILD") != "1" {
		var r res
		child(t, "TestCPUCacheCapAndContents", &r, "CAPTIONGO_CPU_CACHE=100")
		if !r.On || r.Cap != 100<<20 {
			t.Fatalf("CAPTIONGO_CPU_CACHE=100: on %v, cap %d (%s)", r.On, r.Cap, r.ShortWhy)
		}
		if r.MaxCached > r.Cap {
			t.Errorf("cached %d bytes, over the %d cap", r.MaxCached, r.Cap)
		}
		if r.Emptied == 0 {
			t.Error("sizes over the cap never emptied the cache")
		}
		for i, s := range r.Sums {
			if want := float64(i+1) * (5 << 20); s != want {
				t.Errorf("tensor %d filled with %d sums to %g, want %g: buffers shared", i, i+1, s, want)
			}
		}
		if r.NearHit != 1 || r.FarHit != 0 {
			t.Errorf(
				"after a 10 MiB buffer was freed: a 9 MiB request took it %d times (want 1), a 6 MiB one %d times (want 0)",
				r.NearHit,
				r.FarHit,
			)
		}
		if r.LiveGrowth < 100_000 || r.LiveGrowth > 112_500 {
			t.Errorf("a 100,000-byte tensor took %d cached-class bytes, want 100,000-112,500", r.LiveGrowth)
		}
		var bad res
		child(t, "TestCPUCacheCapAndContents", &bad, "CAPTIONGO_CPU_CACHE=lots")
		if bad.On || !strings.Contains(bad.ShortWhy, `"lots" is not a whole number`) {
			t.Errorf("CAPTIONGO_CPU_CACHE=lots: on %v, %q", bad.On, bad.ShortWhy)
		}
		return
	}
	var r res
	c := CPUCache()
	r.On, r.Cap, r.ShortWhy = c.On, c.CapBytes, c.Why
	if !c.On {
		report(r)
		return
	}
	err := Run(func() error {
		for i := 1; i <= 30; i++ { // 4..33 MB, each a new size class
			x := ts.MustOnes([]int64{int64(i) << 18}, gotch.Float, gotch.CPU)
			x.MustDrop()
			if s := CPUCache(); s.CachedBytes > r.MaxCached {
				r.MaxCached = s.CachedBytes
			}
		}
		r.Emptied = CPUCache().Emptied // before EmptyCPUCache below
		var xs []*ts.Tensor
		for i := 1; i <= 3; i++ { // 20 MB each, one class: reused buffers
			x := ts.MustEmpty([]int64{5 << 20}, gotch.Float, gotch.CPU)
			InPlace(x, func() { x.MustFill_(ts.FloatScalar(float64(i))) })
			xs = append(xs, x)
		}
		for _, x := range xs {
			s := x.MustSum(gotch.Double, false)
			r.Sums = append(r.Sums, Item(s))
			s.MustDrop()
			x.MustDrop()
		}
		live := CPUCache().LiveBytes
		y := ts.MustEmpty([]int64{100_000}, gotch.Uint8, gotch.CPU)
		r.LiveGrowth = CPUCache().LiveBytes - live
		y.MustDrop()
		// A request a little smaller than a cached buffer takes it (captions
		// padded to each batch's longest); one less than 4/5 of it does not.
		EmptyCPUCache()
		big := ts.MustEmpty([]int64{10 << 20}, gotch.Uint8, gotch.CPU)
		big.MustDrop()
		s0 := CPUCache()
		near := ts.MustEmpty([]int64{9 << 20}, gotch.Uint8, gotch.CPU)
		s1 := CPUCache()
		far := ts.MustEmpty([]int64{6 << 20}, gotch.Uint8, gotch.CPU)
		s2 := CPUCache()
		r.NearHit, r.FarHit = s1.Hits-s0.Hits, s2.Hits-s1.Hits
		near.MustDrop()
		far.MustDrop()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	report(r)
}

// TestCgroupMemoryLimit: the default cap is a quarter of the smallest memory
// limit among the process's cgroups and those above them (a Slurm job's --mem,
// a container's limit), for cgroup v2 and v1 trees; "max" and v1's
// "unlimited" are no limit.
func TestCgroupMemoryLimit(t *testing.T) {
	root := t.TempDir()
	write := func(rel, body string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc-v2", "0::/slurm/job_7/step_0\n")
	write("v2/memory.max", "max\n")
	write("v2/slurm/memory.max", "max\n")
	write("v2/slurm/job_7/memory.max", "8589934592\n")
	write("v2/slurm/job_7/step_0/memory.max", "max\n")
	write("proc-v1", "9:name=systemd:/\n4:cpu,memory:/docker/abc\n0::/\n")
	write("v1/memory/memory.limit_in_bytes", "9223372036854771712\n")
	write("v1/memory/docker/abc/memory.limit_in_bytes", "4294967296\n")
	write("proc-none", "0::/user.slice\n")
	write("none/memory.max", "max\n")
	for _, c := range []struct {
		proc, root string
		want       int64
	}{
		{"proc-v2", "v2", 8 << 30},
		{"proc-v1", "v1", 4 << 30},
		{"proc-none", "none", 0},
		{"no-such-file", "none", 0},
	} {
		if got := memoryLimitFrom(filepath.Join(root, c.proc), filepath.Join(root, c.root)); got != c.want {
			t.Errorf("%s under %s: limit %d, want %d", c.proc, c.root, got, c.want)
		}
	}
	var si syscall.Sysinfo_t
	if c := CPUCache(); c.On && os.Getenv("CAPTIONGO_CPU_CACHE") == "" && syscall.Sysinfo(&si) == nil {
		want := int64(si.Totalram) * int64(si.Unit)
		if c.CgroupLimit > 0 {
			want = min(want, c.CgroupLimit)
		}
		if d := c.CapBytes - want/4; d < -(1<<20) || d > 1<<20 {
			t.Errorf(
				"this process: memory %d, cgroup limit %d, cap %d; want a quarter of the smaller",
				int64(si.Totalram)*int64(si.Unit),
				c.CgroupLimit,
				c.CapBytes,
			)
		}
	}
}
