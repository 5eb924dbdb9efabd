// Package infer captions images and evaluates trained runs: it loads a
// checkpoint (weights, vocabulary and config), decodes greedily or with a
// beam, and scores a split with BLEU-1..4 and CIDEr-D (metrics).
package infer

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/render"
	"github.com/captiongo/captiongo/internal/runfolder"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/metrics"
	"github.com/captiongo/captiongo/model"
)

// Model is a trained captioner ready to decode.
type Model struct {
	M       *model.Captioner
	Vocab   *data.Vocab
	Info    runfolder.Info // the run's manifest: model, transform, data, best metric
	TF      data.Transform
	Weights string
	Dir     string // the run folder
}

// Load opens a run folder (its best.gt if present, else its last checkpoint)
// or a weight file inside one, through the run's manifest. Must run on a
// locked thread (torch.Run).
func Load(runOrFile string, device torch.DeviceName) (*Model, error) {
	run, err := runfolder.Open(runOrFile)
	if err != nil {
		return nil, err
	}
	vocab, err := run.LoadVocab()
	if err != nil {
		return nil, err
	}
	if vocab.Len() != run.Info.Model.VocabSize {
		return nil, fmt.Errorf(
			"checkpoint %s: the vocabulary has %d entries, the model %d",
			run.Dir,
			vocab.Len(),
			run.Info.Model.VocabSize,
		)
	}
	dev, err := torch.Device(device)
	if err != nil {
		return nil, err
	}
	m, err := model.NewCaptioner(run.Info.Model, dev)
	if err != nil {
		return nil, err
	}
	if err := m.LoadFile(run.Weights); err != nil {
		return nil, err
	}
	return &Model{M: m, Vocab: vocab, Info: run.Info, TF: run.Info.Transform, Weights: run.Weights, Dir: run.Dir}, nil
}

// Caption is one decoded image.
type Caption struct {
	File    string  `json:"file"`
	Caption string  `json:"caption"`
	LogProb float64 `json:"log_prob"`
	Err     string  `json:"error,omitempty"`
	// Attention: for attention runs decoded greedily, every word's (and the
	// final <EOS>'s) weights over the map's places, row-major h x w.
	Attention [][]float32 `json:"attention,omitempty"`
}

// CaptionFiles decodes image files in batches; an unreadable image gets its
// error in Err and does not stop the others.
func (m *Model) CaptionFiles(files []string, beam, maxLen, batch int) []Caption {
	out := make([]Caption, len(files))
	side := m.TF.OutSide()
	for lo := 0; lo < len(files); lo += batch {
		var ok []int
		buf := make([]float32, 0, batch*3*side*side)
		one := make([]float32, 3*side*side)
		for i := lo; i < min(lo+batch, len(files)); i++ {
			out[i].File = files[i]
			img, err := data.DecodeImage(files[i])
			if err == nil {
				err = m.TF.Apply(img, nil, one)
			}
			if err != nil {
				out[i].Err = err.Error()
				continue
			}
			ok = append(ok, i)
			buf = append(buf, one...)
		}
		if len(ok) == 0 {
			continue
		}
		x := torch.FromFloat32s(buf, []int64{int64(len(ok)), 3, int64(side), int64(side)}, m.M.Device())
		var hs []model.Hypothesis
		var ws [][][]float32
		if m.M.Cfg.Attention() && beam <= 1 {
			f := m.M.Features(x, false)
			var err error
			hs, ws, err = m.M.GreedyAttention(f, maxLen)
			f.MustDrop()
			if err != nil {
				panic(err) // an attention model always has weights
			}
		} else {
			hs = m.M.Caption(x, beam, maxLen)
		}
		x.MustDrop()
		for j, i := range ok {
			out[i].Caption = strings.Join(m.Vocab.Decode(hs[j].Tokens), " ")
			out[i].LogProb = hs[j].LogProb
			if ws != nil {
				out[i].Attention = ws[j]
			}
		}
	}
	return out
}

// ImageFiles expands folders into their JPEG/PNG files (sorted).
func ImageFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			out = append(out, a) // reported as unreadable by CaptionFiles
			continue
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			ext := strings.ToLower(filepath.Ext(e.Name()))
			if ext == ".jpg" || ext == ".jpeg" || ext == ".png" {
				out = append(out, filepath.Join(a, e.Name()))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no images given")
	}
	return out, nil
}

// WriteCaptions prints captions as "file<TAB>caption" lines or JSON lines and
// returns how many images failed.
func WriteCaptions(w, errw io.Writer, caps []Caption, asJSON bool) int {
	bad := 0
	for _, c := range caps {
		if c.Err != "" {
			bad++
			fmt.Fprintf(errw, "captiongo caption: %s\n", c.Err)
			if !asJSON {
				continue
			}
		}
		if asJSON {
			b, _ := json.Marshal(c)
			fmt.Fprintln(w, string(b))
		} else {
			fmt.Fprintf(w, "%s\t%s\n", c.File, c.Caption)
		}
	}
	return bad
}

// EvalResult is what eval reports.
type EvalResult struct {
	Split   string         `json:"split"`
	Images  int            `json:"images"`
	Beam    int            `json:"beam"`
	Scores  metrics.Scores `json:"scores"`
	Results string         `json:"results_file"`
}

// Evaluate decodes a split of a data set and scores it; the per-image
// captions are written as a COCO results file ([{"image_id", "caption"}]).
// METEOR is added when meteorJar is not "" (see metrics.FindMeteorJar).
func (m *Model) Evaluate(dataPath, split string, beam, maxLen int, resultsPath, meteorJar string) (*EvalResult, error) {
	if dataPath == "" {
		dataPath = m.Info.Data
	}
	ds, err := data.Load(dataPath, m.Info.DataOptions)
	if err != nil {
		return nil, err
	}
	ex := ds.SplitExamples(split)
	if len(ex) == 0 {
		return nil, fmt.Errorf("data set %s has no %q images", dataPath, split)
	}
	files := make([]string, len(ex))
	for i, e := range ex {
		files[i] = e.Path
	}
	caps := m.CaptionFiles(files, beam, maxLen, 32)
	ids := make([]string, 0, len(ex))
	refs := map[string][]string{}
	hyps := map[string]string{}
	type row struct {
		ImageID string `json:"image_id"`
		Caption string `json:"caption"`
	}
	var rows []row
	for i, e := range ex {
		if caps[i].Err != "" {
			return nil, fmt.Errorf("%s", caps[i].Err)
		}
		ids = append(ids, e.ImageID)
		refs[e.ImageID] = e.Captions
		hyps[e.ImageID] = caps[i].Caption
		rows = append(rows, row{e.ImageID, caps[i].Caption})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ImageID < rows[j].ImageID })
	sc, err := metrics.ScoreAll(ids, refs, hyps, meteorJar)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(rows, "", " ")
	if err := data.WriteFileAtomic(resultsPath, b); err != nil {
		return nil, err
	}
	return &EvalResult{Split: split, Images: len(ex), Beam: beam, Scores: sc, Results: resultsPath}, nil
}

// AttentionPNG draws, for an attention run, every word of a caption of an
// image with the attention weights the model gives it (teacher-forced on the
// caption, eval mode), one panel per word (render.AttentionPNG).
func (m *Model) AttentionPNG(file, caption string) ([]byte, error) {
	if !m.M.Cfg.Attention() {
		return nil, fmt.Errorf(
			"%s: decoder %q has no attention maps (train with decoder = \"attention\")",
			m.Dir,
			m.Info.Model.Decoder,
		)
	}
	x, err := m.ImageTensor(file)
	if err != nil {
		return nil, err
	}
	f := m.M.Features(x, false)
	x.MustDrop()
	defer f.MustDrop()
	words, ws, err := m.M.CaptionAttention(m.Vocab, f, caption)
	if err != nil {
		return nil, err
	}
	png, _, _, err := render.AttentionPNG(file, words, ws)
	return png, err
}

// ImageTensor reads one image and applies the run's evaluation transform:
// a 1 x 3 x side x side tensor on the model's device.
func (m *Model) ImageTensor(file string) (*ts.Tensor, error) {
	img, err := data.DecodeImage(file)
	if err != nil {
		return nil, err
	}
	side := m.TF.OutSide()
	buf := make([]float32, 3*side*side)
	if err := m.TF.Apply(img, nil, buf); err != nil {
		return nil, err
	}
	return torch.FromFloat32s(buf, []int64{1, 3, int64(side), int64(side)}, m.M.Device()), nil
}
