package model

import (
	"fmt"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
)

// Config is the captioner's architecture.
type Config struct {
	VocabSize  int     `json:"vocab_size"`
	EmbedSize  int     `json:"embed_size"`  // baseline 256
	HiddenSize int     `json:"hidden_size"` // baseline 256
	NumLayers  int     `json:"num_layers"`  // baseline 1
	Dropout    float64 `json:"dropout"`     // baseline 0.5 (encoder head and word embeddings)
	// BackboneDropout is torchvision Inception3's own Dropout between the pooled
	// features and fc, active in training (baseline 0.5: the baseline keeps the
	// whole model in train mode, also with a frozen backbone). LSTM decoder only.
	BackboneDropout float64     `json:"backbone_dropout"`
	TrainCNN        bool        `json:"train_cnn"`       // fine-tune the backbone (baseline: false)
	TransformInput  bool        `json:"transform_input"` // torchvision's transform_input (on for Google's weights)
	Decoder         DecoderKind `json:"decoder"`         // DecoderLSTM (the baseline, also when empty) or DecoderAttention
	AttentionDim    int         `json:"attention_dim"`   // attention: size of the attention layer
	// backbone map the decoder reads: Mixed7c (the default, also when empty), Mixed6e or Mixed5d
	FeatureLayer Layer `json:"feature_layer"`
	// Backbone is the Inception-v3 variant (torchvision's, also when empty, or
	// the FID/TensorFlow one that the "fid-inception" weights need).
	Backbone BackboneKind `json:"backbone"`
}

// BackboneKind is the backbone variant ("" means torchvision's).
func (c Config) BackboneKind() BackboneKind {
	if c.Backbone == "" {
		return BackboneTorchvision
	}
	return c.Backbone
}

// DecoderKind names a caption decoder.
type DecoderKind string

// The decoders.
const (
	DecoderLSTM      DecoderKind = "lstm"      // the baseline's CNNtoRNN
	DecoderAttention DecoderKind = "attention" // Show, Attend and Tell
)

// DecoderKinds lists the decoders (config validation and help).
var DecoderKinds = []DecoderKind{DecoderLSTM, DecoderAttention}

// Layer is the backbone layer the decoder reads.
func (c Config) Layer() Layer {
	if c.FeatureLayer == "" {
		return Mixed7c
	}
	return c.FeatureLayer
}

// FeatureDim is the channel count of that layer (2048 for Mixed_7c).
func (c Config) FeatureDim() int64 { return FeatureLayers[c.Layer()] }

// Attention reports whether the decoder is Show, Attend and Tell's.
func (c Config) Attention() bool { return c.Decoder == DecoderAttention }

// Validate checks the sizes.
func (c Config) Validate() error {
	switch {
	case c.VocabSize < 5:
		return fmt.Errorf("vocab size %d: need the 4 specials and at least one word", c.VocabSize)
	case c.EmbedSize <= 0 || c.HiddenSize <= 0 || c.NumLayers <= 0:
		return fmt.Errorf(
			"embed_size %d, hidden_size %d and num_layers %d must be positive",
			c.EmbedSize,
			c.HiddenSize,
			c.NumLayers,
		)
	case c.Dropout < 0 || c.Dropout >= 1:
		return fmt.Errorf("dropout %v must be in [0, 1)", c.Dropout)
	case c.BackboneDropout < 0 || c.BackboneDropout >= 1:
		return fmt.Errorf("backbone_dropout %v must be in [0, 1)", c.BackboneDropout)
	case c.Decoder != "" && !slices.Contains(DecoderKinds, c.Decoder):
		return fmt.Errorf("decoder %q: use lstm or attention", c.Decoder)
	case c.Attention() && c.AttentionDim <= 0:
		return fmt.Errorf("attention_dim %d must be positive", c.AttentionDim)
	}
	if _, err := ParseBackboneKind(string(c.Backbone)); err != nil {
		return err
	}
	switch {
	case FeatureLayers[c.Layer()] == 0:
		return fmt.Errorf("feature_layer %q: use Mixed_7c, Mixed_6e or Mixed_5d", c.FeatureLayer)
	case c.Attention() && c.NumLayers != 1:
		return fmt.Errorf("num_layers %d: the attention decoder has one LSTM cell", c.NumLayers)
	}
	return nil
}

// Captioner is the baseline's CNNtoRNN. Its VarStore names follow the
// baseline's PyTorch module, so the baseline's state_dict loads directly:
// encoderCNN.inception.<torchvision names>, encoderCNN.inception.fc.{weight,bias},
// decoderRNN.embed.weight, decoderRNN.lstm.{weight,bias}_{ih,hh}_l<k>,
// decoderRNN.linear.{weight,bias}.
type Captioner struct {
	Cfg      Config
	VS       *nn.VarStore
	Backbone *Inception
	dec      decoder // Cfg.Decoder's (decoder.go)
	device   gotch.Device
}

// BackbonePrefix is where the torchvision backbone's names start.
const BackbonePrefix = "encoderCNN.inception."

// NewCaptioner builds a captioner with fresh weights on a device.
func NewCaptioner(cfg Config, device gotch.Device) (*Captioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	vs := nn.NewVarStore(device)
	root := vs.Root()
	inc := root.Sub("encoderCNN").Sub("inception")
	m := &Captioner{Cfg: cfg, VS: vs, device: device}
	m.Backbone = NewInceptionKind(inc, cfg.BackboneKind(), cfg.TransformInput, cfg.TrainCNN)
	kind := cfg.Decoder
	if kind == "" {
		kind = DecoderLSTM
	}
	m.dec = decoders[kind](root, cfg, device)
	return m, nil
}

// uniform is PyTorch's default Linear/LSTM init: U(-1/sqrt(fan), 1/sqrt(fan)).
func uniform(fan float64) nn.Init { b := 1 / sqrt(fan); return nn.NewUniformInit(-b, b) }

// Device is where the captioner's tensors live.
func (m *Captioner) Device() gotch.Device { return m.device }

// Features runs the backbone up to FeatureLayer: pooled features (N x D, D =
// 2048 for Mixed_7c), or for the attention decoder the map as rows (N x P x D,
// P = h*w). With
// TrainCNN false the backbone runs without gradient and with BatchNorm in
// eval mode whatever train says (the baseline let its running statistics
// drift).
func (m *Captioner) Features(images *ts.Tensor, train bool) *ts.Tensor {
	run := func(train bool) *ts.Tensor {
		f := m.Backbone.MapAt(images, m.Cfg.Layer(), train)
		if m.dec.rows() {
			return MapRows(f, true)
		}
		return PoolMap(f, true)
	}
	switch {
	case m.Cfg.TrainCNN:
		return run(train)
	case m.Tuned(): // the frozen blocks run without gradient, the tuned ones with it (Tune)
		return run(false)
	}
	var f *ts.Tensor
	torch.NoGrad(func() { f = run(false) })
	return f
}

// DecodeFeatures runs the decoder with teacher forcing on what Features
// returns: logits (T-1) x B x V, and for the attention decoder the attention
// weights (T-1) x B x P (nil otherwise).
func (m *Captioner) DecodeFeatures(feat, tokens *ts.Tensor, train bool) (logits, alphas *ts.Tensor) {
	return m.dec.teacher(feat, tokens, train, nil)
}

// ForwardAlphas is Forward that also returns the attention weights
// ((T-1) x B x P; nil for the LSTM decoder).
func (m *Captioner) ForwardAlphas(images, tokens *ts.Tensor, train bool) (logits, alphas *ts.Tensor) {
	f := m.Features(images, train)
	defer f.MustDrop()
	return m.DecodeFeatures(f, tokens, train)
}

// Forward computes the logits for teacher forcing. tokens is B x T (<SOS>
// words <EOS> <PAD>...). The decoder reads the image first and then tokens
// 0..T-2; its output after token t-1 predicts token t, so the result is
// (T-1) x B x V, aligned with tokens[:, 1:].
//
// The baseline instead scored the output of the image step against <SOS> (a
// constant it learns trivially) and its greedy decoder emitted that <SOS> as its
// first word; here the image step predicts nothing and decoding starts by
// feeding <SOS>.
func (m *Captioner) Forward(images, tokens *ts.Tensor, train bool) *ts.Tensor {
	l, a := m.ForwardAlphas(images, tokens, train)
	if a != nil {
		a.MustDrop()
	}
	return l
}

// baseline returns the LSTM decoder for the baseline's own steps (Head,
// DecodeTeacher), which the attention decoder does not have.
func (m *Captioner) baseline() *lstmDecoder {
	d, ok := m.dec.(*lstmDecoder)
	if !ok {
		panic(
			fmt.Sprintf(
				"the %q decoder has no baseline head (Head and DecodeTeacher are the LSTM decoder's)",
				m.Cfg.Decoder,
			),
		)
	}
	return d
}

// Head is the baseline's encoder head: Dropout(ReLU(fc(features))), where in
// training the features first pass torchvision Inception3's own dropout
// (BackboneDropout). LSTM decoder only.
func (m *Captioner) Head(pooled *ts.Tensor, train bool) *ts.Tensor {
	return m.baseline().head(pooled, train)
}

// DecodeTeacher runs the LSTM decoder on head features (B x E) and tokens (B x T).
func (m *Captioner) DecodeTeacher(feat, tokens *ts.Tensor, train bool) *ts.Tensor {
	return m.baseline().decodeTeacher(feat, tokens, train)
}

// Loss is the cross-entropy of logits ((T-1) x B x V) against tokens[:, 1:],
// ignoring <PAD>, averaged over the real tokens.
func Loss(logits, tokens *ts.Tensor) *ts.Tensor {
	sz := logits.MustSize()
	T := tokens.MustSize()[1]
	target := tokens.MustNarrow(1, 1, T-1, false).MustT(true).MustContiguous(true).MustView([]int64{-1}, true)
	flat := logits.MustView([]int64{-1, sz[2]}, false)
	loss, err := torch.CrossEntropy(flat, target, data.PAD)
	flat.MustDrop()
	target.MustDrop()
	if err != nil {
		panic(fmt.Errorf("loss: %w", err))
	}
	return loss
}

// Trainable lists the parameters an optimiser should update, in a fixed order.
func (m *Captioner) Trainable() []*ts.Tensor { return m.VS.TrainableVariables() }

// dropout applies dropout in training and drops its input.
func dropout(x *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !train || p == 0 {
		return x
	}
	y := ts.MustDropout(x, p, true)
	x.MustDrop()
	return y
}

// LoadFile loads a whole captioner from a weight file (a torch.save state_dict
// with the baseline's names, or a gotch VarStore file).
func (m *Captioner) LoadFile(path string) error {
	tensors, err := LoadTensors(path)
	if err != nil {
		return err
	}
	defer DropAll(tensors)
	_, err = LoadInto(m.VS, tensors, LoadSpec{File: path})
	return err
}

// LoadBackbone loads Inception-v3 weights into the backbone (ReadBackboneWeights:
// torchvision's or the FID variant's); the file's ImageNet classifier (fc.*)
// and AuxLogits.* are ignored, with notes, and the captioner's own head
// (encoderCNN.inception.fc) keeps its values. A file of the other variant
// than the captioner's backbone is an error.
func (m *Captioner) LoadBackbone(path string) ([]string, error) {
	tensors, kind, err := ReadBackboneWeights(path)
	if err != nil {
		return nil, err
	}
	defer DropAll(tensors)
	if kind != m.Cfg.BackboneKind() {
		return nil, fmt.Errorf(
			"weights %s are for the %s backbone, the model is built with backbone = %q (set backbone = %q, or \"auto\" to "+
				"follow the file)",
			path,
			kind,
			m.Cfg.BackboneKind(),
			kind,
		)
	}
	return m.LoadBackboneTensors(path, tensors)
}

// LoadBackboneTensors is LoadBackbone of tensors that ReadBackboneWeights read
// from path (for the captioner's backbone kind); the caller keeps them.
func (m *Captioner) LoadBackboneTensors(path string, tensors map[string]*ts.Tensor) ([]string, error) {
	return LoadInto(
		m.VS,
		tensors,
		LoadSpec{File: path, Prefix: BackbonePrefix, Ignore: []string{"AuxLogits.", "fc."}, Keep: []string{"fc."}},
	)
}
