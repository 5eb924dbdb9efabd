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


def serve(header, cases):
    for f in cases.values():  # warm-up, as the Go side does
        f()
    print(json.dumps(header), flush=True)
    for line in sys.stdin:
        name, reps = line.split()
        f, reps = cases[name], int(reps)
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        print(json.dumps((time.perf_counter() - t0) * 1000 / reps), flush=True)
