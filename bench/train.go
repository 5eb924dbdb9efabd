package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// trainSteps: the baseline's optimiser step with a frozen backbone (batch 32,
// 299 px), the decoder-only step a feature cache leaves (batch 32 and 256),
// and the backbone's feature extraction, against bench/train_ref.py on the
// same weights and inputs. The eval-mode loss of both sides must agree, so
// both time the same model.
func trainSteps(opt Options) ([]Result, error) {
	const V, T = 2600, 20
	repsFull, repsDec := 3, 20
	if opt.Quick {
		repsFull, repsDec = 1, 2
	}
	dir, err := os.MkdirTemp("", "captiongo-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "train_ref.py")
	cmd := exec.Command(opt.Python, script, dir, fmt.Sprint(V), fmt.Sprint(T), fmt.Sprint(repsFull), fmt.Sprint(repsDec), fmt.Sprint(torchThreads()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("PyTorch reference: %v", err)
	}
	var ref map[string]float64
	if err := json.Unmarshal(out, &ref); err != nil {
		return nil, fmt.Errorf("PyTorch reference printed %q: %v", out, err)
	}
	load := func(name string) (*ts.Tensor, error) {
		d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		return torch.FromFloat32s(d, shape, gotch.CPU), nil
	}
	loadTokens := func(name string) (*ts.Tensor, error) {
		d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ids := make([]int64, len(d))
		for i, x := range d {
			ids[i] = int64(x)
		}
		return torch.FromInt64s(ids, shape, gotch.CPU), nil
	}
	var results []Result
	err = torch.Run(func() error {
		torch.ManualSeed(0)
		m, err := model.NewCaptioner(model.Config{VocabSize: V, EmbedSize: 256, HiddenSize: 256, NumLayers: 1, Dropout: 0.5}, gotch.CPU)
		if err != nil {
			return err
		}
		if err := m.LoadFile(filepath.Join(dir, "model.pth")); err != nil {
			return err
		}
		adam := model.NewAdam(m.VS, 0)
		images, err := load("images32.npy")
		if err != nil {
			return err
		}
		defer images.MustDrop()
		tok, err := loadTokens("tokens32.npy")
		if err != nil {
			return err
		}
		defer tok.MustDrop()
		// Same model: the eval-mode loss on the same inputs.
		var evalLoss float64
		torch.NoGrad(func() {
			logits := m.Forward(images, tok, false)
			loss := model.Loss(logits, tok)
			evalLoss = torch.Item(loss)
			loss.MustDrop()
			logits.MustDrop()
		})
		if d := math.Abs(evalLoss - ref["eval_loss32"]); d > 1e-4*math.Max(1, math.Abs(evalLoss)) {
			return fmt.Errorf("eval loss %.6f, PyTorch %.6f: not the same model", evalLoss, ref["eval_loss32"])
		}
		step := func(forward func() *ts.Tensor, labels *ts.Tensor) {
			adam.ZeroGrad()
			logits := forward()
			loss := model.Loss(logits, labels)
			loss.MustBackward()
			adam.Step(3e-4)
			loss.MustDrop()
			logits.MustDrop()
		}
		timeIt := func(reps int, f func()) float64 {
			f() // warm-up, as the reference does
			t0 := time.Now()
			for i := 0; i < reps; i++ {
				f()
			}
			return float64(time.Since(t0).Microseconds()) / 1000 / float64(reps)
		}
		full := timeIt(repsFull, func() { step(func() *ts.Tensor { return m.Forward(images, tok, true) }, tok) })
		results = append(results, Result{Case: "train_step_frozen_b32_299", Unit: "ms per step", Captiongo: round(full), PyTorch: round(ref["train_step_frozen_b32_299"]),
			Speedup: round(ref["train_step_frozen_b32_299"] / full),
			Note:    fmt.Sprintf("the baseline's step (train_CNN = False): frozen Inception-v3 at 299 px (eval, no grad), fc, LSTM, %d tokens, vocab %d, Adam on fc + decoder; mean of %d", T, V, repsFull)})
		enc := timeIt(repsFull, func() { f := m.Features(images, false); f.MustDrop() })
		results = append(results, Result{Case: "encoder_features_b32_299", Unit: "images/s", Captiongo: round(32 / enc * 1000), PyTorch: round(32 / ref["encoder_b32_299"] * 1000),
			Speedup: round(ref["encoder_b32_299"] / enc), Note: "pooled 2048-d Inception-v3 features, batch 32, eval, no grad"})
		for _, B := range []int{32, 256} {
			pooled, err := load(fmt.Sprintf("pooled%d.npy", B))
			if err != nil {
				return err
			}
			dt, err := loadTokens(fmt.Sprintf("dtokens%d.npy", B))
			if err != nil {
				return err
			}
			ms := timeIt(repsDec, func() {
				step(func() *ts.Tensor {
					feat := m.Head(pooled, true)
					defer feat.MustDrop()
					return m.DecodeTeacher(feat, dt, true)
				}, dt)
			})
			pooled.MustDrop()
			dt.MustDrop()
			key := fmt.Sprintf("decoder_step_b%d", B)
			results = append(results, Result{Case: key, Unit: "ms per step", Captiongo: round(ms), PyTorch: round(ref[key]), Speedup: round(ref[key] / ms),
				Note: fmt.Sprintf("from pooled features (feature cache): fc, LSTM, %d tokens, vocab %d, loss, backward, Adam; mean of %d", T, V, repsDec)})
		}
		return nil
	})
	return results, err
}
