package train

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// FeatureCache holds the frozen backbone's pooled 2048-d feature of every
// image, computed once and stored in a file keyed by the backbone's weights,
// the image transform and the image list.
type FeatureCache struct {
	Key   string
	Path  string
	index map[string]int // image path -> row
	feats []float32
	dim   int   // floats per image: D, or P x D for the attention decoder's map
	maps  bool  // rows are maps (attention) rather than pooled features
	chans int64 // D, the feature layer's channels (2048 for Mixed_7c)
}

// Row returns the feature of an image (nil if absent).
func (c *FeatureCache) Row(path string) []float32 {
	i, ok := c.index[path]
	if !ok {
		return nil
	}
	return c.feats[i*c.dim : (i+1)*c.dim]
}

// Shape is the tensor shape of n rows: n x D, or n x P x D for maps.
func (c *FeatureCache) Shape(n int) []int64 {
	if c.maps {
		return []int64{int64(n), int64(c.dim) / c.chans, c.chans}
	}
	return []int64{int64(n), int64(c.dim)}
}

// backboneHash hashes every backbone tensor (names and values).
func backboneHash(m *model.Captioner) string {
	h := sha256.New()
	defer runtime.KeepAlive(m.VS) // Variables' struct copies do not keep the variables alive
	vars := m.VS.Variables()
	names := make([]string, 0, len(vars))
	for n := range vars {
		// The backbone only: its fc head is trained and does not shape the features.
		if strings.HasPrefix(n, model.BackbonePrefix) && !strings.HasPrefix(n, model.BackbonePrefix+"fc.") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	buf := make([]byte, 4)
	for _, n := range names {
		io.WriteString(h, n)
		v := vars[n]
		for _, f := range torch.Float32s(&v) {
			binary.LittleEndian.PutUint32(buf, math.Float32bits(f))
			h.Write(buf)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// BuildFeatureCache loads the cache for these images from dir, or computes it
// (with a progress reporter) and writes it atomically. A partial or stale file
// is never used: the key covers the backbone's weights, the transform, the
// feature layer and the images' contents in order (not their paths or times,
// so a data folder copied, moved or staged to a node's local disk keeps its
// cache), and the file is complete only once renamed into place.
func BuildFeatureCache(
	m *model.Captioner,
	ex []data.Example,
	tf data.Transform,
	dir string,
	workers, batch int,
	progress func(done, total int),
) (*FeatureCache, error) {
	paths, keyOf := cacheKeys(m, ex, tf, workers)
	maps := m.Cfg.Attention()
	D := int(m.Cfg.FeatureDim())
	key := keyOf(maps)
	c := &FeatureCache{
		Key:   key,
		Path:  filepath.Join(dir, "features-"+key+".f32"),
		index: map[string]int{},
		dim:   D,
		maps:  maps,
		chans: int64(D),
	}
	for i, p := range paths {
		c.index[p] = i
	}
	if n := fileFloats(c.Path); n > 0 && len(paths) > 0 && n%(D*len(paths)) == 0 && (maps || n == D*len(paths)) {
		if feats, err := readFloats(c.Path, n); err == nil {
			c.feats = feats
			c.dim = n / len(paths)
			return c, nil
		}
	}
	// Pooled features of the same images are the mean of a cached map's
	// places: the LSTM decoder reuses the attention decoder's cache instead of
	// running the backbone again.
	if mapPath := filepath.Join(dir, "features-"+keyOf(true)+".f32"); !maps {
		if n := fileFloats(mapPath); n > 0 && len(paths) > 0 && n%(D*len(paths)) == 0 {
			if mf, err := readFloats(mapPath, n); err == nil {
				c.feats = poolRows(mf, len(paths), n/len(paths)/D, D)
				return c, writeFloats(c.Path, c.feats)
			}
		}
	}
	exs := make([]data.Example, len(paths))
	for i, p := range paths {
		exs[i] = data.Example{ImageID: p, Path: p}
	}
	l, err := data.NewLoader(exs, data.ImageItems(exs), nil, tf, data.LoaderConfig{BatchSize: batch, Workers: workers})
	if err != nil {
		return nil, err
	}
	c.feats = nil
	done := 0
	for b := range l.Epoch(context.Background(), 0, 0) {
		x := torch.FromFloat32s(b.Images, []int64{int64(b.Size()), 3, int64(b.Side), int64(b.Side)}, m.Device())
		f := m.Features(x, false) // frozen: eval mode, no grad
		vals := torch.Float32s(f)
		f.MustDrop()
		x.MustDrop()
		if c.feats == nil {
			c.dim = len(vals) / b.Size()
			c.feats = make([]float32, c.dim*len(paths))
		}
		d := c.dim
		for r, it := range b.Items {
			copy(c.feats[it.Example*d:(it.Example+1)*d], vals[r*d:(r+1)*d])
		}
		done += b.Size()
		if progress != nil {
			progress(done, len(paths))
		}
	}
	if s := l.SkipSummary(); s != "" {
		return nil, fmt.Errorf("feature cache: %s", s)
	}
	return c, writeFloats(c.Path, c.feats)
}

// cacheKeys returns the cache's images (sorted, each once: the rows' order)
// and the key of their pooled (maps false) or map cache under this backbone
// and transform.
func cacheKeys(
	m *model.Captioner,
	ex []data.Example,
	tf data.Transform,
	workers int,
) ([]string, func(maps bool) string) {
	paths := make([]string, len(ex))
	for i, e := range ex {
		paths[i] = e.Path
	}
	sort.Strings(paths)
	uniq := paths[:0]
	for i, p := range paths {
		if i == 0 || p != paths[i-1] {
			uniq = append(uniq, p)
		}
	}
	paths = uniq
	bh := backboneHash(m)
	files := contentDigests(paths, workers)
	return paths, func(maps bool) string {
		h := sha256.New()
		fmt.Fprintf(
			h,
			"captiongo feature cache v2\nbackbone %s (%s blocks)\ntransform %+v transform_input %v\n",
			bh,
			m.Cfg.BackboneKind(),
			tf,
			m.Cfg.TransformInput,
		)
		kind := "pooled"
		if maps {
			kind = "map"
		}
		fmt.Fprintf(h, "rows: %s %s\n", m.Cfg.Layer(), kind)
		io.WriteString(h, files)
		return hex.EncodeToString(h.Sum(nil))[:16]
	}
}

// contentDigests lists the SHA-256 of every image's bytes, one line each in
// the given order (an unreadable file is listed as such; the loader then
// reports it). Hashing reads the images once: about a second for Flickr8k.
func contentDigests(paths []string, workers int) string {
	lines := make([]string, len(paths))
	workers = max(1, min(workers, 8))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				lines[i] = "unreadable\n"
				f, err := os.Open(paths[i])
				if err != nil {
					continue
				}
				h := sha256.New()
				n, err := io.Copy(h, f)
				f.Close()
				if err == nil {
					lines[i] = fmt.Sprintf("%d %x\n", n, h.Sum(nil))
				}
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	return strings.Join(lines, "")
}

// poolRows averages n maps of P places x D channels to n x D.
func poolRows(maps []float32, n, P, D int) []float32 {
	out := make([]float32, n*D)
	sum := make([]float64, D)
	for i := 0; i < n; i++ {
		clear(sum)
		for p := 0; p < P; p++ {
			row := maps[(i*P+p)*D : (i*P+p+1)*D]
			for d, v := range row {
				sum[d] += float64(v)
			}
		}
		for d := range sum {
			out[i*D+d] = float32(sum[d] / float64(P))
		}
	}
	return out
}

// fileFloats is the number of float32 values a cache file holds (0 if none).
func fileFloats(path string) int {
	st, err := os.Stat(path)
	if err != nil || st.Size()%4 != 0 {
		return 0
	}
	return int(st.Size() / 4)
}

// readFloats reads a little-endian float32 file straight into the slice it
// returns (a 3.7 GB Flickr8k attention cache costs 3.7 GB, not twice that).
func readFloats(path string, n int) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := make([]float32, n)
	if _, err := io.ReadFull(f, floatBytes(out)); err != nil {
		return nil, fmt.Errorf("feature cache %s: %w", path, err)
	}
	if !littleEndian {
		for i, v := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(floatBytes([]float32{v})))
		}
	}
	return out, nil
}

// writeFloats writes the values little-endian, atomically (temp file, then rename).
func writeFloats(path string, v []float32) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b := floatBytes(v)
	if !littleEndian {
		b = make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
		}
	}
	return data.WriteFileAtomic(path, b)
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// floatBytes views a float32 slice as its bytes in memory.
func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}
