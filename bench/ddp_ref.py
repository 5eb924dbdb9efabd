"""PyTorch reference for `captiongo bench -case ddp`: one data-parallel optimiser
step of the decoder a feature cache leaves to train (pooled 2048-d features ->
the baseline's fc -> LSTM, vocab V, T tokens, Adam lr 3e-4, no dropout), global
batch B split over WORLD processes with one thread each, as torchrun starts them:
torch.nn.parallel.DistributedDataParallel on the gloo backend.

It saves the weights and inputs for the Go side first (model.pth, pooled.npy,
tokens.npy), then spawns the ranks. Every caption has T tokens (no padding), so
DDP's mean of the ranks' mean losses is the loss of the whole batch, as
captiongo computes it.
Usage: ddp_ref.py OUTDIR V T B WORLD WARMUP STEPS; prints {"loss0": ..., "ms": ...}."""
import json
import os
import socket
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import refmodels


class Head(nn.Module):
    """The trained part of the baseline on cached features: fc and the decoder."""

    def __init__(s, m):
        super().__init__()
        s.fc, s.dec = m.encoderCNN.inception.fc, m.decoderRNN

    def forward(s, pooled, tok):
        logits = s.dec.teacher(torch.relu(s.fc(pooled)), tok)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].t().reshape(-1),
                                           ignore_index=refmodels.PAD)


def rank_main(rank, world, out, port, warmup, steps, q):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    V, T = json.load(open(out + "/meta.json"))["VT"]
    m = refmodels.baseline(V, 256, 256, init_weights=False)
    m.load_state_dict(torch.load(out + "/model.pth"))
    model = nn.parallel.DistributedDataParallel(Head(m))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    pooled = torch.from_numpy(np.load(out + "/pooled.npy"))
    tok = torch.from_numpy(np.load(out + "/tokens.npy").astype(np.int64))
    n = pooled.shape[0] // world
    pooled, tok = pooled[rank * n:(rank + 1) * n], tok[rank * n:(rank + 1) * n]

    def step():
        opt.zero_grad()
        loss = model(pooled, tok)
        loss.backward()
        opt.step()
        return loss.detach()

    loss0 = step()
    dist.all_reduce(loss0)
    for _ in range(warmup):
        step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    ms = (time.perf_counter() - t0) * 1000 / steps
    if rank == 0:
        q.put({"loss0": loss0.item() / world, "ms": ms})
    dist.destroy_process_group()


def main():
    out, V, T, B, world, warmup, steps = sys.argv[1], *map(int, sys.argv[2:8])
    torch.manual_seed(0)
    m = refmodels.baseline(V, 256, 256, init_weights=False)
    torch.save(m.state_dict(), out + "/model.pth")
    rng = np.random.default_rng(0)
    tok = rng.integers(4, V, size=(B, T))
    tok[:, 0], tok[:, -1] = 1, 2
    np.save(out + "/pooled.npy", rng.standard_normal((B, 2048)).astype(np.float32))
    np.save(out + "/tokens.npy", tok.astype(np.float32))  # small ints, exact
    json.dump({"VT": [V, T]}, open(out + "/meta.json", "w"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    q = mp.get_context("spawn").SimpleQueue()
    mp.spawn(rank_main, args=(world, out, port, warmup, steps, q), nprocs=world)
    print(json.dumps(q.get()), flush=True)


if __name__ == "__main__":
    main()
