"""Reference values for core/sdk/src/model/vit_tests.rs: a small timm VisionTransformer with
deterministic weights, its CLS features and last-block CLS attention on a fixed input.

    bench/.venv/bin/python scripts/vit_reference.py

Every parameter, taken in sorted-name order k = 0, 1, …, holds
0.1·sin(0.37·i + k) at flat index i; the input holds cos(0.11·i). The Rust test builds the
same weights and must print the same numbers.
"""

import math

import timm
import torch

model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=8, patch_size=4, in_chans=1,
                          num_classes=0, embed_dim=24, depth=2, num_heads=3)
state = model.state_dict()
with torch.no_grad():
    for k, name in enumerate(sorted(state)):
        t = state[name]
        i = torch.arange(t.numel(), dtype=torch.float64)
        t.copy_((0.1 * torch.sin(0.37 * i + k)).reshape(t.shape).to(t.dtype))
model.load_state_dict(state)
model.eval()
x = torch.cos(0.11 * torch.arange(2 * 1 * 8 * 8, dtype=torch.float64)).reshape(2, 1, 8, 8).float()
captured = {}


def hook(module, inputs, output):
    a = inputs[0]
    n, t, d = a.shape
    qkv = module.qkv(a).reshape(n, t, 3, module.num_heads, d // module.num_heads).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    captured["attn"] = ((q * module.scale) @ k.transpose(-2, -1)).softmax(-1)


model.blocks[-1].attn.register_forward_hook(hook)
with torch.no_grad():
    features = model(x)
print("names:", sorted(state))
print("features[0][:6]:", [round(v, 6) for v in features[0, :6].tolist()])
print("features[1][-3:]:", [round(v, 6) for v in features[1, -3:].tolist()])
print("cls attention[1][2]:", [round(v, 6) for v in captured["attn"][1, 2, 0, 1:].tolist()])
