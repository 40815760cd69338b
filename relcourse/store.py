"""The artifact store: every stage writes one folder, named by what it was built from.

    runs/<profile>/<stage>/<seed>-<config_hash>/
        run.json     the run's manifest: stage, profile, seed, config, config_hash, upstream,
                     package versions, git commit, metrics, created, status
        ...          whatever the stage writes (the data stage: Parquet tables and data_gen's
                     own manifest.json; later stages: model weights, scores, ...)

`config_hash` covers the stage's config *and* the hashes of the runs it was built from, so
like a git commit id it names the whole lineage: retrain the pretraining stage with other
settings and every later stage gets a new folder instead of silently reusing a stale one.
A folder appears only complete: it is built under a temporary name and renamed into place.
The root is `<repo>/runs`, or $RELCOURSE_RUNS.

>>> import tempfile
>>> from relcourse.config import load_profile
>>> os.environ[RUNS_ENV] = tempfile.mkdtemp()
>>> def build(d):
...     (d / "hello.txt").write_text("hi")
...     return {"lines": 1}
>>> d = cached_stage(load_profile("smoke"), "demo", 0, {"greeting": "hi"}, build)
>>> d.parent.name, load_manifest(d)["metrics"]
('demo', {'lines': 1})
>>> cached_stage(load_profile("smoke"), "demo", 0, {"greeting": "hi"}, build=None) == d  # reused, not rebuilt
True
>>> del os.environ[RUNS_ENV]
"""
from __future__ import annotations

import dataclasses
import datetime
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import data_gen
from relcourse.config import Profile, config_hash, without_later_defaults

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_ENV = "RELCOURSE_RUNS"
# Not "manifest.json": a stage's own files may have one (data_gen writes one for its tables).
MANIFEST = "run.json"
# Recorded in every manifest; read from package metadata, so none of them is imported.
VERSIONED_PACKAGES = ("torch", "transformers", "numpy", "pandas", "lightgbm")


class StoreError(ValueError):
    """A stage folder is missing or unreadable; the message says how to (re)build it."""


class NotBuilt(StoreError):
    """Inside `cached_only()`: a stage run that would have to be built first."""


_cached_only = False
_machines_read: list[dict] | None = None
# Stages whose outputs no thread count or CPU changes (numpy generators, the tokenizer's counts):
# left out of what `machines_read` collects, so runs built by another process do not count.
THREAD_FREE_STAGES = frozenset({"data", "tokenizer"})


@contextmanager
def cached_only() -> Iterator[None]:
    """While the block runs, a stage run that is not built raises NotBuilt instead of being
    built: whether a run exists, asked through the stage's own builder, without training it."""
    global _cached_only
    previous, _cached_only = _cached_only, True
    try:
        yield
    finally:
        _cached_only = previous


@contextmanager
def machines_read() -> Iterator[list[dict]]:
    """While the block runs, collects the machine record (a manifest's "machine") of every run
    `cached_stage` returns, built here or read back, bar THREAD_FREE_STAGES: what a result computed
    from those runs was really measured on. A cached run is reused whatever threads asked for it,
    so the threads of this process need not be the threads that built what it reads."""
    global _machines_read
    outer, _machines_read = _machines_read, []
    try:
        yield _machines_read
    finally:
        if outer is not None:
            outer.extend(_machines_read)
        _machines_read = outer


def machine_record(profile: Profile, processes: int = 1) -> dict:
    """What a run built now with `profile` records of its machine (not in the key: these should not
    change results, but on a CPU they can, since a sum split over other threads rounds differently)."""
    return {"threads": profile.threads, "device": profile.device, "cpu": cpu_model(),
            **({"processes": processes} if processes > 1 else {})}


def layout(machine: dict) -> str:
    """A machine record in words: on a CPU its model and the threads a run had, else its device.

    >>> layout({"threads": 1, "device": "cpu", "cpu": "AMD EPYC, AVX512"}), layout({"device": "cuda", "threads": 2})
    ('cpu: AMD EPYC, AVX512, 1 thread a run', 'cuda')
    """
    if machine.get("device", "cpu") != "cpu":
        return str(machine["device"])
    threads = machine.get("threads")
    return f"cpu: {machine.get('cpu', 'CPU not recorded')}, {threads} thread{'' if threads == 1 else 's'} a run"


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT / "runs")


def stage_dir(profile_name: str, stage: str, seed: int, config_hash: str) -> Path:
    return runs_root() / profile_name / stage / f"{seed}-{config_hash}"


def build_command(profile_name: str, stage: str, seed: int) -> str:
    """The shell command that builds `stage`, for error messages."""
    if stage == "data":
        return f"python -m relcourse data --profile {profile_name} --seed {seed}"
    return f"python -m relcourse run {stage} --profile {profile_name} --seed {seed}"


# --- atomic writes --------------------------------------------------------------------------

def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and os.replace: readers see the old or the new file, never half."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """write_text_atomic for bytes (a plot, a model file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private (0600); these are meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextmanager
def runs_in(folder: str | Path) -> Iterator[None]:
    """Stages read and write their runs under `folder` while the block runs ($RELCOURSE_RUNS),
    as before afterwards: a dry run or a benchmark in a scratch folder leaves runs/ alone."""
    previous = os.environ.get(RUNS_ENV)
    os.environ[RUNS_ENV] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RUNS_ENV, None)
        else:
            os.environ[RUNS_ENV] = previous


@contextmanager
def atomic_dir(final: Path, resumable: bool = False) -> Iterator[Path]:
    """Yield a work folder next to `final`; move it to `final` only if the block succeeds.

    On success an existing `final` (an unfinished or outdated run) is replaced; on an exception
    an existing `final` is left as it was. The work folder is a fresh temp folder, deleted on
    an exception; with `resumable` it is `.<name>.partial`, kept on an exception (or a kill) so
    that the next attempt finds what the last one left, e.g. a training checkpoint to resume.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    if resumable:
        tmp = final.parent / f".{final.name}.partial"
        tmp.mkdir(exist_ok=True)
    else:
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.building-"))
        tmp.chmod(0o755)  # mkdtemp makes folders private (0700); runs are meant to be read
    try:
        yield tmp
    except BaseException:
        if not resumable:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        # A folder cannot be os.replace'd over a non-empty one: move the old aside first.
        old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
        os.replace(final, old / final.name)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


# --- manifests ------------------------------------------------------------------------------

def load_manifest(run_dir: Path) -> dict:
    """The run manifest (run.json) of a finished stage folder, or a StoreError that says what is wrong."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise StoreError(f"{run_dir} has no {MANIFEST}: it is not a finished stage run; "
                         "delete the folder and build the stage again")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is corrupt ({e}); delete {run_dir} and build the stage again") from None
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        raise StoreError(f"{path} does not describe a complete run; delete {run_dir} and build the stage again")
    return manifest


def run_hash(run_dir: Path) -> str:
    """The config hash that names a finished run; later stages list it as their upstream."""
    return load_manifest(run_dir)["config_hash"]


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cpu_model() -> str:
    """The CPU's name and the vector instructions torch's kernels use on it ('AMD EPYC, AVX512'):
    two machines with different ones can round a float sum differently, so a CPU run may not
    rebuild bit for bit on the other."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), name)
    except OSError:
        pass
    import torch   # here, not at the top: the store is also used where torch is not loaded yet
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def machine_name(device: str) -> str:
    """What computes on `device`: 'cpu: AMD EPYC, AVX512' (`cpu_model`) or, on a GPU, its name
    ('cuda: NVIDIA H100 80GB HBM3')."""
    if device.startswith("cuda"):
        import torch
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {cpu_model()}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_uncommitted() -> bool:
    """Whether the checkout differs from its commit (changed or untracked files git does not ignore)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


# --- stages ---------------------------------------------------------------------------------

def stage_hash(config: dict, upstream: dict[str, str]) -> str:
    """The hash that names a run: its config plus the hashes of the runs it was built from."""
    return config_hash({"config": without_later_defaults(config), "upstream": upstream})


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock named after `path` (a hidden .lock file beside it) while the block
    runs: one process at a time, the others wait. Used so that two notebooks asking for one
    stage build it once, and two claims recorded at once both land in the results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _finished(final: Path) -> bool:
    try:
        load_manifest(final)
        return True
    except StoreError:
        return False  # never built, or left unfinished


def cached_stage(profile: Profile, stage: str, seed: int, config: dict,
                 build: Callable[[Path], dict], upstream: dict[str, str] | None = None,
                 resumable: bool = False) -> Path:
    """The folder of `stage` for this config and upstream: reused when it exists, else built.

    `build(folder)` writes the stage's files into `folder` and returns its metrics (a JSON-able
    dict), which go into the manifest. `upstream` maps stage names to the `config_hash` of the
    runs this one reads, e.g. {"data": "3f2a..."}. A `resumable` stage builds in a work folder
    that outlives a crash or a kill (see atomic_dir), so a training stage resumes from its last
    checkpoint when asked again.
    """
    final = _built_or_reused(profile, stage, seed, config, build, dict(upstream or {}), resumable)
    if _machines_read is not None and stage not in THREAD_FREE_STAGES:
        _machines_read.append(load_manifest(final).get("machine", {}))
    return final


def _built_or_reused(profile: Profile, stage: str, seed: int, config: dict, build: Callable[[Path], dict],
                     upstream: dict[str, str], resumable: bool) -> Path:
    run_hash = stage_hash(config, upstream)
    final = stage_dir(profile.name, stage, seed, run_hash)
    if _finished(final):
        return final
    if _cached_only:
        raise NotBuilt(f"{stage} run {final.name} of profile {profile.name!r} is not built")
    rank, processes = launch_rank()
    if resumable and processes > 1 and rank > 0:
        # Under torchrun every process trains a training stage (relcourse.train gives each its share
        # of every batch); the main process writes the run, the others train along in scratch.
        with tempfile.TemporaryDirectory() as scratch:
            build(Path(scratch))
    else:
        with file_lock(final):
            if _finished(final):   # built by another process while this one waited
                return final
            with atomic_dir(final, resumable) as tmp:
                metrics = build(tmp)
                write_json_atomic(tmp / MANIFEST, {
                    "stage": stage, "profile": profile.name, "seed": seed,
                    "config": config, "config_hash": run_hash, "upstream": upstream,
                    "versions": package_versions(), "git_commit": git_commit(),
                    "machine": machine_record(profile, processes if resumable else 1),
                    "metrics": metrics, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "status": "complete",
                })
    if resumable and processes > 1:
        import torch.distributed
        torch.distributed.barrier()   # every process returns once the main one has put the run in place
    return final


def launch_rank() -> tuple[int, int]:
    """(this process's rank, the number of processes) under torchrun or accelerate launch; (0, 1) alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def require_stage(profile: Profile | str, stage: str, seed: int) -> Path:
    """The newest complete run of `stage` for this profile and seed; a StoreError naming the
    command that builds it when there is none."""
    name = profile if isinstance(profile, str) else profile.name
    runs = []
    for run_dir in (runs_root() / name / stage).glob(f"{seed}-*"):
        try:
            runs.append((load_manifest(run_dir)["created"], run_dir))
        except StoreError:
            continue  # an unfinished run does not count
    if not runs:
        raise StoreError(f"no complete '{stage}' run for profile {name!r}, seed {seed} under {runs_root()}; "
                         f"build it with: {build_command(name, stage, seed)}")
    return max(runs)[1]


def data_settings(profile: Profile) -> dict:
    """What the data stage's cache key holds: the world's settings and the generator's version. The
    list of seeds a profile runs does not change what one seed generates."""
    return {"world_version": data_gen.WORLD_VERSION,
            **{k: v for k, v in dataclasses.asdict(profile.data).items() if k != "seeds"}}


def ensure_data(profile: Profile, seed: int, progress: bool = True) -> Path:
    """The data stage: generate the synthetic world and logs for one seed, or reuse them."""
    config = data_settings(profile)

    def build(out: Path) -> dict:
        manifest = data_gen.generate(profile.data, seed, out, profile=profile.name, progress=progress,
                                     workers=profile.data_workers)
        return {name: table["rows"] for name, table in manifest["tables"].items()}

    return cached_stage(profile, "data", seed, config, build)
