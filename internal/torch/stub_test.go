package torch

import (
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// TestStubbedWrappers calls the three gotch wrappers that `make setup` stubs for a
// libtorch newer than 2.1.0. Built against 2.1.0 they are gotch's own and reach
// ATen (which may still refuse float CPU inputs, with its own message); built against
// a newer libtorch each must return the setup's error naming the op and the
// version, and the process must go on working.
func TestStubbedWrappers(t *testing.T) {
	if err := Run(func() error {
		in := Inspect()
		stubbed := in.CompiledVersion != GotchVersion
		a := ts.MustOnes([]int64{16, 16}, gotch.Float, gotch.CPU)
		defer a.MustDrop()
		var out [2]lib.Ctensor
		calls := map[string]func(){
			"_scaled_mm": func() {
				lib.Atg_ScaledMm(&out[0], ctensor(a), ctensor(a), nil, -1, nil, nil, nil)
			},
			"_scaled_mm_out": func() {
				lib.Atg_ScaledMmOut(&out[0], ctensor(a), ctensor(a), ctensor(a), ctensor(a), nil, -1, nil, nil, nil)
			},
			"_cslt_sparse_mm": func() {
				lib.Atg_CsltSparseMm(&out[0], ctensor(a), ctensor(a), nil, 0)
			},
		}
		for _, name := range StubbedWrappers {
			out = [2]lib.Ctensor{}
			calls[name]()
			err := ts.TorchErr()
			for _, c := range out {
				if c != nil && err == nil {
					lib.AtFree(c)
				}
			}
			ours := err != nil && strings.Contains(err.Error(), name+" is not available in this captiongo build") &&
				strings.Contains(err.Error(), "libtorch "+in.CompiledVersion+" changed it")
			switch {
			case stubbed && !ours:
				t.Errorf("libtorch %s build: %s returned %v, want the setup's stub error", in.CompiledVersion, name, err)
			case !stubbed && ours:
				t.Errorf("libtorch %s build: %s is stubbed, but gotch is generated for this version", in.CompiledVersion, name)
			}
			t.Logf("%s: %v", name, err)
		}
		// The process still computes after the errors.
		s := a.MustSum(gotch.Float, false)
		defer s.MustDrop()
		if v := s.Float64Values()[0]; v != 256 {
			t.Errorf("sum of ones after the stubbed calls = %v", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func ctensor(t *ts.Tensor) lib.Ctensor { return lib.Ctensor(t.Ctensor()) }
