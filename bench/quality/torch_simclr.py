"""The PyTorch SimCLR that `pretext train --task simclr` is compared with on Fashion-MNIST.

The seed article's listing (docs/DESIGN.md "How we measure"; ../shared/seed), with the
settings of issue 13's comparison: ConvNet 32/32/64/128 (conv3x3-BN-ReLU, strides 1,2,2,2,
global average pool), projection head Linear(D, 512)-ReLU-Linear(512, 128), NT-Xent at
temperature 0.5 on L2-normalised projections, RandomResizedCrop(28, scale 0.2-1), flip,
ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8 (saturation and hue do nothing to grey images),
Adam at a constant 1e-3, the two views through the network one after the other (each its
own batch-norm statistics), batch 256, all 60 000 training images, 2 threads, 2 loader
workers. Each option swaps one part for Pretext's choice, so a gap can be taken apart.

After training it scores the backbone's pooled features with Pretext's kNN protocol
(`pretext eval knn`: inputs normalised with the training set's mean and std, features
L2-normalised, k = 200, weights exp(sim / 0.1)) on the test split (bank: the 60 000
training images) and on Pretext's `--validation 5000` split (bank: the first 55 000,
queries: the last 5 000), and prints one JSON line.

    bench/.venv/bin/python bench/quality/torch_simclr.py [--epochs 5] [--widths 32,32,64,128]
        [--temperature 0.5] [--projector seed|pretext] [--views separate|joint]
        [--optimizer adam|adamw-cosine] [--lr 1e-3] [--seed 0] [--threads 2]
"""

import argparse
import gzip
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision.transforms as transforms

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "speed"))
from torch_tasks import DATA_DIR, ConvNet, NTXentLoss, loader, read_idx_images  # noqa: E402


def read_idx_labels(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64)


def split(name):
    images = read_idx_images(os.path.join(DATA_DIR, f"{name}-images-idx3-ubyte.gz"))
    labels = read_idx_labels(os.path.join(DATA_DIR, f"{name}-labels-idx1-ubyte.gz"))
    return images, labels


class Transform:
    def __init__(self, size):
        self.t = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=(0.2, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.ToTensor(),
        ])

    def __call__(self, x):
        return self.t(x), self.t(x)


def projector(d, kind):
    if kind == "seed":
        return nn.Sequential(nn.Linear(d, 512), nn.ReLU(), nn.Linear(512, 128))
    return nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, 128))


@torch.no_grad()
def features(backbone, images, mean, std):
    backbone.eval()
    out = []
    for i in range(0, len(images), 1000):
        x = torch.from_numpy(images[i:i + 1000].astype(np.float32) / 255).unsqueeze(1)
        out.append(nn.functional.normalize(backbone((x - mean) / std), dim=1))
    return torch.cat(out)


@torch.no_grad()
def knn(bank, bank_labels, queries, query_labels, k=200, t=0.1, classes=10):
    correct = 0
    bank_labels = torch.from_numpy(bank_labels)
    for i in range(0, len(queries), 500):
        sim, idx = (queries[i:i + 500] @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), classes).scatter_add_(1, bank_labels[idx], (sim / t).exp())
        correct += (votes.argmax(1) == torch.from_numpy(query_labels[i:i + 500])).sum().item()
    return 100.0 * correct / len(queries)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--widths", default="32,32,64,128")
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--projector", choices=("seed", "pretext"), default="seed")
    p.add_argument("--views", choices=("separate", "joint"), default="separate")
    p.add_argument("--optimizer", choices=("adam", "adamw-cosine"), default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)

    train_x, train_y = split("train")
    test_x, test_y = split("t10k")
    mean, std = train_x.mean() / 255.0, train_x.std() / 255.0
    backbone = ConvNet(1, widths=[int(w) for w in args.widths.split(",")])
    model = nn.Sequential(backbone, projector(backbone.dim, args.projector)).train()
    criterion = NTXentLoss(args.temperature)
    data = loader(train_x, Transform(train_x.shape[1]), args.batch, args.workers)
    steps = args.epochs * len(data)
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
        schedule = None
    else:  # Pretext's default: AdamW (weight decay 1e-4), warmup a tenth of the run, cosine to 0
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        warmup = round(min(args.epochs / 10, 10) * len(data))

        def schedule(step):
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        total = 0.0
        for x_i, x_j in data:
            x_i, x_j = (x_i - mean) / std, (x_j - mean) / std
            if args.views == "separate":
                z_i, z_j = model(x_i), model(x_j)
            else:
                z = model(torch.cat([x_i, x_j]))
                z_i, z_j = z[:len(x_i)], z[len(x_i):]
            loss = criterion(z_i, z_j)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            total += loss.item()
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / len(data):.4f}", file=sys.stderr)
    train_s = time.perf_counter() - t0

    bank = features(backbone, train_x, mean, std)
    test = knn(bank, train_y, features(backbone, test_x, mean, std), test_y)
    validation = knn(bank[:55000], train_y[:55000], bank[55000:], train_y[55000:])
    print(json.dumps({
        "impl": "pytorch", "task": "simclr", **{k: v for k, v in vars(args).items()},
        "train_s": round(train_s, 1), "knn_test": round(test, 2), "knn_validation": round(validation, 2),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
