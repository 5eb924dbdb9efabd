package train

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/captiongo/captiongo/model"
)

// TestRunResidentMemoryOverBigCache trains a whole run (train.Run: an epoch of
// every training row, evaluation, samples, a checkpoint) of the attention
// decoder over a 2 GiB feature cache file: the run's resident memory must stay
// far below the file's size (a run that loaded it whole grows by 4.4 GiB). The
// file is made under the run's own key: a first run builds the cache of its
// 4,161 training and validation pictures (1 x 1 maps at 75 x 75), and the test
// writes 8 x 8 maps of every image (2 GiB) in its place; the attention decoder
// takes any number of places.
func TestRunResidentMemoryOverBigCache(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 2 GiB file (-short)")
	}
	if rssKB() == 0 {
		t.Skip("no /proc/self/status here to read resident memory from")
	}
	out := t.TempDir()
	cfg := tiny(t, out)
	cfg.SynthN, cfg.Decoder, cfg.AttentionDim = 4624, model.DecoderAttention, 32
	cfg.FeatureCache, cfg.Epochs, cfg.BatchSize, cfg.Dropout, cfg.CaptionSampling = true, 1, 32, 0, SampleOne
	cfg.EvalImages, cfg.SampleImages, cfg.LogEvery = 64, 2, 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	var log strings.Builder
	if _, err := runIt(t, cfg, Options{Out: &log, StopAt: 1}); !errors.Is(err, errStopped) {
		t.Fatalf("building the cache: %v\n%s", err, log.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, ".cache", "features-*.f32"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	const P, D = 64, 2048
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	rows := int(st.Size() / (D * 4))
	if st.Size() != int64(rows)*D*4 {
		t.Fatalf("%s: %d bytes, not rows of %d float32s", files[0], st.Size(), D)
	}
	built := time.Since(t0)
	row := make([]float32, P*D)
	err = writeCache(files[0], false, rows, P*D, func(put func(int, []float32) error) error {
		for i := 0; i < rows; i++ {
			for j := range row {
				row[j] = float32(math.Sin(float64(i*7+j%97))) * 0.5
			}
			if err := put(i, row); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	size := int64(rows) * P * D * 4
	if size < 2<<30 {
		t.Fatalf("the cache is %d MiB, want at least 2 GiB", size>>20)
	}

	cfg.Name = "big"
	log.Reset()
	runtime.GC()
	debug.FreeOSMemory()
	before := rssKB()
	var peak atomic.Int64
	peak.Store(before)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if r := rssKB(); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	t1 := time.Now()
	res, err := runIt(t, cfg, Options{Out: &log})
	close(done)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if r := rssKB(); r > peak.Load() {
		peak.Store(r)
	}
	t.Logf("cache built in %.1fs; a %d MiB cache (%d rows of %d x %d): run of %d steps in %.1fs, resident memory %d MiB "+
		"before, at most %d MiB during it", built.Seconds(), size>>20, rows, P, D, res.State.Step,
		time.Since(t1).Seconds(), before>>10, peak.Load()>>10)
	if !strings.Contains(log.String(), "feature cache: "+files[0]) {
		t.Fatalf("the run did not read %s:\n%s", files[0], log.String())
	}
	if grew := (peak.Load() - before) >> 10; grew > 512 {
		t.Errorf("resident memory grew by %d MiB in a run over a %d MiB cache", grew, size>>20)
	}
}
