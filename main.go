// Command captiongo trains, runs and explains image captioners (Inception-v3
// encoder + LSTM decoder) on libtorch through gotch.
//
// main only wires: it parses a subcommand's flags, calls one library function,
// and reports an error in one place.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand: its flags are declared in setup, and run gets the
// remaining arguments after parsing.
type command struct {
	summary string
	usage   string // argument synopsis after the flags
	setup   func(fs *flag.FlagSet) func(args []string) error
}

// commands are the subcommands, one file each (cmd_<name>.go) registering
// itself with register.
var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	name := args[0]
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "captiongo: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	runFn := cmd.setup(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: captiongo %s %s\n\n%s.\n\nflags (with defaults):\n", name, cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := runFn(fs.Args()); err != nil {
		fmt.Fprintf(stderr, "captiongo %s: %v\n", name, err)
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			return coded.ExitCode()
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "captiongo: image captioning (Inception-v3 + LSTM) on libtorch, from Go")
	fmt.Fprintln(w, "\nusage: captiongo COMMAND [flags]   (captiongo COMMAND -h shows its flags and defaults)")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
}
