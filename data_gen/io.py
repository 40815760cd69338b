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
import os
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import SCHEMA_VERSION

MANIFEST = "manifest.json"


class DataError(ValueError):
    """Generated data that is missing, corrupt or from another schema; the message says how to fix it."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ShardWriter:
    """Writes numbered shards per table (each to a temp name, then renamed) and remembers what it wrote."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.tables: dict[str, dict] = {}

    def write(self, table: str, columns: dict) -> None:
        entry = self.tables.setdefault(table, {"rows": 0, "columns": list(columns), "files": []})
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{len(entry['files']):05d}.parquet"
        tmp = path.with_suffix(".tmp")
        arrow = pa.table(columns)
        pq.write_table(arrow, tmp, compression="zstd")
        os.replace(tmp, path)
        entry["files"].append({"path": f"{table}/{path.name}", "rows": arrow.num_rows, "sha256": _sha256(path)})
        entry["rows"] += arrow.num_rows


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = Path(root) / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, Path(root) / MANIFEST)


def load_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
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


def _files(root: Path, table: str, verify: bool) -> list[Path]:
    manifest = load_manifest(root)
    if table not in manifest["tables"]:
        raise DataError(f"{root} has no table {table!r}; it has: {', '.join(sorted(manifest['tables']))}")
    paths = []
    for f in manifest["tables"][table]["files"]:
        path = Path(root) / f["path"]
        if not path.exists():
            raise DataError(f"shard {path} is missing; delete {root} and generate it again")
        if verify and _sha256(path) != f["sha256"]:
            raise DataError(f"shard {path} does not match its checksum (corrupt or edited); "
                            f"delete {root} and generate it again")
        paths.append(path)
    return paths


def iter_shards(root: str | Path, table: str, columns: list[str] | None = None,
                verify: bool = True) -> Iterator[pd.DataFrame]:
    """The table one shard at a time: memory bounded by the shard size at any scale."""
    for path in _files(Path(root), table, verify):
        try:
            yield pq.read_table(path, columns=columns).to_pandas()
        except (pa.ArrowInvalid, KeyError) as err:
            raise DataError(f"cannot read {path}: {err}") from None


def read_table(root: str | Path, table: str, columns: list[str] | None = None, verify: bool = True) -> pd.DataFrame:
    """A whole table as one DataFrame, after checking the manifest and every shard's checksum."""
    return pd.concat(list(iter_shards(root, table, columns, verify)), ignore_index=True)
