package train

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/testutil"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// cacheRow reads one image's row of a cache.
func cacheRow(t *testing.T, c *FeatureCache, path string) []float32 {
	t.Helper()
	row, err := c.AppendRow(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// buildTestCache builds (or opens) the feature cache of the examples' images
// in dir for a small captioner whose backbone is random from seed: the
// attention decoder's map cache (att) or the pooled one, float16 when half.
// The caller holds the torch thread; the cache is closed when the test ends.
func buildTestCache(t *testing.T, ex []data.Example, tf data.Transform, dir string, att, half bool,
	seed int64) *FeatureCache {
	t.Helper()
	cfg := model.Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, AttentionDim: 8}
	if att {
		cfg.Decoder = "attention"
	}
	torch.ManualSeed(seed)
	m, err := model.NewCaptioner(cfg, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	c, err := BuildFeatureCache(m, ex, tf, dir, half, 1, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestHalfConversionMatchesNumPy: float32 -> float16 rounding (ties to even,
// subnormals, overflow, infinities, NaN) and float16 -> float32 give NumPy's
// bits, on every float16 value and on float32 values around each rounding
// boundary.
func TestHalfConversionMatchesNumPy(t *testing.T) {
	dir := t.TempDir()
	// Every float16 bit pattern, and float32s at, just below and just above
	// each midpoint between neighbouring float16 values, plus random ones.
	var in []uint32
	for h := 0; h < 1<<16; h++ {
		in = append(in, math.Float32bits(halfFloat(uint16(h))))
	}
	for h := 0; h < 0x7bff; h++ {
		lo, hi := float64(halfFloat(uint16(h))), float64(halfFloat(uint16(h+1)))
		mid := math.Float32bits(float32((lo + hi) / 2))
		for _, b := range []uint32{mid - 1, mid, mid + 1} {
			in = append(in, b, b|0x80000000)
		}
	}
	for _, f := range []float32{65504, 65519.99, 65520, 1e5, 1e-8, 2.9802322e-08, 5.9604645e-08, 3e38} {
		in = append(in, math.Float32bits(f), math.Float32bits(-f))
	}
	buf := make([]byte, 4*len(in))
	for i, b := range in {
		binary.LittleEndian.PutUint32(buf[4*i:], b)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.bin"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.RunPython(t, `
import sys, numpy as np
d = sys.argv[1]
x = np.fromfile(d + "/in.bin", dtype="<f4")
with np.errstate(over="ignore", invalid="ignore"):
    h = x.astype(np.float16)
h.view("<u2").tofile(d + "/half.bin")
np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).view("<u4").tofile(d + "/back.bin")
`, dir)
	half, err := os.ReadFile(filepath.Join(dir, "half.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var bad, overflow int
	for i, b := range in {
		f := math.Float32frombits(b)
		want := binary.LittleEndian.Uint16(half[2*i:])
		got, ok := halfBits(f)
		if f != f { // NaN: any NaN will do
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Errorf("NaN -> %#04x", got)
			}
			continue
		}
		if !ok {
			overflow++
			if want&0x7fff != 0x7c00 || math.IsInf(float64(f), 0) {
				t.Errorf("%g (%#08x): reported out of float16's range; NumPy gives %#04x", f, b, want)
			}
		}
		if got != want && bad < 10 {
			t.Errorf("%g (%#08x) -> %#04x, NumPy %#04x", f, b, got, want)
			bad++
		}
	}
	if overflow == 0 {
		t.Error("no value was reported beyond float16's range")
	}
	back, err := os.ReadFile(filepath.Join(dir, "back.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for h := 0; h < 1<<16; h++ {
		got, want := math.Float32bits(halfFloat(uint16(h))), binary.LittleEndian.Uint32(back[4*h:])
		if got != want && !(math.IsNaN(float64(halfFloat(uint16(h)))) && math.IsNaN(float64(math.Float32frombits(want)))) {
			t.Fatalf("float16 %#04x -> %#08x, NumPy %#08x", h, got, want)
		}
	}
	t.Logf("%d float32 values and all 65,536 float16 values convert as NumPy does (%d out of range)", len(in),
		overflow)
}

// TestFeatureCacheFloat16: a float16 cache holds each float32 feature rounded
// to float16, whether the backbone computes it or it is converted from the
// float32 cache of the same images; its file is half the size; a pooled
// float16 cache derives from a float32 map cache; feature_cache_dtype is
// checked.
func TestFeatureCacheFloat16(t *testing.T) {
	src := t.TempDir()
	if err := data.WriteSynth(src, 10, 3); err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(src, data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tf := data.Transform{Size: 139, Mean: data.HalfMeanStd[0], Std: data.HalfMeanStd[1]}
	err = torch.Run(func() error {
		build := func(att, half bool, dir string) *FeatureCache {
			return buildTestCache(t, ds.Examples, tf, dir, att, half, 1)
		}
		shared := t.TempDir()
		f32 := build(true, false, shared)
		converted := build(true, true, shared) // from the float32 file beside it
		direct := build(true, true, t.TempDir())
		pooled := build(false, true, shared) // from the float32 map cache
		pooled32 := build(false, false, t.TempDir())
		size := func(c *FeatureCache) int64 {
			st, err := os.Stat(c.Path)
			if err != nil {
				t.Fatal(err)
			}
			return st.Size()
		}
		if !strings.HasSuffix(converted.Path, ".f16") || 2*size(converted) != size(f32) {
			t.Errorf("float16 cache %s of %d bytes beside float32 %s of %d", converted.Path, size(converted),
				f32.Path, size(f32))
		}
		worst, scale := 0.0, 0.0
		for _, e := range ds.Examples {
			want := cacheRow(t, f32, e.Path)
			a, b := cacheRow(t, converted, e.Path), cacheRow(t, direct, e.Path)
			for i, w := range want {
				h, _ := halfBits(w)
				if r := halfFloat(h); a[i] != r || b[i] != r {
					t.Fatalf("%s[%d]: float16 caches hold %g (converted) and %g (computed), want %g rounded: %g",
						e.Path, i, a[i], b[i], w, r)
				}
				// Relative rounding where float16 is normal; below 2^-14 its
				// steps are 2^-24 apart (the features' smallest carry less).
				worst = math.Max(worst, math.Abs(float64(a[i]-w))/math.Max(math.Abs(float64(w)), math.Pow(2, -14)))
				scale = math.Max(scale, math.Abs(float64(w)))
			}
			p, p32 := cacheRow(t, pooled, e.Path), cacheRow(t, pooled32, e.Path)
			for i := range p32 { // float16's rounding of the mean of the map's places
				if math.Abs(float64(p[i]-p32[i])) > math.Pow(2, -11)*math.Abs(float64(p32[i]))+1e-6*math.Max(1, scale) {
					t.Fatalf("%s: pooled float16 %g, float32 %g", e.Path, p[i], p32[i])
				}
			}
		}
		t.Logf("float16 cache: largest rounding relative to max(|feature|, 2^-14) %.3g (float16 keeps 2^-11 = %.3g), "+
			"largest feature %.3g", worst, math.Pow(2, -11), scale)
		if worst > math.Pow(2, -11) || worst == 0 {
			t.Errorf("relative rounding %.3g", worst)
		}
		// A float16 row is widened in the caller's buffer: no allocation per row.
		row := make([]float32, len(cacheRow(t, converted, ds.Examples[0].Path)))
		if a := testing.AllocsPerRun(20, func() {
			if err := readRow(converted.file, true, 1, row); err != nil {
				t.Fatal(err)
			}
		}); a != 0 {
			t.Errorf("reading a float16 row allocates %.0f times", a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.FeatureCacheDtype = "bfloat16"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "feature_cache_dtype") {
		t.Errorf("feature_cache_dtype = bfloat16: %v", err)
	}
	w := &cacheWriter{half: true, rows: 1}
	if err := w.create(filepath.Join(t.TempDir(), "x.f16"), 2); err != nil {
		t.Fatal(err)
	}
	defer w.abort()
	if err := w.put(0, []float32{1, 1e6}); err == nil || !strings.Contains(err.Error(), "float16's range") {
		t.Errorf("a value beyond float16: %v", err)
	}
}

// TestFeatureCacheResidentMemory: an epoch over a 2 GiB cache file (4,096
// attention maps of 64 x 2048) reads every row through the cache source and
// the run's resident memory grows by a small part of the file, not by the
// file: rows are read as batches need them.
func TestFeatureCacheResidentMemory(t *testing.T) {
	if rssKB() == 0 {
		t.Skip("no /proc/self/status here to read resident memory from")
	}
	const n, P, D = 4096, 64, 2048
	dir := t.TempDir()
	path := filepath.Join(dir, "features-test.f32")
	row := make([]float32, P*D)
	err := writeCache(path, false, n, P*D, func(put func(int, []float32) error) error {
		for i := 0; i < n; i++ {
			row[0], row[len(row)-1] = float32(i), float32(-i)
			if err := put(i, row); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &FeatureCache{Key: "test", Path: path, index: map[string]int{}, dim: P * D, maps: true, chans: D}
	ex := make([]data.Example, n)
	for i := range ex {
		ex[i] = data.Example{ImageID: fmt.Sprint(i), Path: fmt.Sprintf("img%05d.jpg", i), Captions: []string{"a dog runs"}}
		c.index[ex[i].Path] = i
	}
	if err := c.open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := &cacheSource{cache: c, vocab: data.BuildVocab([]string{"a dog runs"}, 1), bs: 32}
	runtime.GC()
	debug.FreeOSMemory()
	before := rssKB()
	peak := before
	ch, nb, err := s.epoch(context.Background(), ex, data.CaptionItems(ex), 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for b := range ch {
		if b.err != nil {
			t.Fatal(b.err)
		}
		for r, e := range b.examples {
			if got := b.x[r*P*D]; got != float32(e) || b.x[(r+1)*P*D-1] != float32(-e) {
				t.Fatalf("batch %d row %d: image %d's row starts %g", b.index, r, e, got)
			}
		}
		seen += b.n
		if b.index%16 == 0 {
			peak = max(peak, rssKB())
		}
	}
	peak = max(peak, rssKB())
	t.Logf("%d batches, %d rows of a %d MiB cache: resident memory %d MiB before, at most %d MiB during the epoch",
		nb, seen, n*P*D*4>>20, before>>10, peak>>10)
	if seen != n {
		t.Errorf("%d rows read, want %d", seen, n)
	}
	if grew := (peak - before) >> 10; grew > 256 {
		t.Errorf("resident memory grew by %d MiB reading a %d MiB cache", grew, n*P*D*4>>20)
	}
	// A truncated file is an error naming it, not a short row.
	if err := os.Truncate(path, int64(n-1)*P*D*4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendRow(nil, ex[n-1].Path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("reading past a truncated cache: %v", err)
	}
}
