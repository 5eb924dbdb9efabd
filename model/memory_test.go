package model

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// TestTrainStepsDropEveryTensor: a training step (frozen and fine-tuned
// backbone, LSTM and attention decoders) leaves no tensor handle behind, counted
// with Go's collector off. The patched gotch (scripts/patch_gotch.sh) no longer
// gives handles a 100 KB Go block, so the collector seldom runs and a handle left
// to its finalizer would keep its libtorch memory for a long time.
func TestTrainStepsDropEveryTensor(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(3)
		for _, cfg := range []Config{
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Dropout: 0.5, BackboneDropout: 0.5, TrainCNN: true},
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Dropout: 0.5, BackboneDropout: 0.5},
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Dropout: 0.5, Decoder: "attention", AttentionDim: 8, FeatureLayer: "Mixed_5d", TrainCNN: true},
		} {
			m, err := NewCaptioner(cfg, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			adam := NewAdam(m.VS, 0)
			x := ts.MustRandn([]int64{2, 3, 75, 75}, gotch.Float, gotch.CPU)
			tok := torch.FromInt64s([]int64{1, 5, 9, 2, 1, 7, 3, 2}, []int64{2, 4}, gotch.CPU)
			step := func() {
				adam.ZeroGrad()
				logits := m.Forward(x, tok, true)
				loss := Loss(logits, tok)
				loss.MustBackward()
				adam.Step(1e-3)
				loss.MustDrop()
				logits.MustDrop()
			}
			step()
			runtime.GC()
			runtime.GC()
			old := debug.SetGCPercent(-1)
			before := torch.LiveTensors()
			step()
			step()
			after := torch.LiveTensors()
			debug.SetGCPercent(old)
			if after != before {
				t.Errorf("decoder %q, train_cnn %v: %d live tensors before two training steps, %d after", cfg.Decoder, cfg.TrainCNN, before, after)
			}
			x.MustDrop()
			tok.MustDrop()
		}
	})
}
