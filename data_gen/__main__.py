"""python -m data_gen --profile smoke --seed 0 --out DIR [--set n_queries=100 ...] [--workers N]

The same world in three steps, so a scheduler can spread the log shards over machines that
share DIR (data_gen/README.md, "At scale"):

    python -m data_gen prepare --profile smoke --seed 0 --out DIR [--set ...]
    python -m data_gen shard --data DIR --shards 0..9 [--workers N]    # any subsets, anywhere
    python -m data_gen finish --data DIR
"""
import argparse
import dataclasses
import sys
import time

from .config import PROFILES, WorldConfig, world_config
from .pipeline import finish, generate, prepare, write_log_shards

STEPS = ("prepare", "shard", "finish")


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


def parse_shards(specs: list[str]) -> list[int]:
    """['0..2', '5'] -> [0, 1, 2, 5]: shard numbers, ranges inclusive.

    >>> parse_shards(["0..2", "5"])
    [0, 1, 2, 5]
    """
    shards = []
    for spec in specs:
        lo, sep, hi = spec.partition("..")
        try:
            shards += list(range(int(lo), int(hi if sep else lo) + 1))
        except ValueError:
            raise ValueError(f"--shards takes shard numbers K or ranges K..M (inclusive), got {spec!r}") from None
    return shards


def _world_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--profile", default="smoke", help=f"one of: {', '.join(PROFILES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output directory (must not exist, or be empty)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a data setting")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")


def _parser(step: str | None) -> argparse.ArgumentParser:
    prog = f"python -m data_gen {step or ''}".strip()
    if step is None:
        ap = argparse.ArgumentParser(prog=prog, description="Generate the synthetic search world (steps: "
                                     f"{', '.join(STEPS)}; python -m data_gen STEP --help).")
        _world_args(ap)
        ap.add_argument("--workers", type=int, default=1,
                        help="processes building the documents, corpora and logs (same bytes for any)")
    elif step == "prepare":
        ap = argparse.ArgumentParser(prog=prog, description="Write every table but the logs; prints the log shards.")
        _world_args(ap)
        ap.add_argument("--workers", type=int, default=1,
                        help="processes building the documents and corpora (same bytes for any)")
    else:
        ap = argparse.ArgumentParser(prog=prog, description="Write log shards of a prepared directory."
                                     if step == "shard" else "Write the manifest once every log shard is written.")
        ap.add_argument("--data", required=True, help="the directory made by `python -m data_gen prepare`")
    if step == "shard":
        ap.add_argument("--shards", nargs="+", default=None, metavar="K|K..M",
                        help="which log shards (ranges inclusive); default all")
        ap.add_argument("--workers", type=int, default=1, help="processes writing them")
        ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _run(step: str | None, args: argparse.Namespace) -> str:
    """Do the step; return what to print."""
    start = time.time()
    if step == "shard":
        shards = None if args.shards is None else parse_shards(args.shards)
        write_log_shards(args.data, shards, workers=args.workers, progress=not args.quiet)
        return f"wrote log shards of {args.data} in {time.time() - start:.1f} s"
    if step == "finish":
        manifest = finish(args.data)
    else:
        cfg = world_config(args.profile, **parse_overrides(args.set))
        if step == "prepare":
            n = prepare(cfg, args.seed, args.out, profile=args.profile, progress=not args.quiet, workers=args.workers)
            return (f"prepared {args.out} in {time.time() - start:.1f} s; write its log shards 0..{n - 1} with "
                    f"`python -m data_gen shard --data {args.out} --shards K..M`, then `finish`")
        manifest = generate(cfg, args.seed, args.out, profile=args.profile, progress=not args.quiet,
                            workers=args.workers)
    rows = ", ".join(f"{k} {v['rows']:,}" for k, v in manifest["tables"].items())
    return f"wrote {getattr(args, 'out', None) or args.data} in {time.time() - start:.1f} s: {rows}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    step = argv[0] if argv and argv[0] in STEPS else None
    args = _parser(step).parse_args(argv[1:] if step else argv)
    try:
        print(_run(step, args))
    except ValueError as err:  # DataError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
