"""Writes a folder of generated "photos" for bench/data/run.sh: JPEGs of assorted sizes and
aspect ratios (smooth gradients with a few shapes and a little noise, so they compress and
decode like photographs rather than like flat colour or pure noise), in class folders as
torchvision's ImageFolder needs.

    python make_photos.py DIR COUNT MIN_SIDE MAX_SIDE [classes]
"""
import os
import random
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw


def make(args):
    path, seed, lo, hi = args
    if os.path.exists(path):
        return
    rng = random.Random(seed)
    w, h = rng.randint(lo, hi), rng.randint(lo, hi)
    nrng = np.random.default_rng(seed)
    a, b = nrng.integers(0, 256, 3), nrng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    s = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    img = a * (1 - t) * (1 - s) + b * t * s + 60 * (t - s)
    img += nrng.normal(0, 6, (h, w, 3)).astype(np.float32)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(2, 6)):
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        x1, y1 = x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x0, y0, x1, y1], fill=colour)
    im.save(path, quality=90)


def main():
    root, count, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    classes = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c:02d}"), exist_ok=True)
    jobs = [(os.path.join(root, f"class{i % classes:02d}", f"img{i:07d}.jpg"), i, lo, hi) for i in range(count)]
    with Pool(os.cpu_count()) as pool:
        for k, _ in enumerate(pool.imap_unordered(make, jobs, chunksize=64)):
            if k % 20000 == 0:
                print(f"  {k}/{count}", file=sys.stderr)


if __name__ == "__main__":
    main()
