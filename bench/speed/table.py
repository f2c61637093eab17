"""Turns the JSON lines of step_speed and torch_step.py into bench/speed's table.

Reads stdin; for each model and implementation takes the median over rounds of each
median step time, and prints a Markdown table with the ratios. Standard library only.
"""

import json
import statistics
import sys

IMPLS = [("candle-stock", "candle stock conv"), ("candle-fast", "Pretext kernels"), ("pytorch", "PyTorch")]


def main():
    runs = {}
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        runs.setdefault((r["model"], r["impl"]), []).append(r)

    def med(model, impl, key):
        rs = runs.get((model, impl), [])
        return statistics.median(r[key] for r in rs) if rs else float("nan")

    models = sorted({m for m, _ in runs}, key=lambda m: (m != "convnet", m))
    head = "| model | part | " + " | ".join(name for _, name in IMPLS) + " | stock / Pretext | Pretext / PyTorch |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for model in models:
        for key, part in [("step_s", "**step**"), ("forward_s", "forward"), ("backward_s", "backward"),
                          ("optimizer_s", "optimizer")]:
            vals = [med(model, impl, key) for impl, _ in IMPLS]
            cells = " | ".join(f"{v * 1000:.0f} ms" for v in vals)
            print(f"| {model} | {part} | {cells} | {vals[0] / vals[1]:.2f}x | {vals[1] / vals[2]:.2f}x |")
    rounds = {k: len(v) for k, v in runs.items()}
    print(f"\nmedians over rounds: {rounds}")
    torch_versions = {r.get("torch") for (m, i), rs in runs.items() if i == "pytorch" for r in rs}
    print(f"threads: {sorted({r['threads'] for rs in runs.values() for r in rs})}, torch {sorted(torch_versions)}")


if __name__ == "__main__":
    main()
