"""Logs at scale: generation, feature aggregation and pseudo-labelling in N worker processes.

    python benchmarks/scale.py --impressions 1e7 --workers 1 2 [--tmp DIR]

For each worker count, in a fresh process: the laptop world with `--impressions` logged
impressions (data_gen.prepare, then write_log_shards in N processes, then finish), its
behaviour features (relcourse.features.behaviour_features, N processes count the shards), a
teacher fitted on its training labels, and every shown pair pseudo-labelled
(relcourse.teacher.pseudo_label with the compiled teacher where lleaves is installed; it
aggregates the features again, in N processes, before scoring). Printed per phase: wall time,
rows/s, CPU seconds (this process and its workers: wall time times the cores it got, so
a machine busy with other work shows up as CPU s well below workers x seconds), the peak RSS
of the main process and of the largest worker (sampled by psutil every
0.2 s), and at the end the exact peak of any worker (getrusage of the children). The data
goes into a temporary folder under --tmp that is deleted afterwards.

Memory per worker is bounded by the shard size (the laptop world's 100,000 searches =
1,000,000 impressions per shard): a worker's peak stays flat from 1e6 to 1e8 impressions.
Pseudo-labels are per (query, document) pair, and the laptop world has at most 64,000 pairs
however long its logs, so that phase's cost is the aggregation it repeats, not the scoring.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import data_gen
from data_gen.pipeline import finish, prepare, write_log_shards

MB = 2 ** 20


class PeakRss(threading.Thread):
    """Samples the RSS of this process and of its workers (its children) until stopped."""

    def __init__(self, every_s: float = 0.2):
        super().__init__(daemon=True)
        self.every_s, self.main, self.worker = every_s, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.wait(self.every_s):
            self.main = max(self.main, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    self.worker = max(self.worker, child.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass


def cpu_seconds() -> float:
    """CPU time of this process and of its finished workers (a phase's pool is shut down at its end)."""
    return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF,
                                                                          resource.RUSAGE_CHILDREN)))


def timed(phases: dict, name: str, rows: int, fn):
    """Run fn(), recording its wall time, CPU time, rows/s and peak RSS under phases[name]."""
    monitor = PeakRss()
    monitor.start()
    start, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    seconds = time.perf_counter() - start
    monitor.done.set()
    monitor.join()
    phases[name] = {"seconds": seconds, "cpu_s": cpu_seconds() - cpu, "rows": rows, "rows_per_s": rows / seconds,
                    "main_peak_mb": monitor.main / MB, "worker_peak_mb": monitor.worker / MB}
    return result


def one_run(impressions: int, workers: int, tmp: str) -> dict:
    """Every phase for one worker count; the data is deleted afterwards."""
    # Imported here, not at the top: every spawned worker imports this script again, and
    # LightGBM alone takes seconds to import on a busy machine.
    from relcourse.features import behaviour_features
    from relcourse.teacher import Teacher, fastest_scorer, pseudo_label
    cfg = data_gen.world_config("laptop", n_searches=impressions // 10)
    if cfg.n_searches * cfg.impressions_per_search != impressions:
        raise ValueError(f"--impressions must be a multiple of {cfg.impressions_per_search} (results per page)")
    root = Path(tempfile.mkdtemp(prefix="relcourse-scale-", dir=tmp))
    data_dir, phases = root / "world", {}
    try:
        timed(phases, "prepare (all but the logs)", 0, lambda: prepare(cfg, 0, data_dir, "laptop", progress=False))
        timed(phases, "logs: simulate + write", impressions, lambda: write_log_shards(data_dir, workers=workers))
        timed(phases, "finish (manifest)", 0, lambda: finish(data_dir))
        disk = sum(f.stat().st_size for f in (data_dir / "impressions").iterdir())
        x = timed(phases, "features: read + count", impressions, lambda: behaviour_features(data_dir, workers))
        labels = data_gen.read_table(data_dir, "labels", columns=["doc_id", "split", "label"])
        teacher = timed(phases, "teacher: fit 200 trees", 0,
                        lambda: Teacher(threads=workers).fit(x, labels[labels["split"] == "train"]))
        scorer = timed(phases, "teacher: compile", 0, lambda: fastest_scorer(teacher))
        stats = timed(phases, "pseudo_label: count + score", impressions,
                      lambda: pseudo_label(scorer, data_dir, root / "pseudo_labels", workers=workers))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"impressions": impressions, "workers": workers, "phases": phases, "pairs": stats["rows"],
            "scoring_rows_per_s": stats["rows_per_s"], "impression_bytes": disk, "scorer": type(scorer).__name__,
            "worker_peak_mb_exact": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "main_peak_mb_exact": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def report(r: dict) -> None:
    print(f"\n== {r['impressions']:,.0f} impressions, {r['workers']} worker(s); {r['pairs']:,} pairs scored by "
          f"{r['scorer']} at {r['scoring_rows_per_s']:,.0f} pairs/s; logs on disk {r['impression_bytes'] / MB:,.0f} MB")
    print(f"{'phase':<30} {'seconds':>8} {'CPU s':>7} {'rows/s':>12} {'main MB':>8} {'worker MB':>10}")
    for name, p in r["phases"].items():
        rate = f"{p['rows_per_s']:,.0f}" if p["rows"] else "-"
        worker = f"{p['worker_peak_mb']:.0f}" if p["worker_peak_mb"] else "-"
        print(f"{name:<30} {p['seconds']:>8.1f} {p['cpu_s']:>7.1f} {rate:>12} {p['main_peak_mb']:>8.0f} {worker:>10}")
    total, cpu = (sum(p[k] for p in r["phases"].values()) for k in ("seconds", "cpu_s"))
    print(f"{'total':<30} {total:>8.1f} {cpu:>7.1f} {r['impressions'] / total:>12,.0f}   exact peaks: main "
          f"{r['main_peak_mb_exact']:.0f} MB, largest worker {r['worker_peak_mb_exact']:.0f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impressions", type=float, default=1e7, help="logged impressions (a multiple of 10)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts, each in a fresh process")
    ap.add_argument("--tmp", default=None, help="where the temporary data goes (default: the system's temp folder)")
    ap.add_argument("--json", default=None, help="also append each run's numbers to this file (JSON lines)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)   # the fresh process of one run
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(int(args.impressions), args.workers[0], args.tmp)))
        return
    for workers in args.workers:
        cmd = [sys.executable, __file__, "--one", "--impressions", str(int(args.impressions)),
               "--workers", str(workers)]
        out = subprocess.run(cmd + (["--tmp", args.tmp] if args.tmp else []), capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        if out.returncode:
            sys.exit(f"the run with {workers} worker(s) failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        report(result)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
