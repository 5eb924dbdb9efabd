// Package bench measures captiongo beside a PyTorch reference run in the same
// process tree, on the same inputs, and prints JSON lines with the keys case,
// unit, captiongo, pytorch and speedup.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/torch"
)

// Result is one line of `make bench`.
type Result struct {
	Case      string           `json:"case"`
	Unit      string           `json:"unit"`
	Captiongo float64          `json:"captiongo"`
	PyTorch   float64          `json:"pytorch"`
	Speedup   float64          `json:"speedup"` // PyTorch's time / captiongo's time (> 1: captiongo is faster)
	Device    torch.DeviceName `json:"device"`  // where both sides ran: cpu or cuda
	// Alloc names each side's CPU memory allocator: captiongo's buffer cache
	// (internal/torch/cpucache.cpp, CAPTIONGO_CPU_CACHE), PyTorch's from -ref-alloc.
	Alloc string `json:"alloc"`
	Note  string `json:"note,omitempty"`
}

// Options says where the inputs and the Python reference are.
type Options struct {
	Case    string // "all" or one case name
	Data    string // folder of JPEGs in the Kaggle layout (flickr8k-mini)
	Python  string // interpreter with torch 2.1.0 + torchvision (the .venv)
	Images  int    // images per loader run
	Workers int
	Quick   bool // fewer repetitions (tests): the numbers are then rough
	SynthN  int  // synthetic pictures for the epoch case (0 = 200)
	// Device is where the decode and train cases run, on both sides: "cpu"
	// (default) or "cuda". The loader and epoch cases are CPU pipelines.
	Device torch.DeviceName
	// RefAlloc is the PyTorch side's memory allocator: "default" (glibc's
	// malloc, what `python train.py` gets) or "jemalloc" (LD_PRELOAD of
	// libjemalloc.so.2, as PyTorch's CPU tuning guide recommends).
	RefAlloc   string
	refPreload string // the library RefAlloc names, found
}

// Cases lists the benchmark cases this build has (ddp: with c10d collectives).
var Cases = casesOf(dist.Built)

func casesOf(c10d bool) []string {
	cs := []string{"loader", "decode", "train", "epoch"}
	if c10d {
		cs = append(cs, "ddp")
	}
	return cs
}

// Run runs the selected cases and writes one JSON line per case to w.
func Run(opt Options, w io.Writer) error {
	if ok, err := DDPRank(w); ok { // this process is a rank the ddp case started
		return err
	}
	if opt.Python == "" {
		return fmt.Errorf("no Python reference: set -python (make bench passes .venv/bin/python)")
	}
	if strings.ContainsRune(opt.Python, filepath.Separator) { // some cases run it from bench/
		if abs, err := filepath.Abs(opt.Python); err == nil {
			opt.Python = abs
		}
	}
	if opt.Device == "" {
		opt.Device = torch.DeviceCPU
	}
	preload, err := refPreload(opt.RefAlloc)
	if err != nil {
		return err
	}
	opt.refPreload = preload
	alloc := "captiongo: CPU buffer cache off; "
	if torch.CPUCache().On {
		alloc = "captiongo: its CPU buffer cache; "
	}
	if preload == "" {
		alloc += "PyTorch: glibc malloc (its default)"
	} else {
		alloc += "PyTorch: jemalloc (LD_PRELOAD=" + preload + ", MALLOC_CONF=" + refMallocConf() + ")"
	}
	if opt.Device != torch.DeviceCPU && opt.Device != torch.DeviceCUDA {
		return fmt.Errorf("-device %q: use cpu or cuda", opt.Device)
	}
	if opt.Device == torch.DeviceCUDA { // before a reference script starts on a CUDA it may not have either
		if err := torch.Run(func() error { _, err := torch.Device(torch.DeviceCUDA); return err }); err != nil {
			return fmt.Errorf("-device cuda: %w", err)
		}
	}
	ran := false
	for _, c := range Cases {
		if opt.Case != "all" && opt.Case != c {
			continue
		}
		ran = true
		var rs []Result
		var err error
		switch c {
		case "loader":
			rs, err = loader(opt)
		case "decode":
			rs, err = decode(opt)
		case "train":
			rs, err = trainSteps(opt)
		case "epoch":
			rs, err = epoch(opt)
		case "ddp":
			rs, err = ddpStep(opt)
		}
		if err != nil {
			return fmt.Errorf("bench %s: %w", c, err)
		}
		for _, r := range rs {
			r.Device = torch.DeviceCPU
			r.Alloc = alloc
			if c == "decode" || c == "train" {
				r.Device = opt.Device
			}
			b, _ := json.Marshal(r)
			fmt.Fprintln(w, string(b))
		}
	}
	if !ran {
		return fmt.Errorf("unknown case %q (have: all %v)", opt.Case, Cases)
	}
	return nil
}

// loader: images/s from JPEG files to ready, normalised batches (baseline
// transform, batch 32), captiongo's worker pool against torch's DataLoader with
// the same number of worker processes.
//
// Two lines: the build's own decoder (libjpeg-turbo unless built with the
// nolibjpeg tag) and Go's image/jpeg in the same loader, each against PyTorch.
func loader(opt Options) ([]Result, error) {
	dir := filepath.Join(opt.Data, "Images")
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%s: %w (point -data at flickr8k-mini or another Kaggle-layout folder)", dir, err)
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.NumCPU()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ex []data.Example
	for _, e := range entries {
		if len(ex) == opt.Images {
			break
		}
		ex = append(ex, data.Example{ImageID: e.Name(), Path: filepath.Join(dir, e.Name()), Split: data.Train})
	}
	rate := func(decode func(string) (*data.RGB, error)) (float64, error) {
		l, err := data.NewLoader(
			ex,
			data.ImageItems(ex),
			nil,
			data.BaselineTransform(true),
			data.LoaderConfig{BatchSize: 32, Workers: opt.Workers, Shuffle: true, Seed: 1, Decode: decode},
		)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		n := 0
		for b := range l.Epoch(context.Background(), 0, 0) {
			n += b.Size()
		}
		if s := l.SkipSummary(); s != "" {
			return 0, fmt.Errorf("%s", s)
		}
		return float64(n) / time.Since(start).Seconds(), nil
	}
	goRate, err := rate(nil)
	if err != nil {
		return nil, err
	}
	goJPEGRate, err := rate(data.DecodeImageGo)
	if err != nil {
		return nil, err
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "loader_ref.py")
	if _, err := os.Stat(script); err != nil {
		script = "bench/loader_ref.py"
	}
	out, err := refCommand(opt, script, dir, fmt.Sprint(len(ex)), "32", fmt.Sprint(opt.Workers), "356", "299").Output()
	if err != nil {
		return nil, fmt.Errorf("PyTorch reference: %v", err)
	}
	var ref struct {
		Images  int     `json:"images"`
		Seconds float64 `json:"seconds"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		return nil, fmt.Errorf("PyTorch reference printed %q: %v", out, err)
	}
	pyRate := float64(ref.Images) / ref.Seconds
	note := fmt.Sprintf(
		"%d JPEGs of %s, Resize 356 + RandomCrop 299 + Normalize, batch 32, %d workers each",
		len(ex),
		opt.Data,
		opt.Workers,
	)
	return []Result{
		{
			Case:      "loader",
			Unit:      "images/s",
			Captiongo: round(goRate),
			PyTorch:   round(pyRate),
			Speedup:   round(goRate / pyRate),
			Note:      note + "; JPEG decoder: " + data.JPEGDecoder,
		},
		{
			Case:      "loader_go_jpeg",
			Unit:      "images/s",
			Captiongo: round(goJPEGRate),
			PyTorch:   round(pyRate),
			Speedup:   round(goJPEGRate / pyRate),
			Note:      note + "; JPEG decoder: Go's image/jpeg (the nolibjpeg fallback; pixels differ from PIL's)",
		},
	}, nil
}

func round(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
