"""The bookkeeping of scripts/gpu-check.sh: checks, records and the results table.

Standard library only, so that it runs with whatever python3 the GPU machine has. Every
subcommand appends one JSON record to --records (one object a line) and prints what it
found; `plugins` and `parity` exit 1 when their check fails, so the shell script counts the
step as failed. `table` turns the records into the Markdown report.

    gpu_check.py plugins PLUGINS.json --records R [--require-cuda]
    gpu_check.py parity --task T --steps S --first-rel F --later-rel L --ref-label A --dev-label B \\
        REF/metrics.jsonl DEV/metrics.jsonl --records R --losses LOSSES.tsv
    gpu_check.py pretext-speed RUN/metrics.jsonl --batch B --records R [--mem SAMPLES] [--timed-out]
    gpu_check.py torch-speed TORCH_OUTPUT --records R [--mem SAMPLES] [--timed-out]
    gpu_check.py table --records R --out REPORT.md [--info KEY=VALUE ...]
"""

import argparse
import json
import math
import os
import statistics
import sys

TASKS = ("simclr", "jigsaw", "rotation", "byol", "dino", "barlow", "vicreg", "mae")


def append(path, record):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path):
    """The JSON objects of a file, one a line; other lines (progress, warnings) are skipped."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def memory(path):
    """Peak and first sample (MiB) of an `nvidia-smi --query-gpu=memory.used` log, or None."""
    if not path or not os.path.exists(path):
        return None
    values = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                values.append(float(line.strip()))
            except ValueError:
                pass
    if not values:
        return None
    return {"peak_mib": max(values), "first_mib": values[0], "samples": len(values)}


# ---------------------------------------------------------------- (a) plugins

def cmd_plugins(args):
    try:
        with open(args.file, encoding="utf-8") as f:
            rows = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        rows, error = [], str(e)
    else:
        error = None
    found = {r.get("name"): r for r in rows}
    ok = error is None
    for name in TASKS:
        r = found.get(name)
        good = r is not None and r.get("status") == "ok" and (r.get("cuda") or not args.require_cuda)
        ok &= good
        state = "missing" if r is None else f"status {r.get('status')}, cuda {'yes' if r.get('cuda') else 'no'}"
        print(f"plugin {name}: {state} -> {'PASS' if good else 'FAIL'}")
    if error:
        print(f"cannot read {args.file}: {error}")
    append(args.records, {"kind": "plugins", "require_cuda": args.require_cuda, "pass": ok,
                          "plugins": [{k: r.get(k) for k in ("name", "version", "cuda", "status")} for r in rows]})
    return 0 if ok else 1


# ---------------------------------------------------------------- (b) CUDA vs CPU losses

def step_losses(path):
    """Per-step losses of epoch 1 from metrics.jsonl written with log_every = 1, by step."""
    return {r["step"]: r["loss"] for r in read_jsonl(path) if not r.get("epoch_end") and r.get("epoch") == 1}


def cmd_parity(args):
    ref, dev = step_losses(args.ref), step_losses(args.dev)
    steps = list(range(1, args.steps + 1))
    rows, ok, problems = [], True, []
    for s in steps:
        a, b = ref.get(s), dev.get(s)
        if a is None or b is None:
            problems.append(f"step {s} missing ({args.ref_label}: {a}, {args.dev_label}: {b})")
            ok = False
            continue
        tol = args.first_rel if s == 1 else args.later_rel
        diff = abs(a - b)
        rel = diff / max(abs(a), abs(b), 1e-12)
        good = math.isfinite(a) and math.isfinite(b) and rel <= tol
        ok &= good
        rows.append({"step": s, "ref": a, "dev": b, "abs": diff, "rel": rel, "tol": tol, "pass": good})
    print(f"{args.task}: loss per step, {args.ref_label} vs {args.dev_label}")
    print(f"  {'step':>4}  {args.ref_label:>14}  {args.dev_label:>14}  {'abs diff':>9}  {'rel diff':>9}  {'tol':>7}")
    for r in rows:
        print(f"  {r['step']:>4}  {r['ref']:>14.8f}  {r['dev']:>14.8f}  {r['abs']:>9.2e}  {r['rel']:>9.2e}  "
              f"{r['tol']:>7.0e}  {'ok' if r['pass'] else 'OVER'}")
    for p in problems:
        print(f"  {p}")
    finite = [r for r in rows if math.isfinite(r["rel"])]
    max_abs = max((r["abs"] for r in finite), default=float("nan"))
    max_rel = max((r["rel"] for r in finite), default=float("nan"))
    first = next((r["rel"] for r in rows if r["step"] == 1), float("nan"))
    print(f"{args.task}: max abs diff {max_abs:.3e}, max rel diff {max_rel:.3e} (step 1: {first:.3e}) -> "
          f"{'PASS' if ok else 'FAIL'}")
    new = not os.path.exists(args.losses)
    with open(args.losses, "a", encoding="utf-8") as f:
        if new:
            f.write("task\tstep\tref_device\tref_loss\tdev_device\tdev_loss\tabs_diff\trel_diff\ttolerance\n")
        for r in rows:
            f.write(f"{args.task}\t{r['step']}\t{args.ref_label}\t{r['ref']!r}\t{args.dev_label}\t{r['dev']!r}\t"
                    f"{r['abs']:.3e}\t{r['rel']:.3e}\t{r['tol']:g}\n")
    append(args.records, {"kind": "parity", "task": args.task, "steps": args.steps, "compared": len(rows),
                          "ref": args.ref_label, "dev": args.dev_label, "max_abs": max_abs, "max_rel": max_rel,
                          "first_rel": first, "first_tol": args.first_rel, "later_tol": args.later_rel,
                          "problems": problems, "pass": ok})
    return 0 if ok else 1


# ---------------------------------------------------------------- (c), (d) speed

def cmd_pretext_speed(args):
    records = read_jsonl(args.file)
    ends = [r for r in records if r.get("epoch_end")]
    last_epoch = max((r["epoch"] for r in records), default=0)
    # Steps of the last epoch seen (the second when the run finished; a warm one either way),
    # less its first step when it is the first epoch (JIT, allocator, cuBLAS handles).
    steps = [r for r in records if not r.get("epoch_end") and r.get("epoch") == last_epoch]
    if last_epoch == 1:
        steps = steps[2:]
    per_step = [r["images_per_sec"] for r in steps if r.get("images_per_sec", 0) > 0]
    record = {
        "kind": "speed", "impl": "pretext", "batch": args.batch, "epochs_done": len(ends),
        "images_per_s": ends[-1]["images_per_sec"] if len(ends) >= 2 else None,
        "first_epoch_images_per_s": ends[0]["images_per_sec"] if ends else None,
        "step_median_images_per_s": statistics.median(per_step) if per_step else None,
        "steps_in_median": len(per_step), "timed_out": args.timed_out, "memory": memory(args.mem),
        "loss": ends[-1]["loss"] if ends else None,
    }
    append(args.records, record)
    print(json.dumps(record))
    return 0 if record["images_per_s"] or record["step_median_images_per_s"] else 1


def cmd_torch_speed(args):
    lines = read_jsonl(args.file)
    record = dict(lines[-1]) if lines else {"impl": "pytorch"}
    record.update({"kind": "speed", "impl": "pytorch", "timed_out": args.timed_out, "memory": memory(args.mem)})
    append(args.records, record)
    print(json.dumps(record))
    return 0 if record.get("images_per_s") else 1


# ---------------------------------------------------------------- (e) the table

def fmt(v, spec="{:.0f}", none="n/a"):
    return none if v is None or (isinstance(v, float) and not math.isfinite(v)) else spec.format(v)


def cmd_table(args):
    records = read_jsonl(args.records)
    info = dict(kv.split("=", 1) for kv in args.info)
    lines = [f"# Pretext GPU check ({info.get('mode', '?')})", ""]
    for key in ("date", "card", "driver", "pretext", "torch", "host", "mode_note"):
        if key in info:
            lines.append(f"- {key.replace('_', ' ')}: {info[key]}")
    lines.append("")

    plugins = [r for r in records if r["kind"] == "plugins"]
    lines += ["## Plugins", ""]
    if plugins:
        p = plugins[-1]
        names = ", ".join(f"{x['name']} (cuda {'yes' if x.get('cuda') else 'no'}, {x.get('status')})"
                          for x in p["plugins"]) or "none found"
        need = "CUDA required" if p["require_cuda"] else "CUDA not required in this mode"
        lines.append(f"{names}; {need}: **{'PASS' if p['pass'] else 'FAIL'}**")
    else:
        lines.append("not run")
    lines.append("")

    parity = {r["task"]: r for r in records if r["kind"] == "parity"}
    lines += ["## Same seed and batch on both devices: training loss per step", "",
              "| task | steps | max abs diff | max rel diff | step-1 rel diff | tolerance (rel) | result |",
              "|---|---|---|---|---|---|---|"]
    for t in TASKS:
        r = parity.get(t)
        if r is None:
            lines.append(f"| {t} | – | – | – | – | – | not run |")
            continue
        lines.append(f"| {t} | {r['compared']}/{r['steps']} | {fmt(r['max_abs'], '{:.2e}')} | "
                     f"{fmt(r['max_rel'], '{:.2e}')} | {fmt(r['first_rel'], '{:.2e}')} | "
                     f"step 1: {r['first_tol']:g}, later: {r['later_tol']:g} | **{'PASS' if r['pass'] else 'FAIL'}** |")
    if parity:
        any_r = next(iter(parity.values()))
        lines.append("")
        lines.append(f"Reference: {any_r['ref']}; compared: {any_r['dev']}.")
    lines.append("")

    speed = {r["impl"]: r for r in records if r["kind"] == "speed"}
    pre, tor = speed.get("pretext"), speed.get("pytorch")
    lines += [f"## SimCLR training speed: {info.get('speed_config', '')}", "",
              "| implementation | images/s | peak GPU memory, nvidia-smi (MiB) | allocator peak (MiB) | notes |",
              "|---|---|---|---|---|"]

    def mem(r):
        m = r.get("memory") if r else None
        return "n/a" if not m else f"{m['peak_mib']:.0f} (idle {m['first_mib']:.0f})"

    if pre:
        median = f"median step {fmt(pre['step_median_images_per_s'])} images/s over {pre['steps_in_median']} steps"
        if pre["images_per_s"]:
            ips, note = fmt(pre["images_per_s"]), f"epoch 2 of 2; {median}"
        else:
            ips, note = f"{fmt(pre['step_median_images_per_s'])} (step median)", f"no second epoch; {median}"
        note += "; loader threads " + info.get("workers", "?") + "; fp32"
        if pre.get("timed_out"):
            note += "; TIMED OUT (numbers from the steps it logged)"
        lines.append(f"| Pretext (candle) | {ips} | {mem(pre)} | n/a | {note} |")
    else:
        lines.append("| Pretext (candle) | not run | | | |")
    if tor and tor.get("images_per_s"):
        note = (f"DataLoader {tor.get('workers')} workers, waited {fmt(tor.get('data_wait_s'), '{:.1f}')} s "
                f"of {fmt(tor.get('seconds'), '{:.1f}')} s; cuDNN TF32 {tor.get('cudnn_allow_tf32', 'n/a')}")
        if tor.get("timed_out"):
            note += "; TIMED OUT"
        alloc = fmt(tor.get("max_memory_allocated_mib"))
        lines.append(f"| PyTorch, seed article's code (corrected) | {fmt(tor['images_per_s'])} | {mem(tor)} | "
                     f"{alloc} | {note} |")
        if tor.get("step_only_images_per_s"):
            fp32 = tor.get("step_only_fp32_images_per_s")
            lines.append(f"| PyTorch, model step only (batch on device, no loader) | "
                         f"{fmt(tor['step_only_images_per_s'])} | | | "
                         f"TF32 off: {fmt(fp32)} images/s |")
    else:
        lines.append("| PyTorch, seed article's code (corrected) | not run or failed | | | |")
    lines.append("")
    p_ips = (pre or {}).get("images_per_s") or (pre or {}).get("step_median_images_per_s")
    t_ips = (tor or {}).get("images_per_s")
    if p_ips and t_ips:
        lines.append(f"**Pretext / PyTorch: {p_ips / t_ips:.2f}x** (training images/s, end to end with each one's "
                     f"data loading)")
        if tor.get("step_only_images_per_s"):
            s = f"Pretext / PyTorch model step only: {p_ips / tor['step_only_images_per_s']:.2f}x"
            if tor.get("step_only_fp32_images_per_s"):
                s += f" (TF32 off: {p_ips / tor['step_only_fp32_images_per_s']:.2f}x)"
            lines.append("")
            lines.append(s)
    else:
        lines.append("Pretext / PyTorch: n/a (a side is missing)")
    lines.append("")

    steps = [r for r in records if r["kind"] == "step"]
    lines += ["## Steps", ""]
    lines += [f"- {r['name']}: {r['status']} ({r['seconds']} s)" for r in steps]
    failed = [r for r in steps if r["status"] != "ok"]
    lines += ["", f"**{'ALL STEPS OK' if not failed else str(len(failed)) + ' STEP(S) FAILED OR SKIPPED'}**", ""]

    text = "\n".join(lines)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


def cmd_step(args):
    append(args.records, {"kind": "step", "name": args.name, "status": args.status, "seconds": args.seconds})
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("plugins")
    s.add_argument("file")
    s.add_argument("--records", required=True)
    s.add_argument("--require-cuda", action="store_true")
    s.set_defaults(func=cmd_plugins)

    s = sub.add_parser("parity")
    s.add_argument("ref")
    s.add_argument("dev")
    s.add_argument("--task", required=True)
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--first-rel", type=float, required=True)
    s.add_argument("--later-rel", type=float, required=True)
    s.add_argument("--ref-label", default="cpu")
    s.add_argument("--dev-label", default="cuda")
    s.add_argument("--records", required=True)
    s.add_argument("--losses", required=True)
    s.set_defaults(func=cmd_parity)

    s = sub.add_parser("pretext-speed")
    s.add_argument("file")
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--records", required=True)
    s.add_argument("--mem")
    s.add_argument("--timed-out", action="store_true")
    s.set_defaults(func=cmd_pretext_speed)

    s = sub.add_parser("torch-speed")
    s.add_argument("file")
    s.add_argument("--records", required=True)
    s.add_argument("--mem")
    s.add_argument("--timed-out", action="store_true")
    s.set_defaults(func=cmd_torch_speed)

    s = sub.add_parser("step")
    s.add_argument("name")
    s.add_argument("status")
    s.add_argument("seconds", type=int)
    s.add_argument("--records", required=True)
    s.set_defaults(func=cmd_step)

    s = sub.add_parser("table")
    s.add_argument("--records", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--info", action="append", default=[])
    s.set_defaults(func=cmd_table)

    args = p.parse_args()
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
