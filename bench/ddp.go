package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/launch"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// ddpEnv names the folder a data-parallel bench rank reads (set by ddp for
// the ranks it starts).
const ddpEnv = "CAPTIONGO_BENCH_DDP"

// ddpStep: one data-parallel optimiser step of the decoder a feature cache
// leaves to train (pooled features -> fc -> LSTM, vocab 2600, 20 tokens,
// global batch 64, no dropout) in 2 processes with one thread each:
// captiongo's ranks (c10d Gloo, token-weighted gradient sums) against
// PyTorch's DistributedDataParallel (gloo, started as torchrun would) on the
// same weights and inputs. Both sides' first-step loss of the whole batch
// must agree, so both time the same computation.
func ddpStep(opt Options) ([]Result, error) {
	if !dist.Built {
		return nil, dist.ErrNotBuilt
	}
	const V, T, B, world = 2600, 20, 64, 2
	warmup, steps := 3, 20
	if opt.Quick {
		warmup, steps = 1, 3
	}
	dir, err := os.MkdirTemp("", "captiongo-bench-ddp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "ddp_ref.py")
	if _, err := os.Stat(script); err != nil {
		script = "bench/ddp_ref.py"
	}
	cmd := refCommand(opt, script, dir, fmt.Sprint(V), fmt.Sprint(T), fmt.Sprint(B), fmt.Sprint(world),
		fmt.Sprint(warmup), fmt.Sprint(steps))
	cmd.Dir = filepath.Dir(script) // refmodels
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("PyTorch DDP reference: %v", err)
	}
	var py struct{ Loss0, Ms float64 }
	if err := json.Unmarshal(lastLine(out), &py); err != nil {
		return nil, fmt.Errorf("PyTorch DDP reference printed %q: %v", out, err)
	}
	goRes, err := runDDPRanks(dir, world, warmup, steps)
	if err != nil {
		return nil, err
	}
	if d := goRes.Loss0 - py.Loss0; d > 1e-4 || d < -1e-4 {
		return nil, fmt.Errorf("first-step loss %.6f, PyTorch DDP %.6f: not the same computation", goRes.Loss0, py.Loss0)
	}
	return []Result{{
		Case:      "ddp_decoder_step_b64_2x1",
		Unit:      "ms per step",
		Captiongo: round(goRes.Ms),
		PyTorch:   round(py.Ms),
		Speedup:   round(py.Ms / goRes.Ms),
		Note: fmt.Sprintf("global batch %d over %d processes x 1 thread, pooled 2048-d features -> fc -> LSTM (vocab %d, "+
			"%d tokens), Adam; both sides c10d Gloo and DDP's Reducer (buckets overlapped with backward), captiongo's "+
			"summing token-weighted gradients, PyTorch's DistributedDataParallel averaging; mean of %d steps after %d warm-up, "+
			"one run each, PyTorch first; first-step loss %.5f on both", B, world, V, T, steps, warmup, goRes.Loss0),
	}}, nil
}

func lastLine(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

type ddpTiming struct{ Loss0, Ms float64 }

// runDDPRanks starts world ranks of this executable on dir and returns
// rank 0's timing.
func runDDPRanks(dir string, world, warmup, steps int) (ddpTiming, error) {
	var res ddpTiming
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	p, err := dist.FreePort()
	if err != nil {
		return res, err
	}
	outs := make([]strings.Builder, world)
	errs, first, err := launch.Run(launch.Spec{Exe: exe, Args: []string{"bench", "-case", "ddp"}, N: world, Port: p,
		Env:    []string{ddpEnv + "=" + dir, "CAPTIONGO_BENCH_DDP_STEPS=" + fmt.Sprintf("%d,%d", warmup, steps)},
		Stdout: func(r int) io.Writer { return &outs[r] }, StopOnFailure: true})
	if err != nil {
		return res, err
	}
	if first >= 0 {
		return res, fmt.Errorf("captiongo rank %d: %v: %s", first, errs[first], strings.TrimSpace(outs[first].String()))
	}
	if err := json.Unmarshal(lastLine([]byte(outs[0].String())), &res); err != nil {
		return res, fmt.Errorf("captiongo rank 0 printed %q: %v", outs[0].String(), err)
	}
	return res, nil
}

// DDPRank runs one rank of the ddp case when this process was started as
// one (ddpEnv set), printing rank 0's timing as JSON to w; ok is false
// otherwise.
func DDPRank(w io.Writer) (ok bool, err error) {
	dir := os.Getenv(ddpEnv)
	if dir == "" {
		return false, nil
	}
	var warmup, steps int
	if _, err := fmt.Sscanf(os.Getenv("CAPTIONGO_BENCH_DDP_STEPS"), "%d,%d", &warmup, &steps); err != nil {
		return true, fmt.Errorf("CAPTIONGO_BENCH_DDP_STEPS: %v", err)
	}
	e, isRank, err := dist.FromEnv(os.Getenv)
	if err != nil || !isRank {
		return true, fmt.Errorf("bench rank: no rank environment (%v)", err)
	}
	g, err := dist.Join(e, 2*time.Minute)
	if err != nil {
		return true, err
	}
	defer g.Close()
	var meta struct{ VT [2]int }
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err == nil {
		err = json.Unmarshal(b, &meta)
	}
	if err != nil {
		return true, err
	}
	return true, torch.Run(func() error {
		torch.SetThreads(1)
		m, err := model.NewCaptioner(model.Config{VocabSize: meta.VT[0], EmbedSize: 256, HiddenSize: 256, NumLayers: 1},
			gotch.CPU)
		if err != nil {
			return err
		}
		if err := m.LoadFile(filepath.Join(dir, "model.pth")); err != nil {
			return err
		}
		adam := model.NewAdam(m.VS, 0)
		shard := func(name string) (*ts.Tensor, error) {
			d, shape, err := torch.ReadNpy(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			n := int(shape[0]) / e.World
			per := len(d) / int(shape[0])
			shape[0] = int64(n)
			return torch.FromFloat32s(d[e.Rank*n*per:(e.Rank+1)*n*per], shape, gotch.CPU), nil
		}
		pooled, err := shard("pooled.npy")
		if err != nil {
			return err
		}
		defer pooled.MustDrop()
		tokF, err := shard("tokens.npy")
		if err != nil {
			return err
		}
		tok := tokF.MustTotype(gotch.Int64, true)
		defer tok.MustDrop()
		// Every caption has the same length: each rank's share of the
		// batch's tokens is 1/world, its loss's weight. The gradients are
		// summed as the trainer sums them: DDP's reducer with DDP's buckets.
		red, err := g.NewReducer(adam.Params, dist.DDPBucketBytes, dist.DDPFirstBucketBytes)
		if err != nil {
			return err
		}
		defer red.Close()
		step := func() (float64, error) {
			adam.ZeroGrad()
			feat := m.Head(pooled, true)
			logits := m.DecodeTeacher(feat, tok, true)
			feat.MustDrop()
			loss := model.Loss(logits, tok).MustMulScalar(ts.FloatScalar(1/float64(e.World)), true)
			err := red.Backward(loss)
			lv := torch.Item(loss)
			loss.MustDrop()
			if err == nil {
				lv, err = g.Sum(lv)
			}
			logits.MustDrop()
			adam.Step(3e-4)
			return lv, err
		}
		loss0, err := step()
		if err != nil {
			return err
		}
		for i := 0; i < warmup; i++ {
			if _, err := step(); err != nil {
				return err
			}
		}
		if err := g.Barrier(); err != nil {
			return err
		}
		t0 := time.Now()
		for i := 0; i < steps; i++ {
			if _, err := step(); err != nil {
				return err
			}
		}
		if err := g.Barrier(); err != nil {
			return err
		}
		ms := float64(time.Since(t0).Microseconds()) / 1000 / float64(steps)
		if e.Rank == 0 {
			b, _ := json.Marshal(ddpTiming{Loss0: loss0, Ms: ms})
			fmt.Fprintln(w, string(b))
		}
		return nil
	})
}
