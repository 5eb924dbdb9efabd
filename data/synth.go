package data

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The synthetic shapes data set: one to three coloured shapes on a plain
// background, each picture with five differently worded captions that are all
// true of it (colours, shapes, sizes, left-to-right order, position). Written
// in the Kaggle Flickr8k layout (Images/ + captions.txt), so the same reader
// loads it, plus scenes.json with every object's geometry, from which Mask
// rebuilds the pixels an object covers (for attention and attribution tests).

// SynthSide is the side of the synthetic pictures in pixels.
const SynthSide = 128

var (
	synthColors = []struct {
		Name string
		RGB  [3]uint8
	}{
		{"red", [3]uint8{220, 40, 40}}, {"green", [3]uint8{40, 170, 60}}, {"blue", [3]uint8{40, 80, 220}},
		{"yellow", [3]uint8{235, 210, 40}}, {"purple", [3]uint8{140, 60, 180}}, {"orange", [3]uint8{245, 140, 30}},
	}
	synthShapes = []string{"circle", "square", "triangle", "diamond"}
	synthBGs    = []struct {
		Name string
		RGB  [3]uint8
	}{{"white", [3]uint8{245, 245, 245}}, {"gray", [3]uint8{150, 150, 150}}, {"black", [3]uint8{20, 20, 20}}}
)

// SynthObject is one shape of a synthetic scene.
type SynthObject struct {
	Shape  string  `json:"shape"`
	Color  string  `json:"color"`
	Size   string  `json:"size"` // small or large
	CX     float64 `json:"cx"`   // centre, pixels
	CY     float64 `json:"cy"`
	Radius float64 `json:"radius"` // half the side of its bounding square
}

// SynthScene is one picture: its file, background and objects (left to right).
type SynthScene struct {
	File       string        `json:"file"`
	Background string        `json:"background"`
	Objects    []SynthObject `json:"objects"`
	Captions   []string      `json:"captions"`
}

// Inside reports whether pixel (x, y) (its centre) lies in the object.
func (o SynthObject) Inside(x, y int) bool {
	px, py := float64(x)+0.5-o.CX, float64(y)+0.5-o.CY
	r := o.Radius
	switch o.Shape {
	case "circle":
		return px*px+py*py <= r*r
	case "square":
		return math.Abs(px) <= r && math.Abs(py) <= r
	case "diamond":
		return math.Abs(px)+math.Abs(py) <= r
	case "triangle": // apex up, base at the bottom of the bounding square
		if py < -r || py > r {
			return false
		}
		half := r * (py + r) / (2 * r)
		return math.Abs(px) <= half
	}
	return false
}

// Mask returns a side x side mask (true where the object is) scaled to side.
func (o SynthObject) Mask(side int) []bool {
	m := make([]bool, side*side)
	s := float64(SynthSide) / float64(side)
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			// the source pixel under this pixel's centre
			m[y*side+x] = o.Inside(int((float64(x)+0.5)*s), int((float64(y)+0.5)*s))
		}
	}
	return m
}

func synthScene(r *rand.Rand, i int) SynthScene {
	n := 1 + r.IntN(3)
	bg := synthBGs[r.IntN(len(synthBGs))]
	colors := r.Perm(len(synthColors))[:n]
	// Objects sit in n vertical bands, left to right, so "left of" is always true.
	band := float64(SynthSide) / float64(n)
	sc := SynthScene{File: fmt.Sprintf("shape_%05d.png", i), Background: bg.Name}
	for k := 0; k < n; k++ {
		size := "small"
		radius := 9 + r.Float64()*4
		if r.IntN(2) == 1 {
			size = "large"
			radius = math.Min(18+r.Float64()*8, band/2-2)
		}
		cx := band*float64(k) + band/2 + (r.Float64()-0.5)*math.Max(0, band-2*radius-4)
		cy := radius + 4 + r.Float64()*(SynthSide-2*radius-8)
		sc.Objects = append(sc.Objects, SynthObject{
			Shape: synthShapes[r.IntN(len(synthShapes))], Color: synthColors[colors[k]].Name,
			Size: size, CX: cx, CY: cy, Radius: radius,
		})
	}
	sc.Captions = synthCaptions(r, sc)
	return sc
}

func (o SynthObject) vertical() string {
	switch {
	case o.CY < SynthSide/3:
		return "at the top"
	case o.CY > 2*SynthSide/3:
		return "at the bottom"
	}
	return "in the middle"
}

func (o SynthObject) horizontal() string {
	switch {
	case o.CX < SynthSide/3:
		return "on the left"
	case o.CX > 2*SynthSide/3:
		return "on the right"
	}
	return "in the center"
}

func article(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

var numbers = []string{"", "one", "two", "three"}

// synthCaptions writes five true captions in different wordings.
func synthCaptions(r *rand.Rand, sc SynthScene) []string {
	obj := sc.Objects
	np := func(o SynthObject) string { return article(o.Color) + " " + o.Color + " " + o.Shape }
	npSize := func(o SynthObject) string { return "a " + o.Size + " " + o.Color + " " + o.Shape }
	list := func(f func(SynthObject) string) string {
		parts := make([]string, len(obj))
		for i, o := range obj {
			parts[i] = f(o)
		}
		if len(parts) == 1 {
			return parts[0]
		}
		return strings.Join(parts[:len(parts)-1], " , ") + " and " + parts[len(parts)-1]
	}
	var caps []string
	switch len(obj) {
	case 1:
		o := obj[0]
		caps = []string{
			npSize(o) + " on a " + sc.Background + " background .",
			np(o) + " " + o.horizontal() + " .",
			"there is " + np(o) + " " + o.vertical() + " of the picture .",
			"one " + o.Color + " " + o.Shape + " .",
			"a picture of " + npSize(o) + " .",
		}
	default:
		caps = []string{
			list(np) + " .",
			list(npSize) + " on a " + sc.Background + " background .",
			numbers[len(obj)] + " shapes : " + list(np) + " .",
			np(obj[0]) + " to the left of " + np(obj[1]) + " .",
			"from left to right , " + list(np) + " .",
		}
	}
	r.Shuffle(len(caps), func(i, j int) { caps[i], caps[j] = caps[j], caps[i] })
	return caps
}

// RenderScene draws a scene at SynthSide x SynthSide.
func RenderScene(sc SynthScene) *RGB {
	img := &RGB{W: SynthSide, H: SynthSide, Pix: make([]uint8, 3*SynthSide*SynthSide)}
	var bg [3]uint8
	for _, b := range synthBGs {
		if b.Name == sc.Background {
			bg = b.RGB
		}
	}
	for i := 0; i < SynthSide*SynthSide; i++ {
		copy(img.Pix[3*i:], bg[:])
	}
	for _, o := range sc.Objects {
		var col [3]uint8
		for _, c := range synthColors {
			if c.Name == o.Color {
				col = c.RGB
			}
		}
		for y := 0; y < SynthSide; y++ {
			for x := 0; x < SynthSide; x++ {
				if o.Inside(x, y) {
					copy(img.Pix[3*(y*SynthSide+x):], col[:])
				}
			}
		}
	}
	return img
}

// SynthScenes returns n scenes from a seed, without writing anything.
func SynthScenes(n int, seed uint64) []SynthScene {
	r := rand.New(rand.NewPCG(seed, 0x7368617065)) // "shape"
	out := make([]SynthScene, n)
	for i := range out {
		out[i] = synthScene(r, i)
	}
	return out
}

// WriteSynth writes n scenes from a seed into dir in the Kaggle Flickr8k layout
// (Images/*.png, captions.txt) plus scenes.json. The same n and seed give the
// same files. A complete earlier write (same n and seed) is left as it is.
func WriteSynth(dir string, n int, seed uint64) error {
	if n <= 0 {
		return fmt.Errorf("synth: -n %d must be positive", n)
	}
	stamp := filepath.Join(dir, ".synth-complete")
	want := fmt.Sprintf("n=%d seed=%d side=%d v1\n", n, seed, SynthSide)
	if b, err := os.ReadFile(stamp); err == nil && string(b) == want {
		return nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "Images"), 0o755); err != nil {
		return err
	}
	scenes := SynthScenes(n, seed)
	var csvBuf bytes.Buffer
	w := csv.NewWriter(&csvBuf)
	w.Write([]string{"image", "caption"})
	for _, sc := range scenes {
		var pb bytes.Buffer
		if err := png.Encode(&pb, RenderScene(sc).Image()); err != nil {
			return err
		}
		if err := WriteFileAtomic(filepath.Join(dir, "Images", sc.File), pb.Bytes()); err != nil {
			return err
		}
		for _, c := range sc.Captions {
			w.Write([]string{sc.File, c})
		}
	}
	w.Flush()
	if err := WriteFileAtomic(filepath.Join(dir, "captions.txt"), csvBuf.Bytes()); err != nil {
		return err
	}
	js, err := json.MarshalIndent(scenes, "", " ")
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(dir, "scenes.json"), js); err != nil {
		return err
	}
	return WriteFileAtomic(stamp, []byte(want))
}

// LoadScenes reads the scenes.json that WriteSynth wrote.
func LoadScenes(dir string) ([]SynthScene, error) {
	var s []SynthScene
	if err := ReadJSON(filepath.Join(dir, "scenes.json"), &s); err != nil {
		return nil, err
	}
	return s, nil
}
