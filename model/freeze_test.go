package model

import (
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// TestTrainCNN: with train_cnn = false a training step leaves the backbone's
// weights and BatchNorm statistics untouched (the baseline let them drift);
// with train_cnn = true both move.
func TestTrainCNN(t *testing.T) {
	for _, trainCNN := range []bool{false, true} {
		run(t, func() {
			torch.ManualSeed(1)
			m, _ := NewCaptioner(
				Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Dropout: 0.5, TrainCNN: trainCNN},
				gotch.CPU,
			)
			vars := m.VS.Variables()
			mean := vars[BackbonePrefix+"Conv2d_1a_3x3.bn.running_mean"]
			w := vars[BackbonePrefix+"Mixed_7c.branch_pool.conv.weight"]
			m0, w0 := torch.Float32s(&mean), torch.Float32s(&w)
			opt, err := nn.DefaultAdamConfig().Build(m.VS, 1e-2)
			if err != nil {
				t.Fatal(err)
			}
			x := ts.MustRandn([]int64{2, 3, 75, 75}, gotch.Float, gotch.CPU)
			tok := torch.FromInt64s([]int64{1, 5, 6, 2, 1, 7, 2, 0}, []int64{2, 4}, gotch.CPU)
			lg := m.Forward(x, tok, true)
			loss := Loss(lg, tok)
			opt.MustZeroGrad()
			loss.MustBackward()
			opt.MustStep()
			changedMean := !equalF(m0, torch.Float32s(&mean))
			changedW := !equalF(w0, torch.Float32s(&w))
			if changedMean != trainCNN || changedW != trainCNN {
				t.Errorf(
					"train_cnn=%v: BatchNorm statistics changed %v, backbone weights changed %v",
					trainCNN,
					changedMean,
					changedW,
				)
			}
			if n := len(m.Trainable()); (n > 13) != trainCNN {
				t.Errorf("train_cnn=%v: %d trainable tensors", trainCNN, n)
			}
		})
	}
}

func equalF(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
