"""PyTorch reference for `captiongo bench -case decode`: the baseline's
CNNtoRNN (torchvision Inception-v3 + fc head, Embedding/LSTM/Linear decoder)
from a fixed seed, saved for captiongo to load, then the baseline's greedy loop
(caption_image, batched: argmax per step, fed back through the embedding) for
a fixed number of tokens from the same pooled features.
Usage: decode_ref.py OUTDIR VOCAB STEPS THREADS [cpu|cuda]; prints the tokens it decodes as
one JSON line, then times the cases b1, b64 and beam on request (refserve.py)."""
import sys

import numpy as np
import torch

import refmodels
from refserve import device_of, serve


def main():
    out, V, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    torch.set_num_threads(int(sys.argv[4]))
    dev, sync = device_of(sys.argv, 5)
    E = H = 256
    m = refmodels.baseline(V, E, H, init_weights=False)
    inc, dec = m.encoderCNN.inception, m.decoderRNN
    torch.save(m.state_dict(), out + "/model.pth")
    m.to(dev).eval()
    header, cases = {}, {}
    for B in (1, 64):
        pooled = torch.from_numpy(np.random.default_rng(B).standard_normal((B, 2048)).astype(np.float32))
        np.save(out + "/pooled%d.npy" % B, pooled.numpy())
        pooled = pooled.to(dev)

        def greedy(pooled=pooled, B=B):  # bound now: the loop rebinds both
            with torch.no_grad():
                x = torch.relu(inc.fc(pooled)).unsqueeze(0)
                h, states = dec.lstm(x, None)
                x = dec.embed(torch.full((1, B), 1, dtype=torch.long, device=dev))
                toks = []
                for _ in range(steps):
                    h, states = dec.lstm(x, states)
                    tok = dec.linear(h.squeeze(0)).argmax(1)
                    toks.append(tok.tolist())
                    x = dec.embed(tok).unsqueeze(0)
                return toks

        header["tokens%d" % B] = greedy()
        cases["b%d" % B] = greedy
    # Beam search, k = 3, batch 16, fixed number of steps (standard batched beam).
    B, k = 16, 3
    pooled = torch.from_numpy(np.random.default_rng(16).standard_normal((B, 2048)).astype(np.float32))
    np.save(out + "/pooled16.npy", pooled.numpy())
    pooled = pooled.to(dev)

    def beam():
        with torch.no_grad():
            x = torch.relu(inc.fc(pooled)).unsqueeze(0)
            _, (h, c) = dec.lstm(x, None)
            rep = torch.arange(B, device=dev).repeat_interleave(k)
            h, c = h[:, rep], c[:, rep]
            scores = torch.zeros(B, k, device=dev)
            scores[:, 1:] = float("-inf")
            tokens = torch.full((B * k,), 1, dtype=torch.long, device=dev)
            base = (torch.arange(B, device=dev) * k).unsqueeze(1)
            for _ in range(steps):
                o, (h, c) = dec.lstm(dec.embed(tokens).unsqueeze(0), (h, c))
                lp = torch.log_softmax(dec.linear(o.squeeze(0)), -1).view(B, k, -1)
                cand = (scores.unsqueeze(-1) + lp).view(B, -1)
                top, idx = cand.topk(k, dim=1)
                sel = (base + idx // V).view(-1)
                h, c = h[:, sel], c[:, sel]
                scores, tokens = top, (idx % V).view(-1)
            return scores

    cases["beam"] = beam
    serve(header, cases, sync)


if __name__ == "__main__":
    main()
