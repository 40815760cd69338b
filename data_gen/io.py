"""Parquet shards and the manifest that vouches for them.

A data directory holds one folder per table with shards `part-00000.parquet`, ... and a
`manifest.json`: schema version, profile, seed, the full config, and per table its columns,
row counts and a sha256 per shard. Readers check all of it, so a truncated, edited or foreign
file is refused with a message instead of silently read.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> w = ShardWriter(d)
>>> w.write("toy", {"x": [1, 2, 3]})
>>> write_manifest(d, {"schema_version": SCHEMA_VERSION, "tables": w.tables})
>>> read_table(d, "toy").x.tolist()
[1, 2, 3]
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SCHEMA_VERSION

MANIFEST = "manifest.json"
PENDING = "pending.json"   # a prepared directory whose log shards are not all written (pipeline.finish)


class DataError(ValueError):
    """Generated data that is missing, corrupt or from another schema; the message says how to fix it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_shard(root: Path, table: str, index: int, columns: dict) -> dict:
    """Write shard number `index` of `table` (to a temp name, then renamed) and return its
    manifest entry {"path", "rows", "sha256"}. Shards are named by their number alone, so any
    process, on any machine, can write any shard of a data directory."""
    folder = Path(root) / table
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{index:05d}.parquet"
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    arrow = pa.table(columns)
    pq.write_table(arrow, tmp, compression="zstd")
    os.replace(tmp, path)
    return {"path": f"{table}/{path.name}", "rows": arrow.num_rows, "sha256": _sha256(path)}


class ShardWriter:
    """Writes numbered shards per table (write_shard) and remembers what it wrote."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tables: dict[str, dict] = {}

    def write(self, table: str, columns: dict) -> None:
        entry = self.tables.setdefault(table, {"rows": 0, "columns": list(columns), "files": []})
        entry["files"].append(write_shard(self.root, table, len(entry["files"]), columns))
        entry["rows"] += entry["files"][-1]["rows"]


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = Path(root) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, Path(root) / MANIFEST)


def load_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.exists() and (Path(root) / PENDING).exists():
        raise DataError(f"{root} is prepared but not finished: write its log shards with `python -m data_gen shard "
                        f"--data {root}` and then `python -m data_gen finish --data {root}`")
    if not path.exists():
        raise DataError(f"no {MANIFEST} in {root}: generate the data first with "
                        f"`python -m data_gen --profile smoke --seed 0 --out {root}`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is corrupt ({err}); delete {root} and generate it again") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{root} was written with data schema version {manifest.get('schema_version')}, this code "
                        f"reads version {SCHEMA_VERSION}; delete it and generate it again")
    return manifest


def shard_entries(root: str | Path, table: str) -> list[dict]:
    """The manifest's entries {"path", "rows", "sha256"} of a table's shards, in order: what
    read_shard reads, one shard per process if you like (relcourse.features does)."""
    manifest = load_manifest(root)
    if table not in manifest["tables"]:
        raise DataError(f"{root} has no table {table!r}; it has: {', '.join(sorted(manifest['tables']))}")
    return manifest["tables"][table]["files"]


def read_shard(root: str | Path, entry: dict, columns: list[str] | None = None, verify: bool = True) -> pd.DataFrame:
    """One shard of shard_entries(root, table), after checking it is there and, with `verify`,
    that it matches its checksum."""
    path = Path(root) / entry["path"]
    if not path.exists():
        raise DataError(f"shard {path} is missing; delete {root} and generate it again")
    if verify and _sha256(path) != entry["sha256"]:
        raise DataError(f"shard {path} does not match its checksum (corrupt or edited); "
                        f"delete {root} and generate it again")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, KeyError) as err:
        raise DataError(f"cannot read {path}: {err}") from None


def iter_shards(root: str | Path, table: str, columns: list[str] | None = None,
                verify: bool = True) -> Iterator[pd.DataFrame]:
    """The table one shard at a time: memory bounded by the shard size at any scale."""
    for entry in shard_entries(root, table):
        yield read_shard(root, entry, columns, verify)


def read_table(root: str | Path, table: str, columns: list[str] | None = None, verify: bool = True) -> pd.DataFrame:
    """A whole table as one DataFrame, after checking the manifest and every shard's checksum."""
    return pd.concat(list(iter_shards(root, table, columns, verify)), ignore_index=True)


def check_workers(workers) -> None:
    """Refuse a number of worker processes that is not a whole number >= 1."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a whole number of processes >= 1")


def process_map(fn: Callable, items: Iterable, workers: int = 1) -> Iterator:
    """fn(item) for every item, in order, in `workers` processes (spawn: no state inherited
    from the caller; fn must be a module-level function); workers=1 runs in this process. At
    most 2 x workers results wait to be consumed, so memory stays bounded by a few shards
    however many there are. On an error the items not yet started are cancelled and the error
    is raised here.

    >>> list(process_map(abs, [-2, 1, -3]))
    [2, 1, 3]
    """
    check_workers(workers)   # here, not at the first item: the generator below starts late
    return map(fn, items) if workers == 1 else _pool_map(fn, items, workers)


def _pool_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: deque = deque()
        try:
            for item in items:
                running.append(pool.submit(fn, item))
                if len(running) >= 2 * workers:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            for future in running:
                future.cancel()
