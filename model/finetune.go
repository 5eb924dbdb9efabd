package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sugarme/gotch/ts"
)

// Block names an Inception block of the backbone, the unit that fine-tuning
// after warm-up unfreezes (Tune): that block and every later one train.
type Block string

// Blocks are the backbone's Inception blocks in order.
var Blocks = []Block{
	"Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
	"Mixed_7a", "Mixed_7b", "Mixed_7c",
}

// BlockIndex is the block's place in Blocks (-1 if it is none).
func BlockIndex(b Block) int {
	for i, x := range Blocks {
		if x == b {
			return i
		}
	}
	return -1
}

// Tuned reports whether Tune has unfrozen part of the backbone.
func (m *Captioner) Tuned() bool { return m.Backbone.tuneFrom > 0 }

// Tune unfreezes the backbone from block from up to the feature layer: their
// conv weights and BatchNorm shifts (and scales, for a variant that has
// learned ones) require gradient from now on, while BatchNorm keeps using its
// running statistics (a batch of 32 would move them; the decoder has learned
// on the frozen features) and the earlier blocks stay frozen and run without
// gradient. It returns the unfrozen tensors by name (sorted), for their own
// optimiser. A model built with TrainCNN trains the whole backbone already.
func (m *Captioner) Tune(from Block) ([]string, []*ts.Tensor, error) {
	k := BlockIndex(from)
	if k < 0 {
		return nil, nil, fmt.Errorf("no backbone block %q (blocks: %v)", from, Blocks)
	}
	if m.Cfg.TrainCNN {
		return nil, nil, fmt.Errorf("train_cnn: the whole backbone trains already")
	}
	last := BlockIndex(Block(m.Cfg.Layer()))
	if k > last {
		return nil, nil, fmt.Errorf("block %s comes after the feature layer %s: nothing of it runs", from, m.Cfg.Layer())
	}
	tr := trainability{all: true, scale: mustVariant(m.Backbone.Kind).bnScale} // as a trainable backbone's
	vars := m.VS.Variables()
	var names []string
	for n := range vars {
		rest, ok := strings.CutPrefix(n, BackbonePrefix)
		if !ok {
			continue
		}
		blk, leaf, _ := strings.Cut(rest, ".")
		if i := BlockIndex(Block(blk)); i < k || i > last {
			continue
		}
		parts := strings.Split(leaf, ".") // [branch...] conv|bn weight|bias|...
		if len(parts) >= 2 && tr.trains(strings.Join(parts[len(parts)-2:], ".")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	params := make([]*ts.Tensor, len(names))
	for i, n := range names {
		v := vars[n]
		params[i] = &v
		if !v.MustRequiresGrad() {
			v.MustSetRequiresGrad(true, false).MustDrop()
		}
	}
	m.Backbone.tuneFrom = k + 1 // stage 0 is the stem
	return names, params, nil
}
