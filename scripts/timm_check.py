"""Loads a `pretext export` of a ViT run into timm's VisionTransformer of the same shape.

    python scripts/timm_check.py RUN_DIR EXPORT.safetensors

Reads the backbone's kind, width, channels, patch and image size from RUN_DIR/run.json,
builds `timm.create_model("vit_tiny_patch16_224" | "vit_small_patch16_224", img_size=…,
patch_size=…, in_chans=…, num_classes=0)` and loads the export with `strict=True`, which
fails on any missing or unexpected key or wrong shape. Then it runs one forward pass and
prints the feature shape. Exits non-zero on any mismatch. Needs torch, timm, safetensors
(`bench/.venv/bin/pip install timm`).
"""

import json
import sys

import timm
import torch
from safetensors.torch import load_file

MODELS = {"vit-tiny": "vit_tiny_patch16_224", "vit-small": "vit_small_patch16_224"}


def main():
    run_dir, export = sys.argv[1], sys.argv[2]
    spec = json.load(open(f"{run_dir}/run.json"))["backbone"]
    if spec["kind"] not in MODELS:
        sys.exit(f"{run_dir} trained a {spec['kind']}, not a ViT")
    model = timm.create_model(MODELS[spec["kind"]], pretrained=False, img_size=spec["image_size"],
                              patch_size=spec["patch_size"], in_chans=spec["in_channels"], num_classes=0,
                              embed_dim=spec["width"])
    state = load_file(export)
    result = model.load_state_dict(state, strict=True)
    print(f"{MODELS[spec['kind']]} (img_size={spec['image_size']}, patch_size={spec['patch_size']}, "
          f"in_chans={spec['in_channels']}, embed_dim={spec['width']}): {len(state)} tensors loaded, "
          f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    model.eval()
    x = torch.zeros(2, spec["in_channels"], spec["image_size"], spec["image_size"])
    with torch.no_grad():
        print("features:", tuple(model(x).shape))


if __name__ == "__main__":
    main()
