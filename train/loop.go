package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/render"
	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/metrics"
	"github.com/captiongo/captiongo/model"
)

// loop is the training loop, top to bottom: epochs of steps, then evaluation,
// checkpoint, best model and early stopping.
func (r *runner) loop() (*Result, error) {
	cfg := r.cfg
	nItems := len(r.items(r.train, 0, true))
	r.stepsPer = (nItems + cfg.BatchSize - 1) / cfg.BatchSize
	var samples []Sample
	if r.st.Finished {
		r.say("run %s already finished (epoch %d, step %d)", r.dir, r.st.Epoch, r.st.Step)
		if _, err := os.Stat(filepath.Join(r.dir, runfolder.Manifest)); err != nil {
			if err := r.writeState(); err != nil { // a run from before the manifest gets one
				return nil, err
			}
		}
		return &Result{RunDir: r.dir, State: r.st}, nil
	}
	for epoch := r.st.Epoch; epoch < cfg.Epochs; epoch++ {
		start := 0
		if epoch == r.st.Epoch {
			start = r.st.Batch
		}
		if start == 0 {
			r.st.Partial = EpochProgress{}
		}
		if r.tuningAt(epoch) {
			if r.tuneAdam == nil {
				if err := r.startTuning(); err != nil {
					return nil, err
				}
			}
			r.useImages()
		}
		ctx, cancel := context.WithCancel(context.Background())
		ch, nb, err := r.epochBatches(ctx, r.train, epoch, start, true)
		if err != nil {
			cancel()
			return nil, err
		}
		t0, secs0 := time.Now(), r.st.Partial.Seconds
		p := &r.st.Partial
		bar := r.bar(nb, fmt.Sprintf("epoch %d/%d", epoch+1, cfg.Epochs))
		step := r.step
		if cfg.Training == TrainSCST {
			step = r.scstStep
		}
		for b := range ch {
			if b.err != nil {
				cancel()
				return nil, b.err
			}
			lv, lr, err := step(b)
			if err != nil {
				cancel()
				return nil, err
			}
			if r.opt.OnStep != nil {
				r.opt.OnStep(r.st.Step)
			}
			p.Images += b.n
			p.LossSum += lv
			p.Batches++
			p.Seconds = secs0 + time.Since(t0).Seconds()
			r.st.Epoch, r.st.Batch = epoch, b.index+1
			bar(b.index + 1)
			if !r.opt.TTY && (r.st.Step%int64(cfg.LogEvery) == 0 || b.index+1 == nb) {
				r.say(
					"epoch %d/%d  batch %d/%d  step %d  loss %.4f  lr %.2e  %.1f img/s",
					epoch+1,
					cfg.Epochs,
					b.index+1,
					nb,
					r.st.Step,
					lv,
					lr,
					float64(p.Images)/p.Seconds,
				)
			}
			if sig := r.interrupted(); sig != nil {
				cancel()
				return nil, r.stopForSignal(sig, ch)
			}
			if cfg.CheckpointEvery > 0 && r.st.Step%int64(cfg.CheckpointEvery) == 0 && b.index+1 < nb {
				if err := r.checkpoint(); err != nil {
					cancel()
					return nil, err
				}
			}
			if r.opt.StopAt > 0 && r.st.Step >= r.opt.StopAt {
				cancel()
				for range ch {
				}
				r.tb.Flush()
				return nil, errStopped
			}
		}
		cancel()
		if r.st.Batch != nb { // the batches ended early: a loader error was logged
			r.st.Epoch, r.st.Batch = epoch, nb
		}
		ips := float64(p.Images) / math.Max(p.Seconds, 1e-9)
		em, smp, err := r.evaluate(epoch, p.LossSum/math.Max(1, float64(p.Batches)), ips)
		var in *Interrupted
		if errors.As(err, &in) { // the epoch's steps are done: resuming evaluates
			return nil, r.stopForSignal(in.Signal, nil)
		}
		if err != nil {
			return nil, err
		}
		em.TrainSecs = p.Seconds
		em.Seconds = secs0 + time.Since(t0).Seconds() // this epoch's steps before a resume, and all since
		samples = smp
		r.st.History = append(r.st.History, em)
		r.st.Epoch, r.st.Batch = epoch+1, 0
		r.st.Partial = EpochProgress{}
		// best.gt first: a checkpoint that names this epoch as the best must
		// find its weights there (a kill in between redoes the epoch).
		improved := r.updateBest(em)
		if improved {
			if err := r.saveBest(); err != nil {
				return nil, err
			}
		}
		if err := r.checkpoint(); err != nil {
			return nil, err
		}
		r.say(
			"epoch %d/%d: train loss %.4f, val loss %.4f, BLEU-4 %.4f, CIDEr-D %.4f, %.1f img/s, %.1fs%s",
			epoch+1,
			cfg.Epochs,
			em.TrainLoss,
			em.ValLoss,
			em.Bleu4,
			em.CIDEr,
			em.ImagesPS,
			em.Seconds,
			map[bool]string{true: " (best)", false: ""}[improved],
		)
		r.tb.Flush()
		if cfg.Patience > 0 && r.st.SinceBest >= cfg.Patience {
			r.say(
				"early stop: %s has not improved for %d epochs (best %.4f at epoch %d)",
				cfg.BestMetric,
				cfg.Patience,
				r.bestValue(),
				r.st.BestEpoch,
			)
			break
		}
	}
	r.st.Finished = true
	r.st.WallSeconds += time.Since(r.started).Seconds()
	if err := r.writeState(); err != nil {
		return nil, err
	}
	r.say("samples (generated | references):")
	for _, s := range samples {
		r.say("  %s: %q | %q", filepath.Base(s.Image), s.Generated, s.Refs[0])
	}
	r.say("done: %s (TensorBoard: tensorboard --logdir %s)", r.dir, cfg.OutDir)
	return &Result{RunDir: r.dir, State: r.st, Samples: samples}, nil
}

// step is one optimiser step; it returns the loss and the learning rate.
func (r *runner) step(b batch) (float64, float64, error) {
	lr := r.lrAt(r.st.Step)
	r.adam.ZeroGrad()
	if r.tuneAdam != nil {
		r.tuneAdam.ZeroGrad()
	}
	// Dropout's masks come from a generator seeded by the run's seed and the
	// step, so a run resumed from a checkpoint draws the masks it would have;
	// each rank of a data-parallel run has its own stream (rank 0's is a
	// single process's).
	seed := r.cfg.Seed + int64(r.rank())*0x5DEECE66D
	torch.ManualSeed(stepSeed(seed, r.st.Step))
	var ss *model.ScheduledSampling
	if p := r.cfg.ssProb(r.st.Epoch); p > 0 { // its coins and samples follow the step too
		ss = &model.ScheduledSampling{P: p, Rng: rand.New(rand.NewPCG(uint64(seed)^0x55, uint64(r.st.Step)))}
	}
	wCE, wPen := 1.0, 1.0
	if r.opt.Dist != nil {
		b, _, wCE, wPen = r.shard(b)
	}
	logits, alphas, tok := r.src.forward(b, true, ss)
	var loss *ts.Tensor
	if r.opt.Dist == nil {
		loss = model.LossAttention(logits, alphas, tok, r.cfg.AlphaC)
	} else {
		loss = shardLoss(logits, alphas, tok, r.cfg.AlphaC, wCE, wPen)
	}
	if alphas != nil {
		alphas.MustDrop()
	}
	lv, err := r.backward(loss, torch.Item(loss))
	if err != nil {
		return 0, 0, err
	}
	if r.cfg.GradClip > 0 { // each optimiser's gradients by themselves
		r.adam.ClipGradNorm(r.cfg.GradClip)
		if r.tuneAdam != nil {
			r.tuneAdam.ClipGradNorm(r.cfg.GradClip)
		}
	}
	r.adam.Step(lr)
	if r.tuneAdam != nil {
		r.tuneAdam.Step(r.tuneLR(lr))
	}
	loss.MustDrop()
	logits.MustDrop()
	tok.MustDrop()
	r.st.Step++
	r.tb.Scalar("Training loss", r.st.Step, lv)
	if r.st.Step%int64(r.cfg.LogEvery) == 0 {
		r.tb.Scalar("learning rate", r.st.Step, lr)
		if r.tuneAdam != nil {
			r.tb.Scalar("learning rate (backbone)", r.st.Step, r.tuneLR(lr))
		}
	}
	return lv, lr, nil
}

func (r *runner) bestValue() float64 {
	if !r.cfg.BestMetric.HigherIsBetter() { // stored negated
		return -r.st.Best
	}
	return r.st.Best
}

func (r *runner) updateBest(em EpochMetrics) bool {
	v := em.CIDEr
	switch r.cfg.BestMetric {
	case MetricBleu4:
		v = em.Bleu4
	case MetricValLoss:
		v = -em.ValLoss
	}
	if v > r.st.Best {
		r.st.Best, r.st.BestEpoch, r.st.SinceBest = v, em.Epoch, 0
		return true
	}
	r.st.SinceBest++
	return false
}

// evaluate computes the validation loss, decodes val images for BLEU-4 and
// CIDEr-D, and logs scalars, a samples table and captioned images.
func (r *runner) evaluate(epoch int, trainLoss, ips float64) (EpochMetrics, []Sample, error) {
	em := EpochMetrics{Epoch: epoch + 1, Step: r.st.Step, TrainLoss: trainLoss, ImagesPS: ips}
	// Validation loss, weighted by target tokens.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, _, err := r.epochBatches(ctx, r.val, 0, 0, false)
	if err != nil {
		return em, nil, err
	}
	var sum, n float64
	for b := range ch {
		if b.err != nil {
			return em, nil, b.err
		}
		if !r.mine(b.index) { // another rank's batch (data-parallel)
			continue
		}
		torch.NoGrad(func() {
			logits, alphas, tok := r.src.forward(b, false, nil)
			defer tok.MustDrop()
			if alphas != nil {
				alphas.MustDrop()
			}
			loss := model.Loss(logits, tok) // cross-entropy only, comparable across decoders
			targets := 0
			for i, t := range b.tokens {
				if i%b.T != 0 && t != data.PAD {
					targets++
				}
			}
			sum += torch.Item(loss) * float64(targets)
			n += float64(targets)
			loss.MustDrop()
			logits.MustDrop()
		})
	}
	if err := r.sumOverRanks(&sum, &n); err != nil {
		return em, nil, err
	}
	em.ValLoss = sum / math.Max(1, n)

	// Metrics on (the first eval_images) val images.
	ex := r.val
	if r.cfg.EvalImages > 0 && len(ex) > r.cfg.EvalImages {
		ex = ex[:r.cfg.EvalImages]
	}
	hyps, err := r.decodeSharded(ex)
	if err != nil {
		return em, nil, err
	}
	ids := make([]string, len(ex))
	refs := map[string][]string{}
	hm := map[string]string{}
	for i, e := range ex {
		ids[i] = e.ImageID
		refs[e.ImageID] = e.Captions
		hm[e.ImageID] = hyps[i]
	}
	sc, err := metrics.Score(ids, refs, hm)
	if err != nil {
		return em, nil, err
	}
	em.Bleu4, em.CIDEr = sc.Bleu4, sc.CIDEr
	step := r.st.Step
	r.tb.Scalar("Validation loss", step, em.ValLoss)
	r.tb.Scalar("BLEU-4", step, em.Bleu4)
	r.tb.Scalar("CIDEr-D", step, em.CIDEr)
	r.tb.Scalar("images per second", step, ips)
	r.tb.Scalar("Training loss (epoch mean)", step, trainLoss)
	if r.cfg.SSStart >= 0 {
		r.tb.Scalar("scheduled sampling probability", step, r.cfg.ssProb(epoch))
	}

	// Samples: test photographs when the data set has a test split (shown,
	// never scored or used to choose anything), else the val images above.
	if test := r.ds.SplitExamples(data.Test); len(test) > 0 && len(r.ds.SplitExamples(data.Val)) > 0 {
		ex = test[:min(r.cfg.SampleImages, len(test))]
		if hyps, err = r.decode(ex); err != nil {
			return em, nil, err
		}
	}
	var samples []Sample
	var md strings.Builder
	md.WriteString("| image | generated | reference |\n|---|---|---|\n")
	for i := 0; i < min(r.cfg.SampleImages, len(ex)); i++ {
		s := Sample{Image: ex[i].Path, Generated: hyps[i], Refs: ex[i].Captions}
		samples = append(samples, s)
		fmt.Fprintf(&md, "| %s | %s | %s |\n", filepath.Base(s.Image), mdEscape(s.Generated), mdEscape(s.Refs[0]))
		if png, w, h, err := render.CaptionedPNG(s.Image, s.Generated); err == nil {
			r.tb.Image(fmt.Sprintf("samples/image%d", i), step, png, w, h)
		}
		if r.m.Cfg.Attention() && s.Generated != "" {
			words, ws, err := r.attentionOf(ex[i], s.Generated)
			if err != nil {
				return em, nil, err
			}
			if png, w, h, err := render.AttentionPNG(s.Image, words, ws); err == nil {
				r.tb.Image(fmt.Sprintf("attention/image%d", i), step, png, w, h)
				name := fmt.Sprintf(
					"epoch%03d-%s.png",
					epoch+1,
					strings.TrimSuffix(filepath.Base(s.Image), filepath.Ext(s.Image)),
				)
				if err := os.MkdirAll(filepath.Join(r.dir, "attention"), 0o755); err == nil {
					data.WriteFileAtomic(filepath.Join(r.dir, "attention", name), png)
				}
			}
		}
	}
	r.tb.Text("samples", step, md.String())
	r.logSCSTSamples(step)
	if r.cfg.Histograms {
		r.logHistograms(step)
	}
	return em, samples, nil
}

// attentionOf returns the words of a caption (and a final <end>) with the
// attention weights the model gives each when teacher-forced on it.
func (r *runner) attentionOf(e data.Example, caption string) ([]string, [][]float32, error) {
	x, err := r.src.features([]data.Example{e})
	if err != nil {
		return nil, nil, err
	}
	defer x.MustDrop()
	return r.m.CaptionAttention(r.vocab, x, caption)
}

// logHistograms logs every trained tensor ("weights/<name>") and the
// gradient of the epoch's last step ("gradients/<name>").
func (r *runner) logHistograms(step int64) {
	f64 := func(xs []float32) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = float64(x)
		}
		return out
	}
	for i, p := range r.adam.Params {
		name := r.adam.Names[i]
		r.tb.Histogram("weights/"+name, step, f64(torch.Float32s(p)))
		g := p.MustGrad(false)
		if g.MustDefined() {
			r.tb.Histogram("gradients/"+name, step, f64(torch.Float32s(g)))
		}
		g.MustDrop()
	}
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// decodeBatch is how many images decode captions in one batch.
const decodeBatch = 32

// decode captions images (greedy or beam) and returns the words joined.
func (r *runner) decode(ex []data.Example) ([]string, error) {
	out := make([]string, 0, len(ex))
	const bs = decodeBatch
	for lo := 0; lo < len(ex); lo += bs {
		part := ex[lo:min(lo+bs, len(ex))]
		r.crash("eval")
		if sig := r.interrupted(); sig != nil {
			return nil, &Interrupted{Signal: sig}
		}
		x, err := r.src.features(part)
		if err != nil {
			return nil, err
		}
		st := r.m.StepperFromFeatures(x)
		x.MustDrop()
		hs := model.Beam(st, len(part), r.cfg.Beam, r.cfg.MaxLen, 1)
		model.CloseStepper(st)
		for _, h := range hs {
			out = append(out, strings.Join(r.vocab.Decode(h.Tokens), " "))
		}
	}
	return out, nil
}

// checkpoint syncs the events logged so far, writes weights, optimiser
// moments and a copy of the state into a fresh folder, and commits by
// renaming state.json over the old one. The previous checkpoint folder stays
// (resuming falls back to it when the newest cannot be read); older ones go.
// A kill at any point leaves the previous checkpoint whole.
func (r *runner) checkpoint() error {
	if err := r.tb.Flush(); err != nil {
		return err
	}
	name := fmt.Sprintf("ckpt-%09d", r.st.Step)
	dir := filepath.Join(r.dir, name)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := r.m.VS.Save(filepath.Join(tmp, "model.gt")); err != nil {
		return fmt.Errorf("checkpoint weights: %w", err)
	}
	r.crash("checkpoint:weights")
	moments := r.adam.State()
	r.st.TuneAdamSteps = 0
	if r.tuneAdam != nil { // the backbone's moments: other names, the same file
		moments = append(moments, r.tuneAdam.State()...)
		r.st.TuneAdamSteps = r.tuneAdam.Steps
	}
	if err := ts.SaveMultiNew(moments, filepath.Join(tmp, "optim.gt")); err != nil {
		return fmt.Errorf("checkpoint optimiser: %w", err)
	}
	prev := r.st.Weights
	r.st.Weights = filepath.Join(name, "model.gt")
	r.st.Moments = filepath.Join(name, "optim.gt")
	r.st.AdamSteps = r.adam.Steps
	r.st.VocabFile = runfolder.Vocab
	r.st.WallSeconds += time.Since(r.started).Seconds()
	r.started = time.Now()
	b, err := json.MarshalIndent(r.st, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, runfolder.State), b, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	r.crash("checkpoint:folder")
	if err := r.writeState(); err != nil {
		return err
	}
	r.crash("checkpoint:state")
	// Keep this checkpoint and the one before; remove older ones.
	keep := map[string]bool{name: true, filepath.Dir(prev): true}
	old, _ := filepath.Glob(filepath.Join(r.dir, "ckpt-*"))
	for _, o := range old {
		if !keep[filepath.Base(o)] {
			os.RemoveAll(o)
		}
	}
	return nil
}

// stopForSignal checkpoints where the run stands after a signal and returns
// the *Interrupted error; ch, when not nil, is drained first.
func (r *runner) stopForSignal(sig os.Signal, ch <-chan batch) error {
	for range ch {
	}
	r.say("%v: checkpointing at epoch %d, batch %d (step %d)", sig, r.st.Epoch+1, r.st.Batch, r.st.Step)
	if err := r.checkpoint(); err != nil {
		return err
	}
	return &Interrupted{Signal: sig, Step: r.st.Step, Dir: r.dir}
}

// stepSeed is the generator seed of an optimiser step.
func stepSeed(seed, step int64) int64 {
	x := uint64(seed)*0x9E3779B97F4A7C15 + uint64(step)
	x ^= x >> 31
	return int64(x & (1<<62 - 1))
}

// writeState writes state.json (the trainer's own) and then the manifest
// everything after training reads (runfolder.Info).
func (r *runner) writeState() error {
	b, err := json.MarshalIndent(r.st, "", " ")
	if err != nil {
		return err
	}
	if err := data.WriteFileAtomic(filepath.Join(r.dir, runfolder.State), b); err != nil {
		return err
	}
	return runfolder.Write(r.dir, runfolder.Info{
		Model: r.m.Cfg, Transform: r.tfEval, Data: r.dataDir, DataOptions: r.cfg.DataOptions(),
		Vocab: runfolder.Vocab, Weights: r.st.Weights, Epoch: r.st.Epoch, Step: r.st.Step, Finished: r.st.Finished,
		BestMetric: runfolder.BestMetric{
			Name:           string(r.cfg.BestMetric),
			Value:          r.bestValue(),
			HigherIsBetter: r.cfg.BestMetric.HigherIsBetter(),
			Epoch:          r.st.BestEpoch,
		},
	})
}

// saveBest keeps a copy of the best weights as best.gt with best.json.
func (r *runner) saveBest() error {
	tmp := filepath.Join(r.dir, runfolder.Best+".tmp")
	if err := r.m.VS.Save(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, runfolder.Best)); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(
		map[string]any{
			"epoch":  r.st.BestEpoch,
			"metric": r.cfg.BestMetric,
			"value":  r.bestValue(),
			"step":   r.st.Step,
			"config": r.cfg,
		},
		"",
		" ",
	)
	return data.WriteFileAtomic(filepath.Join(r.dir, runfolder.BestInfo), b)
}

// loadCheckpoint restores weights and optimiser moments named in state.json.
// When that checkpoint cannot be read (a truncated or corrupt file), it falls
// back to the newest other checkpoint folder that can, saying so, and the run
// resumes from there (its own copy of the state); with none, the error names
// the file.
func (r *runner) loadCheckpoint() error {
	err := r.loadCheckpointFiles(r.st)
	if err == nil {
		return nil
	}
	dirs, _ := filepath.Glob(filepath.Join(r.dir, "ckpt-*"))
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, d := range dirs {
		if strings.HasSuffix(d, ".tmp") || filepath.Base(d) == filepath.Dir(r.st.Weights) {
			continue
		}
		b, rerr := os.ReadFile(filepath.Join(d, runfolder.State))
		if rerr != nil {
			continue
		}
		st, perr := parseState(filepath.Join(d, runfolder.State), b)
		if perr != nil {
			continue
		}
		if ferr := r.loadCheckpointFiles(st); ferr != nil {
			continue
		}
		r.say("note: checkpoint %s cannot be read (%v); resuming from the previous one, %s (step %d)",
			filepath.Dir(r.st.Weights), err, filepath.Base(d), st.Step)
		st.Config = r.st.Config
		r.st = st
		return nil
	}
	return fmt.Errorf("cannot resume %s: %w (and no earlier checkpoint folder can be read)", r.dir, err)
}

// loadCheckpointFiles loads the weights and moments st names.
func (r *runner) loadCheckpointFiles(st State) error {
	if err := r.m.LoadFile(filepath.Join(r.dir, st.Weights)); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(r.dir, st.Weights), err)
	}
	named, err := ts.LoadMulti(filepath.Join(r.dir, st.Moments))
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(r.dir, st.Moments), err)
	}
	m := map[string]*ts.Tensor{}
	for _, n := range named {
		m[n.Name] = n.Tensor
	}
	defer model.DropAll(m)
	if err := r.adam.LoadState(m, st.AdamSteps); err != nil {
		return err
	}
	if !r.tuningAt(st.Epoch) {
		return nil
	}
	if err := r.startTuning(); err != nil { // fresh moments at the first tuned epoch's start
		return err
	}
	if st.TuneAdamSteps == 0 {
		return nil
	}
	return r.tuneAdam.LoadState(m, st.TuneAdamSteps)
}
