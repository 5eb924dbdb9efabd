package train

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/captiongo/captiongo/train/tensorboard"
)

// TestSCSTTrains trains the tiny experiment with cross-entropy, then
// continues it with self-critical training from that run (both baselines):
// the runs finish, TensorBoard gets the reward, the baseline and the sampled
// captions, the mean reward rises over the run, and a resumed SCST run ends
// bit for bit where an uninterrupted one does. Bad settings fail with one
// line naming the key.
func TestSCSTTrains(t *testing.T) {
	out := t.TempDir()
	xe := tiny(t, out)
	xe.Name, xe.Epochs = "xe", 3
	if _, err := runIt(t, xe, Options{}); err != nil {
		t.Fatal(err)
	}
	scst := func(name string) Config {
		c := tiny(t, out)
		c.Name, c.Training, c.InitFrom, c.Epochs = name, TrainSCST, filepath.Join(out, "xe"), 6
		c.SCSTSamples, c.LR, c.CheckpointEvery = 4, 1e-3, 2
		return c
	}
	for _, base := range SCSTBaselines {
		c := scst("scst_" + string(base))
		c.SCSTBaseline = base
		var log strings.Builder
		res, err := runIt(t, c, Options{Out: &log})
		if err != nil {
			t.Fatalf("%s: %v\n%s", base, err, log.String())
		}
		if !strings.Contains(log.String(), "starting from "+filepath.Join(out, "xe")) {
			t.Errorf("%s: no init_from line:\n%s", base, log.String())
		}
		var rewards []float64
		var texts int
		files, _ := filepath.Glob(filepath.Join(res.RunDir, "events.out.tfevents.*"))
		for _, f := range files {
			evs, err := tensorboard.ReadEvents(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				for _, v := range ev.Values {
					switch {
					case v.Tag == "SCST/reward (CIDEr-D of the samples)" && v.Simple != nil:
						rewards = append(rewards, float64(*v.Simple))
					case strings.HasPrefix(v.Tag, "scst samples") && len(v.Text) > 0:
						texts++
					}
				}
			}
		}
		if len(rewards) != int(res.State.Step) || texts != c.Epochs {
			t.Fatalf("%s: %d reward scalars for %d steps, %d sample texts for %d epochs", base, len(rewards),
				res.State.Step, texts, c.Epochs)
		}
		third := len(rewards) / 3
		first, last := mean(rewards[:third]), mean(rewards[len(rewards)-third:])
		t.Logf("%s baseline: mean sample reward %.3f in the first third of %d steps, %.3f in the last; val CIDEr-D "+
			"by epoch %v", base, first, len(rewards), last, cidersOf(res.State.History))
		if last <= first {
			t.Errorf("%s: the reward did not rise (%.3f -> %.3f)", base, first, last)
		}
	}
	// Resumed from a mid-run stop: bit-identical to the uninterrupted run.
	ref, err := runIt(t, scst("scst_ref"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := scst("scst_stop")
	if _, err := runIt(t, c, Options{StopAt: 9}); err == nil {
		t.Fatal("StopAt did not stop")
	}
	c.Resume = true
	got, err := runIt(t, c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := weights(t, filepath.Join(ref.RunDir, ref.State.Weights)), weights(t, filepath.Join(got.RunDir,
		got.State.Weights))
	if d := maxAbsDiff(a, b); d != 0 {
		t.Errorf("resumed SCST run's weights differ by %.3g (want bit-identical)", d)
	}

	for _, bad := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.InitFrom = "" }, "init_from: empty: scst training starts from a cross-entropy run"},
		{func(c *Config) { c.SCSTReward = "BLEU-4" }, `scst_reward: "BLEU-4": want one of CIDEr-D`},
		{func(c *Config) { c.SCSTBaseline, c.SCSTSamples = BaselineMean, 1 }, "scst_samples: 1"},
		{func(c *Config) { c.InitFrom = filepath.Join(out, "nope") }, "init_from: checkpoint"},
		{func(c *Config) { c.HiddenSize = 48 }, "init_from: " + filepath.Join(out, "xe") + " has hidden_size 32"},
	} {
		c := scst("scst_bad")
		bad.set(&c)
		err := c.Validate()
		if err == nil {
			_, err = runIt(t, c, Options{})
			os.RemoveAll(filepath.Join(out, "scst_bad"))
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("want one line with %q, got %v", bad.want, err)
		}
	}
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(max(1, len(xs)))
}

func cidersOf(h []EpochMetrics) []float64 {
	out := make([]float64, len(h))
	for i, e := range h {
		out[i] = e.CIDEr
	}
	return out
}
