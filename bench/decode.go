package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// decode: greedy decoding of a fixed number of tokens from pooled features,
// batch 1 (latency) and batch 64 (throughput), captiongo's stepper against the
// baseline's caption_image loop in PyTorch, on the same weights (PyTorch saves
// them from a seed, captiongo loads the file) and the same inputs. The first
// tokens of both sides are compared, so the two really decode the same thing.
func decode(opt Options) ([]Result, error) {
	const V, steps, reps = 2600, 20, 20
	dir, err := os.MkdirTemp("", "captiongo-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "decode_ref.py")
	out, err := exec.Command(opt.Python, script, dir, fmt.Sprint(V), fmt.Sprint(steps), fmt.Sprint(reps), fmt.Sprint(torchThreads())).Output()
	if err != nil {
		return nil, fmt.Errorf("PyTorch reference: %v", err)
	}
	var ref map[string]any
	if err := json.Unmarshal(out, &ref); err != nil {
		return nil, fmt.Errorf("PyTorch reference printed %q: %v", out, err)
	}
	var results []Result
	err = torch.Run(func() error {
		m, err := model.NewCaptioner(model.Config{VocabSize: V, EmbedSize: 256, HiddenSize: 256, NumLayers: 1}, gotch.CPU)
		if err != nil {
			return err
		}
		if err := m.LoadFile(filepath.Join(dir, "model.pth")); err != nil {
			return err
		}
		for _, B := range []int{1, 64} {
			d, shape, err := torch.ReadNpy(filepath.Join(dir, fmt.Sprintf("pooled%d.npy", B)))
			if err != nil {
				return err
			}
			x := torch.FromFloat32s(d, shape, gotch.CPU)
			run := func() [][]int64 {
				st := m.StepperFromPooled(x)
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
			toks := run()
			want, _ := ref[fmt.Sprintf("tokens%d", B)].([]any)
			if len(want) > 0 {
				w0, _ := want[0].([]any)
				if len(w0) > 0 && int64(w0[0].(float64)) != toks[0][0] {
					return fmt.Errorf("batch %d: first token %d, PyTorch %v: not the same model", B, toks[0][0], w0[0])
				}
			}
			t0 := time.Now()
			for i := 0; i < reps; i++ {
				run()
			}
			goMS := float64(time.Since(t0).Microseconds()) / 1000 / reps
			pyMS := ref[fmt.Sprintf("b%d", B)].(float64)
			x.MustDrop()
			if B == 1 {
				results = append(results, Result{Case: "greedy_decode_latency_b1", Unit: "ms per caption", Captiongo: round(goMS), PyTorch: round(pyMS), Speedup: round(pyMS / goMS),
					Note: fmt.Sprintf("%d tokens from pooled features, vocab %d, embed/hidden 256", steps, V)})
			} else {
				results = append(results, Result{Case: "greedy_decode_throughput_b64", Unit: "captions/s", Captiongo: round(64 / goMS * 1000), PyTorch: round(64 / pyMS * 1000), Speedup: round(pyMS / goMS),
					Note: fmt.Sprintf("%d tokens from pooled features, vocab %d, embed/hidden 256", steps, V)})
			}
		}
		// Beam search, k = 3, batch 16.
		d, shape, err := torch.ReadNpy(filepath.Join(dir, "pooled16.npy"))
		if err != nil {
			return err
		}
		x := torch.FromFloat32s(d, shape, gotch.CPU)
		beam := func() {
			st := m.StepperFromPooled(x)
			model.Beam(st, 16, 3, steps, 1)
			model.CloseStepper(st)
		}
		beam()
		t0 := time.Now()
		for i := 0; i < reps/2; i++ {
			beam()
		}
		goMS := float64(time.Since(t0).Microseconds()) / 1000 / float64(reps/2)
		pyMS := ref["beam3_b16"].(float64)
		x.MustDrop()
		results = append(results, Result{Case: "beam3_decode_b16", Unit: "ms per batch", Captiongo: round(goMS), PyTorch: round(pyMS), Speedup: round(pyMS / goMS),
			Note: fmt.Sprintf("beam 3, batch 16, up to %d tokens (PyTorch: fixed %d steps, no <EOS> stop; captiongo stops an image at k finished hypotheses)", steps, steps)})
		return nil
	})
	return results, err
}

func torchThreads() int {
	n := 0
	torch.Run(func() error { n = torch.Threads(); return nil })
	return n
}
