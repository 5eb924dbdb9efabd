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
}
