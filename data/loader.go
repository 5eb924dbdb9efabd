package data

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
)

// Item is one training sample: an example and one of its captions (Caption -1
// means the image alone, as evaluation uses it).
type Item struct {
	Example int
	Caption int
}

// CaptionItems lists every (image, caption) pair, as the baseline trains.
func CaptionItems(ex []Example) []Item {
	var out []Item
	for i, e := range ex {
		for j := range e.Captions {
			out = append(out, Item{i, j})
		}
	}
	return out
}

// ImageItems lists every image once (for evaluation and feature extraction).
func ImageItems(ex []Example) []Item {
	out := make([]Item, len(ex))
	for i := range ex {
		out[i] = Item{i, -1}
	}
	return out
}

// Batch is a ready batch in plain Go slices. Images are B x 3 x Side x Side
// float32; Tokens are B x T int64, each row <SOS> words <EOS> then <PAD> up to
// the longest caption of the batch (T = 0 for image-only items).
type Batch struct {
	Index   int
	Items   []Item
	Images  []float32
	Side    int
	Tokens  []int64
	T       int
	Lengths []int    // tokens per row before padding, <SOS> and <EOS> included
	Skipped []string // images of this batch that could not be read, with why
}

// Size is the number of samples in the batch.
func (b *Batch) Size() int { return len(b.Items) }

// LoaderConfig sets batching and the decode worker pool.
type LoaderConfig struct {
	BatchSize int
	Workers   int    // decode goroutines (0 = number of CPUs)
	Prefetch  int    // batches decoded ahead of the consumer (0 = 2 x Workers)
	Shuffle   bool   // seeded shuffle of the items every epoch
	Seed      uint64 // shuffling and random crops derive from it and the epoch
	DropLast  bool
	// Decode reads one image (nil: DecodeImage; DecodeImageGo measures the
	// pure-Go JPEG decoder in the same build).
	Decode func(path string) (*RGB, error)
}

// Loader turns items into batches on a pool of decode goroutines. Batches
// come out in order; the same seed and epoch give the same batches, whatever
// the number of workers.
type Loader struct {
	ex    []Example
	items []Item
	vocab *Vocab
	tf    Transform
	cfg   LoaderConfig
	enc   map[Item][]int

	mu      sync.Mutex
	skipped map[string]string // image path -> error
}

// NewLoader checks its inputs and pre-encodes the captions.
func NewLoader(ex []Example, items []Item, vocab *Vocab, tf Transform, cfg LoaderConfig) (*Loader, error) {
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("batch size %d: must be positive", cfg.BatchSize)
	}
	if err := tf.Validate(); err != nil {
		return nil, err
	}
	if tf.OutSide() == 0 {
		return nil, fmt.Errorf("the transform must fix the image size (set a resize or a crop)")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = 2 * cfg.Workers
	}
	l := &Loader{
		ex:      ex,
		items:   items,
		vocab:   vocab,
		tf:      tf,
		cfg:     cfg,
		enc:     map[Item][]int{},
		skipped: map[string]string{},
	}
	for _, it := range items {
		if it.Example < 0 || it.Example >= len(ex) || it.Caption >= len(ex[it.Example].Captions) {
			return nil, fmt.Errorf("item %+v is out of range", it)
		}
		if it.Caption >= 0 && vocab != nil {
			l.enc[it] = vocab.Encode(ex[it.Example].Captions[it.Caption])
		}
	}
	return l, nil
}

// NumBatches is the number of batches in an epoch.
func (l *Loader) NumBatches() int {
	n := len(l.items) / l.cfg.BatchSize
	if !l.cfg.DropLast && len(l.items)%l.cfg.BatchSize != 0 {
		n++
	}
	return n
}

// NumItems is the number of samples in an epoch.
func (l *Loader) NumItems() int { return len(l.items) }

// Example returns the example an item refers to.
func (l *Loader) Example(it Item) Example { return l.ex[it.Example] }

// order returns the items of an epoch in batch order.
func (l *Loader) order(epoch int) []Item {
	items := append([]Item(nil), l.items...)
	if l.cfg.Shuffle {
		ShuffleItems(items, l.cfg.Seed, epoch)
	}
	return items
}

// ShuffleItems puts items in an epoch's order: a shuffle seeded by seed and
// epoch, the same on every machine.
func ShuffleItems(items []Item, seed uint64, epoch int) {
	r := rand.New(rand.NewPCG(seed, uint64(epoch)))
	r.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
}

// PadTokens lays token id rows out as B x T int64, T the longest row, short
// rows padded with <PAD> (0); it also returns each row's length.
func PadTokens(rows [][]int) (tokens []int64, T int, lengths []int) {
	for _, ids := range rows {
		T = max(T, len(ids))
	}
	tokens = make([]int64, len(rows)*T)
	lengths = make([]int, len(rows))
	for r, ids := range rows {
		for c, id := range ids {
			tokens[r*T+c] = int64(id)
		}
		lengths[r] = len(ids)
	}
	return tokens, T, lengths
}

// Epoch starts the workers for one epoch and returns the batches in order from
// batch index start (to resume an interrupted epoch). The channel closes after
// the last batch or when ctx is cancelled. Batches whose every image failed to
// decode are not sent; their images are in SkipSummary.
func (l *Loader) Epoch(ctx context.Context, epoch, start int) <-chan *Batch {
	items := l.order(epoch)
	nb := l.NumBatches()
	out := make(chan *Batch)
	slots := make(chan chan *Batch, l.cfg.Prefetch)
	jobs := make(chan struct {
		idx  int
		slot chan *Batch
	})
	var wg sync.WaitGroup
	for w := 0; w < l.cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				lo := j.idx * l.cfg.BatchSize
				hi := min(lo+l.cfg.BatchSize, len(items))
				j.slot <- l.build(epoch, j.idx, items[lo:hi])
			}
		}()
	}
	// Dispatcher: hands batch indices to workers, keeping their result slots in order.
	go func() {
		defer close(slots)
		defer close(jobs)
		for b := start; b < nb; b++ {
			slot := make(chan *Batch, 1)
			select {
			case slots <- slot:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- struct {
				idx  int
				slot chan *Batch
			}{b, slot}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		defer close(out)
		defer wg.Wait()
		for slot := range slots {
			var b *Batch
			select {
			case b = <-slot:
			case <-ctx.Done():
				return
			}
			if b.Size() == 0 {
				continue
			}
			select {
			case out <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// build decodes and transforms one batch.
func (l *Loader) build(epoch, idx int, items []Item) *Batch {
	side := l.tf.OutSide()
	per := 3 * side * side
	b := &Batch{Index: idx, Side: side, Images: make([]float32, 0, per*len(items))}
	rng := rand.New(rand.NewPCG(l.cfg.Seed^0x9e3779b97f4a7c15, uint64(epoch)<<32|uint64(idx)))
	buf := make([]float32, per)
	for _, it := range items {
		e := l.ex[it.Example]
		decode := l.cfg.Decode
		if decode == nil {
			decode = DecodeImage
		}
		img, err := decode(e.Path)
		if err == nil {
			err = l.tf.Apply(img, rng, buf)
		}
		if err != nil {
			b.Skipped = append(b.Skipped, err.Error())
			l.mu.Lock()
			l.skipped[e.Path] = err.Error()
			l.mu.Unlock()
			continue
		}
		b.Items = append(b.Items, it)
		b.Images = append(b.Images, buf...)
	}
	rows := make([][]int, len(b.Items))
	for r, it := range b.Items {
		rows[r] = l.enc[it]
	}
	if b.Tokens, b.T, b.Lengths = PadTokens(rows); b.T == 0 {
		b.Tokens, b.Lengths = nil, nil // image-only items
	}
	return b
}

// SkipSummary returns one line about the images that could not be read so
// far ("" when none), naming the first few.
func (l *Loader) SkipSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.skipped) == 0 {
		return ""
	}
	paths := make([]string, 0, len(l.skipped))
	for p := range l.skipped {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return fmt.Sprintf("%d unreadable image(s) skipped; first: %s", len(paths), l.skipped[paths[0]])
}
