// Package runfolder owns a training run's folder: the names of its files and
// the manifest that everything after training reads (captioning, evaluation,
// explanations). Training writes the manifest atomically with every
// checkpoint; nothing outside training needs the trainer's own state.
package runfolder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/model"
)

// The files of a run folder.
const (
	State    = "state.json"    // the trainer's resume state (train.State)
	Manifest = "manifest.json" // what inference needs (Info)
	Vocab    = "vocab.json"
	Best     = "best.gt"   // weights of the best epoch
	BestInfo = "best.json" // that epoch, metric and value
	Config   = "config.toml"
	Slurm    = "slurm" // a run submitted with train -backend slurm: its sbatch scripts and Slurm's logs
)

// Info is manifest.json: the model, how its images were prepared, where its
// data is, and which weights are best by which measure.
type Info struct {
	Model     model.Config   `json:"model"`
	Transform data.Transform `json:"eval_transform"`
	// Data is the data folder as training read it (the synthetic set's folder
	// when it trained on the built-in data), with the options that split it.
	Data        string       `json:"data"`
	DataOptions data.Options `json:"data_options"`
	Vocab       string       `json:"vocab"`   // file name in the run folder
	Weights     string       `json:"weights"` // the last checkpoint's weights, relative to the run folder
	Epoch       int          `json:"epoch"`   // epochs done
	Step        int64        `json:"step"`
	Finished    bool         `json:"finished"`
	BestMetric  BestMetric   `json:"best_metric"`
}

// BestMetric names the measure best.gt was chosen by, its value and its
// direction, so a reader never has to know how the trainer stores it.
type BestMetric struct {
	Name           string  `json:"name"` // CIDEr, Bleu_4 or val_loss
	Value          float64 `json:"value"`
	HigherIsBetter bool    `json:"higher_is_better"`
	Epoch          int     `json:"epoch"` // 0: no epoch finished yet
}

// Write stores the manifest in dir atomically.
func Write(dir string, info Info) error {
	b, err := json.MarshalIndent(info, "", " ")
	if err != nil {
		return err
	}
	return data.WriteFileAtomic(filepath.Join(dir, Manifest), append(b, '\n'))
}

// Run is an opened run folder.
type Run struct {
	Dir     string
	Weights string // the weights to load: the file given, else best.gt, else the last checkpoint
	Info    Info
}

// Open reads a run folder, or the run folder around a weight file inside one
// (best.gt, or a checkpoint's ckpt-<step>/model.gt).
func Open(runOrFile string) (*Run, error) {
	st, err := os.Stat(runOrFile)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: does not exist", runOrFile)
	}
	r := &Run{Dir: runOrFile}
	if !st.IsDir() {
		r.Dir, r.Weights = filepath.Dir(runOrFile), runOrFile
		// A checkpoint's weights (ckpt-<step>/model.gt) sit one folder down.
		if _, err := os.Stat(filepath.Join(r.Dir, Manifest)); err != nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(r.Dir), Manifest)); err == nil {
				r.Dir = filepath.Dir(r.Dir)
			}
		}
	}
	p := filepath.Join(r.Dir, Manifest)
	b, err := os.ReadFile(p)
	if err != nil {
		if _, serr := os.Stat(filepath.Join(r.Dir, State)); serr == nil {
			return nil, fmt.Errorf(
				"checkpoint %s: no %s (the run predates it): run `captiongo train -config %s -set resume=true` once to write it",
				r.Dir,
				Manifest,
				filepath.Join(r.Dir, Config),
			)
		}
		return nil, fmt.Errorf("checkpoint %s: no %s (give a run folder made by captiongo train)", r.Dir, Manifest)
	}
	if err := json.Unmarshal(b, &r.Info); err != nil {
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if r.Info.Model.VocabSize <= 0 || r.Info.Vocab == "" {
		return nil, fmt.Errorf("%s: no model or vocabulary recorded", p)
	}
	if err := r.Info.Model.Validate(); err != nil {
		return nil, fmt.Errorf("%s: model: %v", p, err)
	}
	if err := r.Info.Transform.Validate(); err != nil {
		return nil, fmt.Errorf("%s: transform: %v", p, err)
	}
	if r.Weights == "" {
		r.Weights = filepath.Join(r.Dir, Best)
		if _, err := os.Stat(r.Weights); err != nil {
			if r.Info.Weights == "" {
				return nil, fmt.Errorf("checkpoint %s: no weights yet (no epoch or checkpoint finished)", r.Dir)
			}
			r.Weights = filepath.Join(r.Dir, r.Info.Weights)
		}
	}
	return r, nil
}

// LoadVocab reads the run's vocabulary.
func (r *Run) LoadVocab() (*data.Vocab, error) {
	return data.LoadVocab(filepath.Join(r.Dir, r.Info.Vocab))
}
