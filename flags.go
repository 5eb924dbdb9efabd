package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/captiongo/captiongo/internal/torch"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// deviceFlag is the -device flag of the commands that run a model: a
// torch.DeviceName, checked when parsed.
func deviceFlag(fs *flag.FlagSet) *torch.DeviceName {
	d := torch.DeviceAuto
	names := make([]string, len(torch.DeviceNames))
	for i, n := range torch.DeviceNames {
		names[i] = string(n)
	}
	fs.Func("device", strings.Join(names, ", ")+" (default auto)", func(s string) error {
		if !slices.Contains(torch.DeviceNames, torch.DeviceName(s)) {
			return fmt.Errorf("want %s", strings.Join(names, ", "))
		}
		d = torch.DeviceName(s)
		return nil
	})
	return &d
}
