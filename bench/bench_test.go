package bench

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// TestLoaderCaseRuns runs the loader case on a few real JPEGs with both sides
// and checks the line's keys and that both throughputs are measured.
func TestLoaderCaseRuns(t *testing.T) {
	dir := testutil.SharedData(t, "flickr8k-mini")
	var out bytes.Buffer
	if err := Run(Options{Case: "loader", Data: dir, Python: testutil.Python(t), Images: 64, Workers: 2}, &out); err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%q: %v", out.String(), err)
	}
	for _, k := range []string{"case", "unit", "captiongo", "pytorch", "speedup"} {
		if _, ok := r[k]; !ok {
			t.Errorf("key %q missing from %s", k, out.String())
		}
	}
	if r["captiongo"].(float64) <= 0 || r["pytorch"].(float64) <= 0 {
		t.Errorf("a side measured nothing: %s", out.String())
	}
	if err := Run(Options{Case: "nope", Python: "x"}, &out); err == nil {
		t.Error("unknown case accepted")
	}
}
