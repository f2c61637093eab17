"""Runs a command and samples its memory from /proc every 0.2 s: the peak of its own
anonymous memory (RssAnon: heap and stacks, what a dataset held in the process would
grow) and of its file-backed resident pages (RssFile: mapped files such as the pixel
cache, which the kernel can drop at any time). Once the command's stderr says
"training ", it runs TRAIN_SECONDS more and is then stopped (SIGKILL: Pretext's runs are
crash-safe). Prints one JSON line.

    python rss.py TRAIN_SECONDS -- COMMAND...
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time


def status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(value.split()[0]) * 1024
    except FileNotFoundError:
        pass
    return out


def main():
    train_seconds = float(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1:]
    started = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    training_at = [None]
    lines = []

    def read():
        for line in proc.stderr:
            lines.append(line.rstrip())
            sys.stderr.write(line)
            if line.startswith("training ") and training_at[0] is None:
                training_at[0] = time.time()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak = {"prepare": {"RssAnon": 0, "RssFile": 0}, "train": {"RssAnon": 0, "RssFile": 0}}
    while proc.poll() is None:
        s = status(proc.pid)
        phase = "train" if training_at[0] else "prepare"
        for k in ("RssAnon", "RssFile"):
            peak[phase][k] = max(peak[phase][k], s.get(k, 0))
        if training_at[0] and time.time() - training_at[0] > train_seconds:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    reader.join(timeout=5)
    print(json.dumps({
        "command": " ".join(cmd),
        "prepare_s": round((training_at[0] or time.time()) - started, 1),
        "trained_s": round(time.time() - training_at[0], 1) if training_at[0] else 0,
        "peak_rss_anon_mib": {k: round(v["RssAnon"] / 2**20, 1) for k, v in peak.items()},
        "peak_rss_file_mib": {k: round(v["RssFile"] / 2**20, 1) for k, v in peak.items()},
        "first_line": next((l for l in lines if l.startswith("training ")), ""),
    }))


if __name__ == "__main__":
    main()
