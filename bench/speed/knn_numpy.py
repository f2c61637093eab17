"""NumPy reference for the kNN timing of `bench/speed/tasks.sh`.

Reads what `core/examples/knn_speed.rs` wrote into DIR (bank, labels, queries, Pretext's
predictions), runs the same protocol — L2-normalise, similarities by matrix product in
blocks of 512 queries, `argpartition` for the top k, weights exp(sim / T), weighted vote —
times it, counts how many predictions agree with Pretext's, and prints one JSON line. The
thread count is the BLAS's (OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, set by the driver).

    python knn_numpy.py DIR [dim] [k] [temperature]
"""

import json
import os
import sys
import time

import numpy as np

CHUNK = 512
CLASSES = 10


def blas_info():
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            if p.get("user_api") == "blas":
                return f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')}, {p.get('num_threads')} threads)"
    except ImportError:
        pass
    cfg = np.show_config(mode="dicts")
    return cfg.get("Build Dependencies", {}).get("blas", {}).get("name", "?")


def knn_predict(bank, bank_labels, queries, k, temperature):
    bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
    queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    bank_t = np.ascontiguousarray(bank.T)
    out = np.empty(len(queries), dtype=np.uint32)
    for start in range(0, len(queries), CHUNK):
        sims = queries[start:start + CHUNK] @ bank_t
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        weights = np.exp(top.astype(np.float64) / temperature)
        labels = bank_labels[idx]
        votes = np.zeros((len(top), CLASSES))
        for c in range(CLASSES):
            votes[:, c] = np.where(labels == c, weights, 0.0).sum(1)
        out[start:start + CHUNK] = votes.argmax(1)
    return out


def main():
    d = sys.argv[1]
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    temperature = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    bank = np.fromfile(os.path.join(d, "bank.f32"), dtype="<f4").reshape(-1, dim)
    bank_labels = np.fromfile(os.path.join(d, "bank_labels.u32"), dtype="<u4")
    queries = np.fromfile(os.path.join(d, "queries.f32"), dtype="<f4").reshape(-1, dim)
    query_labels = np.fromfile(os.path.join(d, "query_labels.u32"), dtype="<u4")
    theirs = np.fromfile(os.path.join(d, "pretext_pred.u32"), dtype="<u4")
    t0 = time.perf_counter()
    pred = knn_predict(bank, bank_labels, queries, k, temperature)
    secs = time.perf_counter() - t0
    print(json.dumps({
        "kind": "knn", "impl": "numpy", "bank": len(bank), "queries": len(queries), "dim": dim, "k": k,
        "seconds": round(secs, 4), "accuracy": round(float((pred == query_labels).mean()), 4),
        "agree": int((pred == theirs).sum()), "numpy": np.__version__, "blas": blas_info(),
    }))


if __name__ == "__main__":
    main()
