package infer

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/internal/render"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
)

// Method is an attribution method.
type Method string

// The methods, as Captum names them.
const (
	MethodIG        Method = "ig"        // Integrated Gradients
	MethodSaliency  Method = "saliency"  // |gradient|
	MethodGradCAM   Method = "gradcam"   // LayerGradCam on the map the decoder reads
	MethodOcclusion Method = "occlusion" // sliding windows of the baseline
)

// ExplainOptions choose the attribution method and where the maps go.
type ExplainOptions struct {
	Method   Method
	Steps    int    // ig: Gauss-Legendre points
	Baseline string // ig: "zero" (the normalised mean, Captum's default) or "black"
	Window   int    // occlusion: window side in pixels (0: a ninth of the picture)
	Stride   int    // occlusion: step (0: half the window)
	Beam     int
	MaxLen   int
	Out      string // folder for <image>-<i>-<word>.png and <image>.html
}

// WordExplanation is one generated word with its attribution's numbers.
type WordExplanation struct {
	Word          string
	PNG           string
	FX, FBaseline float64
	Sum           float64
}

// Explain captions one image and attributes each generated word's logit
// (teacher-forced on the caption, eval mode) to the input pixels, writing a
// heat-map PNG per word and an HTML page linking the caption's words to them.
func (m *Model) Explain(file string, o ExplainOptions, log io.Writer) ([]WordExplanation, error) {
	switch o.Method {
	case MethodIG, MethodSaliency, MethodGradCAM, MethodOcclusion:
	default:
		return nil, fmt.Errorf("-method %q: use ig, saliency, gradcam or occlusion", o.Method)
	}
	if o.Baseline != "zero" && o.Baseline != "black" {
		return nil, fmt.Errorf("-baseline %q: use zero or black", o.Baseline)
	}
	x, err := m.ImageTensor(file)
	if err != nil {
		return nil, err
	}
	defer x.MustDrop()
	side := m.TF.OutSide()
	var base *ts.Tensor
	if o.Baseline == "black" {
		black := make([]float32, 3*side*side)
		for c := 0; c < 3; c++ {
			for i := 0; i < side*side; i++ {
				black[c*side*side+i] = float32((0 - m.TF.Mean[c]) / m.TF.Std[c])
			}
		}
		base = torch.FromFloat32s(black, []int64{1, 3, int64(side), int64(side)}, m.M.Device())
	} else {
		base = x.MustZerosLike(false)
	}
	defer base.MustDrop()
	h := m.M.Caption(x, o.Beam, o.MaxLen)[0]
	caption := h.IDs()
	words := m.Vocab.Decode(h.Tokens)
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	stem := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	fmt.Fprintf(log, "%s: %q\n", file, strings.Join(words, " "))
	var out []WordExplanation
	for t := range words {
		var a model.Attribution
		heat := make([]float64, side*side)
		switch o.Method {
		case MethodIG:
			if a, err = m.M.IntegratedGradients(x, base, caption, t, o.Steps); err != nil {
				return nil, err
			}
		case MethodSaliency:
			if a, err = m.M.Saliency(x, caption, t); err != nil {
				return nil, err
			}
		case MethodGradCAM:
			cam, _, err := m.M.GradCAM(x, caption, t)
			if err != nil {
				return nil, err
			}
			heat = render.Upsample(cam, side)
		case MethodOcclusion:
			w := o.Window
			if w <= 0 {
				w = max(3, side/9)
			}
			st := o.Stride
			if st <= 0 {
				st = max(1, w/2)
			}
			r, err := m.M.Occlusion(x, base, caption, t, w, st, 32)
			if err != nil {
				return nil, err
			}
			a.FX = r.FX
			for i := range heat {
				heat[i] = math.Max(0, float64(r.Values[i])) // where hiding the picture lowers the word's logit
			}
		}
		if a.Values != nil {
			for c := 0; c < 3; c++ {
				for i := range heat {
					heat[i] += math.Abs(float64(a.Values[c*side*side+i]))
				}
			}
		}
		png, err := render.HeatPNG(file, side, heat, words[t])
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s-%02d-%s.png", stem, t, words[t])
		if err := data.WriteFileAtomic(filepath.Join(o.Out, name), png); err != nil {
			return nil, err
		}
		we := WordExplanation{Word: words[t], PNG: name, FX: a.FX, FBaseline: a.FBaseline, Sum: a.Sum}
		out = append(out, we)
		if o.Method == MethodIG {
			gap := a.Sum - (a.FX - a.FBaseline)
			fmt.Fprintf(
				log,
				"  %-12s logit %8.4f  baseline %8.4f  sum of attributions %8.4f  completeness gap %.2g (%.1f%%)  %s\n",
				words[t],
				a.FX,
				a.FBaseline,
				a.Sum,
				gap,
				100*math.Abs(gap)/math.Max(1e-12, math.Abs(a.FX-a.FBaseline)),
				name,
			)
		} else if o.Method == MethodGradCAM { // GradCAM reports the map, not the logit
			fmt.Fprintf(log, "  %-12s %s\n", words[t], name)
		} else {
			fmt.Fprintf(log, "  %-12s logit %8.4f  %s\n", words[t], a.FX, name)
		}
	}
	var b strings.Builder
	fmt.Fprintf(
		&b,
		"<!doctype html><meta charset=utf-8><title>%s</title>\n<style>body{font-family:sans-serif} a{margin-right:.4em} "+
			"img{image-rendering:pixelated;width:384px}</style>\n",
		html.EscapeString(stem),
	)
	fmt.Fprintf(
		&b,
		"<h2>%s</h2><p>method: %s",
		html.EscapeString(filepath.Base(file)),
		html.EscapeString(string(o.Method)),
	)
	if o.Method == MethodIG {
		fmt.Fprintf(&b, ", %d Gauss-Legendre steps, %s baseline", o.Steps, html.EscapeString(o.Baseline))
	}
	b.WriteString("</p>\n<p style=\"font-size:1.4em\">")
	for i, w := range out {
		fmt.Fprintf(&b, "<a href=\"#w%d\">%s</a>", i, html.EscapeString(w.Word))
	}
	b.WriteString("</p>\n")
	for i, w := range out {
		fmt.Fprintf(
			&b,
			"<div id=\"w%d\"><h3>%s</h3><img src=\"%s\"><p>logit %.4f",
			i,
			html.EscapeString(w.Word),
			html.EscapeString(w.PNG),
			w.FX,
		)
		if o.Method == MethodIG {
			fmt.Fprintf(&b, ", baseline %.4f, sum of attributions %.4f", w.FBaseline, w.Sum)
		}
		b.WriteString("</p></div>\n")
	}
	page := filepath.Join(o.Out, stem+".html")
	if err := data.WriteFileAtomic(page, []byte(b.String())); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "maps: %s\n", page)
	return out, nil
}
