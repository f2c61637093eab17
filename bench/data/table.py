"""Prints bench/data/run.sh's results (one JSON object per line) as Markdown tables."""
import json
import sys


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
    by = {r["impl"]: r for r in rows}
    p, reopen, t = by.get("pretext"), by.get("pretext-reopen"), by.get("torchvision")
    mems = [r for r in rows if r["impl"] == "memory"]
    if p and t:
        w = p["workers"]
        torch_ips = max(t["epoch_images_per_s"])
        first = p["first_pass_images_per_s"]
        cached = sorted(p["epoch_images_per_s"])[len(p["epoch_images_per_s"]) // 2]
        print(f"{p['images']} JPEGs of 200-800 px to {p['size']}x{p['size']}, {w} workers\n")
        print("| pipeline | images/s | per worker | ratio to torchvision |")
        print("|---|---|---|---|")
        print(f"| torchvision ImageFolder + DataLoader (every epoch) | {torch_ips:.0f} | {torch_ips / w:.0f} | 1.00x |")
        print(f"| Pretext first pass (decode + resize + write cache) | {first:.0f} | {first / w:.0f} | {first / torch_ips:.2f}x |")
        print(f"| Pretext cached epoch (median) | {cached:.0f} | {cached / w:.0f} | {cached / torch_ips:.1f}x |")
        if reopen:
            print(f"\nReopening the cached folder (the next run's start): {reopen['first_pass_s']:.2f} s, {reopen['decoded']} images decoded.")
    if mems:
        print("\n`pretext train` (rotation, ConvNet width 8, batch 64) on small JPEGs at 64x64\n")
        print("| images | decoded size (MiB) | cache build (s) | peak RssAnon, build (MiB) | trained (s) | peak RssAnon, training (MiB) | peak RssFile, training (MiB) |")
        print("|---|---|---|---|---|---|---|")
        for m in mems:
            a, f = m["peak_rss_anon_mib"], m["peak_rss_file_mib"]
            print(f"| {m['images']} | {m['decoded_mib']} | {m['prepare_s']} | {a['prepare']} | {m['trained_s']} | {a['train']} | {f['train']} |")


if __name__ == "__main__":
    main()
