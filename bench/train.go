package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

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
	roundsFull, repsFull, roundsDec, repsDec := 3, 1, 5, 4
	switch {
	case opt.Quick:
		roundsFull, roundsDec, repsDec = 1, 1, 2
	case opt.Device == torch.DeviceCUDA:
		// A GPU step takes milliseconds, not seconds: more of them per round.
		roundsFull, repsFull, roundsDec, repsDec = 7, 10, 7, 20
	}
	dir, err := os.MkdirTemp("", "captiongo-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var ref map[string]float64
	proc, err := startRef(
		opt,
		"train_ref.py",
		&ref,
		dir,
		fmt.Sprint(V),
		fmt.Sprint(T),
		fmt.Sprint(torchThreads()),
		string(opt.Device),
	)
	if err != nil {
		return nil, err
	}
	defer proc.Close()
	dev, sync, err := gotch.CPU, func() {}, error(nil)
	load := func(name string) (*ts.Tensor, error) {
		d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		return torch.FromFloat32s(d, shape, dev), nil
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
		return torch.FromInt64s(ids, shape, dev), nil
	}
	var results []Result
	err = torch.Run(func() error {
		if dev, sync, err = benchDevice(opt.Device); err != nil {
			return err
		}
		torch.ManualSeed(0)
		m, err := model.NewCaptioner(
			model.Config{
				VocabSize:       V,
				EmbedSize:       256,
				HiddenSize:      256,
				NumLayers:       1,
				Dropout:         0.5,
				BackboneDropout: 0.5,
			},
			dev,
		)
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
		full, err := interleave(
			proc,
			"full",
			roundsFull,
			repsFull,
			sync,
			func() { step(func() *ts.Tensor { return m.Forward(images, tok, true) }, tok) },
		)
		if err != nil {
			return err
		}
		results = append(
			results,
			Result{
				Case:      "train_step_frozen_b32_299",
				Unit:      "ms per step",
				Captiongo: round(full.Go),
				PyTorch:   round(full.Py),
				Speedup:   round(full.Speedup()),
				Note: fmt.Sprintf(
					"the baseline's step (train_CNN = False): frozen Inception-v3 at 299 px (eval, no grad), fc, LSTM, %d tokens, "+
						"vocab %d, Adam on fc + decoder; %s",
					T,
					V,
					full.Note(),
				),
			},
		)
		enc, err := interleave(
			proc,
			"enc",
			roundsFull,
			repsFull,
			sync,
			func() { f := m.Features(images, false); f.MustDrop() },
		)
		if err != nil {
			return err
		}
		results = append(
			results,
			Result{
				Case:      "encoder_features_b32_299",
				Unit:      "images/s",
				Captiongo: round(32 / enc.Go * 1000),
				PyTorch:   round(32 / enc.Py * 1000),
				Speedup: round(
					enc.Speedup(),
				),
				Note: "pooled 2048-d Inception-v3 features, batch 32, eval, no grad; " + enc.Note(),
			},
		)
		for _, B := range []int{32, 256} {
			pooled, err := load(fmt.Sprintf("pooled%d.npy", B))
			if err != nil {
				return err
			}
			dt, err := loadTokens(fmt.Sprintf("dtokens%d.npy", B))
			if err != nil {
				return err
			}
			dec, err := interleave(proc, fmt.Sprintf("dec%d", B), roundsDec, repsDec, sync, func() {
				step(func() *ts.Tensor {
					feat := m.Head(pooled, true)
					defer feat.MustDrop()
					return m.DecodeTeacher(feat, dt, true)
				}, dt)
			})
			pooled.MustDrop()
			dt.MustDrop()
			if err != nil {
				return err
			}
			results = append(
				results,
				Result{
					Case:      fmt.Sprintf("decoder_step_b%d", B),
					Unit:      "ms per step",
					Captiongo: round(dec.Go),
					PyTorch:   round(dec.Py),
					Speedup:   round(dec.Speedup()),
					Note: fmt.Sprintf(
						"from pooled features (feature cache): fc, LSTM, %d tokens, vocab %d, loss, backward, Adam; %s",
						T,
						V,
						dec.Note(),
					),
				},
			)
		}
		// Full fine-tuning, batch 8: a second captioner from the same file
		// with the backbone trainable (train mode, batch statistics).
		mf, err := model.NewCaptioner(
			model.Config{
				VocabSize:       V,
				EmbedSize:       256,
				HiddenSize:      256,
				NumLayers:       1,
				Dropout:         0.5,
				BackboneDropout: 0.5,
				TrainCNN:        true,
			},
			dev,
		)
		if err != nil {
			return err
		}
		if err := mf.LoadFile(filepath.Join(dir, "model.pth")); err != nil {
			return err
		}
		adamF := model.NewAdam(mf.VS, 0)
		images8 := images.MustNarrow(0, 0, 8, false)
		defer images8.MustDrop()
		tok8 := tok.MustNarrow(0, 0, 8, false)
		defer tok8.MustDrop()
		ft, err := interleave(proc, "ft8", roundsFull, repsFull, sync, func() {
			adamF.ZeroGrad()
			logits := mf.Forward(images8, tok8, true)
			loss := model.Loss(logits, tok8)
			loss.MustBackward()
			adamF.Step(3e-4)
			loss.MustDrop()
			logits.MustDrop()
		})
		if err != nil {
			return err
		}
		// Where the time goes: the forward pass and loss alone (train mode,
		// recording the graph, which is then freed unused).
		fwd, err := interleave(proc, "ft8_fwd", roundsFull, repsFull, sync, func() {
			logits := mf.Forward(images8, tok8, true)
			loss := model.Loss(logits, tok8)
			loss.MustDrop()
			logits.MustDrop()
		})
		if err != nil {
			return err
		}
		nParams := 0
		for _, p := range adamF.Params {
			nParams += int(p.Numel())
		}
		results = append(
			results,
			Result{
				Case:      "train_step_finetune_b8_299",
				Unit:      "ms per step",
				Captiongo: round(ft.Go),
				PyTorch:   round(ft.Py),
				Speedup:   round(ft.Speedup()),
				Note: fmt.Sprintf(
					"train_CNN = True: Inception-v3 in train mode at 299 px, fc, LSTM, %d tokens, vocab %d, Adam on all %d tensors "+
						"(%.1fM values); %s; of which the forward pass and loss alone: captiongo %.3f ms, PyTorch %.3f ms (speedup "+
						"%.3f, per round %.2f-%.2f)",
					T,
					V,
					len(adamF.Params),
					float64(nParams)/1e6,
					ft.Note(),
					fwd.Go,
					fwd.Py,
					fwd.Speedup(),
					fwd.Lo,
					fwd.Hi,
				),
			},
		)
		upd, err := interleave(proc, "adam_ft", roundsDec, repsDec, sync, func() { adamF.Step(3e-4) })
		if err != nil {
			return err
		}
		impl := "single-tensor loop in one C++ call (PyTorch: the same ops from its Python loop, its default for CPU tensors)"
		if adamF.Impl == torch.AdamForeach {
			impl = "_foreach_ ops (PyTorch: its foreach default on CUDA)"
		}
		results = append(
			results,
			Result{
				Case:      "adam_update_finetune",
				Unit:      "ms per update",
				Captiongo: round(upd.Go),
				PyTorch:   round(upd.Py),
				Speedup:   round(upd.Speedup()),
				Note: fmt.Sprintf(
					"Adam's update alone over the %d fine-tuned tensors; captiongo: %s; %s",
					len(adamF.Params),
					impl,
					upd.Note(),
				),
			},
		)
		return nil
	})
	return results, err
}
