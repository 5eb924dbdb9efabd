package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// decode: greedy decoding of a fixed number of tokens from pooled features,
// batch 1 (latency) and batch 64 (throughput), captiongo's stepper against the
// baseline's caption_image loop in PyTorch, on the same weights (PyTorch saves
// them from a seed, captiongo loads the file) and the same inputs. Every token
// of both sides is compared, so the two really decode the same thing.
func decode(opt Options) ([]Result, error) {
	const V, steps = 2600, 20
	rounds, reps := 7, 10
	switch {
	case opt.Quick:
		rounds, reps = 1, 2
	case opt.Device == torch.DeviceCUDA:
		reps = 20
	}
	dir, err := os.MkdirTemp("", "captiongo-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var header map[string][][]int64
	ref, err := startRef(
		opt,
		"decode_ref.py",
		&header,
		dir,
		fmt.Sprint(V),
		fmt.Sprint(steps),
		fmt.Sprint(torchThreads()),
		string(opt.Device),
	)
	if err != nil {
		return nil, err
	}
	defer ref.Close()
	var results []Result
	err = torch.Run(func() error {
		dev, sync, err := benchDevice(opt.Device)
		if err != nil {
			return err
		}
		m, err := model.NewCaptioner(model.Config{VocabSize: V, EmbedSize: 256, HiddenSize: 256, NumLayers: 1}, dev)
		if err != nil {
			return err
		}
		if err := m.LoadFile(filepath.Join(dir, "model.pth")); err != nil {
			return err
		}
		note := fmt.Sprintf("%d tokens from pooled features, vocab %d, embed/hidden 256", steps, V)
		for _, B := range []int{1, 64} {
			d, shape, err := torch.ReadNpy(filepath.Join(dir, fmt.Sprintf("pooled%d.npy", B)))
			if err != nil {
				return err
			}
			x := torch.FromFloat32s(d, shape, dev)
			run := func() [][]int64 {
				st := m.StepperFromFeatures(x)
				defer model.CloseStepper(st)
				tok := make([]int64, B)
				for i := range tok {
					tok[i] = 1 // <SOS>
				}
				var all [][]int64
				as := st.(model.ArgmaxStepper)
				for s := 0; s < steps; s++ {
					ids, _ := as.StepArgmax(tok)
					copy(tok, ids)
					all = append(all, append([]int64(nil), tok...))
				}
				return all
			}
			// Same model, same inputs: every token of every step must agree.
			if got, want := run(), header[fmt.Sprintf("tokens%d", B)]; !reflect.DeepEqual(got, want) {
				return fmt.Errorf("batch %d: captiongo decoded %v, PyTorch %v: not the same model", B, got, want)
			}
			tm, err := interleave(ref, fmt.Sprintf("b%d", B), rounds, reps, sync, func() { run() })
			x.MustDrop()
			if err != nil {
				return err
			}
			if B == 1 {
				results = append(
					results,
					Result{
						Case:      "greedy_decode_latency_b1",
						Unit:      "ms per caption",
						Captiongo: round(tm.Go),
						PyTorch:   round(tm.Py),
						Speedup:   round(tm.Speedup()),
						Note:      note + "; " + tm.Note(),
					},
				)
			} else {
				results = append(results, Result{Case: "greedy_decode_throughput_b64", Unit: "captions/s",
					Captiongo: round(64 / tm.Go * 1000), PyTorch: round(64 / tm.Py * 1000), Speedup: round(tm.Speedup()),
					Note: note + "; " + tm.Note()})
			}
		}
		// Beam search, k = 3, batch 16.
		d, shape, err := torch.ReadNpy(filepath.Join(dir, "pooled16.npy"))
		if err != nil {
			return err
		}
		x := torch.FromFloat32s(d, shape, dev)
		defer x.MustDrop()
		tm, err := interleave(ref, "beam", rounds, max(reps/2, 1), sync, func() {
			st := m.StepperFromFeatures(x)
			model.Beam(st, 16, 3, steps, 1)
			model.CloseStepper(st)
		})
		if err != nil {
			return err
		}
		results = append(
			results,
			Result{
				Case:      "beam3_decode_b16",
				Unit:      "ms per batch",
				Captiongo: round(tm.Go),
				PyTorch:   round(tm.Py),
				Speedup:   round(tm.Speedup()),
				Note: fmt.Sprintf(
					"beam 3, batch 16, up to %d tokens (PyTorch: fixed %d steps, no <EOS> stop; captiongo stops an image at k "+
						"finished hypotheses); %s",
					steps,
					steps,
					tm.Note(),
				),
			},
		)
		return nil
	})
	return results, err
}

func torchThreads() int {
	n := 0
	torch.Run(func() error { n = torch.Threads(); return nil })
	return n
}
