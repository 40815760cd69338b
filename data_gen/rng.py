"""One independent random stream per (seed, purpose, shard): the same call writes the same bytes,
and shards can be generated in any order or in parallel.

>>> a = rng_for(0, "logs", 3).random(); b = rng_for(0, "logs", 3).random()
>>> a == b, a == rng_for(1, "logs", 3).random()
(True, False)
"""
import zlib

import numpy as np


def rng_for(seed: int, purpose: str, *index: int) -> np.random.Generator:
    # crc32 turns the purpose into a stable integer (Python's hash() is salted per process).
    return np.random.default_rng([seed, zlib.crc32(purpose.encode()), *index])
