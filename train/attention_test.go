package train

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
	"github.com/captiongo/captiongo/train/tensorboard"
)

// TestAttentionDecoderTrains trains the attention decoder on the tiny
// synthetic set at 139 px (a 3 x 3 map) from images and from the feature
// cache: the two give the same losses (the cache holds the maps, not pooled
// features), the loss falls, and decoding a checkpoint works.
func TestAttentionDecoderTrains(t *testing.T) {
	out := t.TempDir()
	cfg := tiny(t, out)
	cfg.Decoder, cfg.AttentionDim, cfg.AlphaC = "attention", 24, 1
	cfg.ImageSize, cfg.Epochs, cfg.CaptionSampling = 139, 2, "one"
	cfg.Name, cfg.FeatureCache = "att-images", false
	var log strings.Builder
	a, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	cfg.Name, cfg.FeatureCache = "att-cache", true
	log.Reset()
	b, err := runIt(t, cfg, Options{Out: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "feature cache:") {
		t.Fatalf("no feature cache:\n%s", log.String())
	}
	for i := range a.State.History {
		ha, hb := a.State.History[i], b.State.History[i]
		if d := ha.TrainLoss - hb.TrainLoss; d > 1e-4 || d < -1e-4 {
			t.Errorf("epoch %d: train loss %.6f from images, %.6f from the cache", i+1, ha.TrainLoss, hb.TrainLoss)
		}
		if d := ha.ValLoss - hb.ValLoss; d > 1e-4 || d < -1e-4 {
			t.Errorf("epoch %d: val loss %.6f from images, %.6f from the cache", i+1, ha.ValLoss, hb.ValLoss)
		}
	}
	if h := b.State.History; h[1].TrainLoss >= h[0].TrainLoss {
		t.Errorf("loss did not fall: %+v", h)
	}
	// The samples' attention maps are in TensorBoard and on disk each epoch.
	files, _ := filepath.Glob(filepath.Join(b.RunDir, "events.out.tfevents.*"))
	evs, err := tensorboard.ReadEvents(files[0])
	if err != nil {
		t.Fatal(err)
	}
	maps := map[int64]int{}
	for _, e := range evs {
		for _, v := range e.Values {
			if strings.HasPrefix(v.Tag, "attention/image") && len(v.ImagePNG) > 0 && v.ImageW >= 128 {
				maps[e.Step]++
			}
		}
	}
	if len(maps) != 2 {
		t.Errorf("attention maps logged at steps %v, want both epochs", maps)
	}
	pngs, _ := filepath.Glob(filepath.Join(b.RunDir, "attention", "epoch002-*.png"))
	if len(pngs) == 0 {
		t.Errorf("no attention PNGs in %s/attention", b.RunDir)
	}
	// A wrong combination is refused with the field named.
	bad := cfg
	bad.NumLayers = 2
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "num_layers") {
		t.Errorf("attention with 2 layers: %v", err)
	}
	// The cache's rows are maps: 9 positions x 2048.
	err = torch.Run(func() error {
		m, err := model.NewCaptioner(model.Config{VocabSize: 10, EmbedSize: 8, HiddenSize: 8, NumLayers: 1, Decoder: "attention", AttentionDim: 8}, gotch.CPU)
		if err != nil {
			return err
		}
		c := &FeatureCache{dim: 9 * model.EncoderDim, maps: m.Cfg.Attention(), chans: m.Cfg.FeatureDim()}
		if got := c.Shape(4); len(got) != 3 || got[1] != 9 || got[2] != 2048 {
			t.Errorf("cache shape %v", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
