"""How fast data_gen writes logged impressions, and whether memory stays flat as shards grow.

    python benchmarks/data_gen_throughput.py [--searches-per-shard 100000] [--shards 1 8]

Each measurement runs in a fresh process on one thread, so its peak RSS is its own: simulate
and write N shards of the logs (the part that scales to 10^8 impressions) for the laptop world.
Goal: >= 1e6 impressions/s per core, peak memory flat in the number of shards.
"""
import argparse
import json
import os
import subprocess
import sys

CHILD = """
import json, resource, sys, tempfile, time
import numpy as np
from data_gen import logs
from data_gen.io import ShardWriter
n_queries, docs, per_shard, shards = map(int, sys.argv[1:5])
rng = np.random.default_rng(0)
shape = (n_queries, docs)
pop, _ = logs.zipf_popularity(n_queries, 1.0, 0)
pools = logs.Pools(rng.integers(0, 4, shape).astype(np.int8), rng.random(shape), rng.random(shape), rng.random(shape),
                   rng.uniform(0, 1500, shape), rng.random(n_queries) < 0.15, pop)
ranker = logs.ranker_relevance(pools, 0)
out = ShardWriter(tempfile.mkdtemp())
start = time.perf_counter()
for s in range(shards):
    out.write("impressions", logs.simulate_shard(pools, ranker, per_shard, s * per_shard, 10, 0.8, 0, s))
seconds = time.perf_counter() - start
print(json.dumps({"impressions": shards * per_shard * 10, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--searches-per-shard", type=int, default=100_000)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--queries", type=int, default=4_000, help="distinct queries (laptop profile)")
    ap.add_argument("--docs-per-query", type=int, default=16)
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"{'shards':>6} {'impressions':>12} {'seconds':>8} {'impressions/s/core':>19} {'peak RSS MB':>12}")
    for shards in args.shards:
        result = subprocess.run([sys.executable, "-c", CHILD, str(args.queries), str(args.docs_per_query),
                                 str(args.searches_per_shard), str(shards)],
                                capture_output=True, text=True, env=env, check=True)
        r = json.loads(result.stdout)
        print(f"{shards:>6} {r['impressions']:>12,} {r['seconds']:>8.2f} {r['impressions'] / r['seconds']:>19,.0f} "
              f"{r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
