//go:build c10d

package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/captiongo/captiongo/internal/dist"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// TestMain runs one rank of a data-parallel run when the test binary is
// started as one (CAPTIONGO_RANK_TEST names the experiment file).
func TestMain(m *testing.M) {
	if path := os.Getenv("CAPTIONGO_RANK_TEST"); path != "" {
		if err := rankMain(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func rankMain(path string) error {
	cfg, err := LoadConfig(path, nil)
	if err != nil {
		return err
	}
	e, ok, err := dist.FromEnv(os.Getenv)
	if err != nil || !ok {
		return fmt.Errorf("rank environment: %v", err)
	}
	g, err := dist.Join(e, time.Minute)
	if err != nil {
		return err
	}
	defer g.Close()
	die, _ := strconv.Atoi(os.Getenv("CAPTIONGO_RANK_DIE_AT"))
	opt := Options{Dist: g, OnStep: func(step int64) {
		if e.Rank == 1 && die > 0 && step == int64(die) {
			os.Exit(3) // without a word to the others
		}
	}}
	return torch.Run(func() error {
		_, err := Run(cfg, opt)
		return err
	})
}

// runRanks runs cfg as world ranks of this test binary and returns each
// rank's output and error.
func runRanks(t *testing.T, cfg Config, world int, env ...string) ([]string, []error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "exp.toml")
	if err := os.WriteFile(path, []byte(cfg.TOML()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := dist.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir() // the ranks' scratch folders go here, and must be gone at the end
	out, errs := testutil.RunRanks(t, world, port, append([]string{"CAPTIONGO_RANK_TEST=" + path, "TMPDIR=" + tmp},
		env...)...)
	if left, _ := os.ReadDir(tmp); len(left) > 0 && errs[0] == nil && errs[1] == nil {
		t.Errorf("scratch left behind: %v", left)
	}
	return out, errs
}

// TestDataParallelMatchesOneProcess: two processes on c10d's Gloo, each
// taking half of every global batch, train as one process does on the whole
// batch (no dropout): every step's loss within 1e-5 relative and every
// parameter within 1e-6 after the epoch's steps, for the frozen-backbone LSTM,
// the attention decoder, fine-tuning (the backbone's last blocks training
// with their own Adam) and self-critical training (each rank samples its
// images' captions from the streams one process gives them), and the
// validation sharded over the ranks scores as one process. Rank 0 alone writes the run folder.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	for _, c := range []struct {
		name       string
		decoder    model.DecoderKind
		tune, scst bool
	}{
		{"lstm", model.DecoderLSTM, false, false}, {"attention", "attention", false, false},
		{"finetune", model.DecoderLSTM, true, false}, {"scst", "attention", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := tiny(t, t.TempDir())
			cfg.Decoder, cfg.AttentionDim, cfg.Dropout, cfg.BackboneDropout, cfg.Epochs = c.decoder, 16, 0, 0, 1
			if c.tune { // every step trains Mixed_7b and Mixed_7c too, on the images
				cfg.FinetuneEpoch, cfg.FinetuneFrom, cfg.FinetuneLR, cfg.FeatureCache = 1, "Mixed_7b", 1e-3, false
			}
			// 10 steps; 40 val images: two batches of captions to decode, 7 of validation loss.
			cfg.SynthN, cfg.CaptionSampling, cfg.EvalImages, cfg.BatchSize = 400, SampleOne, 0, 32
			if c.scst { // self-critical steps from a cross-entropy run: 3 samples per image, greedy baseline
				xe := cfg
				xe.Name, xe.OutDir = "xe", t.TempDir()
				if _, err := runIt(t, xe, Options{}); err != nil {
					t.Fatal(err)
				}
				cfg.Training, cfg.InitFrom, cfg.SCSTSamples = TrainSCST, filepath.Join(xe.OutDir, "xe"), 3
			}
			one, err := runIt(t, cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			two := cfg
			two.OutDir = t.TempDir()
			out, errs := runRanks(t, two, 2)
			for r := range errs {
				if errs[r] != nil {
					t.Fatalf("rank %d: %v\n%s", r, errs[r], out[r])
				}
			}
			if out[1] != "" {
				t.Errorf("rank 1 printed %q", out[1])
			}
			entries, _ := os.ReadDir(two.OutDir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			want := ".cache .data tiny"
			if !cfg.FeatureCache {
				want = ".data tiny"
			}
			if strings.Join(names, " ") != want {
				t.Errorf("the output folder holds %v, want the run, the shared cache and data", names)
			}
			a := loggedScalars(t, one.RunDir, "Training loss")
			b := loggedScalars(t, filepath.Join(two.OutDir, cfg.Name), "Training loss")
			if len(a) < 10 || len(a) != len(b) {
				t.Fatalf("%d steps logged by one process, %d by two", len(a), len(b))
			}
			worst, scale := 0.0, 0.0
			for i := range a {
				scale = math.Max(scale, math.Abs(a[i]))
			}
			for i := range a { // relative, or relative to the largest for a loss near 0 (SCST's)
				worst = math.Max(worst, math.Abs(a[i]-b[i])/math.Max(math.Abs(a[i]), 0.01*scale))
			}
			st, err := os.ReadFile(filepath.Join(two.OutDir, cfg.Name, "state.json"))
			if err != nil {
				t.Fatal(err)
			}
			s2, err := parseState("state.json", st)
			if err != nil {
				t.Fatal(err)
			}
			d := maxAbsDiff(weights(t, filepath.Join(one.RunDir, one.State.Weights)),
				weights(t, filepath.Join(two.OutDir, cfg.Name, s2.Weights)))
			t.Logf("%d steps: losses within %.3g (relative), weights within %.3g", len(a), worst, d)
			if worst > 1e-5 {
				t.Errorf("losses differ by %.3g (relative)", worst)
			}
			// SCST's loss, -mean(advantage * log p), leaves many gradients
			// near 0, where Adam's step (about lr * g / |g|) turns float noise
			// in g into steps of lr's size: its weights get 1e-5 (a mismatch of
			// the sampled captions moves them by 1e-2).
			tol := 1e-6
			if c.scst {
				tol = 1e-5
			}
			if d > tol {
				t.Errorf("weights after %d steps differ by %.3g", len(a), d)
			}
			// Evaluation, sharded over the two ranks and gathered, scores as one process does.
			h1, h2 := one.State.History[0], s2.History[0]
			t.Logf("validation: loss %.7f / %.7f, BLEU-4 %.5f / %.5f, CIDEr-D %.5f / %.5f (one / two processes)",
				h1.ValLoss, h2.ValLoss, h1.Bleu4, h2.Bleu4, h1.CIDEr, h2.CIDEr)
			if math.Abs(h1.ValLoss-h2.ValLoss) > 1e-5*h1.ValLoss || h1.Bleu4 != h2.Bleu4 || h1.CIDEr != h2.CIDEr {
				t.Errorf("validation differs")
			}
		})
	}
}

// TestDataParallelDeadRank: when a rank dies mid-epoch, the other stops
// within seconds with one line naming itself and the collective; it does not
// hang.
func TestDataParallelDeadRank(t *testing.T) {
	cfg := tiny(t, t.TempDir())
	t0 := time.Now()
	out, errs := runRanks(t, cfg, 2, "CAPTIONGO_RANK_DIE_AT=3")
	took := time.Since(t0)
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("exits: rank 0 %v, rank 1 %v", errs[0], errs[1])
	}
	if !strings.Contains(out[0], "rank 0 of 2: allreduce failed") || strings.Count(out[0], "\n") > 0 {
		t.Errorf("rank 0 said %q", out[0])
	}
	t.Logf("rank 1 died at step 3; rank 0 ended %v after the start: %q", took.Round(time.Second), out[0])
}

// TestDataParallelResume: a two-rank run whose rank 1 dies mid-epoch is
// started again (resume = true) and finishes where an uninterrupted run
// does: rank 0's last checkpoint (weights, Adam moments, progress) reaches
// both ranks, and the batches and weights after it are the ones a run that
// was never killed has (one process's, no dropout).
func TestDataParallelResume(t *testing.T) {
	cfg := tiny(t, t.TempDir())
	cfg.Dropout, cfg.BackboneDropout, cfg.Epochs, cfg.CheckpointEvery, cfg.Resume = 0, 0, 2, 4, true
	cfg.SynthN, cfg.CaptionSampling, cfg.EvalImages, cfg.BatchSize = 400, SampleOne, 0, 32
	one, err := runIt(t, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	two := cfg
	two.OutDir = t.TempDir()
	out, errs := runRanks(t, two, 2, "CAPTIONGO_RANK_DIE_AT=14") // in epoch 2, after the checkpoint at step 12
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("the killed run's ranks exited %v, %v:\n%s", errs[0], errs[1], out[0])
	}
	run := filepath.Join(two.OutDir, cfg.Name)
	st, err := os.ReadFile(filepath.Join(run, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	killed, err := parseState("state.json", st)
	if err != nil || killed.Finished || killed.Step != 12 {
		t.Fatalf("after the kill: step %d, finished %v (%v); want the checkpoint of step 12", killed.Step,
			killed.Finished, err)
	}
	out, errs = runRanks(t, two, 2)
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("resuming: %v, %v\n%s\n%s", errs[0], errs[1], out[0], out[1])
	}
	st, _ = os.ReadFile(filepath.Join(run, "state.json"))
	s2, err := parseState("state.json", st)
	if err != nil || !s2.Finished || s2.Step != one.State.Step {
		t.Fatalf("resumed run: step %d (one process: %d), finished %v, %v", s2.Step, one.State.Step, s2.Finished, err)
	}
	d := maxAbsDiff(weights(t, filepath.Join(one.RunDir, one.State.Weights)), weights(t, filepath.Join(run, s2.Weights)))
	// As TensorBoard reads the folder (the resumed run's purge record drops
	// the killed run's steps after its checkpoint): every step once.
	a, b := scalarStream(t, one.RunDir)["Training loss"], scalarStream(t, run)["Training loss"]
	worst := 0.0
	for i := range min(len(a), len(b)) {
		if a[i][0] != b[i][0] {
			t.Fatalf("TensorBoard reads step %v where one process has %v", b[i][0], a[i][0])
		}
		worst = math.Max(worst, math.Abs(a[i][1]-b[i][1])/math.Abs(a[i][1]))
	}
	t.Logf("killed at step 14, resumed from step 12: TensorBoard reads %d steps (one process %d), losses within "+
		"%.3g, weights within %.3g of one process's", len(b), len(a), worst, d)
	if d > 1e-6 || len(a) != len(b) || worst > 1e-5 {
		t.Errorf("weights differ by %.3g; %d losses read, one process %d; losses within %.3g", d, len(b), len(a), worst)
	}
}
