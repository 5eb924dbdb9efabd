"""Prints the Flickr8k quality table (README) from what scripts/flickr8k.sh left in runs/.

Usage: python3 scripts/flickr8k_table.py [RUNS_DIR] [--losses]
Rows: captiongo and the PyTorch reference per recipe (mean over the seeds run, with
the range when there are several), greedy and beam 3; the recipes beyond the papers
(scheduled sampling, SCST, fine-tuning; one seed, captiongo) where they were run;
then the published rows.
--losses prints instead, per recipe and seed, both sides' training loss per epoch and
how far apart the two sides are against how far apart the seeds of one side are.
"""
import glob
import json
import os
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
runs = args[0] if args else "runs"
KEYS = ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "CIDEr"]


def fmt(vals, k):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    scale = 1 if k == "CIDEr" else 100
    m = sum(vals) / len(vals) * scale
    if len(vals) == 1:
        return "%.1f" % m if k != "CIDEr" else "%.3f" % m
    lo, hi = min(vals) * scale, max(vals) * scale
    return ("%.1f (%.1f-%.1f)" if k != "CIDEr" else "%.3f (%.3f-%.3f)") % (m, lo, hi)


def run_dirs(recipe):
    """captiongo's run folders of a recipe: seed 1 and the _s<seed> ones."""
    base = os.path.join(runs, "flickr8k_" + recipe)
    return glob.glob(base) + glob.glob(base + "_s[0-9]*")


def ours(recipe, beam):
    out = []
    for d in sorted(run_dirs(recipe)):
        p = os.path.join(d, "scores_test_beam%d.json" % beam)
        if os.path.exists(p):
            out.append(json.load(open(p))["scores"])
    return out


def ref(recipe, beam):
    out = []
    for p in sorted(glob.glob(os.path.join(runs, "flickr8k_ref", "%s_s*" % recipe, "scores.json"))):
        out.append(json.load(open(p))["greedy" if beam == 1 else "beam3"])
    return out


def seed_of(d):
    b = os.path.basename(d)
    return int(b.rsplit("_s", 1)[1]) if "_s" in b else 1


def losses(recipe):
    """{seed: ([captiongo per epoch], [reference per epoch])}"""
    out = {}
    for d in run_dirs(recipe):
        sp = os.path.join(d, "state.json")
        rp = os.path.join(runs, "flickr8k_ref", "%s_s%d" % (recipe, seed_of(d)), "scores.json")
        if os.path.exists(sp) and os.path.exists(rp):
            ours = [h["train_loss"] for h in json.load(open(sp))["history"]]
            theirs = [h["train_loss"] for h in json.load(open(rp))["epochs"]]
            out[seed_of(d)] = (ours, theirs)
    return out


if "--losses" in sys.argv:
    for recipe in ("attention", "baseline"):
        ls = losses(recipe)
        if not ls:
            continue
        print("%s: training loss per epoch, captiongo / PyTorch reference" % recipe)
        for seed in sorted(ls):
            o, r = ls[seed]
            print("  seed %d: %s" % (seed, "  ".join("%.4f/%.4f" % (a, b) for a, b in zip(o, r))))
        n = min(min(len(o), len(r)) for o, r in ls.values())
        for e in range(n):
            side = [ls[s][0][e] - ls[s][1][e] for s in ls]
            ours = [ls[s][0][e] for s in ls]
            theirs = [ls[s][1][e] for s in ls]
            print("  epoch %d: captiongo - PyTorch per seed %s; spread over seeds: captiongo %.4f, PyTorch %.4f"
                  % (e + 1, " ".join("%+.4f" % x for x in side), max(ours) - min(ours), max(theirs) - min(theirs)))
    sys.exit(0)

print("| model | decoding | seeds | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | METEOR | CIDEr-D |")
print("|---|---|---|---|---|---|---|---|---|")
for recipe, label in (("attention", "Show, Attend and Tell"), ("baseline", "LSTM baseline")):
    for side, get in (("captiongo", ours), ("PyTorch reference", ref)):
        for beam in (1, 3):
            rows = get(recipe, beam)
            if rows:
                cells = [fmt([r.get(k) for r in rows], k) for k in KEYS]
                decoding = "greedy" if beam == 1 else "beam 3"
                print("| %s, %s | %s | %d | %s |" % (label, side, decoding, len(rows), " | ".join(cells)))
# Beyond the papers (one seed each, captiongo only): the recipes that continue or
# change flickr8k_attention, beside its own seed-1 run.
for recipe, label in (
    ("attention_ss", "Show, Attend and Tell + scheduled sampling"),
    ("attention_scst", "Show, Attend and Tell + SCST (CIDEr-D)"),
    ("attention_ft", "Show, Attend and Tell + fine-tuning"),
):
    for beam in (1, 3):
        p = os.path.join(runs, "flickr8k_" + recipe, "scores_test_beam%d.json" % beam)
        if os.path.exists(p):
            r = json.load(open(p))["scores"]
            cells = [fmt([r.get(k)], k) for k in KEYS]
            decoding = "greedy" if beam == 1 else "beam 3"
            print("| %s, captiongo | %s | 1 | %s |" % (label, decoding, " | ".join(cells)))
print("| Xu et al. 2015, soft attention | | | 67 | 44.8 | 29.9 | 19.5 | 18.93 | - |")
print("| Xu et al. 2015, hard attention | | | 67 | 45.7 | 31.4 | 21.3 | 20.30 | - |")
print("| Show and Tell (as Xu et al. report it) | | | 63 | 41 | 27 | - | - | - |")
