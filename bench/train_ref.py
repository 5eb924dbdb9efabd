"""PyTorch reference for `captiongo bench -case train`: the baseline's CNNtoRNN
(torchvision Inception-v3 with a new fc, Embedding/LSTM/Linear decoder, dropout
0.5) from a fixed seed, saved for captiongo to load, then timed:

  train_step_frozen_b32_299  one optimiser step of the baseline (train_CNN = False):
                             images -> frozen Inception -> fc -> LSTM -> loss ->
                             backward -> Adam(lr 3e-4) on fc + decoder
  decoder_step_b32/_b256     the same step from pooled 2048-d features (what a
                             feature cache leaves to train)
  encoder_b32_299            pooled features of a batch, no grad (images/s)

Both sides run the backbone in eval mode without grad (the baseline let its
BatchNorm statistics drift in train mode; captiongo fixes that) and use the
same teacher-forcing alignment. The eval-mode loss on the saved inputs is
printed too, so the Go side can prove it computes the same model.
Usage: train_ref.py OUTDIR VOCAB T REPS_FULL REPS_DEC THREADS; prints JSON (ms)."""
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision


def build(V, E=256, H=256):
    m = nn.Module()
    m.encoderCNN = nn.Module()
    inc = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    inc.fc = nn.Linear(2048, E)
    m.encoderCNN.inception = inc
    m.decoderRNN = nn.Module()
    d = m.decoderRNN
    d.embed, d.lstm, d.linear = nn.Embedding(V, E), nn.LSTM(E, H, 1), nn.Linear(H, V)
    return m


def pooled_features(inc, x):
    """Inception up to the pooled 2048-d features (fc excluded), eval, no grad."""
    with torch.no_grad():
        fc = inc.fc
        inc.fc = nn.Identity()
        try:
            return inc(x)
        finally:
            inc.fc = fc


def head_decoder_loss(m, pooled, tokens, drop):
    inc, d = m.encoderCNN.inception, m.decoderRNN
    feat = drop(torch.relu(inc.fc(pooled)))
    emb = drop(d.embed(tokens[:, :-1].t()))
    seq = torch.cat([feat.unsqueeze(0), emb], 0)
    out, _ = d.lstm(seq)
    logits = d.linear(out[1:])
    target = tokens[:, 1:].t().reshape(-1)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, ignore_index=0)


def main():
    out, V, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reps_full, reps_dec = int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(int(sys.argv[6]))
    torch.manual_seed(0)
    m = build(V)
    torch.save(m.state_dict(), out + "/model.pth")
    inc = m.encoderCNN.inception
    inc.eval()  # frozen backbone
    for name, p in inc.named_parameters():
        p.requires_grad = name.startswith("fc.")
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-4)
    drop = nn.Dropout(0.5)
    rng = np.random.default_rng(0)
    res = {}

    def tokens_for(B):
        t = rng.integers(4, V, size=(B, T))
        t[:, 0], t[:, -1] = 1, 2  # <SOS> ... <EOS>
        return torch.from_numpy(t.astype(np.int64))

    # Full step at 299 px, batch 32.
    B = 32
    images = torch.from_numpy(rng.standard_normal((B, 3, 299, 299)).astype(np.float32))
    tok = tokens_for(B)
    np.save(out + "/images32.npy", images.numpy())
    np.save(out + "/tokens32.npy", tok.numpy().astype(np.float32))  # small ints, exact
    m.eval()
    drop.eval()
    with torch.no_grad():
        res["eval_loss32"] = head_decoder_loss(m, pooled_features(inc, images), tok, drop).item()
    m.decoderRNN.train()
    drop.train()

    def full_step():
        opt.zero_grad()
        loss = head_decoder_loss(m, pooled_features(inc, images), tok, drop)
        loss.backward()
        opt.step()

    full_step()
    t0 = time.perf_counter()
    for _ in range(reps_full):
        full_step()
    res["train_step_frozen_b32_299"] = (time.perf_counter() - t0) * 1000 / reps_full

    pooled_features(inc, images)
    t0 = time.perf_counter()
    for _ in range(reps_full):
        pooled_features(inc, images)
    res["encoder_b32_299"] = (time.perf_counter() - t0) * 1000 / reps_full

    for B in (32, 256):
        pooled = torch.from_numpy(rng.standard_normal((B, 2048)).astype(np.float32))
        tok = tokens_for(B)
        np.save(out + "/pooled%d.npy" % B, pooled.numpy())
        np.save(out + "/dtokens%d.npy" % B, tok.numpy().astype(np.float32))

        def dec_step():
            opt.zero_grad()
            loss = head_decoder_loss(m, pooled, tok, drop)
            loss.backward()
            opt.step()

        dec_step()
        t0 = time.perf_counter()
        for _ in range(reps_dec):
            dec_step()
        res["decoder_step_b%d" % B] = (time.perf_counter() - t0) * 1000 / reps_dec
    print(json.dumps(res))


if __name__ == "__main__":
    main()
