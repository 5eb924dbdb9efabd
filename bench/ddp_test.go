//go:build c10d

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// TestMain runs a rank of the ddp case when the ddp case started this test
// binary as one.
func TestMain(m *testing.M) {
	if ok, err := DDPRank(os.Stdout); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDDPCaseRuns runs the data-parallel case briefly: both sides' first-step
// losses agree (the case fails otherwise) and both are timed.
func TestDDPCaseRuns(t *testing.T) {
	var out bytes.Buffer
	if err := Run(Options{Case: "ddp", Python: testutil.Python(t), Quick: true}, &out); err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &r); err != nil || r.Captiongo <= 0 || r.PyTorch <= 0 {
		t.Fatalf("%s: %v", out.String(), err)
	}
	t.Logf("%s", out.String())
}
