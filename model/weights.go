package model

import (
	"fmt"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"

	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/pickle"
	"github.com/sugarme/gotch/ts"

	"github.com/captiongo/captiongo/internal/torch"
)

// LoadTensors reads a weight file: a state_dict written by torch.save (zip or
// legacy format; torchvision's published .pth files are such) or gotch's own
// VarStore file. The caller owns (and drops) the tensors.
func LoadTensors(path string) (map[string]*ts.Tensor, error) {
	if _, err := os.Stat(path); err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("weights %s: does not exist", path)
		}
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	m, perr := pickle.Decode(path)
	if perr == nil {
		return m, nil
	}
	named, gerr := ts.LoadMulti(path)
	if gerr != nil {
		return nil, fmt.Errorf(
			"weights %s: neither a torch.save state_dict (%s) nor a gotch weight file (%s)",
			path,
			firstLine(perr.Error()),
			firstLine(gerr.Error()),
		)
	}
	out := make(map[string]*ts.Tensor, len(named))
	for _, n := range named {
		out[n.Name] = n.Tensor
	}
	return out, nil
}

// LoadSpec says how a file's names map onto a VarStore.
type LoadSpec struct {
	File   string // for messages
	Prefix string // the VarStore names are Prefix + file name
	// Ignore names file entries that are not loaded (with one note each).
	Ignore []string // name prefixes, e.g. "AuxLogits."
	// Keep names variables under Prefix (by prefix, after Prefix) that the file
	// does not set: they keep their values (the captioner's own fc head).
	Keep []string
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// LoadInto copies the tensors into the VarStore variables named Prefix+name,
// checking that every variable under Prefix gets a value of its exact shape and
// that the file holds nothing else. Errors name the parameter and both shapes.
func LoadInto(vs *nn.VarStore, tensors map[string]*ts.Tensor, spec LoadSpec) (notes []string, err error) {
	// Variables returns struct copies, which do not keep the variables alive: if
	// the caller never uses the model again, the collector could otherwise run
	// their finalizers (freeing the libtorch tensors) in the middle of the copy.
	defer runtime.KeepAlive(vs)
	vars := vs.Variables()
	ignored := map[string]int{}
	var unexpected []string
	for name := range tensors {
		skip := false
		for _, ig := range spec.Ignore {
			if strings.HasPrefix(name, ig) {
				ignored[ig]++
				skip = true
			}
		}
		if !skip {
			if _, ok := vars[spec.Prefix+name]; !ok {
				unexpected = append(unexpected, name)
			}
		}
	}
	var missing []string
	for name := range vars {
		if strings.HasPrefix(name, spec.Prefix) && !hasAnyPrefix(strings.TrimPrefix(name, spec.Prefix), spec.Keep) {
			if _, ok := tensors[strings.TrimPrefix(name, spec.Prefix)]; !ok {
				missing = append(missing, strings.TrimPrefix(name, spec.Prefix))
			}
		}
	}
	sort.Strings(unexpected)
	sort.Strings(missing)
	if len(unexpected) > 0 || len(missing) > 0 {
		var parts []string
		if len(missing) > 0 {
			parts = append(
				parts,
				fmt.Sprintf("%d parameter(s) of the model are not in the file (first: %s)", len(missing), missing[0]),
			)
		}
		if len(unexpected) > 0 {
			parts = append(
				parts,
				fmt.Sprintf(
					"%d entr(ies) of the file are not in the model (first: %s)",
					len(unexpected),
					unexpected[0],
				),
			)
		}
		return nil, fmt.Errorf("weights %s do not fit this architecture: %s", spec.File, strings.Join(parts, "; "))
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		if strings.HasPrefix(name, spec.Prefix) && !hasAnyPrefix(strings.TrimPrefix(name, spec.Prefix), spec.Keep) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		dst := vars[name]
		src := tensors[strings.TrimPrefix(name, spec.Prefix)]
		want, got := dst.MustSize(), src.MustSize()
		if len(want) == 0 && reflect.DeepEqual(got, []int64{1}) {
			// gotch's pickle reader gives 0-d tensors (num_batches_tracked) shape [1].
			r := src.MustSqueeze(false) // (gotch cannot pass an empty shape to View)
			tensors[strings.TrimPrefix(name, spec.Prefix)] = r
			src.MustDrop()
			continue
		}
		if !reflect.DeepEqual(want, got) {
			return nil, fmt.Errorf(
				"weights %s: parameter %s has shape %v in the file, the model expects %v",
				spec.File,
				strings.TrimPrefix(name, spec.Prefix),
				got,
				want,
			)
		}
	}
	torch.NoGrad(func() {
		for _, name := range names {
			dst := vars[name]
			src := tensors[strings.TrimPrefix(name, spec.Prefix)]
			dst.Copy_(src)
		}
	})
	igs := make([]string, 0, len(ignored))
	for ig := range ignored {
		igs = append(igs, ig)
	}
	sort.Strings(igs)
	for _, ig := range igs {
		notes = append(
			notes,
			fmt.Sprintf("weights %s: %d %s* entr(ies) ignored (not part of this model)", spec.File, ignored[ig], ig),
		)
	}
	return notes, nil
}

// DropAll drops every tensor of a map returned by LoadTensors.
func DropAll(m map[string]*ts.Tensor) {
	for _, t := range m {
		t.MustDrop()
	}
}
