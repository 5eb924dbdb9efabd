package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/train"
)

// epoch: one training epoch of the baseline's setting (299 px, frozen
// backbone, batch 32, every caption of every train image), PyTorch's baseline
// pipeline (bench/epoch_ref.py) against captiongo without and with the feature
// cache, on the synthetic set (PNG) and, when -data has real photographs, on
// as many of its JPEGs (each original size: the decoder and the resize are
// part of every step). The cached epoch is the run's second (the first builds
// the cache; its time is in the note).
func epoch(opt Options) ([]Result, error) {
	n := opt.SynthN
	if n <= 0 {
		n = 200
	}
	dir, err := os.MkdirTemp("", "captiongo-bench-epoch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "shapes")
	if err := data.WriteSynth(src, n, 1); err != nil {
		return nil, err
	}
	rs, err := epochOn(opt, src, "synth", fmt.Sprintf("%d synthetic PNGs", n), dir)
	if err != nil || opt.Data == "" {
		return rs, err
	}
	photos := filepath.Join(dir, "photos")
	if err := jpegSubset(opt.Data, n, photos); err != nil {
		return nil, err
	}
	more, err := epochOn(
		opt,
		photos,
		"jpeg",
		fmt.Sprintf("%d Flickr8k JPEGs of %s (decoder: %s)", n, opt.Data, data.JPEGDecoder),
		dir,
	)
	return append(rs, more...), err
}

// jpegSubset writes a Kaggle-layout folder at dst holding the first n images
// of the one at src (links to the JPEGs) and their captions.
func jpegSubset(src string, n int, dst string) error {
	b, err := os.ReadFile(filepath.Join(src, "captions.txt"))
	if err != nil {
		return fmt.Errorf(
			"epoch case on real JPEGs: %w (point -data at a Kaggle-layout folder such as flickr8k-mini)",
			err,
		)
	}
	if err := os.MkdirAll(filepath.Join(dst, "Images"), 0o755); err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	out := []string{lines[0]}
	kept := map[string]bool{}
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ",")
		if !ok {
			continue
		}
		if !kept[name] {
			if len(kept) == n {
				continue
			}
			abs, err := filepath.Abs(filepath.Join(src, "Images", name))
			if err != nil {
				return err
			}
			if err := os.Symlink(abs, filepath.Join(dst, "Images", name)); err != nil {
				return err
			}
			kept[name] = true
		}
		out = append(out, l)
	}
	return os.WriteFile(filepath.Join(dst, "captions.txt"), []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// epochOn is the epoch case on one data folder; label names its cases
// (epoch_<label>_no_cache, epoch_<label>_cache).
func epochOn(opt Options, src, label, what, dir string) ([]Result, error) {
	base := train.DefaultConfig()
	base.Data, base.OutDir = src, filepath.Join(dir, "runs-"+label)
	base.ImageSize, base.Crop, base.RandomCrop = 299, 0, false
	base.FreqThreshold = 1
	base.BatchSize, base.LR = 32, 3e-4
	base.EvalImages, base.SampleImages, base.MaxLen = 1, 0, 4
	base.Workers = opt.Workers
	if err := base.Validate(); err != nil {
		return nil, err
	}

	// The rows PyTorch trains on: the same split and vocabulary.
	ds, err := data.Load(src, base.DataOptions())
	if err != nil {
		return nil, err
	}
	trainEx := ds.SplitExamples(data.Train)
	var caps []string
	for _, e := range trainEx {
		caps = append(caps, e.Captions...)
	}
	vocab := data.BuildVocab(caps, base.FreqThreshold)
	var rows [][2]any
	for _, e := range trainEx {
		for _, c := range e.Captions {
			rows = append(rows, [2]any{e.Path, vocab.Encode(c)})
		}
	}
	spec, _ := json.Marshal(map[string]any{"vocab": vocab.Len(), "rows": rows})
	specPath := filepath.Join(dir, "rows-"+label+".json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		return nil, err
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	_, self, _, _ := runtime.Caller(0)
	cmd := refCommand(
		opt,
		filepath.Join(filepath.Dir(self), "epoch_ref.py"),
		specPath,
		fmt.Sprint(workers),
		fmt.Sprint(torchThreads()),
	)
	cmd.Dir = filepath.Dir(self)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("PyTorch reference: %v", err)
	}
	var ref struct {
		Seconds float64 `json:"seconds"`
		Rows    int     `json:"rows"`
	}
	if err := json.Unmarshal(out, &ref); err != nil {
		return nil, fmt.Errorf("PyTorch reference printed %q: %v", out, err)
	}
	if ref.Rows != len(rows) {
		return nil, fmt.Errorf("PyTorch trained on %d rows, captiongo has %d", ref.Rows, len(rows))
	}

	runOnce := func(name string, cache bool, epochs int) (*train.Result, error) {
		cfg := base
		cfg.Name, cfg.FeatureCache, cfg.Epochs = name, cache, epochs
		var res *train.Result
		err := torch.Run(func() error {
			var err error
			res, err = train.Run(cfg, train.Options{Out: io.Discard})
			return err
		})
		return res, err
	}
	plain, err := runOnce("nocache", false, 1)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	cached, err := runOnce("cache", true, 2)
	if err != nil {
		return nil, err
	}
	setup := time.Since(t0).Seconds() - cached.State.History[0].Seconds - cached.State.History[1].Seconds
	goPlain := plain.State.History[0].TrainSecs
	goCached := cached.State.History[1].TrainSecs
	note := fmt.Sprintf(
		"%s: %d train images, %d rows (image, caption), 299 px, batch 32, frozen backbone, %d workers",
		what,
		len(trainEx),
		len(rows),
		workers,
	)
	return []Result{
		{
			Case:      "epoch_" + label + "_no_cache",
			Unit:      "s per epoch",
			Captiongo: round(goPlain),
			PyTorch:   round(ref.Seconds),
			Speedup:   round(ref.Seconds / goPlain),
			Note:      note + "; both run the backbone on every row, as the baseline does",
		},
		{
			Case:      "epoch_" + label + "_cache",
			Unit:      "s per epoch",
			Captiongo: round(goCached),
			PyTorch:   round(ref.Seconds),
			Speedup:   round(ref.Seconds / goCached),
			Note: note + fmt.Sprintf(
				"; captiongo's second epoch with feature_cache (the run's set-up, which builds the cache for its %d train+val "+
					"images once, took %.1f s) against the baseline's pipeline",
				len(trainEx)+len(ds.SplitExamples(data.Val)),
				setup,
			),
		},
	}, nil
}
