"""PyTorch reference for `captiongo bench -case epoch`: one training epoch of
the baseline's pipeline on captiongo's synthetic set. Every (image, caption)
row of the train split (the baseline's FlickrDataset: an image is loaded and
transformed once per caption), Resize((299,299)) -> ToTensor -> Normalize(0.5)
in a DataLoader (batch 32, shuffled, padded with the baseline's MyCollate),
the frozen Inception-v3 (eval, no grad) every step, then fc, LSTM, loss,
backward and Adam. captiongo writes the rows (image path + token ids) so both
sides train on the same data.
Usage: epoch_ref.py ROWS.json WORKERS THREADS; prints {"seconds": S, "rows": N}."""
import json
import sys
import time

import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

from train_ref import build, head_decoder_loss, pooled_features


class Rows(torch.utils.data.Dataset):
    def __init__(self, rows, tf):
        self.rows, self.tf = rows, tf

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, ids = self.rows[i]
        return self.tf(Image.open(path).convert("RGB")), torch.tensor(ids)


def collate(batch):
    images = torch.stack([b[0] for b in batch])
    tokens = nn.utils.rnn.pad_sequence([b[1] for b in batch], batch_first=True, padding_value=0)
    return images, tokens


def main():
    spec = json.load(open(sys.argv[1]))
    workers, threads = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = build(spec["vocab"])
    inc = m.encoderCNN.inception
    inc.eval()
    for name, p in inc.named_parameters():
        p.requires_grad = name.startswith("fc.")
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-4)
    drop = nn.Dropout(0.5)
    tf = T.Compose([T.Resize((299, 299)), T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    dl = torch.utils.data.DataLoader(Rows(spec["rows"], tf), batch_size=32, shuffle=True, num_workers=workers,
                                     collate_fn=collate)
    t0 = time.perf_counter()
    n = 0
    for images, tokens in dl:
        opt.zero_grad()
        loss = head_decoder_loss(m, pooled_features(inc, images), tokens, drop)
        loss.backward()
        opt.step()
        n += images.shape[0]
    print(json.dumps({"seconds": time.perf_counter() - t0, "rows": n}))


if __name__ == "__main__":
    main()
