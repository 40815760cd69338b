"""The command line: `python -m relcourse COMMAND` (or `relcourse COMMAND` once installed).

    relcourse profile --profile laptop --set pretrain.steps=500   # print the resolved profile
    relcourse data --profile smoke --seed 0                       # generate (or reuse) the data
    relcourse run pretrain --profile smoke                        # build a stage (or reuse it)
    relcourse run claims --stage pretrain --profile laptop        # run a stage's claims, all seeds
    relcourse run claims --claim P1 --profile laptop --workers 2  # one claim, two runs at a time
    relcourse noise --profile laptop --stage-2-draws 0 1 2        # split a seed's spread over stage 2 and 3
    relcourse report --profile laptop                             # reports/laptop/: REPORT.md, results.json, plots
    relcourse course --profile smoke --only 00                    # execute the notebooks
    relcourse course --refresh                                    # re-execute notebooks/ in place
    relcourse course --profile laptop --publish                   # into reports/laptop/notebooks/, to read
    relcourse export --run runs/smoke/distill/0-<hash> --out served --onnx --int8   # a plain transformers folder
    relcourse score --model served pairs.tsv --out scores.tsv --backend onnx        # score (query, document) pairs
    relcourse dry-run --profile gpu --layers 1                    # a GPU profile's stages on CPU, its memory

Mistakes (an unknown profile, a bad --set) print one line to stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from relcourse.config import PROFILES, load_profile, parse_overrides
from relcourse import report as reports
from relcourse.store import ensure_data

PROFILE_HELP = f"{' | '.join(PROFILES)} (default: $RELCOURSE_PROFILE, else smoke)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.command(args)
    except ValueError as e:
        _fail(str(e))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relcourse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run, help: str, overrides: bool = False) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--profile", help=PROFILE_HELP)
        if overrides:
            sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                             help="override a setting, e.g. --set pretrain.steps=50 (repeatable)")
        sub.set_defaults(command=run)
        return sub

    command("profile", _profile, "print the resolved profile as JSON", overrides=True)

    data = command("data", _data, "generate the synthetic data (or reuse it) and print its folder", overrides=True)
    data.add_argument("--seed", type=int, action="append", help="a seed (repeatable; default: the profile's seeds)")

    run = command("run", _run, "build a stage of the recipe (or reuse it), or run the claims of a stage",
                  overrides=True)
    run.add_argument("what", choices=RUNNABLE, help="a stage of the recipe, 'claims' (with --stage), or 'ladder': "
                                                    "every rung of the learning ladder and the baselines, every seed")
    run.add_argument("--stage", choices=("pretrain", "post_pretrain", "finetune", "distill"), help="with 'claims': whose claims")
    run.add_argument("--claim", action="append",
                     help="with 'claims': only this claim or probe id (repeatable; a probe runs only by id)")
    run.add_argument("--seed", type=int, action="append", help="a seed (repeatable; default: the profile's seeds)")
    run.add_argument("--workers", type=int, default=1,
                     help="with 'claims': build this many runs at once, each in its own process with "
                          "threads/workers threads (e.g. 2 on a 2-core laptop)")
    run.add_argument("--out", type=Path, help="with 'ladder': write the results (per seed and summarised) as JSON")

    noise = command("noise", _noise, NOISE_HELP, overrides=True)
    noise.add_argument("--seed", type=int, default=0, help="the world (and pretraining) every draw shares (default 0)")
    noise.add_argument("--stage-2-draws", type=int, nargs="+", default=[0, 1], metavar="DRAW",
                       help="post_pretrain.training_draw values (default 0 1)")
    noise.add_argument("--finetune-draws", type=int, nargs="+", default=[0, 1, 2], metavar="DRAW",
                       help="finetune.training_draw values, each of every stage-2 draw (default 0 1 2)")
    noise.add_argument("--out", type=Path, help="write the runs and the components here as JSON")

    report = command("report", _report, "write reports/<profile>/: REPORT.md, results.json and forest plots, from "
                                        "the committed results files and this checkout's claims registry")
    report.add_argument("--results", type=Path, nargs="+", metavar="FILE",
                        help="results files (`run ladder --out`) to read, in order; the last with a result for a "
                             "claim wins (default: the profile's committed files, e.g. results/laptop.json)")
    report.add_argument("--no-live", dest="live", action="store_false",
                        help="leave out runs/<profile>/claims/results.json (read last, so it wins, by default)")
    report.add_argument("--dir", type=Path, help="write here instead of reports/<profile>/ ($RELCOURSE_REPORTS)")
    report.add_argument("--out", type=Path, help="instead: write only the live registry's claims table to this file")
    report.add_argument("--ladder", type=Path, metavar="JSON",
                        help="instead: print the learning ladder of a `run ladder --out` file as Markdown")
    report.add_argument("--keep", type=Path, metavar="JSON",
                        help="instead: copy the live registry's claims into this results file (created, or its "
                             "claims updated), to commit: runs/ is not committed (e.g. results/laptop-claims.json)")
    report.add_argument("--pool-seeds", action="store_true",
                        help="with --keep: add the live registry's seeds to those the file holds for the same claim "
                             "and recipe (a claim run on more seeds than one sitting trains: run the next seeds with "
                             "--set seeds=..., then keep them pooled), instead of replacing its result")
    report.add_argument("--replace", action="append", default=[], metavar="ID",
                        help="with --pool-seeds: replace this claim's banked result by the live one instead of "
                             "pooling them (a claim re-run through a changed recipe; repeatable)")

    course = command("course", _course, "execute the course notebooks in order (papermill)", overrides=True)
    course.add_argument("--seed", type=int, help="default: the profile's first seed")
    course.add_argument("--only", nargs="+", metavar="NAME", help="only these notebooks, e.g. --only 00 04_fine_tune")
    course.add_argument("--out", type=Path, help="folder for the executed notebooks (default: build/<profile>/)")
    course.add_argument("--refresh", action="store_true",
                        help="re-execute notebooks/ in place on smoke and stamp them (their committed outputs)")
    course.add_argument("--publish", action="store_true",
                        help="keep the executed copies in reports/<profile>/notebooks/, stamped, to read on the web")
    course.add_argument("--log-output", action="store_true", help="stream the notebooks' output")

    export = commands.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP)
    export.add_argument("--run", type=Path, required=True, metavar="RUN_DIR",
                        help="a finished finetune or distill run folder, e.g. runs/smoke/distill/0-<hash>")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write (or replace)")
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (ONNX Runtime)")
    export.add_argument("--int8", action="store_true", help="also write model.int8.onnx (implies --onnx)")
    export.set_defaults(command=_export)

    dry = command("dry-run", _dry_run, DRY_RUN_HELP)
    dry.add_argument("--steps", type=int, default=2, help="steps of each training stage (default 2)")
    dry.add_argument("--interrupt-at", type=int, default=1, help="the step each stage is killed and resumed at")
    dry.add_argument("--groups", type=int, default=1, help="query groups per micro-batch (default 1)")
    dry.add_argument("--layers", type=int, help="depth of the teacher (default: the profile's; slow on CPU)")
    dry.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    dry.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="cpu (default; bf16 where the CPU has it), or cuda: the same checks on the GPU itself")

    score = commands.add_parser("score", help=SCORE_HELP, description=SCORE_HELP)
    score.add_argument("pairs", type=Path, help="a .tsv (header line) or .parquet file with columns query, document")
    score.add_argument("--model", type=Path, required=True, metavar="DIR", help="a folder written by `export`")
    score.add_argument("--out", type=Path, help="the scores' TSV (default: the pairs file with suffix .scores.tsv)")
    score.add_argument("--backend", choices=("torch", "onnx", "onnx-int8"), default="torch",
                       help="torch (transformers), or ONNX Runtime fp32 / int8 (export with --onnx / --int8)")
    score.add_argument("--batch-size", type=int, default=256, help="pairs per batch (default 256)")
    score.add_argument("--threads", type=int, help="CPU threads (default: the library's own)")
    score.set_defaults(command=_score)
    return parser


EXPORT_HELP = "write a trained run as a transformers model folder (AutoModelForSequenceClassification), optionally ONNX"
DRY_RUN_HELP = ("run every stage of a GPU profile on CPU for a few steps at its widths, length and batch layout, "
                "check bf16 and exact resume, and estimate the memory of its full-size steps")
NOISE_HELP = ("train the recipe on one world with several stage-2 and fine-tune training draws and split the test "
              "AUC's spread between the two stages (see relcourse/noise.py)")
SCORE_HELP = "score (query, document) pairs with an exported model; one score per row, in the input's order"


def _profile(args) -> None:
    profile = load_profile(args.profile, parse_overrides(args.overrides))
    print(json.dumps(profile.to_dict(), indent=2))


def _data(args) -> None:
    profile = load_profile(args.profile, parse_overrides(args.overrides))
    for seed in args.seed or profile.seeds:
        print(ensure_data(profile, seed))


RUNNABLE = ("tokenizer", "pretrain", "teacher", "post_pretrain", "finetune", "distill_data", "distill", "claims",
            "ladder")


def _run(args) -> None:
    from relcourse import experiments  # torch loads only when needed

    profile = load_profile(args.profile, parse_overrides(args.overrides))
    if args.what == "claims":
        if args.seed:
            raise ValueError("run claims uses every seed of the profile; change them with --set seeds=0,1,2")
        for result in experiments.run_claims(profile, args.stage, args.claim, args.workers):
            print(f"{result.claim_id}: {result.status}, effect {result.mean:+.4f} {result.notes}")
        return
    if args.what == "ladder":
        results = experiments.write_ladder(profile, args.seed or list(profile.seeds), args.out)
        print(json.dumps(results["summary"]["models"], indent=1) if args.out is None else args.out)
        return
    if args.workers != 1 or args.out:
        raise ValueError("--workers is for 'run claims' and --out for 'run ladder'; a stage is one run per seed")
    for seed in args.seed or profile.seeds:
        print(experiments.build_stage(profile, args.what, seed))


def _noise(args) -> None:
    from relcourse import noise   # torch loads only when needed

    overrides = parse_overrides(args.overrides)
    noise.probe(load_profile(args.profile, overrides), args.seed, args.stage_2_draws, args.finetune_draws,
                overrides, args.out)


def _report(args) -> None:
    if args.ladder:
        if not args.ladder.is_file():
            raise ValueError(f"{args.ladder} does not exist; write it with `relcourse run ladder --out {args.ladder}`")
        print(reports.ladder_table(json.loads(args.ladder.read_text())))
        return
    name = load_profile(args.profile).name  # validates the name
    if args.pool_seeds and not args.keep:
        raise ValueError("--pool-seeds adds seeds to a results file: give the file with --keep JSON")
    if args.replace and not args.pool_seeds:
        raise ValueError("--replace makes an exception to --pool-seeds (without it every kept claim is replaced)")
    if args.keep:
        kept = reports.keep_registry(name, args.keep, pool_seeds=args.pool_seeds, replace=tuple(args.replace))
        print(f"{args.keep}: {len(kept)} claims ({', '.join(kept)})")
        return
    if args.out:
        print(reports.write_report(name, args.out))
        return
    path = reports.write(name, args.results, args.live, args.dir)
    print(reports.summary_table(json.loads((path.parent / "results.json").read_text())))
    print(path)


def _course(args) -> None:
    from relcourse.course import CourseError, publish_notebooks, refresh_notebooks, run_course  # papermill: when needed

    overrides = parse_overrides(args.overrides)
    profile = load_profile(args.profile, overrides)
    seed = profile.seeds[0] if args.seed is None else args.seed
    try:
        if args.refresh:
            if args.overrides or args.out or args.publish or args.profile not in (None, "smoke"):
                raise ValueError("--refresh re-executes notebooks/ on smoke as committed; "
                                 "it takes no --profile, --set, --out or --publish")
            refresh_notebooks(args.only, log_output=args.log_output)
            print("[course] notebooks/ refreshed; review with `git diff --stat notebooks/` and commit.")
        elif args.publish:
            if args.out or profile.name == "smoke":
                raise ValueError("--publish writes reports/<profile>/notebooks/ for a bigger profile (smoke's outputs "
                                 "are notebooks/ themselves): give --profile laptop (or gpu), and no --out")
            publish_notebooks(profile.name, seed, args.only, overrides=overrides, log_output=args.log_output)
        else:
            run_course(profile.name, seed, args.out, args.only, overrides=overrides, log_output=args.log_output)
    except CourseError as e:
        _fail(str(e))


def _dry_run(args) -> None:
    from relcourse.dry_run import failures, render, run_dry   # torch loads only when needed

    report = run_dry(args.profile or "gpu", args.steps, args.interrupt_at, args.groups, args.layers, args.threads,
                     device=args.device)
    print(render(report))
    if failures(report):
        raise SystemExit(1)


def _quiet_transformers() -> None:
    """No 'Loading weights' progress bars: export and score print one line each."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _export(args) -> None:
    from relcourse.export import export_model   # torch loads only when needed

    _quiet_transformers()
    print(export_model(args.run, args.out, onnx=args.onnx, int8=args.int8))


def _score(args) -> None:
    import torch

    from relcourse.scoring import score_file

    _quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    out, rate = score_file(args.model, args.pairs, args.out, args.backend, args.batch_size, args.threads)
    print(f"{out} ({rate:,.0f} docs/s, backend {args.backend})")


def _fail(message: str) -> None:
    print(f"relcourse: error: {message}", file=sys.stderr)
    raise SystemExit(2)
