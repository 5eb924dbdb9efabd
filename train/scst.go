package train

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/metrics"
	"github.com/captiongo/captiongo/model"
)

// Self-critical sequence training (training = "scst"): for each training
// image the model samples scst_samples captions; each is rewarded by its
// CIDEr-D against the image's references (document frequencies from the
// training split's references); the loss -(reward - baseline) * log p(caption)
// (model.SCSTLoss) pushes up the captions that beat the baseline, the image's
// greedy caption's reward or the mean of its other samples. Sampling and the
// log-probabilities use the model in evaluation mode (no dropout), so the
// gradient is exactly the policy gradient of the sampling distribution.

// scstState is what an SCST run keeps besides the runner's.
type scstState struct {
	refs   [][]string // per training example: its references, tokenised as the scorer reads them
	scorer *metrics.CiderDScorer
	shown  []string // the last batch's first images: samples with rewards (TensorBoard text)
}

// setupSCST tokenises the training references and fixes the reward's
// document frequencies.
func (r *runner) setupSCST() {
	var lines []string
	for _, e := range r.train {
		lines = append(lines, e.Captions...)
	}
	tok := data.TokenizeLines(lines)
	refs := make([][]string, len(r.train))
	k := 0
	for i, e := range r.train {
		for range e.Captions {
			refs[i] = append(refs[i], strings.Join(tok[k], " "))
			k++
		}
	}
	r.scst = &scstState{refs: refs, scorer: metrics.NewCiderDScorer(refs)}
}

// openInit opens init_from's run and checks that its model is this
// experiment's architecture; it returns the run (its vocabulary and weights).
func (r *runner) openInit() (*runfolder.Run, error) {
	run, err := runfolder.Open(r.cfg.InitFrom)
	if err != nil {
		return nil, &ConfigError{Field: "init_from", Msg: err.Error()}
	}
	return run, nil
}

// checkInit compares init_from's model with the one this run built.
func (r *runner) checkInit(run *runfolder.Run) error {
	a, b := run.Info.Model, r.m.Cfg
	type field struct {
		name string
		x, y any
	}
	for _, f := range []field{
		{"decoder", a.Decoder, b.Decoder}, {"embed_size", a.EmbedSize, b.EmbedSize},
		{"hidden_size", a.HiddenSize, b.HiddenSize}, {"num_layers", a.NumLayers, b.NumLayers},
		{"attention_dim", a.AttentionDim, b.AttentionDim}, {"feature_layer", a.Layer(), b.Layer()},
		{"backbone", a.BackboneKind(), b.BackboneKind()}, {"vocabulary size", a.VocabSize, b.VocabSize},
	} {
		if fmt.Sprint(f.x) != fmt.Sprint(f.y) {
			return &ConfigError{Field: "init_from", Msg: fmt.Sprintf("%s has %s %v, this experiment %v",
				run.Dir, f.name, f.x, f.y)}
		}
	}
	return nil
}

// scstStep is one self-critical optimiser step on a batch of images; it
// returns the loss and the learning rate.
func (r *runner) scstStep(b batch) (float64, float64, error) {
	cfg := r.cfg
	lr := r.lrAt(r.st.Step)
	k := cfg.SCSTSamples
	// A data-parallel rank takes its share of the batch's images, its loss
	// weighted by that share (the loss is a mean over the samples), and draws
	// its samples from the streams one process would give those images.
	first, weight := 0, 1.0
	if r.opt.Dist != nil {
		b, first, _, weight = r.shard(b)
	}
	feat := r.src.batchFeatures(b)
	defer feat.MustDrop()
	// Sample row (image i, sample j) of the batch draws from a stream of its
	// own, seeded by the run's seed, the step and its place in the batch: a
	// resumed run draws the same, and so does a rank its share.
	rngs := make([]*rand.Rand, b.n*k)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(cfg.Seed)^uint64(r.st.Step)<<20, uint64(first*k+i)))
	}
	var samples, greedy []model.Hypothesis
	torch.NoGrad(func() {
		st := r.m.StepperFromFeatures(feat)
		samples = model.Sample(st, b.n, k, cfg.MaxLen, cfg.SCSTTemperature, rngs)
		model.CloseStepper(st)
		if cfg.SCSTBaseline == BaselineGreedy {
			st := r.m.StepperFromFeatures(feat)
			greedy = model.Greedy(st, b.n, cfg.MaxLen)
			model.CloseStepper(st)
		}
	})
	reward := make([]float64, len(samples))
	for i, h := range samples {
		reward[i] = r.reward(b.examples[i/k], h)
	}
	greedyReward := make([]float64, len(greedy))
	for img, h := range greedy {
		greedyReward[img] = r.reward(b.examples[img], h)
	}
	adv := make([]float32, len(samples))
	var sumR, sumB float64
	for i := range samples {
		img := i / k
		var base float64
		if cfg.SCSTBaseline == BaselineGreedy {
			base = greedyReward[img]
		} else { // the mean of the image's other samples
			for j := img * k; j < (img+1)*k; j++ {
				if j != i {
					base += reward[j]
				}
			}
			base /= float64(k - 1)
		}
		adv[i] = float32(reward[i] - base)
		sumR += reward[i]
		sumB += base
	}
	r.showSamples(b, samples, reward, k)
	n := float64(len(samples))
	if weight == 0 {
		sumR, sumB, n = 0, 0, 0
	}
	if r.opt.Dist != nil {
		if err := r.sumOverRanks(&sumR, &sumB, &n); err != nil {
			return 0, 0, err
		}
	}

	rows := make([]int64, len(samples))
	for i := range rows {
		rows[i] = int64(i / k)
	}
	idx := ts.MustOfSlice(rows).MustTo(r.device, true)
	featRep := feat.MustIndexSelect(0, idx, false)
	idx.MustDrop()
	tok := model.TokenTensor(samples, r.device)
	r.adam.ZeroGrad()
	logits, alphas := r.m.DecodeFeatures(featRep, tok, false)
	if alphas != nil {
		alphas.MustDrop()
	}
	loss, err := model.SCSTLoss(logits, tok, adv)
	if err != nil {
		panic(err)
	}
	if weight != 1 {
		loss = loss.MustMulScalar(ts.FloatScalar(weight), true)
	}
	lv, err := r.backward(loss, torch.Item(loss))
	if err != nil {
		return 0, 0, err
	}
	if cfg.GradClip > 0 {
		r.adam.ClipGradNorm(cfg.GradClip)
	}
	r.adam.Step(lr)
	for _, x := range []*ts.Tensor{loss, logits, tok, featRep} {
		x.MustDrop()
	}
	r.st.Step++
	r.tb.Scalar("Training loss", r.st.Step, lv)
	r.tb.Scalar("SCST/reward (CIDEr-D of the samples)", r.st.Step, sumR/n)
	r.tb.Scalar("SCST/baseline", r.st.Step, sumB/n)
	if r.st.Step%int64(cfg.LogEvery) == 0 {
		r.tb.Scalar("learning rate", r.st.Step, lr)
	}
	return lv, lr, nil
}

// reward is a caption's CIDEr-D against the training image's references.
func (r *runner) reward(example int, h model.Hypothesis) float64 {
	words := data.TokenizeLines([]string{strings.Join(r.vocab.Decode(h.Tokens), " ")})[0]
	return r.scst.scorer.Score(strings.Join(words, " "), r.scst.refs[example])
}

// showSamples keeps the batch's first images' samples with their rewards for
// the epoch's TensorBoard text.
func (r *runner) showSamples(b batch, samples []model.Hypothesis, reward []float64, k int) {
	r.scst.shown = r.scst.shown[:0]
	for img := 0; img < min(b.n, 3); img++ {
		e := r.train[b.examples[img]]
		for j := img * k; j < (img+1)*k; j++ {
			r.scst.shown = append(r.scst.shown, fmt.Sprintf("| %s | %s | %.3f |", mdEscape(e.ImageID),
				mdEscape(strings.Join(r.vocab.Decode(samples[j].Tokens), " ")), reward[j]))
		}
	}
}

// logSCSTSamples writes the kept samples as the epoch's "scst samples" text.
func (r *runner) logSCSTSamples(step int64) {
	if r.scst == nil || len(r.scst.shown) == 0 {
		return
	}
	r.tb.Text("scst samples", step, "| image | sampled caption | reward (CIDEr-D) |\n|---|---|---|\n"+
		strings.Join(r.scst.shown, "\n"))
}
