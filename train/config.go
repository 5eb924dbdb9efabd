// Package train runs experiments: a TOML config over defaults, the training
// loop (Adam, clipping, schedule, validation loss, BLEU-4/CIDEr-D each epoch,
// best checkpoint, early stopping), atomic checkpoints that a killed run
// resumes from, and TensorBoard logs. Sweeps over experiments are package sweep.
package train

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// Config is one experiment. Every key has a default in DefaultConfig; a TOML
// file overrides some, and -set key=value overrides the file.
type Config struct {
	// run name: the run goes to out_dir/name (default: the file's name)
	Name string `toml:"name"`
	// where runs go
	OutDir string `toml:"out_dir"`

	// Data.
	// "synth" (built-in shapes) or a data set folder / Karpathy or COCO JSON
	Data string `toml:"data"`
	// auto, kaggle, flickr8k, karpathy, coco
	Format data.Format `toml:"format"`
	// pictures in the synthetic set
	SynthN int `toml:"synth_n"`
	// its seed
	SynthSeed uint64 `toml:"synth_seed"`
	// split by image for sets without their own split
	SplitSeed  uint64  `toml:"split_seed"`
	TrainRatio float64 `toml:"train_ratio"`
	ValRatio   float64 `toml:"val_ratio"`
	TestRatio  float64 `toml:"test_ratio"`
	// words seen fewer times in train become <UNK>
	FreqThreshold int `toml:"freq_threshold"`
	// Resize((n, n))
	ImageSize int `toml:"image_size"`
	// crop side after resizing (0 = none)
	Crop int `toml:"crop"`
	// random crop in training (centre crop otherwise)
	RandomCrop bool `toml:"random_crop"`
	// "half" (mean = std = 0.5, the baseline) or "imagenet"
	Normalize Norm `toml:"normalize"`
	// Flickr8k: folder with Flickr_8k.{train,dev,test}Images.txt that assign the splits
	SplitLists string `toml:"split_lists"`

	// Model.
	// "lstm" (the baseline) or "attention" (Show, Attend and Tell over the Mixed_7c map)
	Decoder model.DecoderKind `toml:"decoder"`
	// attention: size of the attention layer
	AttentionDim int `toml:"attention_dim"`
	// attention: weight of the doubly stochastic regularisation
	AlphaC float64 `toml:"alpha_c"`
	// backbone map the decoder reads: Mixed_7c (the baseline), Mixed_6e or Mixed_5d
	FeatureLayer model.Layer `toml:"feature_layer"`
	EmbedSize    int         `toml:"embed_size"`
	HiddenSize   int         `toml:"hidden_size"`
	NumLayers    int         `toml:"num_layers"`
	// the head's and the word embeddings' dropout
	Dropout float64 `toml:"dropout"`
	// torchvision Inception3's dropout before fc, in training (lstm decoder)
	BackboneDropout float64 `toml:"backbone_dropout"`
	// fine-tune the backbone (else frozen, BatchNorm in eval mode)
	TrainCNN bool `toml:"train_cnn"`
	// "" (random init), "torchvision", "fid-inception" (make setup), or a .pth / TorchScript / gotch file
	Weights string `toml:"weights"`
	// Inception-v3 variant: auto (from the weights file), torchvision or fid
	Backbone model.BackboneKind `toml:"backbone"`
	// fine-tune the backbone after warm-up: from this epoch (1-based; 0 = never) the blocks from
	// finetune_from to feature_layer train at finetune_lr (BatchNorm statistics stay frozen); earlier
	// epochs may read the feature cache, later ones run the backbone on the images
	FinetuneEpoch int         `toml:"finetune_epoch"`
	FinetuneFrom  model.Block `toml:"finetune_from"`
	FinetuneLR    float64     `toml:"finetune_lr"`
	// torchvision's transform_input (for Google's weights with ImageNet normalisation)
	TransformInput bool `toml:"transform_input"`
	// randomly initialised backbone only: set its BatchNorm statistics from this many training batches first
	CalibrateBN int `toml:"calibrate_bn"`

	// Optimisation.
	Epochs    int `toml:"epochs"`
	BatchSize int `toml:"batch_size"`
	// Adam learning rate
	LR float64 `toml:"lr"`
	// constant, cosine or step
	LRSchedule Schedule `toml:"lr_schedule"`
	// step schedule: multiply by lr_gamma every n epochs
	LRStepEpochs int     `toml:"lr_step_epochs"`
	LRGamma      float64 `toml:"lr_gamma"`
	// linear warm-up from 0
	WarmupSteps int `toml:"warmup_steps"`
	// clip the global gradient norm (0 = off)
	GradClip float64 `toml:"grad_clip"`
	// L2 added to the gradient, as torch.optim.Adam
	WeightDecay float64 `toml:"weight_decay"`
	// "all": every caption every epoch (the baseline); "one": one random caption per image per epoch
	CaptionSampling Sampling `toml:"caption_sampling"`
	// run a frozen backbone once per image (needs train_cnn = false, random_crop = false)
	FeatureCache bool `toml:"feature_cache"`
	// how the cache stores features: "float32", or "float16" (half the disk and reads; see docs/TRAINING.md)
	FeatureCacheDtype Dtype `toml:"feature_cache_dtype"`
	// also checkpoint every n steps inside an epoch (0 = epoch ends only)
	CheckpointEvery int `toml:"checkpoint_every"`

	// Scheduled sampling (cross-entropy training): from epoch ss_start (0-based; -1 = off) the
	// probability of feeding the model's own sample instead of the true word starts at 0 and
	// rises by ss_increase_prob every ss_increase_every epochs, up to ss_max_prob.
	SSStart         int     `toml:"ss_start"`
	SSIncreaseEvery int     `toml:"ss_increase_every"`
	SSIncreaseProb  float64 `toml:"ss_increase_prob"`
	SSMaxProb       float64 `toml:"ss_max_prob"`

	// Self-critical training.
	// "xe" (cross-entropy, teacher forcing) or "scst" (self-critical sequence training)
	Training Training `toml:"training"`
	// a run folder (or weight file) whose weights and vocabulary the run starts from; scst needs one
	InitFrom string `toml:"init_from"`
	// scst: captions sampled per image
	SCSTSamples int `toml:"scst_samples"`
	// scst: sampling temperature (softmax(log p / t))
	SCSTTemperature float64 `toml:"scst_temperature"`
	// scst: what a sample's reward is compared with: "greedy" (the greedy caption's) or "mean" (the other samples')
	SCSTBaseline SCSTBaseline `toml:"scst_baseline"`
	// scst: the reward: CIDEr-D against the image's references, idf from the training split
	SCSTReward Reward `toml:"scst_reward"`

	// Evaluation.
	// decoding stops after this many tokens
	MaxLen int `toml:"max_len"`
	// beam size for the metrics (1 = greedy)
	Beam int `toml:"beam"`
	// val images decoded for the metrics each epoch (0 = all)
	EvalImages int `toml:"eval_images"`
	// val images shown in TensorBoard each epoch
	SampleImages int `toml:"sample_images"`
	// CIDEr, Bleu_4 or val_loss: picks best.gt
	BestMetric Metric `toml:"best_metric"`
	// stop after n epochs without a better best_metric (0 = never)
	Patience int `toml:"patience"`

	// System.
	// auto, cpu or cuda
	Device torch.DeviceName `toml:"device"`
	// libtorch intra-op threads (0 = libtorch's default)
	Threads int `toml:"threads"`
	// image decode goroutines (0 = CPUs)
	Workers int `toml:"workers"`
	// model init, shuffling, dropout
	Seed int64 `toml:"seed"`
	// continue out_dir/name from its last checkpoint
	Resume bool `toml:"resume"`
	// plain progress lines every n steps when stdout is not a terminal
	LogEvery int `toml:"log_every"`
	// TensorBoard histograms of every trained weight and its last gradient, each epoch
	Histograms bool `toml:"histograms"`
}

// ModelConfig is the captioner architecture this experiment describes, for a
// vocabulary of vocabSize tokens (training builds it, inference rebuilds it
// from the checkpoint's config).
func (c Config) ModelConfig(vocabSize int) model.Config {
	return model.Config{VocabSize: vocabSize, EmbedSize: c.EmbedSize, HiddenSize: c.HiddenSize,
		NumLayers: c.NumLayers, Dropout: c.Dropout, BackboneDropout: c.BackboneDropout, TrainCNN: c.TrainCNN,
		TransformInput: c.TransformInput, Decoder: c.Decoder, AttentionDim: c.AttentionDim, FeatureLayer: c.FeatureLayer,
		Backbone: c.backboneKind()}
}

// ssProb is scheduled sampling's probability in an epoch (0-based), as the
// widely used PyTorch captioning code schedules it: 0 before ss_start, then
// ss_increase_prob * floor((epoch - ss_start) / ss_increase_every), at most
// ss_max_prob.
func (c Config) ssProb(epoch int) float64 {
	if c.SSStart < 0 || epoch < c.SSStart {
		return 0
	}
	return math.Min(c.SSIncreaseProb*float64((epoch-c.SSStart)/c.SSIncreaseEvery), c.SSMaxProb)
}

// BackboneAuto is the backbone value that lets the weights file decide.
const BackboneAuto model.BackboneKind = "auto"

// backboneKind is the resolved backbone variant; "auto" (unresolved) and ""
// (runs from before the key existed) are torchvision's.
func (c Config) backboneKind() model.BackboneKind {
	if c.Backbone == BackboneAuto {
		return model.BackboneTorchvision
	}
	k, _ := model.ParseBackboneKind(string(c.Backbone))
	return k
}

// Transforms are the experiment's image pipelines: training (a random crop
// when random_crop is on) and evaluation (the centre crop).
func (c Config) Transforms() (trainTF, evalTF data.Transform) {
	norm := data.HalfMeanStd
	if c.Normalize == NormImageNet {
		norm = data.ImageNetMeanStd
	}
	trainTF = data.Transform{Size: c.ImageSize, Crop: c.Crop, Random: c.RandomCrop, Mean: norm[0], Std: norm[1]}
	evalTF = trainTF
	evalTF.Random = false
	return trainTF, evalTF
}

// DataOptions are the data.Load options this experiment describes.
func (c Config) DataOptions() data.Options {
	return data.Options{
		Format:     c.Format,
		Seed:       c.SplitSeed,
		Ratios:     [3]float64{c.TrainRatio, c.ValRatio, c.TestRatio},
		SplitLists: c.SplitLists,
	}
}

// DefaultConfig is the baseline's configuration on the built-in synthetic data.
func DefaultConfig() Config {
	return Config{
		OutDir: "runs", Data: "synth", Format: data.FormatAuto, SynthN: 2000, SynthSeed: 1,
		SplitSeed: 1, TrainRatio: 0.8, ValRatio: 0.1, TestRatio: 0.1, FreqThreshold: 5,
		ImageSize: 356, Crop: 299, RandomCrop: true, Normalize: NormHalf,
		Decoder: model.DecoderLSTM, AttentionDim: 512, AlphaC: 1, FeatureLayer: model.Mixed7c, EmbedSize: 256,
		HiddenSize: 256, NumLayers: 1, Dropout: 0.5, BackboneDropout: 0.5,
		Epochs: 100, BatchSize: 32, LR: 3e-4, LRSchedule: ScheduleConstant, LRStepEpochs: 30, LRGamma: 0.1,
		CaptionSampling: SampleAll, FeatureCache: true, FeatureCacheDtype: DtypeFloat32,
		MaxLen: 50, Beam: 1, EvalImages: 500, SampleImages: 4,
		SSStart: -1, SSIncreaseEvery: 5, SSIncreaseProb: 0.05, SSMaxProb: 0.25,
		Training: TrainXE, SCSTSamples: 5, SCSTTemperature: 1, SCSTBaseline: BaselineGreedy, SCSTReward: RewardCIDErD,
		BestMetric: MetricCIDEr, Device: torch.DeviceAuto, Seed: 1, LogEvery: 50, Backbone: BackboneAuto,
		FinetuneFrom: "Mixed_7a", FinetuneLR: 1e-4,
	}
}

// ConfigError is a config problem with where it is.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if loc == "" {
		loc = "config"
	}
	if e.Field != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// LoadConfig reads defaults, then the file (if any), then the -set overrides,
// and validates. Unknown keys, wrong types and impossible values are errors
// naming the file, line and field.
func LoadConfig(path string, sets []string) (Config, error) {
	cfg := DefaultConfig()
	var src []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, &ConfigError{
				File: path,
				Msg:  "cannot read: " + strings.TrimPrefix(err.Error(), "open "+path+": "),
			}
		}
		src = b
		md, err := toml.Decode(string(b), &cfg)
		if err != nil {
			return cfg, TOMLError(path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			k := und[0].String()
			return cfg, &ConfigError{
				File:  path,
				Line:  KeyLine(b, k),
				Field: k,
				Msg:   "unknown key (known keys: " + strings.Join(Keys(), ", ") + ")",
			}
		}
		if cfg.Name == "" {
			cfg.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
	}
	for _, s := range sets {
		if err := applySet(&cfg, s); err != nil {
			return cfg, err
		}
	}
	if cfg.Name == "" {
		cfg.Name = "run"
	}
	if err := cfg.Validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = path
			if src != nil && ce.Field != "" {
				ce.Line = KeyLine(src, ce.Field)
			}
			if overridden(sets, ce.Field) {
				ce.File, ce.Line = "-set "+ce.Field, 0
			}
		}
		return cfg, err
	}
	return cfg, nil
}

func overridden(sets []string, field string) bool {
	for _, s := range sets {
		if k, _, _ := strings.Cut(s, "="); strings.TrimSpace(k) == field {
			return true
		}
	}
	return false
}

var tomlLine = regexp.MustCompile(`line (\d+)`)

// TOMLError is a TOML decoding error as a ConfigError naming the file and line.
func TOMLError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &ConfigError{File: path, Line: pe.Position.Line, Field: pe.LastKey, Msg: pe.Message}
	}
	msg := err.Error()
	ce := &ConfigError{File: path, Msg: strings.TrimPrefix(msg, "toml: ")}
	if m := tomlLine.FindStringSubmatch(msg); m != nil {
		fmt.Sscan(m[1], &ce.Line)
	}
	return ce
}

// KeyLine finds the line that sets key in a flat TOML file (0 if none).
func KeyLine(src []byte, key string) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i, l := range bytes.Split(src, []byte("\n")) {
		if re.Match(l) {
			return i + 1
		}
	}
	return 0
}

// applySet applies one -set key=value (value in TOML syntax; a bare word is
// taken as a string).
func applySet(cfg *Config, s string) error {
	k, v, ok := strings.Cut(s, "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" {
		return &ConfigError{File: "-set", Msg: fmt.Sprintf("%q: want key=value", s)}
	}
	if !KnownKey(k) {
		return &ConfigError{File: "-set", Field: k, Msg: "unknown key (known keys: " + strings.Join(Keys(), ", ") + ")"}
	}
	try := func(val string) error {
		_, err := toml.Decode(k+" = "+val, cfg)
		return err
	}
	if err := try(v); err != nil {
		if err2 := try(fmt.Sprintf("%q", v)); err2 != nil {
			return &ConfigError{File: "-set", Field: k, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		}
	}
	return nil
}

// Keys lists the config keys in order.
func Keys() []string {
	t := reflect.TypeOf(Config{})
	out := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		out = append(out, t.Field(i).Tag.Get("toml"))
	}
	return out
}

// KnownKey says whether k is a config key.
func KnownKey(k string) bool {
	for _, x := range Keys() {
		if x == k {
			return true
		}
	}
	return false
}

func bad(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Metric is a measure best.gt can be chosen by.
type Metric string

// The measures.
const (
	MetricCIDEr   Metric = "CIDEr"
	MetricBleu4   Metric = "Bleu_4"
	MetricValLoss Metric = "val_loss" // the one where lower is better
)

// Metrics lists them.
var Metrics = []Metric{MetricCIDEr, MetricBleu4, MetricValLoss}

// HigherIsBetter reports the metric's direction.
func (m Metric) HigherIsBetter() bool { return m != MetricValLoss }

// Norm is an input normalisation.
type Norm string

// The normalisations.
const (
	NormHalf     Norm = "half"     // mean = std = 0.5 (the baseline; Google's weights)
	NormImageNet Norm = "imagenet" // torchvision's ImageNet mean and std
)

// Norms lists them.
var Norms = []Norm{NormHalf, NormImageNet}

// Schedule is a learning-rate schedule.
type Schedule string

// The schedules.
const (
	ScheduleConstant Schedule = "constant"
	ScheduleCosine   Schedule = "cosine" // per step, over all epochs
	ScheduleStep     Schedule = "step"   // lr_gamma every lr_step_epochs
)

// Schedules lists them.
var Schedules = []Schedule{ScheduleConstant, ScheduleCosine, ScheduleStep}

// Sampling says which captions an epoch trains on.
type Sampling string

// The samplings.
const (
	SampleAll Sampling = "all" // every caption every epoch (the baseline)
	SampleOne Sampling = "one" // one random caption per image per epoch
)

// Training is how the decoder learns.
type Training string

// The trainings.
const (
	TrainXE   Training = "xe"   // cross-entropy with teacher forcing (the baseline)
	TrainSCST Training = "scst" // self-critical sequence training from an xe checkpoint
)

// Trainings lists them.
var Trainings = []Training{TrainXE, TrainSCST}

// SCSTBaseline is what a sampled caption's reward is compared with.
type SCSTBaseline string

// The baselines.
const (
	BaselineGreedy SCSTBaseline = "greedy" // the reward of the image's greedy caption (Rennie et al.)
	BaselineMean   SCSTBaseline = "mean"   // the mean reward of the image's other samples
)

// SCSTBaselines lists them.
var SCSTBaselines = []SCSTBaseline{BaselineGreedy, BaselineMean}

// Reward is self-critical training's reward metric.
type Reward string

// RewardCIDErD is CIDEr-D against the image's references, with document
// frequencies from the training split's references.
const RewardCIDErD Reward = "CIDEr-D"

// Rewards lists them.
var Rewards = []Reward{RewardCIDErD}

// Dtype is how the feature cache stores values.
type Dtype string

// The cache's precisions.
const (
	DtypeFloat32 Dtype = "float32"
	DtypeFloat16 Dtype = "float16"
)

// Dtypes lists them.
var Dtypes = []Dtype{DtypeFloat32, DtypeFloat16}

// Samplings lists them.
var Samplings = []Sampling{SampleAll, SampleOne}

// oneOf accepts v if it is one of opts, or names the field and the choices.
func oneOf[T ~string](field string, v T, opts ...T) error {
	names := make([]string, len(opts))
	for i, o := range opts {
		if v == o {
			return nil
		}
		names[i] = string(o)
	}
	return bad(field, "%q: want one of %s", v, strings.Join(names, ", "))
}

// Validate rejects impossible values, naming the field.
func (c Config) Validate() error {
	checks := []error{
		oneOf("format", c.Format, data.Formats...),
		oneOf("normalize", c.Normalize, Norms...),
		oneOf("decoder", c.Decoder, model.DecoderKinds...),
		oneOf("feature_layer", c.FeatureLayer, model.Layers...),
		oneOf("backbone", c.Backbone, append([]model.BackboneKind{BackboneAuto}, model.BackboneKinds()...)...),
		oneOf("lr_schedule", c.LRSchedule, Schedules...),
		oneOf("best_metric", c.BestMetric, Metrics...),
		oneOf("device", c.Device, torch.DeviceNames...),
		oneOf("caption_sampling", c.CaptionSampling, Samplings...),
		oneOf("training", c.Training, Trainings...),
		oneOf("scst_baseline", c.SCSTBaseline, SCSTBaselines...),
		oneOf("scst_reward", c.SCSTReward, Rewards...),
		oneOf("feature_cache_dtype", c.FeatureCacheDtype, Dtypes...),
	}
	for _, e := range checks {
		if e != nil {
			return e
		}
	}
	switch {
	case c.Data == "":
		return bad("data", "empty: want \"synth\" or a data set folder")
	case c.Data == "synth" && c.SynthN < 10:
		return bad("synth_n", "%d: want at least 10 pictures", c.SynthN)
	case c.FreqThreshold < 1:
		return bad("freq_threshold", "%d: must be at least 1", c.FreqThreshold)
	case c.ImageSize < 75:
		return bad("image_size", "%d: Inception-v3 needs at least 75", c.ImageSize)
	case c.Crop != 0 && (c.Crop < 75 || c.Crop > c.ImageSize):
		return bad("crop", "%d: want 0 or 75..image_size (%d)", c.Crop, c.ImageSize)
	case c.EmbedSize <= 0:
		return bad("embed_size", "%d: must be positive", c.EmbedSize)
	case c.HiddenSize <= 0:
		return bad("hidden_size", "%d: must be positive", c.HiddenSize)
	case c.NumLayers <= 0:
		return bad("num_layers", "%d: must be positive", c.NumLayers)
	case c.Decoder == model.DecoderAttention && c.NumLayers != 1:
		return bad("num_layers", "%d: the attention decoder has one LSTM cell (set num_layers = 1)", c.NumLayers)
	case c.Decoder == model.DecoderAttention && c.AttentionDim <= 0:
		return bad("attention_dim", "%d: must be positive", c.AttentionDim)
	case c.AlphaC < 0:
		return bad("alpha_c", "%v: must not be negative", c.AlphaC)
	case c.Dropout < 0 || c.Dropout >= 1:
		return bad("dropout", "%v: must be in [0, 1)", c.Dropout)
	case c.BackboneDropout < 0 || c.BackboneDropout >= 1:
		return bad("backbone_dropout", "%v: must be in [0, 1)", c.BackboneDropout)
	case c.Epochs <= 0:
		return bad("epochs", "%d: must be positive", c.Epochs)
	case c.BatchSize <= 0:
		return bad("batch_size", "%d: must be positive", c.BatchSize)
	case c.LR <= 0:
		return bad("lr", "%v: must be positive", c.LR)
	case c.LRGamma <= 0 || c.LRGamma > 1:
		return bad("lr_gamma", "%v: want (0, 1]", c.LRGamma)
	case c.LRStepEpochs <= 0:
		return bad("lr_step_epochs", "%d: must be positive", c.LRStepEpochs)
	case c.WarmupSteps < 0 || c.GradClip < 0 || c.WeightDecay < 0:
		return bad("warmup_steps", "warmup_steps, grad_clip and weight_decay must not be negative")
	case c.MaxLen < 1:
		return bad("max_len", "%d: must be positive", c.MaxLen)
	case c.Training == TrainSCST && c.InitFrom == "":
		return bad("init_from", "empty: scst training starts from a cross-entropy run (init_from = \"runs/<run>\")")
	case c.Training == TrainSCST && (c.SCSTSamples < 1 || (c.SCSTBaseline == BaselineMean && c.SCSTSamples < 2)):
		return bad("scst_samples", "%d: want at least 1 (2 with scst_baseline = \"mean\")", c.SCSTSamples)
	case c.SSStart < -1 || c.SSIncreaseEvery < 1:
		return bad("ss_start", "ss_start %d (want -1 or an epoch) and ss_increase_every %d (want >= 1)", c.SSStart,
			c.SSIncreaseEvery)
	case c.SSIncreaseProb < 0 || c.SSMaxProb < 0 || c.SSMaxProb > 1:
		return bad("ss_max_prob", "ss_increase_prob %v and ss_max_prob %v: want probabilities", c.SSIncreaseProb,
			c.SSMaxProb)
	case c.SCSTTemperature <= 0:
		return bad("scst_temperature", "%v: must be positive", c.SCSTTemperature)
	case c.Training == TrainSCST && c.TrainCNN:
		return bad("train_cnn", "true: scst training here keeps the backbone frozen")
	case c.FinetuneEpoch < 0:
		return bad("finetune_epoch", "%d: want 0 (never) or the epoch (1-based) from which the backbone trains",
			c.FinetuneEpoch)
	case c.FinetuneEpoch > 0 && c.TrainCNN:
		return bad("finetune_epoch", "%d with train_cnn = true: train_cnn trains the whole backbone from the start "+
			"(set one of them)", c.FinetuneEpoch)
	case c.FinetuneEpoch > 0 && c.Training == TrainSCST:
		return bad("finetune_epoch", "%d: scst training here keeps the backbone frozen", c.FinetuneEpoch)
	case c.FinetuneEpoch > 0 && model.BlockIndex(c.FinetuneFrom) < 0:
		return bad("finetune_from", "%q: want one of %v", c.FinetuneFrom, model.Blocks)
	case c.FinetuneEpoch > 0 && model.BlockIndex(c.FinetuneFrom) > model.BlockIndex(model.Block(c.layer())):
		return bad("finetune_from", "%s comes after feature_layer %s: that block never runs", c.FinetuneFrom,
			c.layer())
	case c.FinetuneEpoch > 0 && c.FinetuneLR <= 0:
		return bad("finetune_lr", "%v: must be positive", c.FinetuneLR)
	case c.FinetuneEpoch == 1 && c.FeatureCache:
		return bad("feature_cache", "true cannot serve finetune_epoch = 1: the backbone trains from the first "+
			"epoch, so every batch runs it on the images (set feature_cache = false, or finetune_epoch >= 2 "+
			"to read the cache while the decoder warms up)")
	case c.Beam < 1:
		return bad("beam", "%d: must be at least 1", c.Beam)
	case c.CalibrateBN < 0:
		return bad("calibrate_bn", "%d: must not be negative", c.CalibrateBN)
	case c.EvalImages < 0 || c.SampleImages < 0 || c.Patience < 0 || c.Threads < 0 || c.Workers < 0 ||
		c.CheckpointEvery < 0:
		return bad(
			"eval_images",
			"counts (eval_images, sample_images, patience, threads, workers, checkpoint_every) must not be negative",
		)
	case c.LogEvery <= 0:
		return bad("log_every", "%d: must be positive", c.LogEvery)
	}
	if r := c.TrainRatio + c.ValRatio + c.TestRatio; c.TrainRatio <= 0 || c.ValRatio < 0 || c.TestRatio < 0 ||
		r < 0.999 || r > 1.001 {
		return bad(
			"train_ratio",
			"train_ratio %v, val_ratio %v, test_ratio %v: want non-negative ratios (train > 0) summing to 1",
			c.TrainRatio,
			c.ValRatio,
			c.TestRatio,
		)
	}
	if strings.ContainsAny(c.Name, "/\\") || c.Name == "." || c.Name == ".." {
		return bad("name", "%q: a run name, not a path", c.Name)
	}
	return nil
}

// TOML renders the resolved config (printed at start, saved in the run).
func (c Config) TOML() string {
	var b bytes.Buffer
	toml.NewEncoder(&b).Encode(c)
	return b.String()
}

// ArchKeys are the keys a checkpoint must share with a run that resumes it.
var ArchKeys = []string{
	"backbone",
	"decoder",
	"attention_dim",
	"feature_layer",
	"embed_size",
	"hidden_size",
	"num_layers",
	"train_cnn",
	"image_size",
	"crop",
	"normalize",
	"transform_input",
	"data",
	"freq_threshold",
}

// archDiff names the architecture keys on which two configs differ.
func archDiff(a, b Config) []string {
	for _, c := range []*Config{&a, &b} {
		if c.FeatureLayer == "" { // runs from before feature_layer existed
			c.FeatureLayer = model.Mixed7c
		}
		if c.Backbone == "" { // runs from before backbone existed
			c.Backbone = model.BackboneTorchvision
		}
		if c.Decoder != model.DecoderAttention { // attention_dim shapes nothing then
			c.AttentionDim = 0
		}
	}
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	t := va.Type()
	var out []string
	for i := 0; i < t.NumField(); i++ {
		k := t.Field(i).Tag.Get("toml")
		for _, ak := range ArchKeys {
			if k == ak && !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
				out = append(out, fmt.Sprintf("%s (%v -> %v)", k, va.Field(i).Interface(), vb.Field(i).Interface()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// layer is the feature layer the decoder reads (Mixed_7c when unset).
func (c Config) layer() model.Layer { return model.Config{FeatureLayer: c.FeatureLayer}.Layer() }
