"""PyTorch reference for `captiongo bench -case train`: the baseline's CNNtoRNN
(torchvision Inception-v3 with a new fc, Embedding/LSTM/Linear decoder, dropout
0.5) from a fixed seed, saved for captiongo to load, then timed:

  train_step_frozen_b32_299  one optimiser step of the baseline (train_CNN = False):
                             images -> frozen Inception -> fc -> LSTM -> loss ->
                             backward -> Adam(lr 3e-4) on fc + decoder
  decoder_step_b32/_b256     the same step from pooled 2048-d features (what a
                             feature cache leaves to train)
  encoder_b32_299            pooled features of a batch, no grad (images/s)
  ft8                        a full fine-tuning step (train_CNN = True), batch 8
  adam_ft                    Adam's update alone over all of the fine-tuned parameters

Both sides run the backbone in eval mode without grad (the baseline let its
BatchNorm statistics drift in train mode; captiongo fixes that) and use the
same teacher-forcing alignment. The eval-mode loss on the saved inputs is
printed too, so the Go side can prove it computes the same model.
Usage: train_ref.py OUTDIR VOCAB T THREADS [cpu|cuda]; prints {"eval_loss32": ...} as one JSON
line, then times the cases full, enc, dec32, dec256, ft8 and adam_ft on request (refserve.py)."""
import sys

import numpy as np
import torch
import torch.nn as nn

import refmodels
from refserve import device_of, serve


def build(V, E=256, H=256):
    return refmodels.baseline(V, E, H, init_weights=False)


backbone_pooled = refmodels.pooled


def pooled_features(inc, x):
    """backbone_pooled, eval, no grad (the frozen backbone)."""
    with torch.no_grad():
        return backbone_pooled(inc, x)


def head_decoder_loss(m, pooled, tokens, drop, inner=True):
    """inner: Inception3's own dropout before fc (its forward is avgpool ->
    dropout -> fc, and the baseline trains in train mode); False when pooled
    comes from the train-mode backbone, which has applied it already."""
    inc, d = m.encoderCNN.inception, m.decoderRNN
    if inner:  # in the mode of drop (the frozen backbone itself stays in eval mode)
        pooled = nn.functional.dropout(pooled, inc.dropout.p, drop.training)
    feat = drop(torch.relu(inc.fc(pooled)))
    emb = drop(d.embed(tokens[:, :-1].t()))
    seq = torch.cat([feat.unsqueeze(0), emb], 0)
    out, _ = d.lstm(seq)
    logits = d.linear(out[1:])
    target = tokens[:, 1:].t().reshape(-1)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target, ignore_index=0)


def main():
    out, V, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]))
    dev, sync = device_of(sys.argv, 5)
    torch.manual_seed(0)
    m = build(V)
    torch.save(m.state_dict(), out + "/model.pth")
    m.to(dev)
    inc = m.encoderCNN.inception
    inc.eval()  # frozen backbone
    for name, p in inc.named_parameters():
        p.requires_grad = name.startswith("fc.")
    params = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-4)
    drop = nn.Dropout(0.5)
    rng = np.random.default_rng(0)
    header, cases = {}, {}

    def tokens_for(B):
        t = rng.integers(4, V, size=(B, T))
        t[:, 0], t[:, -1] = 1, 2  # <SOS> ... <EOS>
        return torch.from_numpy(t.astype(np.int64))

    # Full step at 299 px, batch 32.
    B = 32
    images = torch.from_numpy(rng.standard_normal((B, 3, 299, 299)).astype(np.float32))
    tok = tok32 = tokens_for(B)
    np.save(out + "/images32.npy", images.numpy())
    np.save(out + "/tokens32.npy", tok.numpy().astype(np.float32))  # small ints, exact
    images, tok = images.to(dev), tok.to(dev)
    tok32 = tok
    m.eval()
    drop.eval()
    with torch.no_grad():
        header["eval_loss32"] = head_decoder_loss(m, pooled_features(inc, images), tok, drop).item()
    m.decoderRNN.train()
    drop.train()

    def full_step(tok=tok):  # bound now: the decoder loop below rebinds tok
        opt.zero_grad()
        loss = head_decoder_loss(m, pooled_features(inc, images), tok, drop)
        loss.backward()
        opt.step()

    cases["full"] = full_step
    cases["enc"] = lambda: pooled_features(inc, images)

    for B in (32, 256):
        pooled = torch.from_numpy(rng.standard_normal((B, 2048)).astype(np.float32))
        tok = tokens_for(B)
        np.save(out + "/pooled%d.npy" % B, pooled.numpy())
        np.save(out + "/dtokens%d.npy" % B, tok.numpy().astype(np.float32))
        pooled, tok = pooled.to(dev), tok.to(dev)

        def dec_step(pooled=pooled, tok=tok):  # bound now: the loop rebinds both
            opt.zero_grad()
            loss = head_decoder_loss(m, pooled, tok, drop)
            loss.backward()
            opt.step()

        cases["dec%d" % B] = dec_step

    # Full fine-tuning (train_CNN = True), batch 8 at 299 px: every parameter
    # trains, Inception in train mode (batch statistics), and Adam with its
    # default implementation for CPU tensors (single-tensor; foreach on CUDA).
    mf = build(V)
    mf.load_state_dict(torch.load(out + "/model.pth"))
    mf.to(dev).train()
    incf = mf.encoderCNN.inception
    optf = torch.optim.Adam(mf.parameters(), lr=3e-4)
    images8, tok8 = images[:8].clone(), tok32[:8].clone()

    def ft_step():
        optf.zero_grad()
        loss = head_decoder_loss(mf, backbone_pooled(incf, images8), tok8, drop, inner=False)
        loss.backward()
        optf.step()

    def ft_fwd():  # the forward pass and loss alone; the graph is freed unused
        head_decoder_loss(mf, backbone_pooled(incf, images8), tok8, drop, inner=False)

    cases["ft8"] = ft_step
    cases["ft8_fwd"] = ft_fwd
    cases["adam_ft"] = optf.step  # the update alone, on ft_step's gradients (warm-up runs ft8 first)
    serve(header, cases, sync)


if __name__ == "__main__":
    main()
