package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/internal/runfolder"
)

// TestUpdateBest: the best checkpoint follows best_metric in its direction
// (higher CIDEr-D or BLEU-4, lower validation loss), the first of equal
// values is kept, and epochs since the best count up until an improvement.
func TestUpdateBest(t *testing.T) {
	type ep struct{ cider, bleu, loss float64 }
	hist := []ep{{0.5, 0.2, 3.0}, {0.7, 0.1, 2.5}, {0.7, 0.3, 2.6}, {0.6, 0.3, 2.4}, {0.2, 0.05, 2.4}}
	for _, c := range []struct {
		metric    Metric
		bestEpoch []int // after each epoch
		since     []int
		best      float64
	}{
		{"CIDEr", []int{1, 2, 2, 2, 2}, []int{0, 0, 1, 2, 3}, 0.7},
		{"Bleu_4", []int{1, 1, 3, 3, 3}, []int{0, 1, 0, 1, 2}, 0.3},
		{"val_loss", []int{1, 2, 2, 4, 4}, []int{0, 0, 1, 0, 1}, 2.4},
	} {
		cfg := DefaultConfig()
		cfg.BestMetric = c.metric
		r := &runner{cfg: cfg}
		r.st.Best = -1e308
		for i, h := range hist {
			improved := r.updateBest(EpochMetrics{Epoch: i + 1, CIDEr: h.cider, Bleu4: h.bleu, ValLoss: h.loss})
			if r.st.BestEpoch != c.bestEpoch[i] || r.st.SinceBest != c.since[i] || improved != (c.since[i] == 0) {
				t.Errorf(
					"%s after epoch %d: best epoch %d, since %d, improved %v; want %d, %d",
					c.metric,
					i+1,
					r.st.BestEpoch,
					r.st.SinceBest,
					improved,
					c.bestEpoch[i],
					c.since[i],
				)
			}
		}
		if r.bestValue() != c.best {
			t.Errorf("%s: best value %v, want %v", c.metric, r.bestValue(), c.best)
		}
	}
}

// TestEarlyStopAndBestFiles: a run whose metric cannot improve (a learning
// rate of 1e-30 leaves every float32 weight as it is) stops after patience
// epochs without improvement, and best.json and state.json name the first
// epoch as the best; a run that learns names the epoch of its lowest
// validation loss.
func TestEarlyStopAndBestFiles(t *testing.T) {
	out := t.TempDir()
	cfg := tiny(t, out)
	cfg.Name, cfg.Epochs, cfg.Patience, cfg.LR, cfg.BestMetric = "stuck", 6, 2, 1e-30, "val_loss"
	var log strings.Builder
	res, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.State.History); n != 3 ||
		!strings.Contains(log.String(), "early stop: val_loss has not improved for 2 epochs") {
		t.Fatalf("ran %d epochs (want 3: the best, then 2 without improvement):\n%s", n, log.String())
	}
	for i, h := range res.State.History[1:] {
		if h.ValLoss != res.State.History[0].ValLoss {
			t.Fatalf(
				"epoch %d's validation loss %v moved from %v: the run was not stuck",
				i+2,
				h.ValLoss,
				res.State.History[0].ValLoss,
			)
		}
	}
	var best struct {
		Epoch  int     `json:"epoch"`
		Metric string  `json:"metric"`
		Value  float64 `json:"value"`
	}
	b, err := os.ReadFile(filepath.Join(res.RunDir, "best.json"))
	if err == nil {
		err = json.Unmarshal(b, &best)
	}
	if err != nil || best.Epoch != 1 || best.Metric != "val_loss" || best.Value != res.State.History[0].ValLoss ||
		res.State.BestEpoch != 1 || !res.State.Finished {
		t.Errorf(
			"best.json %+v (%v), state best epoch %d, finished %v; want epoch 1, val_loss %v",
			best,
			err,
			res.State.BestEpoch,
			res.State.Finished,
			res.State.History[0].ValLoss,
		)
	}

	cfg = tiny(t, out)
	cfg.Name, cfg.Epochs, cfg.BestMetric = "learns", 4, "val_loss"
	res, err = runIt(t, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := 1
	for i, h := range res.State.History {
		if h.ValLoss < res.State.History[want-1].ValLoss {
			want = i + 1
		}
	}
	b, _ = os.ReadFile(filepath.Join(res.RunDir, "best.json"))
	json.Unmarshal(b, &best)
	if res.State.BestEpoch != want || best.Epoch != want {
		t.Errorf(
			"best epoch %d (best.json %d), want %d, the epoch of the lowest validation loss in %+v",
			res.State.BestEpoch,
			best.Epoch,
			want,
			res.State.History,
		)
	}

	// The manifest says the same, with the direction; a run from before the
	// manifest gets one when it is resumed.
	if err := os.Remove(filepath.Join(res.RunDir, runfolder.Manifest)); err != nil {
		t.Fatal(err)
	}
	if _, err := runfolder.Open(res.RunDir); err == nil || !strings.Contains(err.Error(), "-set resume=true") {
		t.Errorf("a run without a manifest: %v", err)
	}
	cfg.Resume = true
	if _, err := runIt(t, cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	run, err := runfolder.Open(res.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	bm := run.Info.BestMetric
	if bm.Name != "val_loss" || bm.HigherIsBetter || bm.Epoch != want || bm.Value != res.State.History[want-1].ValLoss ||
		!run.Info.Finished || run.Weights != filepath.Join(res.RunDir, runfolder.Best) ||
		run.Info.Model.VocabSize == 0 {
		t.Errorf("manifest %+v, weights %s", run.Info, run.Weights)
	}
}
