package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/captiongo/captiongo/internal/testutil"
)

// layer ranks captiongo's packages: a package imports only packages of a lower
// rank, so inference never climbs back into the trainer (or the reverse) and
// the model never into either.
var layer = map[string]int{
	"internal/torch": 0, "internal/launch": 0, "internal/testutil": 1, "data": 0, "train/tensorboard": 0,
	"model": 1, "metrics": 1, "internal/dist": 1,
	"internal/render": 2, "internal/runfolder": 2,
	"infer": 3, "train": 3,
	"sweep": 4,
	"bench": 5,
	"":      6, // the command
}

// TestPackageLayers reads every package's imports from go list and checks the
// ranks above; a package missing from the table fails too, so a new one gets
// a place.
func TestPackageLayers(t *testing.T) {
	const mod = "github.com/captiongo/captiongo"
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = testutil.Root()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	rel := func(p string) (string, bool) {
		if p == mod {
			return "", true
		}
		r, ok := strings.CutPrefix(p, mod+"/")
		return r, ok
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, _ := rel(f[0])
		rank, ok := layer[pkg]
		if !ok {
			t.Errorf("package %q has no layer in layers_test.go", pkg)
			continue
		}
		seen++
		for _, imp := range f[1:] {
			dep, own := rel(imp)
			if !own {
				continue
			}
			if r, ok := layer[dep]; !ok || r >= rank {
				t.Errorf("%s (layer %d) imports %s (layer %d): only lower layers may be imported", f[0], rank, imp, r)
			}
		}
	}
	if seen < 10 {
		t.Errorf("go list named %d packages:\n%s", seen, out)
	}
}

// TestGoModTidy: go.mod and go.sum are what `go mod tidy` makes of the code
// (no dependency marked indirect that is imported directly, none missing,
// none left over).
func TestGoModTidy(t *testing.T) {
	cmd := exec.Command("go", "mod", "tidy", "-diff")
	cmd.Dir = testutil.Root()
	cmd.Env = append(cmd.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("go mod tidy -diff: %v (run `GOWORK=off go mod tidy`)\n%s", err, out)
	}
}

// TestLineLength: no line of the project's code, scripts or docs is over 120
// characters, except Markdown table rows (which cannot wrap).
func TestLineLength(t *testing.T) {
	out, err := exec.Command("git", "-C", testutil.Root(), "ls-files",
		"*.go", "*.py", "*.sh", "*.md", "*.toml", "Makefile", ".ci/run").Output()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	files := strings.Fields(string(out))
	if len(files) < 50 {
		t.Fatalf("git ls-files listed %d files; want the project's", len(files))
	}
	long := 0
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(testutil.Root(), f))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			table := strings.HasSuffix(f, ".md") && strings.HasPrefix(line, "|")
			if n := utf8.RuneCountInString(line); n > 120 && !table {
				t.Errorf("%s:%d: %d characters (at most 120)", f, i+1, n)
				long++
			}
		}
	}
	if long > 0 {
		t.Logf("%d long lines", long)
	}
}
