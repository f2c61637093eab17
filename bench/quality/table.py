"""Prints the quality benchmark's Markdown table from the JSON files bench/quality/run.sh wrote."""
import glob
import json
import os
import re
import sys

out, tasks, budget = sys.argv[1], sys.argv[2].split(), sys.argv[3]


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) > 0 else {}


def epoch_records(task):
    lines = [json.loads(l) for l in open(os.path.join(out, task, "metrics.jsonl")) if l.strip()]
    return [r for r in lines if r.get("epoch_end")]


def train_time(run):
    """A run's training wall time and mean images/s, as table cells."""
    epochs = epoch_records(run)
    if not epochs:
        return "–", "–"
    ips = sum(r["images_per_sec"] for r in epochs) / len(epochs)
    return f"{epochs[-1]['elapsed_s'] / 60:.1f} min", f"{ips:.0f}"


def pct(v):
    return "–" if v is None else f"{100 * v:.1f}%"


def best_stage(result):
    stage, value = max(result.get("stages", {}).items(), key=lambda kv: kv[1], default=(None, None))
    return f"{stage} {pct(value)}" if stage else "–"


px_k, px_l = load("pixels.knn.json"), load("pixels.linear.json")
randoms = {}
for path in sorted(glob.glob(os.path.join(out, "random-w*.knn.json"))):
    width = int(re.search(r"random-w(\d+)\.knn\.json$", path).group(1))
    randoms[width] = (load(os.path.basename(path)), load(f"random-w{width}.linear.json"))


def margin_over(k, floors):
    """kNN points above (or below) each floor, and a mark when k does not clear them all."""
    if k is None or None in floors:
        return "–"
    return " / ".join(f"{100 * (k - f):+.1f}" for f in floors) + ("" if k > max(floors) else " **below a floor**")


def margin(k, width):
    """Against the two floors a pretext task has to clear: raw pixels and the random init of
    its own width."""
    return margin_over(k, [px_k.get("knn_top1"), randoms.get(width, ({}, {}))[0].get("knn_top1")])


rows = []
widths = {}
for task in tasks:
    knn, lin = load(f"{task}.knn.json"), load(f"{task}.linear.json")
    wall, ips = train_time(task)
    info = json.load(open(os.path.join(out, task, "run.json")))
    width = widths[task] = info["backbone"]["width"]
    rows.append((f"{task} ({info['epochs_done']} epochs)", width, knn.get("knn_top1"), margin(knn.get("knn_top1"), width),
                 lin.get("linear_top1"), best_stage(knn), wall, ips))
rows.append(("raw pixels", "–", px_k.get("knn_top1"), "–", px_l.get("linear_top1"),
             f"centred {pct(px_k.get('stages', {}).get('pixels_centred'))}", "–", "–"))
for width, (rk, rl) in randoms.items():
    rows.append(("random-init backbone", width, rk.get("knn_top1"), "–", rl.get("linear_top1"), best_stage(rk), "–", "–"))
sup = load("supervised.json")
sup_time_path = os.path.join(out, "supervised.time")
sup_time = open(sup_time_path).read().strip() if os.path.exists(sup_time_path) else None
sup_epochs = os.environ.get("SUPERVISED_EPOCHS", "")
sup_width = widths[tasks[0]]
rows.append((f"supervised (same backbone, labels{', ' + sup_epochs + ' epochs' if sup_epochs else ''})", sup_width, None, "–", None,
             f"test top-1 {pct(sup.get('finetune_top1'))}", f"{float(sup_time) / 60:.1f} min" if sup_time else "–", "–"))

print(f"Fashion-MNIST test split (10 000 images), bank/probe on the 60 000 training images. Budget: {budget}.\n")
print("| features | width | kNN top-1 (last stage) | kNN vs pixels / random init (points) | linear top-1 (last stage) | best kNN stage / note | train wall time | train images/s |")
print("|---|---|---|---|---|---|---|---|")
for name, width, k, vs, l, note, wall, ips in rows:
    print(f"| {name} | {width} | {pct(k)} | {vs} | {pct(l)} | {note} | {wall} | {ips} |")
vit_tasks = os.environ.get("VIT_TASKS", "").split()
if vit_tasks:
    bank = os.environ.get("VIT_BANK", "10000")
    ft_epochs = os.environ.get("VIT_FINETUNE_EPOCHS", "1")
    vpx_k, vpx_l = load(f"pixels-{bank}.knn.json"), load(f"pixels-{bank}.linear.json")
    rk, rl, rf = load("random-vit.knn.json"), load("random-vit.linear.json"), load("random-vit.finetune.json")

    def vit_margin(k):
        return margin_over(k, [vpx_k.get("knn_top1"), rk.get("knn_top1")])

    print(f"\nViT-Tiny (4 px patches, width 192), the same test split, but the bank, the probe's and the fine-tuning's "
          f"training set are the first {bank} training images (a ViT's forward pass is slow on a CPU); fine-tuning "
          f"{ft_epochs} epoch(s), AdamW 1e-3. Raw pixels and the random-init ViT under the same protocol; the random init "
          f"fine-tuned is the supervised ViT at that budget.\n")
    print("| features | trained on | kNN top-1 | kNN vs pixels / random init (points) | linear top-1 | fine-tune top-1 | train wall time | train images/s |")
    print("|---|---|---|---|---|---|---|---|")
    for task in vit_tasks:
        run = f"{task}-vit"
        knn, lin, ft = load(f"{run}.knn.json"), load(f"{run}.linear.json"), load(f"{run}.finetune.json")
        wall, ips = train_time(run)
        info = json.load(open(os.path.join(out, run, "run.json")))
        budget_note = (f"{info['dataset']['train_images']} images × {info['epochs_done']} epochs, "
                       f"batch {info['config'].get('batch_size')}")
        print(f"| {task} (ViT-Tiny) | {budget_note} | {pct(knn.get('knn_top1'))} | {vit_margin(knn.get('knn_top1'))} | "
              f"{pct(lin.get('linear_top1'))} | {pct(ft.get('finetune_top1'))} | "
              f"{wall} | {ips} |")
    print(f"| raw pixels | – | {pct(vpx_k.get('knn_top1'))} | – | {pct(vpx_l.get('linear_top1'))} | – | – | – |")
    print(f"| random-init ViT-Tiny | – | {pct(rk.get('knn_top1'))} | – | {pct(rl.get('linear_top1'))} | "
          f"{pct(rf.get('finetune_top1'))} (supervised) | – | – |")

print("\nCommands, machine load, the validation experiments behind the settings and what still falls short: "
      "docs/benchmarks.md, section \"Learning quality on Fashion-MNIST\".")
