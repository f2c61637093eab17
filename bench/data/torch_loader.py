"""The PyTorch side of bench/data/run.sh: torchvision's ImageFolder + DataLoader over the
same folder, Resize(N) + CenterCrop(N) + ToTensor, shuffled batches on W worker processes.
Every epoch decodes every JPEG again (that is how such pipelines run). Prints one JSON line.

    python torch_loader.py DIR SIZE WORKERS EPOCHS BATCH
"""
import json
import sys
import time

import torch
from torchvision import datasets, transforms


def main():
    root, size, workers, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(1)
    tf = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor()])
    data = datasets.ImageFolder(root, transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, num_workers=workers)
    secs, checksum = [], 0.0
    for _ in range(epochs):
        t = time.perf_counter()
        for x, _ in loader:
            checksum += float(x[0, 0, 0, 0])
        secs.append(time.perf_counter() - t)
    n = len(data)
    print(json.dumps({
        "impl": "torchvision", "images": n, "size": size, "workers": workers,
        "epoch_s": [round(s, 3) for s in secs], "epoch_images_per_s": [round(n / s, 1) for s in secs],
        "torch": torch.__version__, "checksum": round(checksum, 1),
    }))


if __name__ == "__main__":
    main()
