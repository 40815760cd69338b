"""python -m data_gen --profile smoke --seed 0 --out DIR [--set n_queries=100 ...]"""
import argparse
import dataclasses
import sys
import time

from .config import PROFILES, WorldConfig, world_config
from .pipeline import generate


def parse_overrides(pairs: list[str]) -> dict:
    """['n_queries=100', 'zipf_exponent=1.1'] -> typed values, using each field's default's type."""
    defaults = {f.name: f.default for f in dataclasses.fields(WorldConfig)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in defaults:
            raise ValueError(f"--set expects KEY=VALUE with KEY one of: {', '.join(defaults)}; got {pair!r}")
        kind = type(defaults[key])
        out[key] = tuple(int(v) for v in value.split(",")) if kind is tuple else kind(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data_gen", description="Generate the synthetic search world.")
    ap.add_argument("--profile", default="smoke", help=f"one of: {', '.join(PROFILES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output directory (must not exist, or be empty)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a data setting")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    try:
        cfg = world_config(args.profile, **parse_overrides(args.set))
        start = time.time()
        manifest = generate(cfg, args.seed, args.out, profile=args.profile, progress=not args.quiet)
    except ValueError as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = ", ".join(f"{k} {v['rows']:,}" for k, v in manifest["tables"].items())
    print(f"wrote {args.out} in {time.time() - start:.1f} s: {rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
