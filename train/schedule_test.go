package train

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/captiongo/captiongo/internal/testutil"
)

// TestScheduleMatchesPyTorch: the learning rate at every optimiser step equals
// what torch.optim.lr_scheduler gives for the same settings, stepped as the
// training loop steps (cosine per step over all epochs; step per epoch;
// warm-up as LinearLR; warm-up with cosine as both chained).
func TestScheduleMatchesPyTorch(t *testing.T) {
	const epochs, per = 7, 13
	cases := []struct {
		name     string
		schedule Schedule
		warmup   int
		torch    string // the scheduler(s) on optimiser opt; stepped per step unless per_epoch
		perEpoch bool
	}{
		{"cosine", "cosine", 0, fmt.Sprintf("S.CosineAnnealingLR(opt, T_max=%d)", epochs*per), false},
		{"step", "step", 0, "S.StepLR(opt, step_size=3, gamma=0.5)", true},
		{"warm-up", "constant", 20, "S.LinearLR(opt, start_factor=1/20, end_factor=1.0, total_iters=19)", false},
		{
			"warm-up + cosine",
			"cosine",
			20,
			fmt.Sprintf(
				"S.ChainedScheduler([S.LinearLR(opt, start_factor=1/20, end_factor=1.0, total_iters=19), "+
					"S.CosineAnnealingLR(opt, T_max=%d)])",
				epochs*per,
			),
			false,
		},
	}
	for _, c := range cases {
		script := fmt.Sprintf(`import json, torch
import torch.optim.lr_scheduler as S
p = torch.nn.Parameter(torch.zeros(1))
opt = torch.optim.Adam([p], lr=3e-3)
sch = %s
out = []
for e in range(%d):
    for b in range(%d):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if not %v:
            sch.step()
    if %v:
        sch.step()
print(json.dumps(out))
`, c.torch, epochs, per, pyBool(c.perEpoch), pyBool(c.perEpoch))
		var want []float64
		if err := json.Unmarshal([]byte(testutil.RunPython(t, script)), &want); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Epochs, cfg.LR, cfg.LRSchedule, cfg.WarmupSteps, cfg.LRStepEpochs, cfg.LRGamma = epochs, 3e-3, c.schedule,
			c.warmup, 3, 0.5
		r := &runner{cfg: cfg, stepsPer: per}
		worst := 0.0
		for s, w := range want {
			got := r.lrAt(int64(s))
			worst = math.Max(worst, math.Abs(got-w)/w)
		}
		t.Logf("%s: %d steps, max relative difference from torch.optim.lr_scheduler %.2g", c.name, len(want), worst)
		if worst > 1e-9 {
			t.Errorf("%s: learning rates differ from PyTorch's by %.3g (relative)", c.name, worst)
		}
	}
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
