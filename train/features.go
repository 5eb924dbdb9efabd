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
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// FeatureCache holds the frozen backbone's feature of every image (pooled
// 2048-d, or the feature layer's map for the attention decoder), computed once
// and stored in a file keyed by the backbone's weights, the image transform,
// the feature layer and the images. Rows are read from the file as batches
// need them: the file is never loaded whole, so a run's resident memory does
// not grow with the cache (a COCO attention cache is 64 GB in float32), and
// runs or ranks on one host share the operating system's page cache of it.
// Rows are stored as float32, or as float16 (Half: half the file and the
// reads, each value rounded to float16's 11 significant bits).
type FeatureCache struct {
	Key   string
	Path  string
	Half  bool
	index map[string]int // image path -> row
	dim   int            // values per image: D, or P x D for the attention decoder's map
	maps  bool           // rows are maps (attention) rather than pooled features
	chans int64          // D, the feature layer's channels (2048 for Mixed_7c)
	file  *os.File
}

// Has reports whether the cache holds the image's row.
func (c *FeatureCache) Has(path string) bool {
	_, ok := c.index[path]
	return ok
}

// AppendRow appends the image's feature to dst.
func (c *FeatureCache) AppendRow(dst []float32, path string) ([]float32, error) {
	i, ok := c.index[path]
	if !ok {
		return dst, fmt.Errorf("feature cache %s holds no row for %s", c.Path, path)
	}
	n := len(dst)
	dst = slices.Grow(dst, c.dim)[:n+c.dim]
	if err := readRow(c.file, c.Half, i, dst[n:]); err != nil {
		return dst[:n], fmt.Errorf("feature cache %s, row %d (%s): %w", c.Path, i, path, err)
	}
	return dst, nil
}

// Close closes the cache file.
func (c *FeatureCache) Close() error {
	if c.file == nil {
		return nil
	}
	err := c.file.Close()
	c.file = nil
	return err
}

// Shape is the tensor shape of n rows: n x D, or n x P x D for maps.
func (c *FeatureCache) Shape(n int) []int64 {
	if c.maps {
		return []int64{int64(n), int64(c.dim) / c.chans, c.chans}
	}
	return []int64{int64(n), int64(c.dim)}
}

// cacheExt is the file extension of a cache stored as float16 or float32.
func cacheExt(half bool) string {
	if half {
		return ".f16"
	}
	return ".f32"
}

// elemSize is the bytes per stored value.
func elemSize(half bool) int {
	if half {
		return 2
	}
	return 4
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

// BuildFeatureCache opens the cache for these images in dir, or computes it
// (with a progress reporter) and writes it atomically. A partial or stale file
// is never used: the key covers the backbone's weights, the transform, the
// feature layer and the images' contents in order (not their paths or times,
// so a data folder copied, moved or staged to a node's local disk keeps its
// cache), and the file is complete only once renamed into place. half stores
// the rows as float16. Rows go to the file as they are computed: building
// holds one batch in memory, not the cache.
func BuildFeatureCache(
	m *model.Captioner,
	ex []data.Example,
	tf data.Transform,
	dir string,
	half bool,
	workers, batch int,
	progress func(done, total int),
) (*FeatureCache, error) {
	paths, keyOf := cacheKeys(m, ex, tf, workers)
	maps := m.Cfg.Attention()
	D := int(m.Cfg.FeatureDim())
	key := keyOf(maps)
	c := &FeatureCache{
		Key:   key,
		Path:  filepath.Join(dir, "features-"+key+cacheExt(half)),
		Half:  half,
		index: map[string]int{},
		dim:   D,
		maps:  maps,
		chans: int64(D),
	}
	for i, p := range paths {
		c.index[p] = i
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("feature cache: no images")
	}
	// rowDim is the values per row of a complete cache file of these images
	// (0 if there is none): D for pooled features, a multiple of D for maps.
	rowDim := func(path string, half bool) int {
		st, err := os.Stat(path)
		es := int64(elemSize(half))
		if err != nil || st.Size() == 0 || st.Size()%(es*int64(D*len(paths))) != 0 {
			return 0
		}
		return int(st.Size() / es / int64(len(paths)))
	}
	if d := rowDim(c.Path, half); d > 0 && (maps || d == D) {
		c.dim = d
		return c, c.open()
	}
	// A float16 cache is converted from the float32 one of the same images;
	// pooled features are the mean of a cached map's places, so the LSTM
	// decoder reuses the attention decoder's cache instead of running the
	// backbone again. Only float32 files serve: a float32 cache is never made
	// of float16 values, nor a float16 one of twice-rounded ones.
	type source struct { // a float32 cache file
		path string
		maps bool
	}
	var from []source
	if half {
		from = append(from, source{filepath.Join(dir, "features-"+key+cacheExt(false)), maps})
	}
	if !maps {
		from = append(from, source{filepath.Join(dir, "features-"+keyOf(true)+cacheExt(false)), true})
	}
	for _, s := range from {
		d := rowDim(s.path, false)
		if d == 0 || (!s.maps && d != D) {
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			continue
		}
		c.dim = d
		if s.maps && !maps {
			c.dim = D
		}
		in := make([]float32, d)
		err = writeCache(c.Path, half, len(paths), c.dim, func(put func(i int, row []float32) error) error {
			for i := range paths {
				if err := readRow(f, false, i, in); err != nil {
					return fmt.Errorf("feature cache %s: %w", s.path, err)
				}
				row := in
				if s.maps && !maps {
					row = poolRows(in, 1, d/D, D)
				}
				if err := put(i, row); err != nil {
					return err
				}
			}
			return nil
		})
		f.Close()
		if err != nil {
			return nil, err
		}
		return c, c.open()
	}
	exs := make([]data.Example, len(paths))
	for i, p := range paths {
		exs[i] = data.Example{ImageID: p, Path: p}
	}
	l, err := data.NewLoader(exs, data.ImageItems(exs), nil, tf, data.LoaderConfig{BatchSize: batch, Workers: workers})
	if err != nil {
		return nil, err
	}
	// The map's places depend on the image size: the first batch says how many.
	w := &cacheWriter{half: half, rows: len(paths)}
	defer w.abort()
	done := 0
	for b := range l.Epoch(context.Background(), 0, 0) {
		x := torch.FromFloat32s(b.Images, []int64{int64(b.Size()), 3, int64(b.Side), int64(b.Side)}, m.Device())
		f := m.Features(x, false) // frozen: eval mode, no grad
		vals := torch.Float32s(f)
		f.MustDrop()
		x.MustDrop()
		if w.f == nil {
			c.dim = len(vals) / b.Size()
			if err := w.create(c.Path, c.dim); err != nil {
				return nil, err
			}
		}
		d := c.dim
		for r, it := range b.Items {
			if err := w.put(it.Example, vals[r*d:(r+1)*d]); err != nil {
				return nil, fmt.Errorf("feature cache: image %s: %w", paths[it.Example], err)
			}
		}
		done += b.Size()
		if progress != nil {
			progress(done, len(paths))
		}
	}
	if s := l.SkipSummary(); s != "" {
		return nil, fmt.Errorf("feature cache: %s", s)
	}
	if err := w.commit(c.Path); err != nil {
		return nil, err
	}
	return c, c.open()
}

func (c *FeatureCache) open() error {
	f, err := os.Open(c.Path)
	if err != nil {
		return fmt.Errorf("feature cache: %w", err)
	}
	c.file = f
	// The cache is closed with the run; one left open by a caller is closed
	// when it is collected.
	runtime.SetFinalizer(c, func(c *FeatureCache) { c.Close() })
	return nil
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

// cacheWriter writes a cache file's rows, in any order, into a temporary
// file beside it that commit renames into place (abort removes it).
type cacheWriter struct {
	half      bool
	rows, dim int
	f         *os.File
	buf       []byte
}

func (w *cacheWriter) create(path string, dim int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	w.f, w.dim = f, dim
	return f.Truncate(int64(w.rows) * int64(dim) * int64(elemSize(w.half)))
}

// put writes row i.
func (w *cacheWriter) put(i int, row []float32) error {
	if len(row) != w.dim {
		return fmt.Errorf("row of %d values, want %d", len(row), w.dim)
	}
	es := elemSize(w.half)
	w.buf = slices.Grow(w.buf[:0], es*w.dim)[:es*w.dim]
	if w.half {
		for j, v := range row {
			h, ok := halfBits(v)
			if !ok {
				return fmt.Errorf("value %g at %d is outside float16's range (feature_cache_dtype = \"float32\" keeps it)",
					v, j)
			}
			binary.LittleEndian.PutUint16(w.buf[2*j:], h)
		}
	} else {
		for j, v := range row {
			binary.LittleEndian.PutUint32(w.buf[4*j:], math.Float32bits(v))
		}
	}
	_, err := w.f.WriteAt(w.buf, int64(i)*int64(len(w.buf)))
	return err
}

// commit syncs the file and renames it to path.
func (w *cacheWriter) commit(path string) error {
	if w.f == nil {
		return fmt.Errorf("feature cache %s: no rows were computed", path)
	}
	tmp := w.f.Name()
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("feature cache %s: %w", path, err)
	}
	return nil
}

// abort removes an uncommitted file.
func (w *cacheWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// writeCache writes a cache file of rows x dim values through fill, which
// calls put for every row, atomically.
func writeCache(path string, half bool, rows, dim int, fill func(put func(int, []float32) error) error) error {
	w := &cacheWriter{half: half, rows: rows}
	defer w.abort()
	if err := w.create(path, dim); err != nil {
		return err
	}
	if err := fill(w.put); err != nil {
		return err
	}
	return w.commit(path)
}

// readRow reads row i of a cache file (len(out) values each) into out.
func readRow(f *os.File, half bool, i int, out []float32) error {
	if f == nil {
		return fmt.Errorf("the cache is closed")
	}
	es := elemSize(half)
	off := int64(i) * int64(len(out)) * int64(es)
	if !half && littleEndian {
		_, err := f.ReadAt(floatBytes(out), off) // straight into the row
		return err
	}
	if littleEndian { // float16: into the row's second half, widened in place front to back
		b := floatBytes(out)
		n := len(out)
		if _, err := f.ReadAt(b[2*n:], off); err != nil {
			return err
		}
		// out[j] (bytes 4j..4j+3) is written after half j (bytes 2n+2j..) is
		// read, and ends before half j+1 begins, since 2j+1 < 2n.
		for j := range out {
			out[j] = halfFloat(binary.LittleEndian.Uint16(b[2*n+2*j:]))
		}
		return nil
	}
	buf := make([]byte, es*len(out))
	if _, err := f.ReadAt(buf, off); err != nil {
		return err
	}
	for j := range out {
		if half {
			out[j] = halfFloat(binary.LittleEndian.Uint16(buf[2*j:]))
		} else {
			out[j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
		}
	}
	return nil
}

// halfBits rounds a float32 to the nearest float16 (ties to even) and returns
// its bits; ok is false for a finite value beyond float16's range.
func halfBits(f float32) (h uint16, ok bool) {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	if exp == 0xff { // inf, NaN (kept quiet)
		if man != 0 {
			return sign | 0x7e00, true
		}
		return sign | 0x7c00, true
	}
	e := exp - 127 + 15
	var v uint32
	switch {
	case e >= 0x1f:
		return sign | 0x7c00, false
	case e > 0:
		v = uint32(e)<<10 + roundShift(man, 13) // a mantissa carry moves into the exponent
	case e >= -10:
		v = roundShift(man|0x800000, uint(14-e)) // subnormal
	default:
		v = 0
	}
	if v >= 0x7c00 {
		return sign | 0x7c00, false
	}
	return sign | uint16(v), true
}

// roundShift is m >> s rounded to nearest, ties to even.
func roundShift(m uint32, s uint) uint32 {
	q, r, h := m>>s, m&(1<<s-1), uint32(1)<<(s-1)
	if r > h || (r == h && q&1 == 1) {
		q++
	}
	return q
}

// halfFloat is the float32 value of float16 bits.
func halfFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	e := uint32(h>>10) & 0x1f
	m := uint32(h & 0x3ff)
	switch e {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | m<<13)
	case 0: // zero or subnormal: m x 2^-24
		v := float32(m) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (e+112)<<23 | m<<13)
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// floatBytes views a float32 slice as its bytes in memory.
func floatBytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}
