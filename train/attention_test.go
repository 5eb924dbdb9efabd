package train

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// TestAttentionDecoderTrains trains the attention decoder on the tiny
// synthetic set at 139 px (a 3 x 3 map) from images and from the feature
// cache: the two give the same losses (the cache holds the maps, not pooled
// features), the loss falls, and decoding a checkpoint works.
func TestAttentionDecoderTrains(t *testing.T) {
	out := t.TempDir()
	cfg := tiny(t, out)
	cfg.Decoder, cfg.AttentionDim, cfg.AlphaC = "attention", 24, 1
	cfg.ImageSize, cfg.Epochs, cfg.CaptionSampling = 139, 2, "one"
	cfg.Name, cfg.FeatureCache = "att-images", false
	var log strings.Builder
	a, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	cfg.Name, cfg.FeatureCache = "att-cache", true
	log.Reset()
	b, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "feature cache:") {
		t.Fatalf("no feature cache:\n%s", log.String())
	}
	for i := range a.State.History {
		ha, hb := a.State.History[i], b.State.History[i]
		if d := ha.TrainLoss - hb.TrainLoss; d > 1e-4 || d < -1e-4 {
			t.Errorf("epoch %d: train loss %.6f from images, %.6f from the cache", i+1, ha.TrainLoss, hb.TrainLoss)
		}
		if d := ha.ValLoss - hb.ValLoss; d > 1e-4 || d < -1e-4 {
			t.Errorf("epoch %d: val loss %.6f from images, %.6f from the cache", i+1, ha.ValLoss, hb.ValLoss)
		}
	}
	if h := b.State.History; h[1].TrainLoss >= h[0].TrainLoss {
		t.Errorf("loss did not fall: %+v", h)
	}
	// The samples' attention maps are in TensorBoard and on disk each epoch.
	files, _ := filepath.Glob(filepath.Join(b.RunDir, "events.out.tfevents.*"))
	evs, err := tensorboard.ReadEvents(files[0])
	if err != nil {
		t.Fatal(err)
	}
	maps := map[int64]int{}
	for _, e := range evs {
		for _, v := range e.Values {
			if strings.HasPrefix(v.Tag, "attention/image") && len(v.ImagePNG) > 0 && v.ImageW >= 128 {
				maps[e.Step]++
			}
		}
	}
	if len(maps) != 2 {
		t.Errorf("attention maps logged at steps %v, want both epochs", maps)
	}
	pngs, _ := filepath.Glob(filepath.Join(b.RunDir, "attention", "epoch002-*.png"))
	if len(pngs) == 0 {
		t.Errorf("no attention PNGs in %s/attention", b.RunDir)
	}
	// A wrong combination is refused with the field named.
	bad := cfg
	bad.NumLayers = 2
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "num_layers") {
		t.Errorf("attention with 2 layers: %v", err)
	}
	// The cache's rows are maps: 9 positions x 2048.
	err = torch.Run(func() error {
		m, err := model.NewCaptioner(
			model.Config{
				VocabSize:    10,
				EmbedSize:    8,
				HiddenSize:   8,
				NumLayers:    1,
				Decoder:      "attention",
				AttentionDim: 8,
			},
			gotch.CPU,
		)
		if err != nil {
			return err
		}
		c := &FeatureCache{dim: 9 * model.EncoderDim, maps: m.Cfg.Attention(), chans: m.Cfg.FeatureDim()}
		if got := c.Shape(4); len(got) != 3 || got[1] != 9 || got[2] != 2048 {
			t.Errorf("cache shape %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPooledCacheFromMapCache: with the attention decoder's map cache on disk,
// the LSTM decoder's pooled cache of the same backbone, transform and images
// is the mean of its places (no backbone run), equal to the backbone's own
// pooled features; another backbone's map cache is not used.
func TestPooledCacheFromMapCache(t *testing.T) {
	src := t.TempDir()
	if err := data.WriteSynth(src, 12, 3); err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(src, data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tf := data.Transform{Size: 139, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]}
	err = torch.Run(func() error {
		build := func(att bool, dir string, seed int64) *FeatureCache {
			return buildTestCache(t, ds.Examples, tf, dir, att, false, seed)
		}
		shared, fresh := t.TempDir(), t.TempDir()
		mapc := build(true, shared, 1)
		derived := build(false, shared, 1)
		direct := build(false, fresh, 1)
		if mapc.Path == derived.Path || derived.Path != filepath.Join(shared, filepath.Base(direct.Path)) {
			t.Errorf("cache files: map %s, derived %s, direct %s", mapc.Path, derived.Path, direct.Path)
		}
		worst, scale := 0.0, 0.0
		for _, e := range ds.Examples {
			a, b := cacheRow(t, derived, e.Path), cacheRow(t, direct, e.Path)
			for i := range a {
				worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
				scale = math.Max(scale, math.Abs(float64(b[i])))
			}
		}
		t.Logf(
			"pooled from the map cache vs the backbone's pooling: max |diff| %.3g (max |feature| %.3g)",
			worst,
			scale,
		)
		if worst > 1e-5*math.Max(1, scale) {
			t.Errorf("derived pooled features differ by %.3g", worst)
		}
		// The pooled rows really come from the map file: with that file's
		// values halved, a rebuilt pooled cache is halved too.
		err := writeCache(mapc.Path, false, len(mapc.index), mapc.dim, func(put func(int, []float32) error) error {
			for p, i := range mapc.index {
				row := cacheRow(t, mapc, p)
				for j := range row {
					row[j] /= 2
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
		os.Remove(derived.Path)
		again := build(false, shared, 1)
		if a, b := cacheRow(t, again, ds.Examples[0].Path), cacheRow(t, direct, ds.Examples[0].Path); math.Abs(
			float64(a[0]-b[0]/2),
		) > 1e-6*math.Max(
			1,
			scale,
		) {
			t.Errorf(
				"pooled cache rebuilt beside a halved map cache: %v, want %v / 2: not derived from the map file",
				a[0],
				b[0],
			)
		}
		// Other weights: the map cache of seed 1 must not serve a backbone of seed 2.
		other := build(false, shared, 2)
		a, b := cacheRow(t, other, ds.Examples[0].Path), cacheRow(t, derived, ds.Examples[0].Path)
		if a[0] == b[0] && a[1] == b[1] {
			t.Errorf("a pooled cache for other backbone weights equals the derived one")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFeatureCacheKeyFollowsContent: the cache key follows what the features
// depend on and nothing else. The same images copied to another folder (new
// paths, new times) or touched keep the cache; one image's bytes changed, the
// transform changed or other backbone weights each give another cache.
func TestFeatureCacheKeyFollowsContent(t *testing.T) {
	src := t.TempDir()
	if err := data.WriteSynth(src, 6, 5); err != nil {
		t.Fatal(err)
	}
	copyDir := func(from, to string) {
		err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(from, p)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(to, rel), 0o755)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(to, rel), b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	moved := filepath.Join(t.TempDir(), "elsewhere")
	copyDir(src, moved)
	tf := data.Transform{Size: 75, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]}
	cacheDir := t.TempDir()
	err := torch.Run(func() error {
		build := func(dir string, tf data.Transform, seed int64) *FeatureCache {
			ds, err := data.Load(dir, data.Options{})
			if err != nil {
				t.Fatal(err)
			}
			torch.ManualSeed(seed)
			m, err := model.NewCaptioner(
				model.Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1},
				gotch.CPU,
			)
			if err != nil {
				t.Fatal(err)
			}
			c, err := BuildFeatureCache(m, ds.Examples, tf, cacheDir, false, 2, 8, nil)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		first := build(src, tf, 1)
		if c := build(moved, tf, 1); c.Key != first.Key {
			t.Errorf("the same images in another folder: key %s, want %s", c.Key, first.Key)
		}
		images, _ := filepath.Glob(filepath.Join(moved, "Images", "*"))
		if len(images) < 2 {
			t.Fatalf("no images under %s", moved)
		}
		later := time.Now().Add(time.Hour)
		for _, p := range images {
			if err := os.Chtimes(p, later, later); err != nil {
				t.Fatal(err)
			}
		}
		if c := build(moved, tf, 1); c.Key != first.Key {
			t.Errorf("the same images touched: key %s, want %s", c.Key, first.Key)
		}
		other := tf
		other.Size = 80
		if c := build(moved, other, 1); c.Key == first.Key {
			t.Error("another transform kept the key")
		}
		if c := build(moved, tf, 2); c.Key == first.Key {
			t.Error("other backbone weights kept the key")
		}
		// One image replaced by another's bytes: its features change, so must the key.
		b, err := os.ReadFile(images[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(images[0], b, 0o644); err != nil {
			t.Fatal(err)
		}
		changed := build(moved, tf, 1)
		if changed.Key == first.Key {
			t.Fatal("an image's content changed and the key did not")
		}
		rel0, _ := filepath.Rel(moved, images[0])
		rel1, _ := filepath.Rel(moved, images[1])
		a, b0 := cacheRow(t, changed, images[0]), cacheRow(t, changed, images[1])
		if a == nil || b0 == nil || a[0] != b0[0] {
			t.Errorf("%s now holds %s's bytes: rows %v, %v should start alike", rel0, rel1, a[:2], b0[:2])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
