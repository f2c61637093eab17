"""PyTorch side of `bench/speed/tasks.sh`: the seed article's SimCLR and Jigsaw training
code, corrected as docs/DESIGN.md asks, plus RotNet in the same style, at Pretext's model,
batch, image size and thread count. It only measures; keep it identical in work to the
plugins (plugins/<task>/src/lib.rs), or the ratio means nothing. Where
the plugins' defaults have moved past these listings (rotation's MLP head and crop,
jigsaw's per-tile layer), tasks.sh runs Pretext with bench/speed/<task>.toml, which sets
them back to what is implemented here.

What was corrected or fitted against the seed's listings:
- the backbone is Pretext's ConvNet (conv3x3-BN-ReLU x4, strides 1,2,2,2, widths
  16,32,64,128, bias-free convs, global average pool), not torchvision's ImageNet ResNet-18:
  no ImageNet stem and no 1000-way `fc` — the backbone ends at global pooling;
- NT-Xent L2-normalises the projections (cosine similarity), temperature 0.2; the
  projector is Linear(D, D)-BatchNorm-ReLU-Linear(D, 128) as Pretext's (the seed had 512
  hidden and no batch norm);
- the SimCLR views use the SimCLR paper's CIFAR settings, which Pretext uses too:
  RandomResizedCrop(28, scale=(0.2, 1)), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
  RandomGrayscale(0.2), no blur (the seed applied jitter always, hue 0.4, and a 3x3 blur);
- Jigsaw: a 3x3 grid of 7x7 tiles cut at random offsets inside their 9x9 cells, one of a
  fixed set of 100 permutations (greedy maximal Hamming distance, seeded) applied, label =
  index of that permutation (the seed used the identity order), every tile encoded by the
  shared backbone and the nine features concatenated in tile order ->
  Linear(9D, 512)-ReLU-Linear(512, 100) (the seed stacked the tiles into one image);
- RotNet (not in the seed): each image flipped with p 0.5, then at 0/90/180/270 degrees
  (torch.rot90), Linear(D, 4), cross-entropy;
- MAE (not in the seed; plugins/mae at its defaults, `--backbone vit-tiny` on both sides,
  written as the MAE repository's models_mae.py): Pretext's ViT-Tiny (torch_step.py's timm
  VisionTransformer: 1x28x28, 4 px patches so 49 tokens and a CLS, width 192, 12 blocks, 3
  heads, learnable position embeddings) encodes the CLS and the 12 patches (int(49 x 0.25))
  a per-image argsort of uniform noise keeps; the decoder is Linear(192, 128), a learnable
  mask token at the 37 dropped places, the tokens gathered back into image order, fixed 2-D
  sine-cosine positions (zero for the CLS), 2 timm Blocks of width 128 and 4 heads (qkv
  bias, 4x GELU MLP, LayerNorm eps 1e-6), LayerNorm, Linear(128, 4 x 4 x 1) on every
  token; the loss is the MSE per patch against the normalised view's pixels normalised per
  patch (mean, unbiased variance + 1e-6: norm_pix_loss), averaged over the dropped patches
  only. One view per image: RandomResizedCrop(28, scale=(0.2, 1)) and a flip, no colour.
  Pretext draws each image's patch order on its prefetch threads and gathers with it on
  the device; here the noise and both argsorts run in the step, as in models_mae.py
  (microseconds at 256 x 49). Attention goes through timm's fused
  scaled_dot_product_attention, PyTorch's fastest path; Pretext's ViT computes the same
  softmax(QK^T / sqrt(d)) V with explicit matmuls;
- AdamW (lr 1e-3, weight decay 1e-4, Pretext's defaults) instead of Adam; inputs
  normalised with the training set's mean/std on the batch, as Pretext's session does;
- Fashion-MNIST (1x28x28) read from Debian's IDX .gz files with numpy, as PIL "L" images
  for the transforms (the seed's CIFAR-10 dataset also hands PIL images to them);
- a DataLoader with 2 worker processes (Pretext's 2 prefetch threads; the seed had 4),
  persistent across the warm-up and the timed epoch; `torch.set_num_threads(threads)`.

    python torch_tasks.py train simclr|jigsaw|rotation|byol|dino|barlow|vicreg|mae [--limit N] [--batch B]
        [--threads T] [--device cpu|cuda] [--backbone convnet|resnet18|vit-tiny] [--data fashion-mnist|random]
        [--workers W] [--step-only N]
    python torch_tasks.py augment [--images N] [--threads T]

The defaults are issue 3's CPU comparison; mae needs `--backbone vit-tiny` (timm, as in
torch_step.py; `--width` sets its embedding width, the heads stay 3 as Pretext's; the other
tasks take it too, on its CLS features). scripts/gpu-check.sh uses the rest for the GPU
comparison: `--backbone resnet18` is the CIFAR ResNet-18 of torch_step.py (3x3 stem, no
max-pool, full width) without its classifier; `--data random` is seeded uniform RGB noise at
3x32x32 (the GPU machine has no data sets and no network; the work per image does not depend
on the pixels); `--device cuda` moves each batch to the GPU as the seed does (no pinned
memory) and adds the allocator's peak to the JSON line; `--step-only N` then also times N
steps on one batch already on the device, without the loader: the model's own ceiling, at
PyTorch's default precision (cuDNN convolutions may use TF32) and with TF32 off.

`train` runs a few warm-up steps, then one timed epoch over the first N training images and
prints one JSON line with source images per second (dataset images, not views), measured
like Pretext's epoch record: from the start of the epoch (the loader's first batch
included) to the end of its last step. It also reports `data_wait_s`, the time spent waiting for the
loader's next batch. `augment` times the SimCLR transform pipeline (two
views per image, PIL, to tensors) through the same 2-worker DataLoader and prints a line too.
"""

import argparse
import copy
import functools
import gzip
import itertools
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as transforms
from PIL import Image
from torch.utils.data import DataLoader, Dataset

DATA_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, n, h, w = np.frombuffer(raw[:16], dtype=">u4")
    assert magic == 2051, f"{path} is not an IDX image file"
    return np.frombuffer(raw[16:], dtype=np.uint8).reshape(int(n), int(h), int(w))


def fashion_mnist(limit=None):
    images = read_idx_images(os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"))
    return images if limit is None else images[:limit]


def random_rgb(n, size=32, seed=0):
    """Seeded uniform noise, (n, size, size, 3) uint8: PIL "RGB" images of CIFAR's shape."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def load_images(data, limit):
    if data == "fashion-mnist":
        return fashion_mnist(limit)
    if data == "random":
        return random_rgb(limit or 10000)
    raise SystemExit(f"unknown data {data!r} (fashion-mnist or random)")


# ---------------------------------------------------------------- backbone (Pretext's ConvNet)

class ConvNet(nn.Module):
    """conv3x3 (no bias) -> BN -> ReLU, x4, strides 1,2,2,2, widths w..8w (or `widths`), global
    average pool."""

    def __init__(self, in_channels=1, width=16, widths=None):
        super().__init__()
        layers, c = [], in_channels
        for out, stride in zip(widths or [width << i for i in range(4)], (1, 2, 2, 2)):
            layers += [nn.Conv2d(c, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.dim = c

    def forward(self, x):
        return self.features(x).mean((2, 3))


class ResNet18(nn.Module):
    """torch_step.py's CIFAR ResNet-18 (Pretext's core/src/model/resnet.rs) up to the global pool."""

    def __init__(self, in_channels=3, width=64):
        super().__init__()
        from torch_step import cifar_resnet18  # beside this file; the bundle ships both

        net = cifar_resnet18(width)
        if in_channels != 3:
            net[0] = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.features = nn.Sequential(*list(net)[:-1])  # drop the 10-way classifier
        self.dim = 8 * width

    def forward(self, x):
        return self.features(x)


class ViT(nn.Module):
    """torch_step.py's vit-tiny: timm's VisionTransformer at Pretext's layout (core/sdk/src/model/
    vit.rs): 4 px patches by a strided conv, a CLS token, learnable position embeddings, 12
    pre-norm blocks (qkv bias, 4x GELU MLP, LayerNorm eps 1e-6) of width 192 and 3 heads, a final
    LayerNorm; the features are the normalised CLS token. Like Pretext's `Vit` it also takes
    token sequences (`embed_patches`, `encode_tokens`), so MAE can drop patches first."""

    def __init__(self, in_channels=1, size=28, width=192, patch=4):
        super().__init__()
        import timm  # only the ViT needs it; the GPU bundle's other runs do without

        self.net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=size, patch_size=patch,
                                     in_chans=in_channels, num_classes=0, embed_dim=width)
        self.dim, self.patch = width, patch

    def forward(self, x):
        return self.net(x)

    def embed_patches(self, x):
        """(N, C, H, W) -> patch tokens with their position embeddings (N, L, D), row-major."""
        return self.net.patch_embed(x) + self.net.pos_embed[:, 1:]

    def encode_tokens(self, tokens):
        """The CLS token (with its position embedding) before `tokens`, the blocks, the norm."""
        cls = (self.net.cls_token + self.net.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return self.net.norm(self.net.blocks(torch.cat([cls, tokens], dim=1)))


# ---------------------------------------------------------------- SimCLR (seed listing, corrected)

class SimCLRTransform:
    def __init__(self, size):
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(size=size, scale=(0.2, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
            transforms.ToTensor(),
        ])

    def __call__(self, x):
        return self.transform(x), self.transform(x)


class NTXentLoss(nn.Module):
    def __init__(self, temperature):
        super().__init__()
        self.temperature = temperature

    def forward(self, z_i, z_j):
        batch_size = z_i.size(0)
        # The correction: cosine similarity, i.e. L2-normalised projections.
        z = F.normalize(torch.cat([z_i, z_j], dim=0), dim=1)
        sim_matrix = torch.mm(z, z.t()) / self.temperature
        mask = torch.eye(2 * batch_size, dtype=torch.bool, device=sim_matrix.device)
        sim_matrix = sim_matrix.masked_fill(mask, -float("inf"))
        positives = torch.cat([torch.diag(sim_matrix, batch_size), torch.diag(sim_matrix, -batch_size)], dim=0)
        negatives = sim_matrix[~mask].view(2 * batch_size, -1)
        logits = torch.cat([positives.unsqueeze(1), negatives], dim=1)
        labels = torch.zeros(2 * batch_size, dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, labels)


class SimCLR(nn.Module):
    def __init__(self, backbone, projection_dim=128):
        super().__init__()
        self.backbone = backbone
        d = backbone.dim
        self.projector = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU(), nn.Linear(d, projection_dim))

    def forward(self, x):
        return self.projector(self.backbone(x))


# ---------------------------------------------------------------- BYOL, DINO, Barlow Twins, VICReg
# The SDK v2 plugins (plugins/{byol,dino,barlow,vicreg}/src/lib.rs) at their defaults, written
# after the papers' and solo-learn's/lightly's formulas as those plugins are: same heads, crops,
# losses, teacher updates. Not in the seed article.

def ssl_view(size, scale, solarize):
    """One crop of SimclrAugment with solarisation: crop, flip, jitter, grayscale, solarize."""
    return transforms.Compose([
        transforms.RandomResizedCrop(size=size, scale=scale),
        transforms.RandomHorizontalFlip(),
        transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        transforms.RandomGrayscale(p=0.2),
        transforms.RandomSolarize(128, p=solarize),
        transforms.ToTensor(),
    ])


class PairTransform:
    """Two views, solarisation on the second only (BYOL's asymmetry; VICReg: both)."""

    def __init__(self, size, scale=(0.08, 1.0), solarize=(0.0, 0.2)):
        self.views = [ssl_view(size, scale, solarize[0]), ssl_view(size, scale, solarize[1])]

    def __call__(self, x):
        return tuple(v(x) for v in self.views)


class MultiCropTransform:
    """DINO: two global crops (scale 0.4-1), four local crops (96/224 of the side, 0.05-0.4)."""

    def __init__(self, size, locals_=4):
        local = max(4, round(size * 96 / 224))
        self.crops = [ssl_view(size, (0.4, 1.0), 0.0), ssl_view(size, (0.4, 1.0), 0.2)]
        self.crops += [ssl_view(local, (0.05, 0.4), 0.0)] * locals_

    def __call__(self, x):
        return tuple(c(x) for c in self.crops)


def mlp(dims, bn=True):
    """Linear-BN-ReLU blocks, then a Linear: pretext_core::task::heads::Mlp."""
    layers = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b)] + ([nn.BatchNorm1d(b)] if bn else []) + [nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))


class TeacherMixin:
    """An EMA copy of `self.student`, no gradient, updated after each optimizer step."""

    def make_teacher(self):
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad = False

    @torch.no_grad()
    def update_teacher(self, m):
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(m).add_(s.detach(), alpha=1 - m)


class BYOL(nn.Module, TeacherMixin):
    def __init__(self, backbone):
        super().__init__()
        self.student = nn.Sequential(backbone, mlp([backbone.dim, 4096, 256]))
        self.predictor = mlp([256, 4096, 256])
        self.make_teacher()

    def loss(self, x1, x2):
        p1, p2 = self.predictor(self.student(x1)), self.predictor(self.student(x2))
        with torch.no_grad():
            z1, z2 = self.teacher(x1), self.teacher(x2)

        def reg(p, z):
            return 2 - 2 * F.cosine_similarity(p, z, dim=-1).mean()
        return reg(p1, z2) + reg(p2, z1)


class DINOHead(nn.Module):
    def __init__(self, d, hidden=2048, bottleneck=256, out=4096):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1)
        self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


class DINO(nn.Module, TeacherMixin):
    def __init__(self, backbone, out=4096):
        super().__init__()
        self.student = nn.Sequential(backbone, DINOHead(backbone.dim, out=out))
        self.make_teacher()
        self.register_buffer("center", torch.zeros(1, out))

    def loss(self, crops, teacher_temp=0.04, student_temp=0.1):
        n = len(crops[0])
        s = torch.cat([self.student(torch.cat(crops[:2])), self.student(torch.cat(crops[2:]))])
        with torch.no_grad():
            t = self.teacher(torch.cat(crops[:2]))
        log_p = F.log_softmax(s / student_temp, dim=-1).chunk(len(crops))
        q = F.softmax((t - self.center) / teacher_temp, dim=-1).chunk(2)
        total, terms = 0.0, 0
        for iq in range(2):
            for v in range(len(crops)):
                if v != iq:
                    total = total + torch.sum(-q[iq] * log_p[v], dim=-1).mean()
                    terms += 1
        with torch.no_grad():
            self.center.mul_(0.9).add_(t.mean(0, keepdim=True), alpha=0.1)
        return total / terms


class TwoViewProjector(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.projector = mlp([backbone.dim, 2048, 2048, 2048])

    def forward(self, x):
        return self.projector(self.backbone(x))


def barlow_loss(z1, z2, lambd=0.0051, scale=0.1):
    n, d = z1.shape
    bn = nn.functional.batch_norm
    c = bn(z1, None, None, training=True).T @ bn(z2, None, None, training=True) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return scale * (on + lambd * off)


def vicreg_loss(z1, z2):
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)

    def spread(z):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + 1e-4)
        cov = z.T @ z / (n - 1)
        off = cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()
        return torch.mean(F.relu(1 - std)) / 2, off / d
    v1, c1 = spread(z1)
    v2, c2 = spread(z2)
    return 25 * inv + 25 * (v1 + v2) + (c1 + c2)


# ---------------------------------------------------------------- Jigsaw (seed listing, corrected)

def maximal_hamming_set(count=100, seed=1, tiles=9):
    """Greedy permutations far apart in Hamming distance (Noroozi & Favaro 2016)."""
    perms = np.array(list(itertools.permutations(range(tiles))), dtype=np.int8)
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(perms)))]
    closest = (perms != perms[chosen[0]]).sum(1)
    for _ in range(count - 1):
        best = np.flatnonzero(closest == closest.max())
        nxt = int(best[rng.integers(len(best))])
        chosen.append(nxt)
        closest = np.minimum(closest, (perms != perms[nxt]).sum(1))
    return perms[chosen].astype(np.int64)


class JigsawTransform:
    def __init__(self, size, permutations, grid_size=3, tile_fraction=0.85):
        self.size = size
        self.grid_size = grid_size
        self.cell = size // grid_size
        self.tile = max(1, int(self.cell * tile_fraction))
        self.permutations = permutations
        self.transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])

    def __call__(self, x):
        x = self.transform(x)
        blocks = self.split_into_blocks(x)
        label = random.randrange(len(self.permutations))
        # Position j holds tile perm[j]; the label is the index of the permutation applied.
        tiles = torch.stack([blocks[k] for k in self.permutations[label]])
        return tiles, label

    def split_into_blocks(self, img):
        cell, tile = self.cell, self.tile
        blocks = []
        for i in range(self.grid_size):
            for j in range(self.grid_size):
                dy, dx = random.randint(0, cell - tile), random.randint(0, cell - tile)
                blocks.append(img[:, i * cell + dy:i * cell + dy + tile, j * cell + dx:j * cell + dx + tile])
        return blocks


class JigsawModel(nn.Module):
    def __init__(self, backbone, permutations=100, hidden=512, tiles=9):
        super().__init__()
        self.backbone = backbone
        self.tiles = tiles
        self.classifier = nn.Sequential(nn.Linear(tiles * backbone.dim, hidden), nn.ReLU(), nn.Linear(hidden, permutations))

    def forward(self, x):
        b = x.shape[0]
        features = self.backbone(x.flatten(0, 1))  # every tile on its own: (B*9, D)
        return self.classifier(features.reshape(b, self.tiles * features.shape[1]))


# ---------------------------------------------------------------- RotNet, in the same style

class RotationTransform:
    def __init__(self, size):
        self.transform = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])

    def __call__(self, x):
        x = self.transform(x)
        return torch.stack([torch.rot90(x, k, (1, 2)) for k in range(4)]), torch.arange(4)


class RotationModel(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.dim, 4)

    def forward(self, x):
        return self.classifier(self.backbone(x))


# ---------------------------------------------------------------- MAE, after models_mae.py
# plugins/mae/src/lib.rs at its defaults, written as the MAE repository's models_mae.py is
# (random_masking, forward_decoder, forward_loss with norm_pix_loss), on the ViT above.

class MaeTransform:
    """The paper's only augmentations: a random resized crop (20-100% of the area) and a flip."""

    def __init__(self, size, scale=(0.2, 1.0)):
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(size=size, scale=scale),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ])

    def __call__(self, x):
        return (self.transform(x),)


def sincos_positions(dim, rows, cols):
    """models_mae's get_2d_sincos_pos_embed with a zero CLS row: (1, 1 + rows*cols, dim); token
    r*cols + c holds (sin, cos)(c*w) then (sin, cos)(r*w), w = 10000^(-k/(dim/4)), k < dim/4."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim // 4))
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")

    def half(coord):
        angles = coord.reshape(-1, 1) * omega
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    pos = np.concatenate([np.zeros((1, dim)), np.concatenate([half(c), half(r)], axis=1)])
    return torch.tensor(pos, dtype=torch.float32).unsqueeze(0)


class MAE(nn.Module):
    def __init__(self, vit, channels, size, mask_ratio=0.75, dim=128, depth=2, heads=4):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.encoder, self.p, self.grid = vit, vit.patch, size // vit.patch
        self.patches = self.grid * self.grid
        self.keep = max(1, int(self.patches * (1 - mask_ratio)))
        self.decoder_embed = nn.Linear(vit.dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos_embed", sincos_positions(dim, self.grid, self.grid), persistent=False)
        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.Sequential(*[Block(dim, heads, 4.0, qkv_bias=True, norm_layer=norm)
                                              for _ in range(depth)])
        self.decoder_norm = norm(dim)
        self.decoder_pred = nn.Linear(dim, self.p * self.p * channels)

    def patchify(self, x):
        """(N, C, H, W) -> (N, L, p*p*C), channels innermost (models_mae's einsum nchpwq->nhwpqc)."""
        n, c, p, g = x.shape[0], x.shape[1], self.p, self.grid
        return x.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)

    def loss(self, x):
        n = x.shape[0]
        # random_masking: each image's patches in the order of uniform noise, the first kept.
        ids_shuffle = torch.argsort(torch.rand(n, self.patches, device=x.device), dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        tokens = self.encoder.embed_patches(x)
        d = tokens.shape[2]
        visible = torch.gather(tokens, 1, ids_shuffle[:, :self.keep, None].expand(-1, -1, d))
        latent = self.encoder.encode_tokens(visible)
        mask = torch.ones(n, self.patches, device=x.device)
        mask[:, :self.keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # 1 at the dropped patches, image order
        # forward_decoder: mask tokens after the kept ones, unshuffled, fixed positions.
        y = self.decoder_embed(latent)
        fill = self.mask_token.expand(n, self.patches - self.keep, -1)
        ordered = torch.gather(torch.cat([y[:, 1:], fill], dim=1), 1,
                               ids_restore[:, :, None].expand(-1, -1, y.shape[2]))
        y = torch.cat([y[:, :1], ordered], dim=1) + self.decoder_pos_embed
        pred = self.decoder_pred(self.decoder_norm(self.decoder_blocks(y)))[:, 1:]
        # forward_loss, norm_pix_loss: each target patch to zero mean, unit (unbiased) variance.
        target = self.patchify(x)
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = (pred - target).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()


# ---------------------------------------------------------------- data and training

class ImageSet(Dataset):
    def __init__(self, images, transform):
        self.images = images
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]))


def loader(images, transform, batch, workers, shuffle=True):
    extra = dict(persistent_workers=True, prefetch_factor=2) if workers > 0 else {}
    return DataLoader(ImageSet(images, transform), batch_size=batch, shuffle=shuffle, drop_last=True,
                      num_workers=workers, **extra)


def to_device(data, device):
    return [d.to(device) for d in data]


def build(task, images, args):
    mean, std = images.mean() / 255.0, images.std() / 255.0
    channels, size = (1 if images.ndim == 3 else images.shape[3]), images.shape[1]

    def norm(x):
        return (x - mean) / std

    if args.backbone == "convnet":
        backbone = ConvNet(channels, args.width or 16)
    elif args.backbone == "vit-tiny":
        backbone = ViT(channels, size, args.width or 192)
    else:
        backbone = ResNet18(channels, args.width or 64)
    if task == "simclr":
        model, criterion = SimCLR(backbone), NTXentLoss(0.2)

        def step_loss(data):
            x_i, x_j = data
            # One forward over all 2N views, as Pretext does (same BN statistics).
            z = model(norm(torch.cat([x_i, x_j])))
            return criterion(z[:len(x_i)], z[len(x_i):])

        transform = SimCLRTransform(size)
    elif task == "jigsaw":
        perms = maximal_hamming_set(100, 1)
        model = JigsawModel(backbone, len(perms))
        transform = JigsawTransform(size, perms)

        def step_loss(data):
            tiles, labels = data
            return F.cross_entropy(model(norm(tiles)), labels)
    elif task == "rotation":
        model = RotationModel(backbone)
        transform = RotationTransform(size)

        def step_loss(data):
            views, labels = data
            return F.cross_entropy(model(norm(views.flatten(0, 1))), labels.flatten())
    elif task == "byol":
        model, transform = BYOL(backbone), PairTransform(size)

        def step_loss(data):
            return model.loss(norm(data[0]), norm(data[1]))
    elif task == "dino":
        model, transform = DINO(backbone), MultiCropTransform(size)

        def step_loss(data):
            return model.loss([norm(c) for c in data])
    elif task in ("barlow", "vicreg"):
        model = TwoViewProjector(backbone)
        transform = PairTransform(size) if task == "barlow" else PairTransform(size, (0.2, 1.0), (0.1, 0.1))
        loss_fn = barlow_loss if task == "barlow" else vicreg_loss

        def step_loss(data):
            # Each view encoded on its own (its own batch statistics), as the plugins do.
            return loss_fn(model(norm(data[0])), model(norm(data[1])))
    elif task == "mae":
        if not isinstance(backbone, ViT):
            raise SystemExit("mae masks a ViT's patches: run it with --backbone vit-tiny")
        model, transform = MAE(backbone, channels, size), MaeTransform(size)

        def step_loss(data):
            return model.loss(norm(data[0]))
    else:
        raise SystemExit(f"unknown task {task!r} (simclr, jigsaw, rotation, byol, dino, barlow, vicreg or mae)")
    return model, step_loss, loader(images, transform, args.batch, args.workers)


def train(args):
    torch.manual_seed(0)
    random.seed(0)
    device = torch.device(args.device)
    images = load_images(args.data, args.limit)
    model, step_loss, data = build(args.task, images, args)
    model.to(device).train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-3, weight_decay=1e-4)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        loss = step_loss(to_device(batch, device))
        loss.backward()
        if args.task == "dino":  # DINO's clip_gradients: each parameter to norm 3
            for p in trained:
                if p.grad is not None:
                    norm = p.grad.norm(2)
                    coef = 3.0 / (norm + 1e-6)
                    if coef < 1:
                        p.grad.mul_(coef)
        optimizer.step()
        if hasattr(model, "update_teacher"):
            model.update_teacher(0.996 if args.task == "dino" else 0.99)
        return loss.item()  # waits for the device, so the host clock times finished work

    for i, batch in enumerate(data):  # warm-up: oneDNN primitives, allocator, workers
        step(batch)
        if i + 1 >= args.warmup:
            break
    # A new epoch's iter() on persistent workers first waits for them to finish the batches
    # the warm-up left queued; the epoch's own prefetch starts as it returns, so the clock
    # starts there (as Pretext's epoch clock starts at its prefetch).
    it = iter(data)
    t0 = time.perf_counter()
    steps, wait, last = 0, 0.0, None
    while True:
        t = time.perf_counter()
        batch = next(it, None)
        wait += time.perf_counter() - t
        if batch is None:
            break
        loss = step(batch)
        steps += 1
        last = batch
    secs = time.perf_counter() - t0
    record = {
        "kind": "train", "impl": "pytorch", "task": args.task, "threads": torch.get_num_threads(),
        "workers": args.workers, "batch": args.batch, "steps": steps, "images": steps * args.batch,
        "seconds": round(secs, 4), "data_wait_s": round(wait, 4),
        "images_per_s": round(steps * args.batch / secs, 2), "loss": round(loss, 4),
        "torch": torch.__version__, "device": args.device, "backbone": args.backbone, "data": args.data,
    }
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
        record["max_memory_allocated_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        record["max_memory_reserved_mib"] = round(torch.cuda.max_memory_reserved(device) / 2**20, 1)
        record["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        record["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    if args.step_only > 0 and last is not None:
        # The same step on one batch already on the device: what the model costs without
        # the loader. On CUDA also with TF32 off, the precision Pretext's candle runs at.
        fixed = to_device(last, device)
        modes = [("step_only", None)] + ([("step_only_fp32", False)] if device.type == "cuda" else [])
        for key, tf32 in modes:
            saved = torch.backends.cudnn.allow_tf32
            if tf32 is not None:
                torch.backends.cudnn.allow_tf32 = tf32
            for _ in range(2):
                step(fixed)
            t = time.perf_counter()
            for _ in range(args.step_only):
                step(fixed)
            record[f"{key}_images_per_s"] = round(args.step_only * args.batch / (time.perf_counter() - t), 2)
            torch.backends.cudnn.allow_tf32 = saved
    print(json.dumps(record), flush=True)


def augment(args):
    """SimCLR's two views per image, PIL transforms, through the 2-worker DataLoader."""
    torch.manual_seed(0)
    images = fashion_mnist(args.images)
    data = loader(images, SimCLRTransform(images.shape[1]), args.batch, args.workers, shuffle=False)
    for i, _ in enumerate(data):  # warm-up: start the workers
        if i >= 1:
            break
    it = iter(data)  # drains what the warm-up left queued, untimed (see train)
    t0 = time.perf_counter()
    n = 0
    for x_i, _ in it:
        n += len(x_i)
    secs = time.perf_counter() - t0
    print(json.dumps({
        "kind": "augment", "impl": "torchvision", "images": n, "views": 2 * n, "workers": args.workers,
        "seconds": round(secs, 4), "images_per_s": round(n / secs, 1), "torchvision": torchvision.__version__,
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "augment"])
    p.add_argument("task", nargs="?", default="simclr",
                   choices=["simclr", "jigsaw", "rotation", "byol", "dino", "barlow", "vicreg", "mae"])
    p.add_argument("--limit", type=int, default=2560, help="training images in the timed epoch")
    p.add_argument("--images", type=int, default=10000, help="images for augment")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backbone", choices=["convnet", "resnet18", "vit-tiny"], default="convnet")
    p.add_argument("--width", type=int, default=0, help="base width (0: convnet 16, resnet18 64, vit-tiny 192)")
    p.add_argument("--data", choices=["fashion-mnist", "random"], default="fashion-mnist")
    p.add_argument("--step-only", type=int, default=0, help="also time N steps on one batch, no loader")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.mode == "train":
        train(args)
    else:
        augment(args)


if __name__ == "__main__":
    main()
