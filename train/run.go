package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// State is the JSON side file of a checkpoint.
type State struct {
	Config    Config `json:"config"`
	Epoch     int    `json:"epoch"` // the epoch to run next (or being run)
	Batch     int    `json:"batch"` // the next batch of that epoch
	Step      int64  `json:"step"`  // optimiser steps done
	AdamSteps int    `json:"adam_steps"`
	// the backbone optimiser's steps (fine-tuning after warm-up; 0 before it)
	TuneAdamSteps int                `json:"tune_adam_steps,omitempty"`
	Best          float64            `json:"best"`
	BestEpoch     int                `json:"best_epoch"`
	SinceBest     int                `json:"epochs_since_best"`
	History       []EpochMetrics     `json:"history"`
	Optimiser     map[string]float64 `json:"optimiser"`
	VocabFile     string             `json:"vocab"`
	Weights       string             `json:"weights"`
	Moments       string             `json:"moments"`
	Finished      bool               `json:"finished"`
	WallSeconds   float64            `json:"wall_seconds"`
	// Partial is the running epoch's training so far (kept by mid-epoch
	// checkpoints, so that a resumed epoch reports what an uninterrupted one would).
	Partial EpochProgress `json:"partial"`
}

// parseState decodes a state.json (path names it in errors) and checks what
// resuming relies on: counters that are not negative and a checkpoint named.
func parseState(path string, b []byte) (State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %v", path, err)
	}
	switch {
	case st.Epoch < 0 || st.Batch < 0 || st.Step < 0 || st.AdamSteps < 0 || st.TuneAdamSteps < 0:
		return st, fmt.Errorf("%s: negative epoch %d, batch %d, step %d, adam_steps %d or tune_adam_steps %d", path,
			st.Epoch, st.Batch, st.Step, st.AdamSteps, st.TuneAdamSteps)
	case st.Weights == "" || st.Moments == "":
		return st, fmt.Errorf("%s: names no checkpoint (weights %q, moments %q)", path, st.Weights, st.Moments)
	case filepath.IsAbs(st.Weights) || strings.HasPrefix(filepath.Clean(st.Weights), ".."):
		return st, fmt.Errorf("%s: weights %q is not inside the run folder", path, st.Weights)
	case st.Partial.Batches < 0 || st.Partial.Images < 0:
		return st, fmt.Errorf("%s: negative counts in partial", path)
	}
	return st, nil
}

// EpochProgress is an epoch's training statistics so far.
type EpochProgress struct {
	LossSum float64 `json:"loss_sum"` // the sum of the batches' losses
	Batches int     `json:"batches"`
	Images  int     `json:"images"`
	Seconds float64 `json:"seconds"` // spent in optimiser steps, data included
}

// EpochMetrics is one epoch's evaluation.
type EpochMetrics struct {
	Epoch     int     `json:"epoch"`
	Step      int64   `json:"step"`
	TrainLoss float64 `json:"train_loss"`
	ValLoss   float64 `json:"val_loss"`
	Bleu4     float64 `json:"Bleu_4"`
	CIDEr     float64 `json:"CIDEr"`
	ImagesPS  float64 `json:"images_per_s"`
	TrainSecs float64 `json:"train_seconds"` // the epoch's optimiser steps (data included, evaluation not)
	Seconds   float64 `json:"seconds"`       // the whole epoch, evaluation and checkpoint included
}

// Result is what Run reports.
type Result struct {
	RunDir  string
	State   State
	Samples []Sample // the last epoch's sample captions
}

// Sample is a generated caption next to its references.
type Sample struct {
	Image     string
	Generated string
	Refs      []string
}

// Options are the things about a run that are not hyperparameters.
type Options struct {
	Out      io.Writer        // progress and summaries
	TTY      bool             // draw progress bars (plain periodic lines otherwise)
	StopAt   int64            // stop (as if killed) after this many steps; 0 = never (tests)
	EventDir string           // override of the TensorBoard folder (default: the run folder)
	OnStep   func(step int64) // called after every optimiser step (tests, monitoring)
	// Interrupt, when it delivers a signal (SIGTERM at a Slurm time limit,
	// Ctrl-C), makes the run checkpoint where it is and return an *Interrupted.
	Interrupt <-chan os.Signal
	// Crash is called at named points inside checkpoint, event and feature
	// cache writes and evaluation ("checkpoint:weights", "event", "cache",
	// "eval", ...), so that tests can kill the process there.
	Crash func(point string)
	// Dist makes this process one rank of a data-parallel run (nil: one
	// process); see dist.go.
	Dist *dist.Group
}

var errStopped = errors.New("stopped at the requested step")

// Interrupted is Run's error when Options.Interrupt delivered a signal: the
// run checkpointed at Step and resumes from there.
type Interrupted struct {
	Signal os.Signal
	Step   int64
	Dir    string
}

// ExitCode is the shell's code for death by the signal (143 for SIGTERM,
// 130 for SIGINT), though the run ended cleanly: it is not finished.
func (e *Interrupted) ExitCode() int {
	if s, ok := e.Signal.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 1
}

func (e *Interrupted) Error() string {
	return fmt.Sprintf("%v: checkpointed %s at step %d; run the same command with -set resume=true to continue",
		e.Signal, e.Dir, e.Step)
}

// crash calls Options.Crash (tests' kill points).
func (r *runner) crash(point string) {
	if r.opt.Crash != nil {
		r.opt.Crash(point)
	}
}

// interrupted reports a signal from Options.Interrupt, if one came.
func (r *runner) interrupted() os.Signal {
	select {
	case sig := <-r.opt.Interrupt:
		return sig
	default:
		return nil
	}
}

type runner struct {
	cfg      Config
	opt      Options
	dir      string
	m        *model.Captioner
	cache    *FeatureCache // open while the run reads it
	adam     *model.Adam
	tuneAdam *model.Adam // the backbone's, once fine-tuning has started (finetune_epoch)
	vocab    *data.Vocab
	ds       *data.Dataset
	train    []data.Example
	val      []data.Example
	src      source        // the cache's rows or images
	scst     *scstState    // training = "scst" only
	red      *dist.Reducer // data-parallel runs: DDP's reducer over the trainable parameters
	redN     int           // how many parameters red covers (fine-tuning adds the backbone's)
	tfTrain  data.Transform
	tfEval   data.Transform
	tb       *tensorboard.Writer
	st       State
	device   gotch.Device
	stepsPer int
	started  time.Time
	dataDir  string // the data folder read (the synthetic set's, for data = "synth")
}

// Run trains one experiment into cfg.OutDir/cfg.Name. It must be called on a
// locked OS thread (torch.Run).
func Run(cfg Config, opt Options) (*Result, error) {
	if opt.Out == nil {
		opt.Out = io.Discard
	}
	if err := checkDist(cfg, opt.Dist); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, opt: opt, dir: filepath.Join(cfg.OutDir, cfg.Name), started: time.Now()}
	if r.rank() > 0 { // rank 0 alone writes the run folder
		dir, remove, err := rankScratch(r.rank())
		if err != nil {
			return nil, err
		}
		defer remove()
		r.dir, r.opt.Out, r.opt.EventDir = filepath.Join(dir, cfg.Name), io.Discard, ""
	}
	defer func() {
		if r.cache != nil {
			r.cache.Close()
		}
		r.red.Close()
	}()
	if err := r.setup(); err != nil {
		if r.tb != nil {
			r.tb.HParamsEnd(false)
			r.tb.Close()
		}
		return nil, err
	}
	res, err := r.loop()
	if r.tb != nil {
		if err == nil {
			r.tb.HParamsEnd(true)
		}
		r.tb.Close()
	}
	return res, err
}

func (r *runner) say(format string, args ...any) { fmt.Fprintf(r.opt.Out, format+"\n", args...) }

func (r *runner) setup() error {
	// The weights come first: with backbone = "auto" they decide the backbone
	// variant, which a resumed run must share with its checkpoint.
	wpath, err := model.ResolveWeights(r.cfg.Weights, r.opt.Out)
	if err != nil {
		return err
	}
	var weights map[string]*ts.Tensor
	if wpath != "" {
		tensors, kind, err := model.ReadBackboneWeights(wpath)
		if err != nil {
			return err
		}
		weights = tensors
		defer model.DropAll(weights)
		switch r.cfg.Backbone {
		case BackboneAuto:
			r.cfg.Backbone = kind
		case kind:
		default:
			return &ConfigError{
				Field: "backbone",
				Msg: fmt.Sprintf(
					"%q, but weights %s are for the %s backbone (set backbone = \"auto\" or %q)",
					r.cfg.Backbone,
					wpath,
					kind,
					kind,
				),
			}
		}
	} else if r.cfg.Backbone == BackboneAuto {
		r.cfg.Backbone = model.BackboneTorchvision
	}
	cfg := r.cfg
	statePath := filepath.Join(r.dir, runfolder.State)
	resuming := false
	if b, err := os.ReadFile(statePath); err == nil {
		if !cfg.Resume {
			return fmt.Errorf(
				"run folder %s already holds a checkpoint: set resume = true (-set resume=true) to continue it, or choose "+
					"another name",
				r.dir,
			)
		}
		if r.st, err = parseState(statePath, b); err != nil {
			return err
		}
		if d := archDiff(r.st.Config, cfg); len(d) > 0 {
			return fmt.Errorf("refusing to resume %s onto a different architecture: %s", r.dir, strings.Join(d, ", "))
		}
		resuming = true
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	r.say("captiongo train: run %s", r.dir)
	if g := r.opt.Dist; g != nil {
		ranks := map[bool]string{true: "rank", false: "ranks"}[g.World == 1]
		r.say("data-parallel: %d %s (%s environment, c10d %s at %s:%d); each takes %d of every %d images; "+
			"rank 0 writes the run", g.World, ranks, g.From, g.Backends, g.Addr, g.Port, cfg.BatchSize/g.World,
			cfg.BatchSize)
	}
	r.say("--- resolved config ---\n%s-----------------------", cfg.TOML())
	if err := data.WriteFileAtomic(filepath.Join(r.dir, runfolder.Config), []byte(cfg.TOML())); err != nil {
		return err
	}
	if cfg.Threads > 0 {
		torch.SetThreads(cfg.Threads)
	}
	dev, err := torch.Device(cfg.Device)
	if err != nil {
		return err
	}
	if g := r.opt.Dist; g != nil && dev.IsCuda() { // one GPU per local rank, as torchrun's LOCAL_RANK says
		n := int(gotch.CUDA.DeviceCount())
		if g.LocalRank >= n {
			return fmt.Errorf("rank %d: LOCAL_RANK %d but this node has %d GPU(s): start at most one rank per GPU",
				g.Rank, g.LocalRank, n)
		}
		dev = gotch.CudaBuilder(uint(g.LocalRank))
	}
	r.device = dev
	torch.ManualSeed(cfg.Seed)

	// Data.
	src := cfg.Data
	if src == "synth" {
		src = filepath.Join(cfg.OutDir, ".data", fmt.Sprintf("shapes-n%d-s%d", cfg.SynthN, cfg.SynthSeed))
		if err := r.rank0First(func() error { return data.WriteSynth(src, cfg.SynthN, cfg.SynthSeed) }); err != nil {
			return err
		}
	}
	r.dataDir = src
	r.ds, err = data.Load(src, cfg.DataOptions())
	if err != nil {
		return err
	}
	for _, n := range r.ds.Notes {
		r.say("note: %s", n)
	}
	r.train, r.val = r.ds.SplitExamples(data.Train), r.ds.SplitExamples(data.Val)
	if len(r.val) == 0 {
		r.val = r.ds.SplitExamples(data.Test)
		r.say("note: no val split; the test split is used for validation")
	}
	r.say("data: %s (%s): %d train / %d val images", src, r.ds.Format, len(r.train), len(r.val))

	// Vocabulary (train split only), saved beside every checkpoint.
	vocabPath := filepath.Join(r.dir, runfolder.Vocab)
	var initRun *runfolder.Run
	if !resuming && cfg.InitFrom != "" {
		if initRun, err = r.openInit(); err != nil {
			return err
		}
	}
	if resuming {
		if r.vocab, err = data.LoadVocab(vocabPath); err != nil {
			return err
		}
	} else if initRun != nil { // the starting run's vocabulary: its weights index it
		if r.vocab, err = initRun.LoadVocab(); err != nil {
			return err
		}
		if err := r.vocab.Save(vocabPath); err != nil {
			return err
		}
	} else {
		var caps []string
		for _, e := range r.train {
			caps = append(caps, e.Captions...)
		}
		r.vocab = data.BuildVocab(caps, cfg.FreqThreshold)
		if err := r.vocab.Save(vocabPath); err != nil {
			return err
		}
	}
	r.say("vocabulary: %d tokens (freq_threshold %d, train split)", r.vocab.Len(), cfg.FreqThreshold)

	// Model.
	r.m, err = model.NewCaptioner(cfg.ModelConfig(r.vocab.Len()), dev)
	if err != nil {
		return err
	}
	if weights != nil {
		notes, err := r.m.LoadBackboneTensors(wpath, weights)
		if err != nil {
			return err
		}
		for _, n := range notes {
			r.say("note: %s", n)
		}
		r.say("backbone: %s Inception-v3, weights %s", cfg.Backbone, wpath)
	}
	if initRun != nil {
		if err := r.checkInit(initRun); err != nil {
			return err
		}
		if err := r.m.LoadFile(initRun.Weights); err != nil {
			return err
		}
		r.say("starting from %s (init_from)", initRun.Weights)
	}
	if cfg.Training == TrainSCST {
		r.setupSCST()
	}
	r.adam = model.NewAdam(r.m.VS, cfg.WeightDecay)
	r.tfTrain, r.tfEval = cfg.Transforms()
	if cfg.CalibrateBN > 0 && !resuming {
		if cfg.Weights != "" {
			r.say("note: calibrate_bn is ignored: the backbone has pretrained weights (%s)", cfg.Weights)
		} else if err := r.calibrateBN(); err != nil {
			return err
		}
	}
	if resuming {
		if err := r.loadCheckpoint(); err != nil {
			return err
		}
		r.say("resuming at epoch %d, batch %d (step %d)", r.st.Epoch+1, r.st.Batch, r.st.Step)
	} else {
		r.st = State{Config: cfg, Best: -math.MaxFloat64, Optimiser: map[string]float64{"lr": cfg.LR, "beta1": 0.9,
			"beta2": 0.999, "eps": 1e-8, "weight_decay": cfg.WeightDecay}}
		if !cfg.BestMetric.HigherIsBetter() {
			r.st.Best = -math.MaxFloat64 // stored negated
		}
	}
	r.st.Config = cfg
	if err := r.syncRanks(); err != nil {
		return err
	}

	// Where images come from: the feature cache, or pixels.
	images := &imageSource{m: r.m, vocab: r.vocab, tfTrain: r.tfTrain, tfEval: r.tfEval, device: r.device, say: r.say,
		cfg: data.LoaderConfig{BatchSize: cfg.BatchSize, Workers: cfg.Workers, Seed: uint64(cfg.Seed)}}
	r.src = images
	if cfg.FeatureCache {
		switch {
		case cfg.TrainCNN:
			r.say("note: feature_cache is off because train_cnn = true (the backbone changes)")
		case r.tuningAt(r.st.Epoch):
			r.say("note: feature_cache is not built: the backbone trains from epoch %d on (finetune_epoch)",
				cfg.FinetuneEpoch)
		case cfg.RandomCrop && cfg.Crop > 0:
			r.say("note: feature_cache is off because random_crop = true (every epoch sees other crops)")
		default:
			all := append(append([]data.Example{}, r.train...), r.val...)
			t0 := time.Now()
			bar := r.bar(len(all), "features")
			var cache *FeatureCache
			err := r.rank0First(func() (err error) { // one build, shared
				cache, err = BuildFeatureCache(
					r.m,
					all,
					r.tfEval,
					filepath.Join(cfg.OutDir, ".cache"),
					cfg.FeatureCacheDtype == DtypeFloat16,
					cfg.Workers,
					32,
					func(d, n int) { bar(d); r.crash("cache") },
				)
				return err
			})
			if err != nil {
				return err
			}
			r.cache = cache
			r.say("feature cache: %s (%d images, %.1fs)", cache.Path, len(all), time.Since(t0).Seconds())
			r.src = &cacheSource{cache: cache, m: r.m, vocab: r.vocab, seed: uint64(cfg.Seed), bs: cfg.BatchSize,
				device: r.device, images: images}
		}
	}

	// TensorBoard.
	evDir := r.dir
	if r.opt.EventDir != "" {
		evDir = r.opt.EventDir
	}
	// Events up to the checkpoint's step are on disk (a checkpoint syncs them
	// first); later ones, from a run killed after it (or before a first
	// checkpoint), are dropped by TensorBoard when it reads this purge record,
	// and are logged again.
	if r.tb, err = tensorboard.NewWriter(evDir, r.st.Step+1); err != nil {
		return err
	}
	if r.opt.Crash != nil {
		r.tb.MidRecord = func() { r.crash("event") }
	}
	hp := map[string]any{
		"lr":               cfg.LR,
		"batch_size":       cfg.BatchSize,
		"embed_size":       cfg.EmbedSize,
		"hidden_size":      cfg.HiddenSize,
		"num_layers":       cfg.NumLayers,
		"dropout":          cfg.Dropout,
		"backbone_dropout": cfg.BackboneDropout,
		"train_cnn":        cfg.TrainCNN,
		"decoder":          cfg.Decoder,
		"feature_layer":    cfg.FeatureLayer,
		"epochs":           cfg.Epochs,
		"lr_schedule":      cfg.LRSchedule,
		"grad_clip":        cfg.GradClip,
		"weights":          cfg.Weights,
		"backbone":         cfg.Backbone,
		"image_size":       cfg.ImageSize,
		"crop":             cfg.Crop,
		"training":         cfg.Training,
	}
	if cfg.Training == TrainSCST {
		hp["scst_samples"], hp["scst_baseline"], hp["scst_temperature"] = cfg.SCSTSamples, cfg.SCSTBaseline,
			cfg.SCSTTemperature
	}
	if err := r.tb.HParamsStart(hp, ""); err != nil {
		return err
	}
	return nil
}

// bar returns a progress callback: a progress bar on a terminal, nothing otherwise.
func (r *runner) bar(total int, desc string) func(int) {
	if !r.opt.TTY {
		return func(int) {}
	}
	b := progressbar.NewOptions(
		total,
		progressbar.OptionSetWriter(r.opt.Out),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return func(d int) { b.Set(d) }
}

// lrAt is the learning rate at an optimiser step.
func (r *runner) lrAt(step int64) float64 {
	cfg := r.cfg
	lr := cfg.LR
	epoch := float64(step) / float64(max(1, r.stepsPer))
	switch cfg.LRSchedule {
	case ScheduleCosine:
		total := float64(cfg.Epochs)
		lr = cfg.LR * 0.5 * (1 + math.Cos(math.Pi*math.Min(epoch, total)/total))
	case ScheduleStep:
		lr = cfg.LR * math.Pow(cfg.LRGamma, math.Floor(epoch/float64(cfg.LRStepEpochs)))
	}
	if cfg.WarmupSteps > 0 && step < int64(cfg.WarmupSteps) {
		lr *= float64(step+1) / float64(cfg.WarmupSteps)
	}
	return lr
}

// epochBatches streams one epoch's batches of ex (training order when
// shuffle) from the run's source.
func (r *runner) epochBatches(ctx context.Context, ex []data.Example, epoch, start int, shuffle bool,
) (<-chan batch, int, error) {
	return r.src.epoch(ctx, ex, r.items(ex, epoch, shuffle), epoch, start, shuffle)
}

// calibrateBN runs training images through the randomly initialised backbone
// with BatchNorm in training mode (no gradient), so that its running
// statistics describe this data: every layer's output is then normalised at
// evaluation, and the frozen random features are well scaled.
func (r *runner) calibrateBN() error {
	l, err := data.NewLoader(
		r.train,
		data.ImageItems(r.train),
		nil,
		r.tfEval,
		data.LoaderConfig{BatchSize: 32, Workers: r.cfg.Workers, Shuffle: true, Seed: uint64(r.cfg.Seed)},
	)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	n := 0
	for b := range l.Epoch(ctx, 0, 0) {
		x := torch.FromFloat32s(b.Images, []int64{int64(b.Size()), 3, int64(b.Side), int64(b.Side)}, r.device)
		torch.NoGrad(func() { r.m.Backbone.Map(x, true).MustDrop() })
		x.MustDrop()
		if n++; n == r.cfg.CalibrateBN {
			break
		}
	}
	r.say("calibrated the random backbone's BatchNorm statistics on %d batches (%.1fs)", n, time.Since(t0).Seconds())
	return nil
}

// items lists an epoch's samples: every (image, caption) pair, or, with
// caption_sampling = "one" in training, one caption per image drawn from the
// seed and the epoch.
func (r *runner) items(ex []data.Example, epoch int, train bool) []data.Item {
	if train && r.cfg.Training == TrainSCST { // one row per image; its captions are the references
		out := make([]data.Item, len(ex))
		for i := range ex {
			out[i] = data.Item{Example: i}
		}
		return out
	}
	if !train || r.cfg.CaptionSampling == SampleAll {
		return data.CaptionItems(ex)
	}
	rng := rand.New(rand.NewPCG(uint64(r.cfg.Seed)^0x5eed, uint64(epoch)))
	out := make([]data.Item, len(ex))
	for i, e := range ex {
		out[i] = data.Item{Example: i, Caption: rng.IntN(len(e.Captions))}
	}
	return out
}

// rank0First runs fn on rank 0, then on the other ranks (each finds what
// rank 0 wrote: the synthetic data, the feature cache).
func (r *runner) rank0First(fn func() error) error {
	g := r.opt.Dist
	if g == nil {
		return fn()
	}
	if r.rank() > 0 {
		if err := g.Barrier(); err != nil {
			return err
		}
		return fn()
	}
	if err := fn(); err != nil {
		return err
	}
	return g.Barrier()
}
