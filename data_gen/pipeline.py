"""Generate a whole synthetic search world into a data directory: a pure function of
(config, seed), written shard by shard, and moved into place only when complete.

Tables (open any of them with `data_gen.read_table(dir, name)`):
- entities     the hidden world: products, their kind, alias and attributes (for learners)
- queries      query text, phenomenon group, intent, popularity rank, frequency bucket, split
- docs         candidate documents: title, body, genre, age, quality, attractiveness
- truth        hidden: rubric v1 / v2 tier and reason per (query, doc), for evaluation only
- impressions  the logs: one row per shown result, with the user's behaviour
- labels       human labels of train/valid pairs with their provenance
- corpus_general, corpus_domain   pretraining text, with its dirt marked
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm  # plain bars: no widget dependency in notebooks

from . import annotation, logs
from .config import SCHEMA_VERSION, WORLD_VERSION, WorldConfig
from .corpus import corpus_lines
from .documents import candidate_pool
from .io import (MANIFEST, PENDING, DataError, ShardWriter, check_workers, load_manifest, process_map, read_table,
                 write_manifest, write_shard)
from .queries import Query, make_queries
from .rng import rng_for
from .world import World, build_world

QUERIES_PER_DOC_SHARD = 5_000     # 8 shards on `gpu`: one per data worker
CORPUS_LINES_PER_SHARD = 200_000
TRUTH_COLUMNS = ("candidate_kind", "tier_v1", "tier_v2", "reason_v1", "reason_v2", "lexical_overlap",
                 "doc_topic", "doc_hyponym", "doc_entity")
LABEL_RUBRIC_VERSION = 2
LABEL_DESIGN = "double+gold"


def _split(world: World, queries: list[Query], seed: int) -> np.ndarray:
    """train / valid / test / unlabelled per query. A query naming a corpus-only entity is never
    labelled for training: it goes to test when drawn for labelling, else stays unlabelled. So no
    human label names those products, the test set measures them, and the logs of the unlabelled
    ones reach post-pretraining: the logs cover what human labels do not (claim T2)."""
    cfg = world.cfg
    rng = rng_for(seed, "split")
    u = rng.random(len(queries))
    tail = np.array([any(e >= 0 and world.entities[e].corpus_only for e in (q.need.entity, q.need.entity2))
                     for q in queries])
    labelled = u < cfg.labelled_queries_share
    v = u / cfg.labelled_queries_share  # uniform on [0, 1) among labelled queries
    split = np.where(~labelled, "unlabelled",
                     np.where(v < cfg.test_share, "test", np.where(v < cfg.test_share + cfg.valid_share, "valid", "train")))
    return np.where(tail & labelled, "test", split)


def _query_columns(queries: list[Query], rank: np.ndarray, bucket: np.ndarray, split: np.ndarray) -> dict:
    need = [dataclasses.asdict(q.need) for q in queries]
    return {"query_id": np.array([q.id for q in queries], np.int32), "text": [q.text for q in queries],
            "group": [q.group for q in queries], "intent": [q.intent for q in queries],
            **{f"need_{k}": [n[k] for n in need] for k in need[0]},
            "popularity_rank": rank.astype(np.int32), "bucket": bucket,
            "bucket_name": logs.bucket_name(bucket), "split": split}


def _entity_columns(world: World) -> dict:
    rows = [dataclasses.asdict(e) for e in world.entities]
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["hyponym_name"] = [world.hyponyms[h].name for h in cols["hyponym"]]
    cols["topic_noun"] = [world.topics[t].noun for t in cols["topic"]]
    return cols


def _doc_columns(task: tuple[World, list[Query], int]) -> dict:
    """The candidate documents of some queries, as columns (one shard; any process)."""
    world, queries, seed = task
    rows = [r for q in queries for r in candidate_pool(world, q, seed)]
    return {k: [r[k] for r in rows] for k in rows[0]}


def _write_docs(world: World, queries: list[Query], seed: int, out: ShardWriter, progress: bool,
                workers: int) -> dict:
    """docs and truth tables, shard by shard (each query's documents draw from the query's own
    random stream, so the shards are built in `workers` processes with the same bytes); returns
    the numeric pool arrays the logs need."""
    keep = {"tier_v2": [], "lexical_overlap": [], "quality": [], "attractiveness": [], "publish_day": []}
    tasks = [(world, queries[start:start + QUERIES_PER_DOC_SHARD], seed)
             for start in range(0, len(queries), QUERIES_PER_DOC_SHARD)]
    for cols in tqdm(process_map(_doc_columns, tasks, workers), total=len(tasks), desc="documents",
                     disable=not progress):
        out.write("docs", {k: v for k, v in cols.items() if k not in TRUTH_COLUMNS})
        out.write("truth", {k: cols[k] for k in ("query_id", "doc_id", *TRUTH_COLUMNS)})
        for k in keep:
            keep[k].append(np.asarray(cols[k]))
    shape = (len(queries), world.cfg.docs_per_query)
    return {k: np.concatenate(v).reshape(shape) for k, v in keep.items()}


def _corpus_shard(task: tuple[World, str, int, int, int]) -> dict:
    world, which, n, seed, shard = task
    return corpus_lines(world, which, n, seed, shard)


def _write_labels(world: World, pools: logs.Pools, ranker: np.ndarray, bucket: np.ndarray, split: np.ndarray,
                  seed: int, out: ShardWriter) -> None:
    """The default human labels: train and valid pairs sampled across buckets and score bands,
    double-labelled with gold questions under the current rubric, within the label budget."""
    n_docs = world.cfg.docs_per_query
    qids = np.flatnonzero(np.isin(split, ["train", "valid"]))
    pairs = pd.DataFrame({"query_id": np.repeat(qids, n_docs),
                          "doc_id": (qids[:, None] * n_docs + np.arange(n_docs)).ravel(),
                          "bucket": np.repeat(logs.bucket_name(bucket[qids]), n_docs),
                          "ranker_score": ranker[qids].ravel()})
    chosen = annotation.sample_pairs(pairs, len(pairs), "stratified", seed)
    pool = annotation.make_pool(world.cfg.n_annotators, world.cfg.careless_share, seed)
    tiers = pools.tier[chosen.query_id.values, chosen.doc_id.values % n_docs]
    labels = annotation.annotate(tiers, LABEL_DESIGN, pool, seed, budget=world.cfg.label_budget)
    chosen = chosen.iloc[:len(labels)]
    out.write("labels", {"query_id": chosen.query_id.values.astype(np.int32), "doc_id": chosen.doc_id.values,
                         "split": split[chosen.query_id.values], **{k: labels[k].values for k in labels},
                         "rubric_version": np.full(len(labels), LABEL_RUBRIC_VERSION, np.int8),
                         "design": np.full(len(labels), LABEL_DESIGN)})


def _write_all_but_logs(cfg: WorldConfig, seed: int, root: Path, progress: bool, workers: int = 1) -> dict:
    """Every table except the impressions, the documents and corpora in `workers` processes;
    saves what the log shards need in root/WORK_DIR and returns the written tables' manifest entries."""
    out = ShardWriter(root)
    world = build_world(cfg, seed)
    queries = make_queries(world, seed)
    out.write("entities", _entity_columns(world))
    popularity, rank = logs.zipf_popularity(cfg.n_queries, cfg.zipf_exponent, seed)
    bucket = logs.frequency_bucket(rank, cfg.n_queries)
    split = _split(world, queries, seed)
    out.write("queries", _query_columns(queries, rank, bucket, split))

    arrays = _write_docs(world, queries, seed, out, progress, workers)
    pools = logs.Pools(tier=arrays["tier_v2"].astype(np.int8), overlap=arrays["lexical_overlap"],
                       quality=arrays["quality"], attractiveness=arrays["attractiveness"],
                       age_days=arrays["publish_day"].astype(np.float64),
                       freshness_intent=np.array([q.intent == "freshness" for q in queries]), popularity=popularity)
    ranker = logs.ranker_relevance(pools, seed)
    _save_pools(root, pools, ranker)
    for which, total in (("general", cfg.general_corpus_lines), ("domain", cfg.domain_corpus_lines)):
        tasks = [(world, which, min(CORPUS_LINES_PER_SHARD, total - start), seed, shard)
                 for shard, start in enumerate(range(0, max(total, 1), CORPUS_LINES_PER_SHARD))]
        for lines in tqdm(process_map(_corpus_shard, tasks, workers), total=len(tasks), desc=f"{which} corpus",
                          disable=not progress):
            out.write(f"corpus_{which}", lines)
    _write_labels(world, pools, ranker, bucket, split, seed, out)
    return out.tables


# --- the logs, shard by shard, in any process -------------------------------------------------
# A prepared data directory holds every table but the impressions, PENDING (the manifest so
# far and the number of log shards) and WORK_DIR: the pool arrays each log shard is simulated
# from (.npy, memory-mapped by every worker, so a worker's memory is its shard's) and one
# manifest entry per written log shard. `finish` turns it into a finished one.
WORK_DIR = "_work"


def _save_pools(root: Path, pools: logs.Pools, ranker: np.ndarray) -> None:
    folder = root / WORK_DIR / "pools"
    folder.mkdir(parents=True)
    for name, array in {**dataclasses.asdict(pools), "ranker": ranker}.items():
        np.save(folder / f"{name}.npy", array)


def _load_pools(root: Path) -> tuple[logs.Pools, np.ndarray]:
    load = lambda name: np.load(root / WORK_DIR / "pools" / f"{name}.npy", mmap_mode="r")  # noqa: E731
    return logs.Pools(**{f.name: load(f.name) for f in dataclasses.fields(logs.Pools)}), load("ranker")


def _load_pending(data_dir: Path) -> dict:
    if (data_dir / MANIFEST).exists():
        raise DataError(f"{data_dir} is already finished (it has its {MANIFEST}): no log shard is left to write")
    if not (data_dir / PENDING).exists():
        raise DataError(f"{data_dir} is not prepared: log shards are written into a directory made by "
                        f"`python -m data_gen prepare --profile PROFILE --seed SEED --out {data_dir}`")
    return json.loads((data_dir / PENDING).read_text())


def _write_log_shard(task: tuple[Path, int]) -> None:
    """Simulate and write log shard `shard` of a prepared directory; its manifest entry goes to WORK_DIR."""
    data_dir, shard = task
    manifest = _load_pending(data_dir)["manifest"]
    cfg = manifest["config"]
    pools, ranker = _load_pools(data_dir)
    first = shard * cfg["searches_per_shard"]
    n = min(cfg["searches_per_shard"], cfg["n_searches"] - first)
    columns = logs.simulate_shard(pools, ranker, n, first, cfg["impressions_per_search"], cfg["position_bias_eta"],
                                  manifest["seed"], shard)
    entry = {"columns": list(columns), **write_shard(data_dir, "impressions", shard, columns)}
    path = data_dir / WORK_DIR / f"impressions-{shard:05d}.json"
    path.with_suffix(".tmp").write_text(json.dumps(entry))
    os.replace(path.with_suffix(".tmp"), path)   # an entry present means its shard is complete


def write_log_shards(data_dir: str | Path, shards: Iterable[int] | None = None, workers: int = 1,
                     progress: bool = False) -> None:
    """Simulate and write log shards (default: all) of a directory made by `prepare`, in
    `workers` processes. Each shard has its own random stream and file name, so the bytes are
    the same whichever process or machine writes it, in whatever order."""
    data_dir = Path(data_dir).resolve()
    n_shards = _load_pending(data_dir)["log_shards"]
    shards = range(n_shards) if shards is None else list(shards)
    bad = [k for k in shards if not 0 <= k < n_shards]
    if bad:
        raise DataError(f"{data_dir} has log shards 0..{n_shards - 1}; there is no shard {bad[0]}")
    for _ in tqdm(process_map(_write_log_shard, [(data_dir, k) for k in shards], workers), total=len(shards),
                  desc="search logs", disable=not progress):
        pass


def prepare(cfg: WorldConfig, seed: int, out: str | Path, profile: str = "custom", progress: bool = True,
            workers: int = 1) -> int:
    """Write every table of the world of (cfg, seed) except the logs into `out` (which must not
    exist, or be empty), its documents and corpora in `workers` processes, and return its number
    of log shards: then write_log_shards (in any processes, on any machines sharing `out`) and
    `finish`. generate() does all three."""
    out = Path(out)
    check_workers(workers)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} is not empty; choose another --out or delete it first")
    with _atomic_dir(out) as tmp:
        _prepare_into(cfg, seed, tmp, profile, progress, workers)
    return _load_pending(out)["log_shards"]


def _prepare_into(cfg: WorldConfig, seed: int, root: Path, profile: str, progress: bool, workers: int = 1) -> None:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    tables = _write_all_but_logs(cfg, seed, root, progress, workers)
    manifest = {"schema_version": SCHEMA_VERSION, "world_version": WORLD_VERSION, "profile": profile, "seed": seed,
                "config": json_config(cfg), "tables": tables}
    pending = {"manifest": manifest, "log_shards": -(-cfg.n_searches // cfg.searches_per_shard)}
    (root / PENDING).write_text(json.dumps(pending, indent=1, sort_keys=True))


def finish(data_dir: str | Path) -> dict:
    """Write the manifest of a prepared directory whose log shards are all written (and remove
    what only the shards needed); return it. Refuses, naming them, while shards are missing."""
    data_dir = Path(data_dir)
    pending = _load_pending(data_dir)
    entries = [data_dir / WORK_DIR / f"impressions-{k:05d}.json" for k in range(pending["log_shards"])]
    missing = [k for k, path in enumerate(entries) if not path.exists()]
    if missing:
        raise DataError(f"{len(missing)} of {len(entries)} log shards of {data_dir} are not written yet "
                        f"({_ranges(missing)}); write them with `python -m data_gen shard --data {data_dir} "
                        f"--shards {_ranges(missing)}`, then finish again")
    files = [json.loads(path.read_text()) for path in entries]
    manifest = pending["manifest"]
    manifest["tables"]["impressions"] = {"rows": sum(f["rows"] for f in files), "columns": files[0]["columns"],
                                         "files": [{k: f[k] for k in ("path", "rows", "sha256")} for f in files]}
    write_manifest(data_dir, manifest)
    shutil.rmtree(data_dir / WORK_DIR)
    (data_dir / PENDING).unlink()
    return manifest


def _ranges(numbers: list[int]) -> str:
    """Shard numbers as `--shards` takes them.

    >>> _ranges([0, 1, 2, 5, 7, 8])
    '0..2 5 7..8'
    """
    runs, start = [], numbers[0]
    for prev, cur in zip(numbers, numbers[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}..{prev}")
            start = cur
    return " ".join(runs)


@contextlib.contextmanager
def _atomic_dir(out: Path) -> Iterator[Path]:
    """A temporary sibling of `out` (empty or absent) to write into, renamed to `out` on success
    and removed on failure, so an interrupted run never leaves a half-written `out`."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out.parent / f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as err:
        raise DataError(f"cannot write to {out.parent}: {err.strerror}; choose a writable --out") from None
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked by the callers
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate(cfg: WorldConfig, seed: int, out: str | Path, profile: str = "custom", progress: bool = True,
             workers: int = 1) -> dict:
    """Write the world of (cfg, seed) into `out` and return its manifest; the logs are
    simulated in `workers` processes (the same bytes for any number).

    `out` must not exist, or be empty, or already hold exactly this data (then nothing is
    done). Everything is written into a temporary sibling folder and renamed into place at the
    end, so an interrupted run never leaves a half-written `out`."""
    out = Path(out)
    check_workers(workers)
    if out.exists() and any(out.iterdir()):
        if (out / MANIFEST).exists():
            manifest = load_manifest(out)
            if (manifest["config"], manifest["seed"], manifest.get("world_version")) == (json_config(cfg), seed,
                                                                                         WORLD_VERSION):
                return manifest
        raise DataError(f"{out} already holds other data; choose another --out or delete it first")
    with _atomic_dir(out) as tmp:
        _prepare_into(cfg, seed, tmp, profile, progress, workers)
        write_log_shards(tmp, workers=workers, progress=progress)
        manifest = finish(tmp)
    return manifest


def json_config(cfg: WorldConfig) -> dict:
    """The config as it is stored in the manifest (JSON types: tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


# --- the logs again, under another ranker (claim T4's feedback loop) ---------------------------

def world_pools(data_dir: str | Path) -> tuple[logs.Pools, np.ndarray]:
    """(pools, ranker) of a generated world, rebuilt from its tables: the candidate pools the logs
    were simulated from, and the old production ranker's relevance guess, both (n_queries,
    docs_per_query) in doc_id order."""
    manifest = load_manifest(data_dir)
    cfg = WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()})
    shape = (cfg.n_queries, cfg.docs_per_query)
    queries = read_table(data_dir, "queries", columns=["query_id", "intent", "popularity_rank"]).sort_values("query_id")
    docs = read_table(data_dir, "docs", columns=["doc_id", "publish_day", "quality", "attractiveness"]).sort_values("doc_id")
    truth = read_table(data_dir, "truth", columns=["doc_id", "tier_v2", "lexical_overlap"]).sort_values("doc_id")
    popularity = 1.0 / (queries["popularity_rank"].to_numpy() + 1.0) ** cfg.zipf_exponent
    pools = logs.Pools(tier=truth["tier_v2"].to_numpy(np.int8).reshape(shape),
                       overlap=truth["lexical_overlap"].to_numpy().reshape(shape),
                       quality=docs["quality"].to_numpy().reshape(shape),
                       attractiveness=docs["attractiveness"].to_numpy().reshape(shape),
                       age_days=docs["publish_day"].to_numpy(np.float64).reshape(shape),
                       freshness_intent=(queries["intent"] == "freshness").to_numpy(),
                       popularity=popularity / popularity.sum())
    return pools, logs.ranker_relevance(pools, manifest["seed"])


def resimulate_logs(data_dir: str | Path, ranker_scores, seed: int, n_searches: int | None = None,
                    match_scale: bool = True) -> Iterator[dict]:
    """Impressions of the world in `data_dir` as they would be logged if the production ranker's
    relevance guess were `ranker_scores` (one score per candidate pair, in doc_id order, e.g. a
    relevance model's scores): an iterator of shards (dicts of columns, like the impressions
    table), `n_searches` searches in all (default: as many as the world's own logs).

    The users behave as in the world's logs (data_gen.logs.simulate_shard); only what is shown,
    and at which rank, changes. `seed` picks the users' random stream: the world's own seed with
    its own ranker reproduces its impressions table; another seed gives fresh users. With
    `match_scale`, the scores are first mapped onto the mean and spread of the old ranker's
    guess, so relevance keeps its weight against page quality and freshness in the ranking."""
    manifest = load_manifest(data_dir)
    cfg = manifest["config"]
    pools, old = world_pools(data_dir)
    scores = np.asarray(ranker_scores, dtype=np.float64)
    if scores.size != pools.tier.size or not np.isfinite(scores).all():
        raise ValueError(f"ranker_scores must hold {pools.tier.size} finite scores, one per candidate pair of "
                         f"{data_dir} in doc_id order; got {scores.size} with "
                         f"{int((~np.isfinite(scores)).sum())} not finite")
    scores = scores.reshape(pools.tier.shape)
    if match_scale:
        spread = scores.std()
        scores = old.mean() + (scores - scores.mean()) * (old.std() / spread if spread > 0 else 0.0)
    n_searches = cfg["n_searches"] if n_searches is None else n_searches
    if n_searches < 1:
        raise ValueError(f"n_searches={n_searches} must be at least 1")
    per_shard, ranker = cfg["searches_per_shard"], scores.astype(np.float32)
    # A generator inside, so that bad input fails at the call, not at the first shard.
    return (logs.simulate_shard(pools, ranker, min(per_shard, n_searches - first), first,
                                cfg["impressions_per_search"], cfg["position_bias_eta"], seed, shard)
            for shard, first in enumerate(range(0, n_searches, per_shard)))
