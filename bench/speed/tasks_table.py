"""Turns the JSON lines of bench/speed/tasks.sh into its table (Markdown, stdout).

Medians over rounds; ratios are Pretext / reference for throughputs (higher is better for
Pretext) and reference / Pretext for times (also higher is better for Pretext), so every
"x" column reads "how many times faster Pretext is". Standard library only.
"""

import json
import statistics
import sys


def main():
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]

    def values(kind, impl, key, task=None):
        return [r[key] for r in rows if r["kind"] == kind and r["impl"] == impl and r.get("task") == task
                and key in r]

    def med(kind, impl, key, task=None):
        vals = values(kind, impl, key, task)
        return statistics.median(vals) if vals else float("nan")

    def each(kind, impl, key, task=None, fmt="{:.0f}"):
        return "/".join(fmt.format(v) for v in values(kind, impl, key, task))

    tasks = list(dict.fromkeys(r["task"] for r in rows if r["kind"] == "train"))
    print("| measurement | Pretext | reference | Pretext / reference speed | each round (Pretext; reference) |")
    print("|---|---|---|---|---|")
    for t in tasks:
        p, q = med("train", "pretext", "images_per_s", t), med("train", "pytorch", "images_per_s", t)
        print(f"| train {t}, images/s (vs PyTorch) | {p:.0f} | {q:.0f} | {p / q:.2f}x | {each('train', 'pretext', 'images_per_s', t)}; {each('train', 'pytorch', 'images_per_s', t)} |")
    p, q = med("augment", "pretext", "images_per_s"), med("augment", "torchvision", "images_per_s")
    print(f"| SimCLR augmentation, images/s, 2 views each (vs torchvision) | {p:.0f} | {q:.0f} | {p / q:.1f}x | {each('augment', 'pretext', 'images_per_s')}; {each('augment', 'torchvision', 'images_per_s')} |")
    p, q = med("knn", "pretext", "seconds"), med("knn", "numpy", "seconds")
    print(f"| kNN 60000x128 bank, 10000 queries, seconds (vs NumPy) | {p:.2f} s | {q:.2f} s | {q / p:.2f}x | {each('knn', 'pretext', 'seconds', fmt='{:.1f}')}; {each('knn', 'numpy', 'seconds', fmt='{:.1f}')} |")

    print()
    for t in tasks:
        pe = med("train", "pretext", "first_epoch_images_per_s", t)
        wait = med("train", "pytorch", "data_wait_s", t)
        secs = med("train", "pytorch", "seconds", t)
        print(f"- {t}: Pretext's first (cold) epoch {pe:.0f} images/s; PyTorch waited on its DataLoader "
              f"{wait:.1f} s of {secs:.1f} s")
    agree = [(r["agree"], r["queries"]) for r in rows if r["kind"] == "knn" and r["impl"] == "numpy"]
    print(f"- kNN predictions agreeing with NumPy's: {agree} (agreed, queries)")
    blas = sorted({r.get("blas") for r in rows if r["kind"] == "knn" and r["impl"] == "numpy"})
    torch_v = sorted({r.get("torch") for r in rows if r.get("impl") == "pytorch"})
    tv = sorted({r.get("torchvision") for r in rows if r.get("impl") == "torchvision"})
    threads = sorted({r["threads"] for r in rows if "threads" in r})
    rounds = max((sum(1 for r in rows if r["kind"] == "knn" and r["impl"] == "numpy"), 1))
    print(f"- threads {threads}, rounds {rounds}; torch {torch_v}, torchvision {tv}; NumPy BLAS {blas}")


if __name__ == "__main__":
    main()
