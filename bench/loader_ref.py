"""PyTorch reference for `captiongo bench -case loader`: the baseline's image
pipeline (Resize((356,356)) -> RandomCrop(299) -> ToTensor -> Normalize(0.5, 0.5))
in a torch DataLoader with the same batch size and number of workers, over the
same images. Prints one JSON object: {"images": N, "seconds": S}."""
import json
import os
import sys
import time

import torch
import torchvision.transforms as T
from PIL import Image


class Images(torch.utils.data.Dataset):
    def __init__(self, paths, tf):
        self.paths, self.tf = paths, tf

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(Image.open(self.paths[i]).convert("RGB"))


def main():
    folder = sys.argv[1]
    n, batch, workers, size, crop = (int(v) for v in sys.argv[2:7])
    torch.set_num_threads(1)
    names = sorted(os.listdir(folder))[:n]
    paths = [os.path.join(folder, x) for x in names]
    tf = T.Compose([T.Resize((size, size)), T.RandomCrop((crop, crop)), T.ToTensor(),
                    T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    dl = torch.utils.data.DataLoader(Images(paths, tf), batch_size=batch, shuffle=True, num_workers=workers)
    t0 = time.perf_counter()
    seen = 0
    for x in dl:
        seen += x.shape[0]
    dt = time.perf_counter() - t0
    print(json.dumps({"images": seen, "seconds": dt}))


if __name__ == "__main__":
    main()
