package model

import (
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
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Dropout: 0.5, Decoder: "attention", AttentionDim: 8,
				FeatureLayer: "Mixed_5d", TrainCNN: true},
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
			before, after := liveTensorsAround(func() { step(); step() })
			if after != before {
				t.Errorf(
					"decoder %q, train_cnn %v: %d live tensors before two training steps, %d after",
					cfg.Decoder,
					cfg.TrainCNN,
					before,
					after,
				)
			}
			x.MustDrop()
			tok.MustDrop()
		}
	})
}

// TestInferenceDropsEveryTensor: captioning (greedy, beam, with attention
// weights) and the four explanation methods leave no tensor handle behind,
// counted with Go's collector off.
func TestInferenceDropsEveryTensor(t *testing.T) {
	run(t, func() {
		torch.ManualSeed(4)
		for _, cfg := range []Config{
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1},
			{VocabSize: 30, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Decoder: "attention", AttentionDim: 8,
				FeatureLayer: "Mixed_5d"},
		} {
			m, err := NewCaptioner(cfg, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			x := ts.MustRandn([]int64{1, 3, 75, 75}, gotch.Float, gotch.CPU)
			base := ts.MustZeros([]int64{1, 3, 75, 75}, gotch.Float, gotch.CPU)
			caption := []int64{1, 5, 9, 2}
			infer := func() {
				m.Caption(x, 1, 6)
				m.Caption(x, 3, 6)
				if cfg.Attention() {
					var f *ts.Tensor
					torch.NoGrad(func() { f = m.Features(x, false) })
					if _, _, err := m.GreedyAttention(f, 6); err != nil {
						t.Fatal(err)
					}
					f.MustDrop()
				}
				if _, err := m.IntegratedGradients(x, base, caption, 1, 4); err != nil {
					t.Fatal(err)
				}
				if _, err := m.Saliency(x, caption, 1); err != nil {
					t.Fatal(err)
				}
				if _, _, err := m.GradCAM(x, caption, 1); err != nil {
					t.Fatal(err)
				}
				if _, err := m.Occlusion(x, base, caption, 1, 25, 25, 4); err != nil {
					t.Fatal(err)
				}
			}
			infer()
			before, after := liveTensorsAround(infer)
			if after != before {
				t.Errorf(
					"decoder %q: %d live tensors before captioning and explaining, %d after",
					cfg.Decoder,
					before,
					after,
				)
			}
			x.MustDrop()
			base.MustDrop()
		}
	})
}
