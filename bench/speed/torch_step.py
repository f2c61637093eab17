"""PyTorch side of bench/speed: the same training step as core/examples/step_speed.rs.

One supervised step (forward, cross-entropy, backward, AdamW) of issue 7's ConvNet
(four 3x3 convs of 32 channels, strides 1,2,2,2, BatchNorm, ReLU, global average pool,
linear; 1x28x28, batch 256) or the CIFAR ResNet-18 (3x3 stem, no max-pool, full width;
3x32x32, batch 64), printing one JSON line like the Rust binary. It only measures: keep
the networks identical to the Rust ones, or the ratio means nothing.

    python torch_step.py convnet|tiles|resnet18|vit-tiny [steps]

vit-tiny is timm's VisionTransformer (`pip install timm`) at Pretext's vit-tiny layout for
Fashion-MNIST: 1x28x28 images, 4 px patches, width 192, 12 blocks, 3 heads, batch 64.
"""

import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def small_convnet():
    layers, in_c = [], 1
    for stride in (1, 2, 2, 2):
        layers += [nn.Conv2d(in_c, 32, 3, stride, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
        in_c = 32
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class BasicBlock(nn.Module):
    def __init__(self, in_c, out_c, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.downsample = None
        if stride != 1 or in_c != out_c:
            self.downsample = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


def cifar_resnet18(width=64):
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    in_c = width
    for i, stride in enumerate((1, 2, 2, 2)):
        out_c = width << i
        layers += [BasicBlock(in_c, out_c, stride), BasicBlock(out_c, out_c, 1)]
        in_c = out_c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_c, 10))


def timed_step(model_name):
    """Builds the model, its batch and AdamW, and returns a function that runs one step and
    returns the seconds spent in the forward (loss included), the backward and the optimizer."""
    if model_name == "convnet":
        net, x = small_convnet(), torch.randn(256, 1, 28, 28)
    elif model_name == "tiles":
        # The same ConvNet on Jigsaw's puzzle pieces: 256 images x 9 tiles of 7x7 pixels.
        net, x = small_convnet(), torch.randn(256 * 9, 1, 7, 7)
    elif model_name == "resnet18":
        net, x = cifar_resnet18(), torch.randn(64, 3, 32, 32)
    elif model_name == "vit-tiny":
        # timm's ViT-Tiny laid out as Pretext's vit-tiny for Fashion-MNIST: 28 px, 4 px
        # patches (49 tokens and the CLS), one channel, a 10-way head on the CLS token.
        import timm
        net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=28, patch_size=4, in_chans=1,
                                num_classes=10)
        x = torch.randn(64, 1, 28, 28)
    else:
        raise SystemExit(f"unknown model {model_name!r} (convnet, tiles, resnet18 or vit-tiny)")
    y = torch.arange(x.shape[0]) % 10
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)

    def step():
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        loss.item()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    return step


def main():
    model_name = sys.argv[1] if len(sys.argv) > 1 else "convnet"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    step = timed_step(model_name)

    for _ in range(2):
        step()
    parts = [step() for _ in range(steps)]

    def median(v):
        return sorted(v)[len(v) // 2]

    print(json.dumps({
        "model": model_name,
        "impl": "pytorch",
        "threads": torch.get_num_threads(),
        "steps": steps,
        "step_s": round(median([sum(p) for p in parts]), 5),
        "forward_s": round(median([p[0] for p in parts]), 5),
        "backward_s": round(median([p[1] for p in parts]), 5),
        "optimizer_s": round(median([p[2] for p in parts]), 5),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
