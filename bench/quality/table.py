"""Prints the quality benchmark's Markdown table from the JSON files bench/quality/run.sh wrote."""
import json
import os
import sys

out, tasks, budget = sys.argv[1], sys.argv[2].split(), sys.argv[3]


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) > 0 else {}


def metrics(task):
    lines = [json.loads(l) for l in open(os.path.join(out, task, "metrics.jsonl")) if l.strip()]
    epochs = [r for r in lines if r.get("epoch_end")]
    return epochs


def pct(v):
    return "–" if v is None else f"{100 * v:.1f}%"


rows = []
for task in tasks:
    knn, lin = load(f"{task}.knn.json"), load(f"{task}.linear.json")
    epochs = metrics(task)
    wall = epochs[-1]["elapsed_s"] if epochs else None
    ips = sum(r["images_per_sec"] for r in epochs) / len(epochs) if epochs else None
    best_stage = max(knn.get("stages", {}).items(), key=lambda kv: kv[1], default=(None, None))
    info = json.load(open(os.path.join(out, task, "run.json")))
    rows.append((f"{task} ({info['epochs_done']} epochs)", knn.get("knn_top1"), lin.get("linear_top1"), f"{best_stage[0]} {pct(best_stage[1])}" if best_stage[0] else "–",
                 f"{wall / 60:.1f} min" if wall else "–", f"{ips:.0f}" if ips else "–"))
px_k, px_l = load("pixels.knn.json"), load("pixels.linear.json")
rows.append(("raw pixels", px_k.get("knn_top1"), px_l.get("linear_top1"),
             f"centred {pct(px_k.get('stages', {}).get('pixels_centred'))}", "–", "–"))
rk, rl = load("random.knn.json"), load("random.linear.json")
best_random = max(rk.get("stages", {}).items(), key=lambda kv: kv[1], default=(None, None))
rows.append(("random-init backbone", rk.get("knn_top1"), rl.get("linear_top1"),
             f"{best_random[0]} {pct(best_random[1])}" if best_random[0] else "–", "–", "–"))
sup = load("supervised.json")
sup_time = open(os.path.join(out, "supervised.time")).read().strip() if os.path.exists(os.path.join(out, "supervised.time")) else None
sup_epochs = os.environ.get("SUPERVISED_EPOCHS", "")
rows.append((f"supervised (same backbone, labels{', ' + sup_epochs + ' epochs' if sup_epochs else ''})", None, None, f"test top-1 {pct(sup.get('finetune_top1'))}",
             f"{float(sup_time) / 60:.1f} min" if sup_time else "–", "–"))

print(f"Fashion-MNIST test split (10 000 images), bank/probe on the 60 000 training images. Budget: {budget}.\n")
print("| features | kNN top-1 (last stage) | linear top-1 (last stage) | best kNN stage / note | train wall time | train images/s |")
print("|---|---|---|---|---|---|")
for name, k, l, note, wall, ips in rows:
    print(f"| {name} | {pct(k)} | {pct(l)} | {note} | {wall} | {ips} |")
print("\nCommands, machine load, the validation experiments behind the settings and what still falls short: "
      "docs/benchmarks.md, section \"Learning quality on Fashion-MNIST\".")
