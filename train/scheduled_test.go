package train

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestScheduledSamplingSchedule: the probability follows the widely used
// PyTorch schedule (0 from ss_start, + ss_increase_prob every
// ss_increase_every epochs, capped); a run logs it each epoch, and a run with
// it on resumes bit for bit.
func TestScheduledSamplingSchedule(t *testing.T) {
	c := DefaultConfig()
	c.SSStart, c.SSIncreaseEvery, c.SSIncreaseProb, c.SSMaxProb = 1, 2, 0.1, 0.25
	got := ""
	for e := 0; e < 9; e++ {
		got += fmt.Sprintf("%.2f ", c.ssProb(e))
	}
	if want := "0.00 0.00 0.00 0.10 0.10 0.20 0.20 0.25 0.25 "; got != want {
		t.Errorf("ss probabilities by epoch %s, want %s", got, want)
	}
	c.SSStart = -1
	if c.ssProb(5) != 0 {
		t.Error("ss_start = -1 still samples")
	}

	cfg := exactRun(t, t.TempDir())
	cfg.SSStart, cfg.SSIncreaseEvery, cfg.SSIncreaseProb, cfg.SSMaxProb = 0, 1, 0.5, 0.75
	ref, err := runIt(t, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	probs := loggedScalars(t, ref.RunDir, "scheduled sampling probability")
	if fmt.Sprint(probs) != "[0 0.5 0.75]" {
		t.Errorf("logged probabilities %v, want [0 0.5 0.75]", probs)
	}
	stop := cfg
	stop.OutDir = t.TempDir()
	if _, err := runIt(t, stop, Options{StopAt: 37}); err == nil {
		t.Fatal("StopAt did not stop")
	}
	got2, err := runIt(t, stop, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := weights(t, filepath.Join(ref.RunDir, ref.State.Weights))
	b := weights(t, filepath.Join(got2.RunDir, got2.State.Weights))
	if d := maxAbsDiff(a, b); d != 0 {
		t.Errorf("a resumed run with scheduled sampling differs by %.3g (want bit-identical)", d)
	}
	if ref.State.History[2].TrainLoss == 0 {
		t.Error("no training loss")
	}
}
