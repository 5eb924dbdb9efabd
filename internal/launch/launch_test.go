package launch

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain makes the test binary a rank when started as one: it prints its
// environment's rank variables, then behaves as CAPTIONGO_LAUNCH_TEST says.
func TestMain(m *testing.M) {
	mode := os.Getenv("CAPTIONGO_LAUNCH_TEST")
	if mode == "" {
		os.Exit(m.Run())
	}
	os.Stdout.WriteString(os.Getenv("RANK") + " " + os.Getenv("LOCAL_RANK") + " " + os.Getenv("WORLD_SIZE") + " " +
		os.Getenv("MASTER_ADDR") + ":" + os.Getenv("MASTER_PORT") + "\n")
	switch {
	case mode == "fail" && os.Getenv("RANK") == "1":
		os.Exit(3)
	case mode == "fail" || mode == "wait":
		time.Sleep(time.Minute) // until stopped
	}
	os.Exit(0)
}

func run(t *testing.T, mode string, stop bool, sig <-chan os.Signal) ([]string, []error, int) {
	t.Helper()
	outs := make([]strings.Builder, 3)
	errs, first, err := Run(Spec{Exe: os.Args[0], Args: []string{"-test.run=^$"}, N: 3, Port: 29999,
		Env: []string{"CAPTIONGO_LAUNCH_TEST=" + mode}, Stdout: func(r int) io.Writer { return &outs[r] },
		StopOnFailure: stop, Signals: sig})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 3)
	for r := range out {
		out[r] = strings.TrimSpace(outs[r].String())
	}
	return out, errs, first
}

// TestRun: every rank gets torchrun's variables; when one fails the others
// are stopped (or, without StopOnFailure, left to end); a signal reaches
// every rank.
func TestRun(t *testing.T) {
	out, errs, first := run(t, "ok", true, nil)
	for r, want := range []string{"0 0 3 127.0.0.1:29999", "1 1 3 127.0.0.1:29999", "2 2 3 127.0.0.1:29999"} {
		if out[r] != want || errs[r] != nil {
			t.Errorf("rank %d: %q (%v), want %q", r, out[r], errs[r], want)
		}
	}
	if first != -1 {
		t.Errorf("first failure %d, want none", first)
	}
	t0 := time.Now()
	_, errs, first = run(t, "fail", true, nil)
	if first != 1 || !strings.Contains(errs[1].Error(), "exit status 3") || errs[0] == nil || errs[2] == nil ||
		time.Since(t0) > 30*time.Second {
		t.Errorf("rank 1 failing: first %d, errors %v after %v; want the others stopped", first, errs, time.Since(t0))
	}
	sig := make(chan os.Signal, 1)
	go func() { time.Sleep(time.Second); sig <- syscall.SIGTERM }()
	t0 = time.Now()
	_, errs, first = run(t, "wait", false, sig)
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Errorf("rank %d after SIGTERM to the launcher: %v", r, err)
		}
	}
	if first < 0 || time.Since(t0) > 30*time.Second {
		t.Errorf("SIGTERM: first %d after %v", first, time.Since(t0))
	}
}
