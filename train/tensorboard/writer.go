// Package tensorboard writes TensorBoard event files (tfevents) that stock
// TensorBoard reads: scalars, text, images, histograms and the HParams
// plugin's session records. It encodes the few protobuf messages by hand
// (protowire) and frames them as TFRecords with masked CRC-32C.
package tensorboard

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC is TFRecord's masked CRC-32C.
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// Record frames data as one TFRecord: length, masked CRC of the length, data,
// masked CRC of the data.
func Record(data []byte) []byte {
	out := make([]byte, 0, len(data)+16)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(data)))
	out = binary.LittleEndian.AppendUint32(out, MaskedCRC(out[:8]))
	out = append(out, data...)
	return binary.LittleEndian.AppendUint32(out, MaskedCRC(data))
}

// Writer appends events to one events.out.tfevents.* file. Every event is one
// write() of a whole record, so a killed process leaves a readable file (at
// most its last record is cut, which readers skip). Safe for one goroutine at
// a time per call (calls are serialised).
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	Path string
	now  func() time.Time
	// MidRecord, when set, is called halfway through writing each record
	// (tests kill the process there to leave a truncated record behind).
	MidRecord func()
}

var counter int

// NewWriter creates dir and a new event file in it. If purgeStep >= 0 the file
// starts with a SessionLog START at that step (as PyTorch's purge_step does):
// TensorBoard then discards events of earlier files at or after that step, the
// ones a killed run wrote after its last checkpoint. TensorBoard's server
// (plugin_event_accumulator) takes the first START it reads for the session's
// beginning and purges only on later ones, so every file of a run that may be
// resumed starts with one (the trainer's: its step + 1, 1 on a fresh run).
func NewWriter(dir string, purgeStep int64) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	counter++
	// TensorBoard reads a folder's event files in name order, and a purge
	// record only drops what it has read before: a new file's name must sort
	// after every file already there, even one another process started in the
	// same second.
	secs := time.Now().Unix()
	old, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	for _, o := range old {
		f := strings.Split(filepath.Base(o), ".")
		if len(f) < 4 {
			continue
		}
		if n, err := strconv.ParseInt(f[3], 10, 64); err == nil && n >= secs {
			secs = n + 1
		}
	}
	name := fmt.Sprintf("events.out.tfevents.%010d.%s.%d.%d", secs, host, os.Getpid(), counter)
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, Path: f.Name(), now: time.Now}
	ev := event(w.wall(), 0)
	ev = protowire.AppendTag(ev, 3, protowire.BytesType)
	ev = protowire.AppendString(ev, "brain.Event:2")
	if err := w.write(ev); err != nil {
		return nil, err
	}
	if purgeStep >= 0 {
		sl := protowire.AppendTag(nil, 1, protowire.VarintType)
		sl = protowire.AppendVarint(sl, 1) // START
		ev := event(w.wall(), purgeStep)
		ev = protowire.AppendTag(ev, 7, protowire.BytesType) // Event.session_log
		ev = protowire.AppendBytes(ev, sl)
		if err := w.write(ev); err != nil {
			return nil, err
		}
	}
	return w, w.f.Sync()
}

func (w *Writer) wall() float64 { return float64(w.now().UnixNano()) / 1e9 }

func event(wall float64, step int64) []byte {
	b := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(wall))
	if step != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(step))
	}
	return b
}

func (w *Writer) write(ev []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("tensorboard: %s is closed", w.Path)
	}
	rec := Record(ev)
	if w.MidRecord != nil {
		if _, err := w.f.Write(rec[:len(rec)/2]); err != nil {
			return err
		}
		w.MidRecord()
		rec = rec[len(rec)/2:]
	}
	_, err := w.f.Write(rec)
	return err
}

// summaryEvent wraps Summary.Value messages into an event.
func (w *Writer) summaryEvent(step int64, values ...[]byte) error {
	var s []byte
	for _, v := range values {
		s = protowire.AppendTag(s, 1, protowire.BytesType)
		s = protowire.AppendBytes(s, v)
	}
	ev := event(w.wall(), step)
	ev = protowire.AppendTag(ev, 5, protowire.BytesType)
	ev = protowire.AppendBytes(ev, s)
	return w.write(ev)
}

func value(tag string) []byte {
	v := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(v, tag)
}

func appendMsg(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func metadata(plugin string, content []byte, dataClass uint64) []byte {
	pd := protowire.AppendTag(nil, 1, protowire.BytesType)
	pd = protowire.AppendString(pd, plugin)
	if len(content) > 0 {
		pd = appendMsg(pd, 2, content)
	}
	md := appendMsg(nil, 1, pd)
	if dataClass != 0 {
		md = protowire.AppendTag(md, 4, protowire.VarintType)
		md = protowire.AppendVarint(md, dataClass)
	}
	return md
}

// Scalar records a scalar (simple_value).
func (w *Writer) Scalar(tag string, step int64, x float64) error {
	v := value(tag)
	v = protowire.AppendTag(v, 2, protowire.Fixed32Type)
	v = protowire.AppendFixed32(v, math.Float32bits(float32(x)))
	return w.summaryEvent(step, v)
}

// Text records markdown under tag + "/text_summary", as PyTorch's add_text.
func (w *Writer) Text(tag string, step int64, markdown string) error {
	t := protowire.AppendTag(nil, 1, protowire.VarintType)
	t = protowire.AppendVarint(t, 7) // DT_STRING
	t = appendMsg(t, 2, nil)         // scalar shape
	t = protowire.AppendTag(t, 8, protowire.BytesType)
	t = protowire.AppendString(t, markdown)
	v := value(tag + "/text_summary")
	v = appendMsg(v, 8, t)
	v = appendMsg(v, 9, metadata("text", nil, 2))
	return w.summaryEvent(step, v)
}

// Image records an encoded PNG of the given size.
func (w *Writer) Image(tag string, step int64, png []byte, width, height int) error {
	im := protowire.AppendTag(nil, 1, protowire.VarintType)
	im = protowire.AppendVarint(im, uint64(height))
	im = protowire.AppendTag(im, 2, protowire.VarintType)
	im = protowire.AppendVarint(im, uint64(width))
	im = protowire.AppendTag(im, 3, protowire.VarintType)
	im = protowire.AppendVarint(im, 3) // RGB
	im = protowire.AppendTag(im, 4, protowire.BytesType)
	im = protowire.AppendBytes(im, png)
	v := appendMsg(value(tag), 4, im)
	return w.summaryEvent(step, v)
}

// Histogram records the distribution of values in 30 equal-width buckets.
func (w *Writer) Histogram(tag string, step int64, values []float64) error {
	if len(values) == 0 {
		return nil
	}
	lo, hi, sum, sq := math.Inf(1), math.Inf(-1), 0.0, 0.0
	for _, x := range values {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
		sum += x
		sq += x * x
	}
	const n = 30
	limits := make([]float64, n)
	counts := make([]float64, n)
	width := (hi - lo) / n
	if width == 0 {
		width = 1
	}
	for i := range limits {
		limits[i] = lo + width*float64(i+1)
	}
	limits[n-1] = hi
	for _, x := range values {
		i := int((x - lo) / width)
		if i >= n {
			i = n - 1
		}
		counts[i]++
	}
	h := []byte{}
	for i, f := range []float64{lo, hi, float64(len(values)), sum, sq} {
		h = protowire.AppendTag(h, protowire.Number(i+1), protowire.Fixed64Type)
		h = protowire.AppendFixed64(h, math.Float64bits(f))
	}
	packed := func(num protowire.Number, xs []float64) {
		var p []byte
		for _, x := range xs {
			p = protowire.AppendFixed64(p, math.Float64bits(x))
		}
		h = appendMsg(h, num, p)
	}
	packed(6, limits)
	packed(7, counts)
	return w.summaryEvent(step, appendMsg(value(tag), 5, h))
}

// HParamsStart records the run's hyperparameters (HParams plugin
// session_start_info); values may be float64, int, bool or string.
func (w *Writer) HParamsStart(hparams map[string]any, group string) error {
	var ssi []byte
	keys := make([]string, 0, len(hparams))
	for k := range hparams {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var val []byte
		switch x := hparams[k].(type) {
		case float64:
			val = protowire.AppendTag(nil, 2, protowire.Fixed64Type)
			val = protowire.AppendFixed64(val, math.Float64bits(x))
		case int:
			val = protowire.AppendTag(nil, 2, protowire.Fixed64Type)
			val = protowire.AppendFixed64(val, math.Float64bits(float64(x)))
		case bool:
			val = protowire.AppendTag(nil, 4, protowire.VarintType)
			val = protowire.AppendVarint(val, protowire.EncodeBool(x))
		default:
			val = protowire.AppendTag(nil, 3, protowire.BytesType)
			val = protowire.AppendString(val, fmt.Sprint(x))
		}
		entry := protowire.AppendTag(nil, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, k)
		entry = appendMsg(entry, 2, val)
		ssi = appendMsg(ssi, 1, entry)
	}
	if group != "" {
		ssi = protowire.AppendTag(ssi, 4, protowire.BytesType)
		ssi = protowire.AppendString(ssi, group)
	}
	ssi = protowire.AppendTag(ssi, 5, protowire.Fixed64Type)
	ssi = protowire.AppendFixed64(ssi, math.Float64bits(float64(w.now().Unix())))
	return w.hparams("_hparams_/session_start_info", 3, ssi)
}

// HParamsEnd records the end of the session (success or failure).
func (w *Writer) HParamsEnd(success bool) error {
	status := uint64(1)
	if !success {
		status = 2
	}
	sei := protowire.AppendTag(nil, 1, protowire.VarintType)
	sei = protowire.AppendVarint(sei, status)
	sei = protowire.AppendTag(sei, 2, protowire.Fixed64Type)
	sei = protowire.AppendFixed64(sei, math.Float64bits(float64(w.now().Unix())))
	return w.hparams("_hparams_/session_end_info", 4, sei)
}

func (w *Writer) hparams(tag string, field protowire.Number, msg []byte) error {
	content := protowire.AppendTag(nil, 1, protowire.VarintType)
	content = protowire.AppendVarint(content, 0)
	content = appendMsg(content, field, msg)
	// An empty DT_FLOAT tensor of shape [0], as TensorBoard's own hparams summaries.
	shape := appendMsg(nil, 2, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 0))
	t := protowire.AppendTag(nil, 1, protowire.VarintType)
	t = protowire.AppendVarint(t, 1)
	t = appendMsg(t, 2, shape)
	v := value(tag)
	v = appendMsg(v, 8, t)
	v = appendMsg(v, 9, metadata("hparams", content, 0))
	return w.summaryEvent(0, v)
}

// Flush makes everything written so far durable (fsync).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	return w.f.Sync()
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}
