"""data_gen: the synthetic search world the course runs on (README.md beside it). It knows nothing of
models: its output is Parquet shards with a manifest, which pandas opens directly.

>>> import data_gen, tempfile
>>> out = tempfile.mkdtemp() + "/world"
>>> cfg = data_gen.world_config("smoke", n_queries=60, n_searches=2_000, general_corpus_lines=50,
...                             domain_corpus_lines=50, label_budget=200)
>>> manifest = data_gen.generate(cfg, seed=0, out=out, progress=False)
>>> data_gen.read_table(out, "queries").shape[0]
60
"""
from .config import PROFILES, SCHEMA_VERSION, WORLD_VERSION, WorldConfig, world_config
from .pipeline import generate, resimulate_logs, world_pools
from .io import DataError, iter_shards, load_manifest, read_table

__all__ = ["PROFILES", "SCHEMA_VERSION", "WORLD_VERSION", "WorldConfig", "world_config", "generate", "resimulate_logs", "world_pools",
           "DataError", "iter_shards", "load_manifest", "read_table"]
