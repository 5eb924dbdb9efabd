//go:build c10d

package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/testutil"
)

// TestTrainNproc: `captiongo train -nproc 2` as a user runs it: two ranks,
// one run folder, one log; a world the batch cannot be split over and a
// rendezvous port in use are refused with one line naming the setting, and
// leave no run folder.
func TestTrainNproc(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "captiongo")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exp := filepath.Join(dir, "tiny.toml")
	if err := os.WriteFile(exp, []byte(testutil.TinyExperiment), 0o644); err != nil {
		t.Fatal(err)
	}
	train := func(out string, env []string, args ...string) (string, error) {
		c := exec.Command(exe, append([]string{"train", "-config", exp, "-set", "out_dir=" + out}, args...)...)
		c.Env = append(os.Environ(), env...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	out := filepath.Join(dir, "runs")
	log, err := train(out, nil, "-nproc", "2")
	if err != nil || strings.Count(log, "data-parallel: 2 ranks (torchrun environment") != 1 ||
		strings.Count(log, "done: ") != 1 {
		t.Fatalf("-nproc 2: %v\n%s", err, log)
	}
	if b, err := os.ReadFile(filepath.Join(out, "tiny", "state.json")); err != nil ||
		!strings.Contains(string(b), `"finished": true`) {
		t.Errorf("state.json: %v\n%s", err, b)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"-nproc", "3"}, nil, "batch_size 16 does not divide over -nproc 3"},
		{[]string{"-nproc", "32"}, nil, "-nproc 32 is larger than batch_size 16"},
		{[]string{"-nproc", "2"}, []string{"MASTER_PORT=" + busy}, "(MASTER_ADDR, MASTER_PORT)"},
		{[]string{"-dist-timeout", "0s"}, nil, "-dist-timeout 0s: want a positive duration"},
	} {
		fresh := filepath.Join(dir, "fresh"+strconv.Itoa(len(c.args[1])))
		log, err := train(fresh, c.env, c.args...)
		if err == nil || !strings.Contains(log, c.want) {
			t.Errorf("%v %v: %v\n%s", c.args, c.env, err, log)
		}
		if _, err := os.Stat(filepath.Join(fresh, "tiny")); err == nil {
			t.Errorf("%v %v left a run folder", c.args, c.env)
		}
		t.Logf("%v %v: %s", c.args, c.env, strings.TrimSpace(log))
	}
	// CAPTIONGO_DIST_WORLD1=1 makes one rank a process group of its own (the
	// device script checks NCCL so on one GPU): it trains through the collectives.
	log, err = train(filepath.Join(dir, "world1"), []string{dist.ForceEnv + "=1", "RANK=0", "WORLD_SIZE=1",
		"MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + strconv.Itoa(freePortT(t))})
	if err != nil || !strings.Contains(log, "data-parallel: 1 rank (torchrun environment") ||
		!strings.Contains(log, "done: ") {
		t.Errorf("a world of one with %s=1: %v\n%s", dist.ForceEnv, err, log)
	}
	// -dist-timeout bounds the rendezvous: rank 0 of 2 whose peer never comes
	// gives up after it, with one line naming the rendezvous.
	t0 := time.Now()
	port := strconv.Itoa(freePortT(t))
	log, err = train(filepath.Join(dir, "alone"), []string{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
		"MASTER_PORT=" + port}, "-dist-timeout", "3s")
	took := time.Since(t0)
	if err == nil || !strings.Contains(log, "rank 0 of 2: rendezvous at 127.0.0.1:"+port) || took > 30*time.Second ||
		took < 3*time.Second {
		t.Errorf("rank 0 without its peer, -dist-timeout 3s: %v after %v\n%s", err, took, log)
	}
	t.Logf("alone, -dist-timeout 3s: gave up after %v: %s", took.Round(100*time.Millisecond), strings.TrimSpace(log))
}

func freePortT(t *testing.T) int {
	p, err := dist.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
