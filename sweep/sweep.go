// Package sweep runs grids over an experiment (a base TOML, [grid], [set],
// a seeded sample): each point is its own run under out_dir/<sweep>/<point>,
// run locally (-j jobs at a time) or as one Slurm job array, and a finished
// point is skipped when the sweep runs again.
package sweep

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"

	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train"
)

// Sweep is a sweep file: a base experiment and lists of values for some keys.
type Sweep struct {
	Base   string           `toml:"base"`    // experiment file, relative to the sweep file
	Name   string           `toml:"name"`    // runs go to <out_dir>/<name>/<point> (default: the file's name)
	OutDir string           `toml:"out_dir"` // default: the base experiment's out_dir
	Grid   map[string][]any `toml:"grid"`    // key -> values; the grid is their product
	Sample int              `toml:"sample"`  // run a seeded random sample of this many points (0 = all)
	Seed   uint64           `toml:"seed"`    // for the sample
	Set    map[string]any   `toml:"set"`     // overrides applied to every point
	Slurm  SlurmOptions     `toml:"slurm"`   // options for -backend slurm
	file   string
}

// Point is one run of a sweep.
type Point struct {
	Name string
	Sets []string // key=value overrides, TOML syntax
}

// LoadSweep reads and checks a sweep file; every key must be a config key.
func LoadSweep(path string) (*Sweep, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &train.ConfigError{File: path, Msg: "cannot read: " + err.Error()}
	}
	var s Sweep
	md, err := toml.Decode(string(b), &s)
	if err != nil {
		return nil, train.TOMLError(path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		msg := "unknown key (a sweep file has base, name, out_dir, grid, sample, seed, set, slurm)"
		if strings.HasPrefix(k, "slurm.") {
			msg = "unknown key ([slurm] has partition, account, time, gpus_per_task, cpus_per_task, mem, array_concurrency, " +
				"extra, setup, executable)"
			return nil, &train.ConfigError{File: path, Line: train.KeyLine(b, strings.TrimPrefix(k, "slurm.")), Field: k,
				Msg: msg}
		}
		return nil, &train.ConfigError{File: path, Line: train.KeyLine(b, k), Field: k, Msg: msg}
	}
	s.file = path
	if s.Base == "" {
		return nil, &train.ConfigError{File: path, Field: "base", Msg: "missing: name the experiment file to sweep"}
	}
	if !filepath.IsAbs(s.Base) {
		s.Base = filepath.Join(filepath.Dir(path), s.Base)
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	if len(s.Grid) == 0 {
		return nil, &train.ConfigError{File: path, Field: "grid", Msg: "empty: give at least one key with a list of values"}
	}
	for k, vs := range s.Grid {
		if !train.KnownKey(k) {
			return nil, &train.ConfigError{File: path, Line: train.KeyLine(b, k), Field: "grid." + k, Msg: "not a config key"}
		}
		if len(vs) == 0 {
			return nil, &train.ConfigError{File: path, Line: train.KeyLine(b, k), Field: "grid." + k, Msg: "empty list"}
		}
	}
	for k := range s.Set {
		if !train.KnownKey(k) {
			return nil, &train.ConfigError{File: path, Line: train.KeyLine(b, k), Field: "set." + k, Msg: "not a config key"}
		}
	}
	if err := s.Slurm.Validate(); err != nil {
		return nil, withFile(err, path)
	}
	if s.Sample < 0 {
		return nil, &train.ConfigError{File: path, Field: "sample", Msg: "must not be negative"}
	}
	// Every point must be a valid config.
	for _, p := range s.Points() {
		if _, err := train.LoadConfig(s.Base, append(s.fixedSets(), p.Sets...)); err != nil {
			return nil, fmt.Errorf("sweep %s, point %s: %w", path, p.Name, err)
		}
	}
	return &s, nil
}

func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func (s *Sweep) fixedSets() []string {
	keys := make([]string, 0, len(s.Set))
	for k := range s.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, k+"="+tomlValue(s.Set[k]))
	}
	return out
}

// Points lists the grid (or its seeded sample) in a fixed order.
func (s *Sweep) Points() []Point {
	keys := make([]string, 0, len(s.Grid))
	for k := range s.Grid {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	points := []Point{{}}
	for _, k := range keys {
		var next []Point
		for _, p := range points {
			for _, v := range s.Grid[k] {
				tv := tomlValue(v)
				label := k + "-" + strings.Trim(tv, `"`)
				name := label
				if p.Name != "" {
					name = p.Name + "_" + label
				}
				next = append(next, Point{Name: sanitize(name), Sets: append(append([]string{}, p.Sets...), k+"="+tv)})
			}
		}
		points = next
	}
	if s.Sample > 0 && s.Sample < len(points) {
		r := rand.New(rand.NewPCG(s.Seed, 0x7377656570))
		r.Shuffle(len(points), func(i, j int) { points[i], points[j] = points[j], points[i] })
		points = points[:s.Sample]
		sort.Slice(points, func(i, j int) bool { return points[i].Name < points[j].Name })
	}
	return points
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ' ' || r == ':' {
			return '_'
		}
		return r
	}, s)
}

// OutRoot is where the sweep's runs go.
func (s *Sweep) OutRoot() (string, error) {
	out := s.OutDir
	if out == "" {
		cfg, err := train.LoadConfig(s.Base, s.fixedSets())
		if err != nil {
			return "", err
		}
		out = cfg.OutDir
	}
	return filepath.Join(out, s.Name), nil
}

// PointArgs is the `captiongo train` command line of a point.
func (s *Sweep) PointArgs(p Point, root string) []string {
	args := []string{"train", "-config", s.Base}
	for _, kv := range append(append(s.fixedSets(), p.Sets...), "out_dir="+strconv.Quote(root),
		"name="+strconv.Quote(p.Name), "resume=true") {
		args = append(args, "-set", kv)
	}
	return args
}

// PointStatus reads a point's state.json: "done", "partial" (a checkpoint) or "new".
func PointStatus(root string, p Point) (string, *train.State) {
	b, err := os.ReadFile(filepath.Join(root, p.Name, runfolder.State))
	if err != nil {
		return "new", nil
	}
	var st train.State
	if json.Unmarshal(b, &st) != nil {
		return "new", nil
	}
	if st.Finished {
		return "done", &st
	}
	return "partial", &st
}

// RunLocal runs the points not yet finished, jobs at a time, each as its own
// `captiongo train` process (one model per process) logging to
// <point>/train.log, then prints a table.
func (s *Sweep) RunLocal(exe string, jobs int, out io.Writer) error {
	root, err := s.OutRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	points := s.Points()
	if jobs < 1 {
		jobs = 1
	}
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[string]error{}
	for _, p := range points {
		if st, _ := PointStatus(root, p); st == "done" {
			fmt.Fprintf(out, "sweep %s: %s already finished, skipped\n", s.Name, p.Name)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(p Point) {
			defer wg.Done()
			defer func() { <-sem }()
			dir := filepath.Join(root, p.Name)
			os.MkdirAll(dir, 0o755)
			logf, err := os.OpenFile(filepath.Join(dir, "train.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				mu.Lock()
				failed[p.Name] = err
				mu.Unlock()
				return
			}
			defer logf.Close()
			fmt.Fprintf(out, "sweep %s: running %s (log: %s)\n", s.Name, p.Name, logf.Name())
			cmd := exec.Command(exe, s.PointArgs(p, root)...)
			cmd.Stdout, cmd.Stderr = logf, logf
			cmd.Env = pointEnv(jobs)
			if err := cmd.Run(); err != nil {
				mu.Lock()
				failed[p.Name] = err
				mu.Unlock()
				fmt.Fprintf(out, "sweep %s: %s failed (%v); see %s\n", s.Name, p.Name, err, logf.Name())
			}
		}(p)
	}
	wg.Wait()
	s.PrintTable(root, out)
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d point(s) failed", len(failed), len(points))
	}
	return nil
}

// pointEnv is the environment of a point's process. With several points at
// once and no CAPTIONGO_CPU_CACHE of the user's, each gets an equal share of
// the CPU buffer cache's cap (internal/torch/cpucache.cpp), so that together
// they keep no more freed memory than one run would.
func pointEnv(jobs int) []string {
	env := os.Environ()
	if c := torch.CPUCache(); jobs > 1 && c.On && os.Getenv("CAPTIONGO_CPU_CACHE") == "" {
		env = append(env, fmt.Sprintf("CAPTIONGO_CPU_CACHE=%d", max(1, c.CapBytes>>20/int64(jobs))))
	}
	return env
}

// PrintTable prints point, state and best metric.
func (s *Sweep) PrintTable(root string, out io.Writer) {
	fmt.Fprintf(out, "%-40s %-8s %s\n", "point", "state", "best")
	for _, p := range s.Points() {
		st, state := PointStatus(root, p)
		fmt.Fprintf(out, "%-40s %-8s %s\n", p.Name, st, bestString(state))
	}
}

// bestString is a run's best metric, "-" before its first epoch.
func bestString(state *train.State) string {
	if state == nil || state.BestEpoch == 0 {
		return "-"
	}
	v := state.Best
	if !state.Config.BestMetric.HigherIsBetter() {
		v = -v
	}
	return fmt.Sprintf("%s %.4f (epoch %d)", state.Config.BestMetric, v, state.BestEpoch)
}
