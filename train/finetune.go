package train

import "github.com/captiongo/captiongo/model"

// Fine-tuning after warm-up (finetune_epoch, finetune_from, finetune_lr): the
// decoder first learns on the frozen backbone, read from the feature cache
// when there is one; from finetune_epoch on, the backbone's blocks from
// finetune_from to the feature layer train too, with their own Adam (made
// when they start, as the widely used PyTorch tutorial makes its encoder
// optimiser) at finetune_lr times the decoder schedule's factor. The cache
// cannot serve a backbone that trains, so from then on every batch, and
// evaluation, runs the backbone on the images.

// tuningAt says whether the backbone trains in epoch (0-based).
func (r *runner) tuningAt(epoch int) bool {
	return r.cfg.FinetuneEpoch > 0 && epoch+1 >= r.cfg.FinetuneEpoch
}

// startTuning unfreezes the blocks and makes their optimiser with fresh
// moments (a checkpoint's are loaded over them).
func (r *runner) startTuning() error {
	names, params, err := r.m.Tune(r.cfg.FinetuneFrom)
	if err != nil {
		return &ConfigError{Field: "finetune_from", Msg: err.Error()}
	}
	if r.tuneAdam != nil {
		r.tuneAdam.Drop()
	}
	r.tuneAdam = model.NewAdamFor(names, params, r.cfg.WeightDecay)
	var n int64
	for _, p := range params {
		n += int64(p.Numel())
	}
	r.say("fine-tuning the backbone from %s to %s: %d tensors, %.1fM values, lr %g (finetune_epoch %d)",
		r.cfg.FinetuneFrom, r.cfg.layer(), len(params), float64(n)/1e6, r.cfg.FinetuneLR, r.cfg.FinetuneEpoch)
	return nil
}

// useImages switches batches to the images when they came from the cache.
func (r *runner) useImages() {
	if cs, ok := r.src.(*cacheSource); ok {
		r.src = cs.images
		r.say("the feature cache cannot serve a backbone that trains: batches and evaluation run it on the " +
			"images from here on")
	}
}

// tuneLR is the backbone's learning rate when the decoder's is lr: finetune_lr
// under the same schedule (warm-up, cosine or step factor).
func (r *runner) tuneLR(lr float64) float64 { return r.cfg.FinetuneLR * lr / r.cfg.LR }
