package model

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// lstmDecoder is the baseline's decoder (CNNtoRNN): the encoder head fc ->
// ReLU -> Dropout on pooled features, then Embedding -> Dropout -> LSTM ->
// Linear, the image feature at step 0. Its names are the baseline module's:
// encoderCNN.inception.fc.{weight,bias}, decoderRNN.embed.weight,
// decoderRNN.lstm.{weight,bias}_{ih,hh}_l<k>, decoderRNN.linear.{weight,bias}.
type lstmDecoder struct {
	cfg      Config
	device   gotch.Device
	fcW, fcB *ts.Tensor
	embed    *ts.Tensor
	lstm     []*ts.Tensor // per layer: w_ih, w_hh, b_ih, b_hh
	linW     *ts.Tensor
	linB     *ts.Tensor
	inTable  derived // decoding's input table (inputTable)
}

func init() {
	registerDecoder(
		DecoderLSTM,
		func(root *nn.Path, cfg Config, device gotch.Device) decoder { return newLSTMDecoder(root, cfg, device) },
	)
}

func newLSTMDecoder(root *nn.Path, cfg Config, device gotch.Device) *lstmDecoder {
	d := &lstmDecoder{cfg: cfg, device: device}
	E, H, V := int64(cfg.EmbedSize), int64(cfg.HiddenSize), int64(cfg.VocabSize)
	fc := root.Sub("encoderCNN").Sub("inception").Sub("fc")
	D := cfg.FeatureDim()
	d.fcW = fc.MustNewVar("weight", []int64{E, D}, uniform(float64(D)))
	d.fcB = fc.MustNewVar("bias", []int64{E}, uniform(float64(D)))
	dec := root.Sub("decoderRNN")
	d.embed = dec.Sub("embed").MustNewVar("weight", []int64{V, E}, nn.NewRandnInit(0, 1))
	lstm := dec.Sub("lstm")
	for l := 0; l < cfg.NumLayers; l++ {
		in := E
		if l > 0 {
			in = H
		}
		init := uniform(float64(H))
		d.lstm = append(d.lstm,
			lstm.MustNewVar(fmt.Sprintf("weight_ih_l%d", l), []int64{4 * H, in}, init),
			lstm.MustNewVar(fmt.Sprintf("weight_hh_l%d", l), []int64{4 * H, H}, init),
			lstm.MustNewVar(fmt.Sprintf("bias_ih_l%d", l), []int64{4 * H}, init),
			lstm.MustNewVar(fmt.Sprintf("bias_hh_l%d", l), []int64{4 * H}, init))
	}
	lin := dec.Sub("linear")
	d.linW = lin.MustNewVar("weight", []int64{V, H}, uniform(float64(H)))
	d.linB = lin.MustNewVar("bias", []int64{V}, uniform(float64(H)))
	if device.IsCuda() && flattenOnCUDA {
		d.flattenLSTM()
	}
	return d
}

// rows: the LSTM decoder reads pooled features.
func (d *lstmDecoder) rows() bool { return false }

// teacher is the head on pooled features, then the LSTM with teacher forcing.
func (d *lstmDecoder) teacher(pooled, tokens *ts.Tensor, train bool, ss *ScheduledSampling) (*ts.Tensor, *ts.Tensor) {
	h := d.head(pooled, train)
	defer h.MustDrop()
	if ss.active() {
		return d.decodeMixed(h, tokens, train, ss), nil
	}
	return d.decodeTeacher(h, tokens, train), nil
}

// decodeMixed is decodeTeacher one step at a time, each step's input tokens
// mixed by scheduled sampling.
func (d *lstmDecoder) decodeMixed(feat, tokens *ts.Tensor, train bool, ss *ScheduledSampling) *ts.Tensor {
	cols := columns(tokens)
	f0 := feat.MustUnsqueeze(0, false)
	out, h, c := d.lstmStep(f0, nil, train) // the image step
	f0.MustDrop()
	out.MustDrop()
	var logits []*ts.Tensor
	for t := 0; t < len(cols)-1; t++ {
		tok := cols[t]
		if t > 0 {
			tok = ss.mix(tok, logits[t-1])
		}
		ss.record(tok)
		tt := ts.MustOfSlice(tok).MustTo(d.device, true).MustUnsqueeze(0, true) // 1 x B
		emb := dropout(ts.MustEmbedding(d.embed, tt, -1, false, false), d.cfg.Dropout, train)
		tt.MustDrop()
		o, h2, c2 := d.lstmStep(emb, []*ts.Tensor{h, c}, train)
		emb.MustDrop()
		h.MustDrop()
		c.MustDrop()
		h, c = h2, c2
		sq := o.MustSqueezeDim(0, true)
		logits = append(logits, ts.MustLinear(sq, d.linW, d.linB))
		sq.MustDrop()
	}
	h.MustDrop()
	c.MustDrop()
	L := ts.MustStack(logits, 0)
	for _, l := range logits {
		l.MustDrop()
	}
	return L
}

// maxTableBytes caps the input table: above it decoding runs the embedding and
// W_ih every step instead (a 10,000-word vocabulary with hidden size 512 is 80 MB).
const maxTableBytes = 256 << 20

// useInputTable is false only in tests that compare with the plain step.
var useInputTable = true

// inputTable returns the first LSTM layer's input projection of every token
// (torch.InputTable: E W_ih^T + b_ih, V x 4H), so that a decoding step gathers
// rows of it instead of running the embedding and W_ih. It is computed once and
// reused until the embedding, W_ih or b_ih change (an optimiser step, loading
// weights); nil for a multi-layer LSTM or a table over maxTableBytes.
func (d *lstmDecoder) inputTable() *ts.Tensor {
	V, H := int64(d.cfg.VocabSize), int64(d.cfg.HiddenSize)
	if !useInputTable || d.cfg.NumLayers != 1 || V*4*H*4 > maxTableBytes {
		return nil
	}
	t := d.inTable.get([]*ts.Tensor{d.embed, d.lstm[0], d.lstm[2]}, func() ([]*ts.Tensor, error) {
		t, err := torch.InputTable(d.embed, d.lstm[0], d.lstm[2])
		return []*ts.Tensor{t}, err
	})
	if t == nil {
		return nil // decode without it
	}
	return t[0]
}

// flattenOnCUDA is false only in the test that shows what happens without it.
var flattenOnCUDA = true

// flattenLSTM lays the LSTM's weights out as views of one buffer in cuDNN's
// order, as nn.LSTM.flatten_parameters does whenever a module moves to CUDA.
// Otherwise cuDNN copies every weight into such a buffer on each call, and
// back out of its gradient, warning "RNN module weights are not part of single
// contiguous chunk of memory". The parameters keep their handles (ATen's set_);
// loading weights and the optimiser write into them in place, so they stay
// views of the buffer.
func (d *lstmDecoder) flattenLSTM() {
	if !ts.Must_UseCudnnRnnFlattenWeight() {
		return
	}
	const cudnnLSTM, withBias = 2, 4 // cuDNN's mode for LSTM; 4 tensors per layer
	torch.NoGrad(func() {
		buf := ts.Must_CudnnRnnFlattenWeight(d.lstm, withBias, int64(d.cfg.EmbedSize), cudnnLSTM,
			int64(d.cfg.HiddenSize), 0, int64(d.cfg.NumLayers), false, false)
		buf.MustDrop() // the parameters hold its storage
	})
}

// Head is the baseline's encoder head: Dropout(ReLU(fc(features))), where in
// training the features first pass torchvision Inception3's own dropout
// (BackboneDropout), as in the baseline, whose Inception ends avgpool ->
// dropout -> fc.
func (d *lstmDecoder) head(pooled *ts.Tensor, train bool) *ts.Tensor {
	x := pooled
	if train && d.cfg.BackboneDropout > 0 {
		x = ts.MustDropout(pooled, d.cfg.BackboneDropout, true)
		defer x.MustDrop()
	}
	y := ts.MustLinear(x, d.fcW, d.fcB).MustRelu(true)
	return dropout(y, d.cfg.Dropout, train)
}

// DecodeTeacher runs the decoder on image features (B x E) and tokens (B x T).
func (d *lstmDecoder) decodeTeacher(feat, tokens *ts.Tensor, train bool) *ts.Tensor {
	T := tokens.MustSize()[1]
	inTok := tokens.MustNarrow(1, 0, T-1, false).MustT(true) // (T-1) x B
	emb := dropout(ts.MustEmbedding(d.embed, inTok, -1, false, false), d.cfg.Dropout, train)
	inTok.MustDrop()
	f0 := feat.MustUnsqueeze(0, false)
	seq := ts.MustCat([]*ts.Tensor{f0, emb}, 0) // T x B x E
	f0.MustDrop()
	emb.MustDrop()
	out := d.lstmRun(seq, nil, train)
	seq.MustDrop()
	steps := out.MustNarrow(0, 1, T-1, true)
	logits := ts.MustLinear(steps, d.linW, d.linB)
	steps.MustDrop()
	return logits
}

// lstmRun runs the LSTM over a sequence; state (h, c) may be nil (zeros). It
// drops the final state it does not return.
func (d *lstmDecoder) lstmRun(seq *ts.Tensor, state []*ts.Tensor, train bool) *ts.Tensor {
	out, h, c := d.lstmStep(seq, state, train)
	h.MustDrop()
	c.MustDrop()
	return out
}

func (d *lstmDecoder) lstmStep(seq *ts.Tensor, state []*ts.Tensor, train bool) (out, h, c *ts.Tensor) {
	if state == nil {
		B := seq.MustSize()[1]
		z := []int64{int64(d.cfg.NumLayers), B, int64(d.cfg.HiddenSize)}
		h0 := ts.MustZeros(z, gotch.Float, d.device)
		c0 := ts.MustZeros(z, gotch.Float, d.device)
		defer h0.MustDrop()
		defer c0.MustDrop()
		state = []*ts.Tensor{h0, c0}
	}
	return ts.MustLstm(seq, state, d.lstm, true, int64(d.cfg.NumLayers), 0, train, false, false)
}

// lstmStepper decodes with the LSTM decoder, without gradient.
type lstmStepper struct {
	d    *lstmDecoder
	h, c *ts.Tensor
}

func (d *lstmDecoder) stepper(pooled *ts.Tensor) Stepper {
	feat := d.head(pooled, false)
	x := feat.MustUnsqueeze(0, true)
	out, h, c := d.lstmStep(x, nil, false)
	x.MustDrop()
	out.MustDrop()
	return &lstmStepper{d: d, h: h, c: c}
}

func (s *lstmStepper) Step(tokens []int64) ([]float32, int) {
	var lp []float32
	torch.NoGrad(func() {
		l := s.logits(tokens).MustLogSoftmax(-1, gotch.Float, true)
		lp = torch.Float32s(l)
		l.MustDrop()
	})
	return lp, s.d.cfg.VocabSize
}

// logits runs one LSTM step and the output layer: R x V logits.
func (s *lstmStepper) logits(tokens []int64) *ts.Tensor {
	tk := torch.FromInt64s(tokens, []int64{1, int64(len(tokens))}, s.d.device)
	emb := ts.MustEmbedding(s.d.embed, tk, -1, false, false)
	tk.MustDrop()
	out, h, c := s.d.lstmStep(emb, []*ts.Tensor{s.h, s.c}, false)
	emb.MustDrop()
	s.h.MustDrop()
	s.c.MustDrop()
	s.h, s.c = h, c
	sq := out.MustSqueezeDim(0, true)
	logits := ts.MustLinear(sq, s.d.linW, s.d.linB)
	sq.MustDrop()
	return logits
}

// StepArgmax is Step followed by the arg max, in one libtorch call.
func (s *lstmStepper) StepArgmax(tokens []int64) ([]int64, []float32) {
	ids, lp, err := torch.GreedyStep(
		s.d.embed,
		s.d.inputTable(),
		s.d.lstm,
		s.d.cfg.NumLayers,
		s.d.linW,
		s.d.linB,
		s.h,
		s.c,
		tokens,
	)
	if err != nil {
		panic(err)
	}
	return ids, lp
}

// StepTopK is Step followed by the top k of every row, in one libtorch call.
func (s *lstmStepper) StepTopK(tokens []int64, k int) ([]int64, []float32) {
	ids, lp, err := torch.TopKStep(
		s.d.embed,
		s.d.inputTable(),
		s.d.lstm,
		s.d.cfg.NumLayers,
		s.d.linW,
		s.d.linB,
		s.h,
		s.c,
		tokens,
		k,
	)
	if err != nil {
		panic(err)
	}
	return ids, lp
}

func (s *lstmStepper) Reorder(rows []int64) {
	torch.NoGrad(func() {
		idx := torch.FromInt64s(rows, []int64{int64(len(rows))}, s.d.device)
		h := s.h.MustIndexSelect(1, idx, true)
		c := s.c.MustIndexSelect(1, idx, true)
		idx.MustDrop()
		s.h, s.c = h, c
	})
}

// Close frees the decoder state.
func (s *lstmStepper) Close() {
	s.h.MustDrop()
	s.c.MustDrop()
}
