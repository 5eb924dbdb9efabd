package model

import (
	"fmt"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
)

// attnDecoder is Show, Attend and Tell's decoder (Xu et al. 2015), with the
// module names of the widely used PyTorch implementation under decoderRNN:
// attention.{encoder_att,decoder_att,full_att}, embed, init_h, init_c,
// f_beta, decode_step (an LSTMCell) and fc.
//
// Per step t: e = full_att(relu(encoder_att(a) + decoder_att(h))), alpha =
// softmax(e) over the P map positions, z = sigmoid(f_beta(h)) * sum(alpha a),
// (h, c) = LSTMCell([embed(w_t), z], (h, c)), logits = fc(dropout(h)). The
// state starts from init_h/init_c of the mean feature.
type attnDecoder struct {
	embed              *ts.Tensor
	encAttW, encAttB   *ts.Tensor
	decAttW, decAttB   *ts.Tensor
	fullAttW, fullAttB *ts.Tensor
	initHW, initHB     *ts.Tensor
	initCW, initCB     *ts.Tensor
	fBetaW, fBetaB     *ts.Tensor
	wIh, wHh, bIh, bHh *ts.Tensor
	fcW, fcB           *ts.Tensor
	dropout            float64
	vocab              int
	device             gotch.Device
}

func init() {
	registerDecoder(DecoderAttention, func(root *nn.Path, cfg Config, device gotch.Device) decoder {
		return newAttnDecoder(root.Sub("decoderRNN"), cfg, device)
	})
}

// rows: attention reads the map's places.
func (d *attnDecoder) rows() bool { return true }

// stepper starts decoding from map rows (N x P x D).
func (d *attnDecoder) stepper(enc *ts.Tensor) Stepper { return &attnStepper{d: d, s: d.start(enc)} }

// EncoderDim is the channel count of Mixed_7c, the map attention reads by default.
const EncoderDim = 2048

func newAttnDecoder(dec *nn.Path, cfg Config, device gotch.Device) *attnDecoder {
	D, A := cfg.FeatureDim(), int64(cfg.AttentionDim)
	E, H, V := int64(cfg.EmbedSize), int64(cfg.HiddenSize), int64(cfg.VocabSize)
	d := &attnDecoder{dropout: cfg.Dropout, vocab: cfg.VocabSize, device: device}
	lin := func(p *nn.Path, out, in int64) (*ts.Tensor, *ts.Tensor) {
		w := p.MustNewVar("weight", []int64{out, in}, uniform(float64(in)))
		b := p.MustNewVar("bias", []int64{out}, uniform(float64(in)))
		return w, b
	}
	att := dec.Sub("attention")
	d.encAttW, d.encAttB = lin(att.Sub("encoder_att"), A, D)
	d.decAttW, d.decAttB = lin(att.Sub("decoder_att"), A, H)
	d.fullAttW, d.fullAttB = lin(att.Sub("full_att"), 1, A)
	d.embed = dec.Sub("embed").MustNewVar("weight", []int64{V, E}, nn.NewUniformInit(-0.1, 0.1))
	d.initHW, d.initHB = lin(dec.Sub("init_h"), H, D)
	d.initCW, d.initCB = lin(dec.Sub("init_c"), H, D)
	d.fBetaW, d.fBetaB = lin(dec.Sub("f_beta"), D, H)
	cell := dec.Sub("decode_step")
	init := uniform(float64(H))
	d.wIh = cell.MustNewVar("weight_ih", []int64{4 * H, E + D}, init)
	d.wHh = cell.MustNewVar("weight_hh", []int64{4 * H, H}, init)
	d.bIh = cell.MustNewVar("bias_ih", []int64{4 * H}, init)
	d.bHh = cell.MustNewVar("bias_hh", []int64{4 * H}, init)
	fc := dec.Sub("fc")
	d.fcW = fc.MustNewVar("weight", []int64{V, H}, nn.NewUniformInit(-0.1, 0.1))
	d.fcB = fc.MustNewVar("bias", []int64{V}, nn.NewConstInit(0))
	return d
}

// attnState is the decoder's state over a batch: the map (R x P x D), its
// projection for attention (R x P x A), and the LSTM state (R x H).
type attnState struct {
	enc, att1, h, c *ts.Tensor
}

func (d *attnDecoder) start(enc *ts.Tensor) *attnState {
	mean := enc.MustMeanDim([]int64{1}, false, gotch.Float, false)
	h := ts.MustLinear(mean, d.initHW, d.initHB)
	c := ts.MustLinear(mean, d.initCW, d.initCB)
	mean.MustDrop()
	att1 := ts.MustLinear(enc, d.encAttW, d.encAttB)
	return &attnState{enc: enc.MustShallowClone(), att1: att1, h: h, c: c}
}

func (s *attnState) drop() {
	for _, t := range []*ts.Tensor{s.enc, s.att1, s.h, s.c} {
		t.MustDrop()
	}
}

// step feeds one embedded token (R x E) and returns the logits (R x V) and
// the attention weights (R x P); the state moves on.
func (d *attnDecoder) step(s *attnState, emb *ts.Tensor, train bool) (logits, alpha *ts.Tensor) {
	att2 := ts.MustLinear(s.h, d.decAttW, d.decAttB).MustUnsqueeze(1, true) // R x 1 x A
	sum := s.att1.MustAdd(att2, false).MustRelu(true)
	att2.MustDrop()
	e := ts.MustLinear(sum, d.fullAttW, d.fullAttB).MustSqueezeDim(2, true) // R x P
	sum.MustDrop()
	alpha = e.MustSoftmax(1, gotch.Float, true)
	a3 := alpha.MustUnsqueeze(1, false)                    // R x 1 x P
	ctx := a3.MustBmm(s.enc, true).MustSqueezeDim(1, true) // R x D
	gate := ts.MustLinear(s.h, d.fBetaW, d.fBetaB).MustSigmoid(true)
	z := ctx.MustMul(gate, true)
	gate.MustDrop()
	in := ts.MustCat([]*ts.Tensor{emb, z}, 1)
	z.MustDrop()
	h, c := ts.MustLstmCell(in, []*ts.Tensor{s.h, s.c}, d.wIh, d.wHh, d.bIh, d.bHh)
	in.MustDrop()
	s.h.MustDrop()
	s.c.MustDrop()
	s.h, s.c = h, c
	hd := dropout(h.MustShallowClone(), d.dropout, train)
	logits = ts.MustLinear(hd, d.fcW, d.fcB)
	hd.MustDrop()
	return logits, alpha
}

// teacher runs teacher forcing over tokens (B x T) on the map features enc
// (B x P x D): logits (T-1) x B x V aligned with tokens[:, 1:], and the
// attention weights (T-1) x B x P.
func (d *attnDecoder) teacher(enc, tokens *ts.Tensor, train bool, ss *ScheduledSampling) (*ts.Tensor, *ts.Tensor) {
	T := tokens.MustSize()[1]
	st := d.start(enc)
	defer st.drop()
	var logits, alphas []*ts.Tensor
	if ss.active() { // each step embeds its own (mixed) tokens
		cols := columns(tokens)
		for t := 0; t < int(T)-1; t++ {
			tok := cols[t]
			if t > 0 {
				tok = ss.mix(tok, logits[t-1])
			}
			ss.record(tok)
			tt := ts.MustOfSlice(tok).MustTo(d.device, true)
			et := ts.MustEmbedding(d.embed, tt, -1, false, false)
			tt.MustDrop()
			l, a := d.step(st, et, train)
			et.MustDrop()
			logits = append(logits, l)
			alphas = append(alphas, a)
		}
	} else {
		inTok := tokens.MustNarrow(1, 0, T-1, false).MustT(true) // (T-1) x B
		emb := ts.MustEmbedding(d.embed, inTok, -1, false, false)
		inTok.MustDrop()
		for t := int64(0); t < T-1; t++ {
			et := emb.MustSelect(0, t, false)
			l, a := d.step(st, et, train)
			et.MustDrop()
			logits = append(logits, l)
			alphas = append(alphas, a)
		}
		emb.MustDrop()
	}
	L := ts.MustStack(logits, 0)
	A := ts.MustStack(alphas, 0)
	for i := range logits {
		logits[i].MustDrop()
		alphas[i].MustDrop()
	}
	return L, A
}

// MapRows turns a N x C x h x w map into the N x (h*w) x C rows attention reads.
func MapRows(f *ts.Tensor, del bool) *ts.Tensor {
	return f.MustFlatten(2, -1, del).MustTranspose(1, 2, true).MustContiguous(true)
}

// AttentionPenalty is the doubly stochastic regularisation of Show, Attend and
// Tell: the mean over images and map positions of (1 - sum over steps of
// alpha)^2, as in the widely used PyTorch implementation, counting only steps
// that predict a real token (not <PAD>).
func AttentionPenalty(alphas, tokens *ts.Tensor) *ts.Tensor {
	T := tokens.MustSize()[1]
	target := tokens.MustNarrow(1, 1, T-1, false).MustT(true) // (T-1) x B
	mask := target.MustNe(ts.IntScalar(data.PAD), true).MustTotype(gotch.Float, true).MustUnsqueeze(2, true)
	masked := alphas.MustMul(mask, false)
	mask.MustDrop()
	sum := masked.MustSumDimIntlist([]int64{0}, false, gotch.Float, true) // B x P
	one := sum.MustRsubScalar(ts.FloatScalar(1), true)
	sq := one.MustSquare(true)
	out := sq.MustMean(gotch.Float, true)
	return out
}

// LossAttention is Loss plus alphaC times the attention penalty (alphas may
// be nil: the LSTM decoder).
func LossAttention(logits, alphas, tokens *ts.Tensor, alphaC float64) *ts.Tensor {
	loss := Loss(logits, tokens)
	if alphas == nil || alphaC == 0 {
		return loss
	}
	pen := AttentionPenalty(alphas, tokens).MustMulScalar(ts.FloatScalar(alphaC), true)
	out := loss.MustAdd(pen, true)
	pen.MustDrop()
	return out
}

// AttentionWeights teacher-forces captions (tokens B x T: <SOS> words <EOS>)
// on features from Features, in eval mode without gradient, and returns each
// word's attention weights: [image][word][position] for the T-1 predicted
// tokens (the last one is <EOS>).
func (m *Captioner) AttentionWeights(feat, tokens *ts.Tensor) ([][][]float32, error) {
	d, ok := m.dec.(*attnDecoder)
	if !ok {
		return nil, fmt.Errorf("the %q decoder has no attention weights (decoder = \"attention\" has)", m.Cfg.Decoder)
	}
	var flat []float32
	var shape []int64
	torch.NoGrad(func() {
		l, a := d.teacher(feat, tokens, false, nil)
		l.MustDrop()
		shape = a.MustSize() // (T-1) x B x P
		flat = torch.Float32s(a)
		a.MustDrop()
	})
	T1, B, P := int(shape[0]), int(shape[1]), int(shape[2])
	out := make([][][]float32, B)
	for b := range out {
		out[b] = make([][]float32, T1)
		for t := range out[b] {
			out[b][t] = flat[(t*B+b)*P : (t*B+b+1)*P]
		}
	}
	return out, nil
}

// CaptionAttention teacher-forces a caption on one image's features (1 x P x
// D, from Features) and returns its tokens after <SOS> (the words as the
// vocabulary spells them, then <EOS>) with each one's attention weights.
func (m *Captioner) CaptionAttention(
	vocab *data.Vocab,
	feat *ts.Tensor,
	caption string,
) ([]string, [][]float32, error) {
	ids := vocab.Encode(caption)
	tok := make([]int64, len(ids))
	words := make([]string, 0, len(ids)-1)
	for i, id := range ids {
		tok[i] = int64(id)
		if i > 0 {
			words = append(words, vocab.Itos[id])
		}
	}
	tt := torch.FromInt64s(tok, []int64{1, int64(len(tok))}, m.Device())
	defer tt.MustDrop()
	ws, err := m.AttentionWeights(feat, tt)
	if err != nil {
		return nil, nil, err
	}
	return words, ws[0], nil
}

// attnStepper decodes with the attention decoder, without gradient. With
// record set it keeps every step's attention weights (rows x P, row-major).
type attnStepper struct {
	d      *attnDecoder
	s      *attnState
	record bool
	alphas [][]float32
}

func (a *attnStepper) Step(tokens []int64) ([]float32, int) {
	var lp []float32
	torch.NoGrad(func() {
		tk := torch.FromInt64s(tokens, []int64{int64(len(tokens))}, a.d.device)
		emb := ts.MustEmbedding(a.d.embed, tk, -1, false, false)
		tk.MustDrop()
		logits, alpha := a.d.step(a.s, emb, false)
		emb.MustDrop()
		if a.record {
			a.alphas = append(a.alphas, torch.Float32s(alpha))
		}
		alpha.MustDrop()
		l := logits.MustLogSoftmax(-1, gotch.Float, true)
		lp = torch.Float32s(l)
		l.MustDrop()
	})
	return lp, a.d.vocab
}

func (a *attnStepper) Reorder(rows []int64) {
	torch.NoGrad(func() {
		idx := torch.FromInt64s(rows, []int64{int64(len(rows))}, a.d.device)
		for _, t := range []**ts.Tensor{&a.s.enc, &a.s.att1, &a.s.h, &a.s.c} {
			*t = (*t).MustIndexSelect(0, idx, true)
		}
		idx.MustDrop()
	})
}

// Close frees the decoder state.
func (a *attnStepper) Close() { a.s.drop() }
