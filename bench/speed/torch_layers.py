"""PyTorch's time per convolution layer and pass in the ResNet-18 step of torch_step.py.

Runs the step (forward, cross-entropy, backward, AdamW) under torch.profiler and prints
each layer shape's forward (`mkldnn_convolution`) and backward (`convolution_backward`:
input and kernel gradient together) per step, and the batch norm and ReLU ops, so that
Pretext's per-layer timings can be set against them. Timing only: nothing here is a test.

    OMP_NUM_THREADS=2 bench/.venv/bin/python bench/speed/torch_layers.py [steps]
"""

import os
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_step import timed_step  # noqa: E402


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    step = timed_step("resnet18")

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    # (input shape, kernel shape) -> pass -> ms per step.
    layers = defaultdict(lambda: defaultdict(float))
    others = defaultdict(float)
    for e in prof.key_averages(group_by_input_shape=True):
        ms = e.self_cpu_time_total / 1000 / steps
        shapes = e.input_shapes
        if e.key == "aten::mkldnn_convolution":
            layer = layers[(tuple(shapes[0]), tuple(shapes[1]))]
            layer["forward"] += ms
            layer["layers"] += e.count / steps
        elif e.key == "aten::convolution_backward":
            # Inputs: grad_output, input, weight.
            layers[(tuple(shapes[1]), tuple(shapes[2]))]["backward"] += ms
        elif e.key in ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::clamp_min",
                       "aten::threshold_backward", "aten::add", "aten::add_", "aten::copy_"):
            others[e.key] += ms
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, ms per step over {steps} steps")
    print("| input | kernel | layers | forward | backward | sum | per layer |")
    print("|---|---|---|---|---|---|---|")
    total = 0.0
    for (inp, ker), parts in sorted(layers.items(), key=lambda kv: -(kv[1]["forward"] + kv[1]["backward"])):
        s = parts["forward"] + parts["backward"]
        total += s
        n = round(parts["layers"])
        print(f"| {'x'.join(map(str, inp))} | {'x'.join(map(str, ker))} | {n} | {parts['forward']:.1f} | "
              f"{parts['backward']:.1f} | {s:.1f} | {s / max(n, 1):.1f} |")
    print(f"| all convolutions | | | | | {total:.1f} | |")
    for k, v in sorted(others.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | | | | | {v:.1f} | |")


if __name__ == "__main__":
    main()
