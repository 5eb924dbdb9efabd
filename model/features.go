package model

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// LoadInception builds the backbone alone (torchvision names at the root) of
// the kind the weight file is for (ReadBackboneWeights) and loads the file
// into it, ignoring fc.* and AuxLogits.*.
func LoadInception(
	weights string,
	transformInput bool,
	device gotch.Device,
) (*Inception, *nn.VarStore, []string, error) {
	tensors, kind, err := ReadBackboneWeights(weights)
	if err != nil {
		return nil, nil, nil, err
	}
	defer DropAll(tensors)
	vs := nn.NewVarStore(device)
	enc := NewInceptionKind(vs.Root(), kind, transformInput, false)
	notes, err := LoadInto(vs, tensors, LoadSpec{File: weights, Ignore: []string{"AuxLogits.", "fc."}})
	if err != nil {
		return nil, nil, nil, err
	}
	return enc, vs, notes, nil
}

// ExtractFeatures reads an N x 3 x H x W float32 .npy (already normalised),
// runs the backbone in eval mode in batches, and writes the N x 2048 pooled
// features to out. Must run on a locked thread (torch.Run).
func ExtractFeatures(weights, in, out string, transformInput bool, batch int, device gotch.Device) ([]string, error) {
	x, shape, err := torch.ReadNpy(in)
	if err != nil {
		return nil, err
	}
	if len(shape) != 4 || shape[1] != 3 {
		return nil, fmt.Errorf("%s: shape %v, want N x 3 x H x W", in, shape)
	}
	if shape[2] < 75 || shape[3] < 75 {
		return nil, fmt.Errorf(
			"%s: images of %dx%d are smaller than Inception-v3's minimum of 75x75",
			in,
			shape[2],
			shape[3],
		)
	}
	enc, _, notes, err := LoadInception(weights, transformInput, device)
	if err != nil {
		return nil, err
	}
	if batch <= 0 {
		batch = 32
	}
	n, per := shape[0], shape[1]*shape[2]*shape[3]
	feats := make([]float32, 0, n*2048)
	for i := int64(0); i < n; i += int64(batch) {
		m := min(int64(batch), n-i)
		xb := torch.FromFloat32s(x[i*per:(i+m)*per], []int64{m, 3, shape[2], shape[3]}, device)
		var f *ts.Tensor
		torch.NoGrad(func() { f = enc.Pooled(xb, false) })
		feats = append(feats, torch.Float32s(f)...)
		f.MustDrop()
		xb.MustDrop()
	}
	return notes, torch.WriteNpy(out, feats, []int64{n, 2048})
}
