"""How fast behaviour features aggregate, and how fast the GBDT teacher pseudo-labels.

    python benchmarks/teacher_throughput.py [--rows 2000000] [--threads 2]

1. Feature aggregation on the laptop world (10M impressions in 10 shards; generated on first
   use, ~12 s): read + count rows/s per shard and in total, in a fresh process so its peak RSS
   is its own. Peak RSS levelling off after the first shards means memory is bounded by the
   shard size, not the log size.
2. Pseudo-labelling: a 200-tree x 31-leaf teacher fitted on the laptop world's labels scores
   `--rows` pairs (the world's pairs resampled) with stock LightGBM Booster.predict and with
   the same trees compiled to native code by lleaves (relcourse.teacher.CompiledTeacher);
   rows/s side by side and the largest difference of the scores. Stock LightGBM does about
   0.24M rows/s on 2 cores; the goal is >= 1e6 rows/s.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import data_gen
from relcourse.config import load_profile
from relcourse.features import behaviour_features
from relcourse.store import ensure_data
from relcourse.teacher import Teacher, pseudo_label

CHILD = """
import json, resource, sys, time
import data_gen
from relcourse.features import IMPRESSION_COLUMNS, count_shard, features_from_counts
def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
data_dir = sys.argv[1]
shards, counts, rows = [], None, 0
start = time.perf_counter()
reader = data_gen.iter_shards(data_dir, "impressions", columns=list(IMPRESSION_COLUMNS))
while True:
    t0 = time.perf_counter()
    shard = next(reader, None)
    if shard is None:
        break
    t1 = time.perf_counter()
    part = count_shard(shard)
    counts = part if counts is None else counts + part
    shards.append({"rows": len(shard), "read_s": t1 - t0, "count_s": time.perf_counter() - t1,
                   "shard_mb": shard.memory_usage(deep=True).sum() / 2**20, "peak_rss_mb": peak_rss_mb()})
    rows += len(shard)
    del shard
x = features_from_counts(counts, data_gen.read_table(data_dir, "queries", columns=["query_id", "bucket"]))
print(json.dumps({"shards": shards, "rows": rows, "pairs": len(x), "seconds": time.perf_counter() - start,
                  "peak_rss_mb": peak_rss_mb()}))
"""


def aggregation(data_dir) -> None:
    print(f"== feature aggregation, laptop world ({data_dir}), one fresh process")
    out = subprocess.run([sys.executable, "-c", CHILD, str(data_dir)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    print(f"{'shard':>5} {'rows':>10} {'MB in pandas':>12} {'read+verify s':>13} {'count s':>8} {'rows/s (count)':>15} "
          f"{'rows/s (read+count)':>20} {'peak RSS MB so far':>19}")
    for i, s in enumerate(r["shards"]):
        print(f"{i:>5} {s['rows']:>10,} {s['shard_mb']:>12.0f} {s['read_s']:>13.2f} {s['count_s']:>8.2f} "
              f"{s['rows'] / s['count_s']:>15,.0f} {s['rows'] / (s['read_s'] + s['count_s']):>20,.0f} "
              f"{s['peak_rss_mb']:>19.0f}")
    print(f"total: {r['rows']:,} impressions -> {r['pairs']:,} pairs in {r['seconds']:.2f} s, "
          f"{r['rows'] / r['seconds']:,.0f} rows/s; peak RSS {r['peak_rss_mb']:.0f} MB")


def pseudo_labelling(data_dir, rows: int, threads: int) -> None:
    x = behaviour_features(data_dir)
    labels = data_gen.read_table(data_dir, "labels")
    # No early stopping and small leaves, so the model has the size being measured: 200 x 31 leaves.
    teacher = Teacher(threads=threads).fit(x, labels[labels.split == "train"],
                                           params={"num_leaves": 31, "min_data_in_leaf": 5})
    leaves = [t["num_leaves"] for t in teacher.booster.dump_model()["tree_info"]]
    print(f"\n== pseudo-labelling, {len(leaves)} trees x {np.mean(leaves):.1f} leaves on average, "
          f"{threads} threads, {rows:,} rows")
    big = x.iloc[np.random.default_rng(0).integers(0, len(x), rows)]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        compiled = teacher.compile()
        compile_s = time.perf_counter() - start
        timings, scores = {}, {}
        # Both read the same frame the same way (Teacher.matrix, then clip): only the trees differ.
        for name, model in (("lightgbm Booster.predict", teacher), ("lleaves compiled trees", compiled)):
            model.predict(big.iloc[:10_000])  # warm-up: thread pools, first-touch page faults
            start = time.perf_counter()
            scores[name] = model.predict(big)
            timings[name] = time.perf_counter() - start
        print(f"{'route':<26} {'seconds':>8} {'rows/s':>12}")
        for name, seconds in timings.items():
            print(f"{name:<26} {seconds:>8.2f} {rows / seconds:>12,.0f}")
        a, b = scores.values()
        print(f"compile time {compile_s:.1f} s; max |difference| of the scores {np.abs(a - b).max():.3g}; "
              f"speed-up x{timings['lightgbm Booster.predict'] / timings['lleaves compiled trees']:.1f}")
        print(f"\n== pseudo_label(): scoring + writing Parquet shards of all the world's {len(x):,} pairs")
        for name, model in (("lightgbm", teacher), ("compiled", compiled)):
            stats = pseudo_label(model, data_dir, os.path.join(tmp, name))
            print(f"{name:<10} {stats['rows']:>8,} rows {stats['rows_per_s']:>12,.0f} rows/s (scoring + writing)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows to pseudo-label in the prediction benchmark")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    data_dir = ensure_data(load_profile("laptop"), seed=0, progress=False)
    aggregation(data_dir)
    pseudo_labelling(data_dir, args.rows, args.threads)


if __name__ == "__main__":
    main()
