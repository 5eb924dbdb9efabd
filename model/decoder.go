package model

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// decoder is a caption decoder on the backbone's features. Each lives in its
// own file (lstm.go: the baseline's; attention.go: Show, Attend and Tell) and
// registers its constructor once; the Captioner holds one and never asks
// which. A new decoder is one file and its registerDecoder line, plus its name
// in DecoderKinds.
type decoder interface {
	// rows reports whether it reads the feature map as rows (N x P x D)
	// rather than pooled features (N x D).
	rows() bool
	// teacher runs teacher forcing on features: logits (T-1) x B x V aligned
	// with tokens[:, 1:], and the attention weights (T-1) x B x P, or nil;
	// ss (nil: none) mixes in the model's own samples.
	teacher(feat, tokens *ts.Tensor, train bool, ss *ScheduledSampling) (logits, alphas *ts.Tensor)
	// stepper starts decoding from features; the caller holds no-grad mode.
	stepper(feat *ts.Tensor) Stepper
}

// decoders builds each kind under the VarStore's root, with the baseline's
// module names.
var decoders = map[DecoderKind]func(root *nn.Path, cfg Config, device gotch.Device) decoder{}

func registerDecoder(k DecoderKind, build func(root *nn.Path, cfg Config, device gotch.Device) decoder) {
	decoders[k] = build
}
