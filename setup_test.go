package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetupExplainsWhatIsMissing runs scripts/setup.sh with a bad LIBTORCH, a
// missing Python and a PATH without a C++ compiler: each must stop with one
// line that says what to install or fix, never a compiler or linker dump.
func TestSetupExplainsWhatIsMissing(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	// A PATH with go and the shell tools setup needs, but no g++.
	noCxx := t.TempDir()
	for _, tool := range []string{"bash", "dirname", "sed", "paste", "grep", "cat", "env"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(noCxx, tool))
	}
	os.Symlink(goBin, filepath.Join(noCxx, "go"))
	fakeLib := t.TempDir()
	os.MkdirAll(filepath.Join(fakeLib, "lib"), 0o755)
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"bad LIBTORCH", []string{"LIBTORCH=/no/such/libtorch"}, "LIBTORCH=/no/such/libtorch does not exist"},
		{"not a libtorch", []string{"LIBTORCH=" + fakeLib}, "has no lib/libtorch_cpu.so"},
		{"missing python", []string{"PYTHON=/no/such/python3"}, "no Python 3 ('/no/such/python3' not found): install python3"},
		{"missing compiler", []string{"PATH=" + noCxx}, "no C++ compiler: install g++"},
	}
	for _, c := range cases {
		cmd := exec.Command("bash", "scripts/setup.sh", "libtorch")
		cmd.Env = append(os.Environ(), c.env...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: setup succeeded", c.name)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: got %q, want one line containing %q", c.name, out, c.want)
		}
	}
}

// TestCommandsHaveHelp checks that every subcommand answers -h with its flags
// and defaults, and that unknown commands fail.
func TestCommandsHaveHelp(t *testing.T) {
	for name := range commands {
		var out, errb strings.Builder
		if code := run([]string{name, "-h"}, &out, &errb); code != 0 {
			t.Errorf("%s -h exited %d", name, code)
		}
		if !strings.Contains(errb.String(), "usage: captiongo "+name) {
			t.Errorf("%s -h printed %q", name, errb.String())
		}
	}
	var out, errb strings.Builder
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command exited %d, want 2", code)
	}
	errb.Reset()
	if code := run([]string{"explain", "-checkpoint", "x", "a.jpg"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "checkpoint x: does not exist") {
		t.Errorf("explain with a missing checkpoint exited %d (%q)", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"explain", "a.jpg"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "give -checkpoint and at least one image") {
		t.Errorf("explain without -checkpoint exited %d (%q)", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"experiment", "-backend", "pbs", "experiments/sweep_shapes.toml"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), `-backend "pbs": use local or slurm`) {
		t.Errorf("experiment with an unknown backend exited %d (%q)", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"caption", "-checkpoint", "x", "a.jpg"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "checkpoint x: does not exist") {
		t.Errorf("caption with a missing checkpoint exited %d (%q)", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"train", "-config", "", "-set", "epochs=0"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "epochs: 0: must be positive") {
		t.Errorf("train with a bad value exited %d (%q)", code, errb.String())
	}
}
