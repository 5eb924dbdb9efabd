package train

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/model"
)

// TestFinetuneAfterWarmup trains the tiny experiment with the backbone frozen
// in epoch 1 (batches from the feature cache) and Mixed_7b..Mixed_7c training
// from epoch 2 on (batches from the images): the blocks before Mixed_7b and
// every BatchNorm statistic end bit-identical to the initial weights, every
// tuned tensor moves, the backbone's learning rate is logged, and runs
// stopped inside the warm-up and inside the tuned epochs and resumed end
// bit-identical to the uninterrupted one. Bad settings give one line each.
func TestFinetuneAfterWarmup(t *testing.T) {
	cfg := exactRun(t, t.TempDir())
	cfg.FinetuneEpoch, cfg.FinetuneFrom, cfg.FinetuneLR = 2, "Mixed_7b", 1e-3
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	ref, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"feature cache: ",
		"fine-tuning the backbone from Mixed_7b to Mixed_7c: ",
		"the feature cache cannot serve a backbone that trains",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	// The initial weights: the same run, one epoch shorter than fine-tuning.
	frozen := cfg
	frozen.OutDir, frozen.Epochs, frozen.FinetuneEpoch = t.TempDir(), 1, 0
	init, err := runIt(t, frozen, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := weights(t, filepath.Join(init.RunDir, init.State.Weights))
	b := weights(t, filepath.Join(ref.RunDir, ref.State.Weights))
	tuned, still := 0, 0
	for name, x := range a {
		rest, ok := strings.CutPrefix(name, model.BackbonePrefix)
		if !ok || strings.HasPrefix(rest, "fc.") { // fc is the LSTM decoder's head, trained throughout
			continue
		}
		blk, leaf, _ := strings.Cut(rest, ".")
		d := maxAbsDiff(map[string][]float32{name: x}, map[string][]float32{name: b[name]})
		trains := model.BlockIndex(model.Block(blk)) >= model.BlockIndex("Mixed_7b") &&
			(strings.HasSuffix(leaf, "conv.weight") || strings.HasSuffix(leaf, "bn.bias") ||
				strings.HasSuffix(leaf, "bn.weight"))
		switch {
		case trains && d == 0:
			t.Errorf("%s did not change in the tuned epochs", name)
		case trains:
			tuned++
		case d != 0:
			t.Errorf("%s changed by %.3g; only Mixed_7b and Mixed_7c's weights should train", name, d)
		default:
			still++
		}
	}
	if tuned != 3*(9+9) || still == 0 { // 9 convs in each Inception-E block: weight, bn weight and bias
		t.Errorf("%d tuned tensors (want 54), %d frozen", tuned, still)
	}
	lrs := loggedScalars(t, ref.RunDir, "learning rate (backbone)")
	if len(lrs) == 0 || float32(lrs[0]) != float32(1e-3) {
		t.Errorf("backbone learning rates logged: %v, want 1e-3 from epoch 2", lrs)
	}
	if ref.State.TuneAdamSteps != int(ref.State.Step)-15 {
		t.Errorf("backbone optimiser: %d steps, want %d (epochs 2 and 3)", ref.State.TuneAdamSteps, ref.State.Step-15)
	}

	// Stopped in the warm-up (last checkpoint step 12) and in epoch 2 (step
	// 20, the backbone's optimiser 5 steps in), resumed each time.
	stop := cfg
	stop.OutDir = t.TempDir()
	for _, at := range []int64{13, 22} {
		if _, err := runIt(t, stop, Options{StopAt: at}); !errors.Is(err, errStopped) {
			t.Fatalf("StopAt %d: %v", at, err)
		}
	}
	got, err := runIt(t, stop, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(b, weights(t, filepath.Join(got.RunDir, got.State.Weights))); d != 0 {
		t.Errorf("a resumed fine-tuning run differs by %.3g (want bit-identical)", d)
	}

	// The attention decoder: Mixed_7c trains from epoch 2, Mixed_7b stays.
	att := cfg
	att.Decoder, att.AttentionDim, att.Epochs, att.FinetuneFrom = model.DecoderAttention, 16, 2, "Mixed_7c"
	att.CheckpointEvery = 0
	warm := att
	warm.OutDir, warm.Epochs, warm.FinetuneEpoch = t.TempDir(), 1, 0
	w0, err := runIt(t, warm, Options{})
	if err != nil {
		t.Fatal(err)
	}
	att.OutDir = t.TempDir()
	w1, err := runIt(t, att, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, y := weights(t, filepath.Join(w0.RunDir, w0.State.Weights)), weights(t, filepath.Join(w1.RunDir,
		w1.State.Weights))
	for _, n := range []string{"Mixed_7c.branch1x1.conv.weight", "Mixed_7b.branch1x1.conv.weight"} {
		n = model.BackbonePrefix + n
		d := maxAbsDiff(map[string][]float32{n: x[n]}, map[string][]float32{n: y[n]})
		if moved := d != 0; moved != strings.Contains(n, "7c") {
			t.Errorf("attention decoder: %s changed by %.3g", n, d)
		}
	}

	for _, bad := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.FinetuneEpoch = 1 }, "feature_cache: true cannot serve finetune_epoch = 1"},
		{func(c *Config) { c.FinetuneFrom = "Mixed_9z" }, `finetune_from: "Mixed_9z": want one of`},
		{func(c *Config) { c.FeatureLayer = model.Mixed6e }, "finetune_from: Mixed_7b comes after feature_layer"},
		{func(c *Config) { c.TrainCNN = true }, "finetune_epoch: 2 with train_cnn = true"},
		{func(c *Config) { c.FinetuneLR = 0 }, "finetune_lr: 0: must be positive"},
	} {
		c := cfg
		bad.set(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("want one line with %q, got %v", bad.want, err)
		}
	}
}
