"""refserve.py: the timing loop shared by the PyTorch reference scripts.

A reference script sets up its model and inputs, then calls serve(header, cases):
it prints `header` as one JSON line (facts the Go side checks, such as the first
decoded tokens), then answers each request line "NAME REPS" on stdin with the
mean milliseconds per run of cases[NAME] over REPS runs, as one JSON number.
The Go side (bench/ref.go) alternates these requests with its own timings of
the same case, so both sides are measured in the same stretch of time on a
machine whose load changes."""
import json
import sys
import time


def serve(header, cases, sync=lambda: None):
    """sync waits for queued device work (torch.cuda.synchronize on CUDA); it
    runs after the warm-up and inside every timing, as on the Go side."""
    for f in cases.values():  # warm-up, as the Go side does
        f()
    sync()
    print(json.dumps(header), flush=True)
    for line in sys.stdin:
        name, reps = line.split()
        f, reps = cases[name], int(reps)
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        sync()
        print(json.dumps((time.perf_counter() - t0) * 1000 / reps), flush=True)


def device_of(argv, i):
    """The device named by argv[i] ("cpu" when absent) and its sync function."""
    import torch
    dev = argv[i] if len(argv) > i else "cpu"
    return torch.device(dev), (torch.cuda.synchronize if dev == "cuda" else (lambda: None))
