"""Run the course: execute every notebook in order, the way the field does it (papermill).

    python -m relcourse course --profile laptop    # execute into build/laptop/
    python -m relcourse course --refresh           # re-execute notebooks/ in place (smoke)
    python -m relcourse course --profile laptop --publish   # into reports/laptop/notebooks/, for reading

Each notebook has a cell tagged ``parameters`` whose defaults read ``RELCOURSE_PROFILE``
from the environment. papermill injects ``profile`` and ``seed`` after that cell, and
writes the executed copy to ``build/<profile>/``; the sources in ``notebooks/`` are never
touched, except by ``--refresh``, which writes the smoke-profile outputs back into them
(they are committed with their outputs, so they read well on the web) and stamps each
with the hash of its sources, so that a test can tell when outputs have gone stale.
``--publish`` keeps a bigger profile's executed copies in ``reports/<profile>/notebooks/``,
each opened by a cell that says which profile, seed and commit its outputs come from: the
numbers where the claims live, readable without running anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
BUILD_DIR = ROOT / "build"
REPORTS_DIR = ROOT / "reports"
KERNEL_NAME = "relcourse"
REFRESH_PROFILE = "smoke"

# A cell that runs longer than this is stopped and the notebook fails with a clear message.
CELL_TIMEOUT_S = 1800
# Profiles whose cells legitimately train for hours get a longer leash.
CELL_TIMEOUT_BY_PROFILE = {"gpu-xl": 12 * 3600}


class CourseError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell."""


def list_notebooks(directory: Path | None = None) -> list[Path]:
    """The course's notebooks, in order: ``notebooks/NN_*.ipynb`` sorted by name."""
    return sorted(Path(directory or NOTEBOOKS_DIR).glob("[0-9][0-9]_*.ipynb"))


NOTEBOOKS: list[Path] = list_notebooks()


def source_hash(nb) -> str:
    """sha256 of a notebook's cell sources, in order (outputs and metadata excluded).

    Each cell contributes its type and its source, NUL-separated, so moving text from a
    markdown cell into a code cell also counts as a change. Cells papermill injects
    (tagged ``injected-parameters``) are skipped, so an executed copy hashes like its source.
    ``nb`` is an ``nbformat.NotebookNode`` or the plain dict of an ``.ipynb`` file.
    """
    h = hashlib.sha256()
    for cell in nb["cells"]:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        if isinstance(src, list):  # raw JSON keeps sources as lists of lines
            src = "".join(src)
        h.update(cell["cell_type"].encode())
        h.update(b"\0")
        h.update(src.encode())
        h.update(b"\0")
    return h.hexdigest()


def cell_timeout(profile: str) -> int:
    env = os.environ.get("RELCOURSE_CELL_TIMEOUT")
    if env:
        return int(env)
    return CELL_TIMEOUT_BY_PROFILE.get(profile, CELL_TIMEOUT_S)


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Make sure the Jupyter kernel ``name`` exists and runs *this* interpreter.

    papermill and nbval both ask for the kernel by name. If it is missing, or registered
    for another Python (another virtualenv, say), register it (user-level) for
    ``sys.executable``, the interpreter that has this package installed.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec(name)
        exe = spec.argv[0] if spec.argv else ""
    except NoSuchKernel:
        exe = None
    # No realpath: two virtualenvs share one base interpreter through symlinks.
    if exe is not None and os.path.abspath(exe) == os.path.abspath(sys.executable):
        return
    from ipykernel.kernelspec import install

    where = install(user=True, kernel_name=name, display_name="Python 3 (relcourse)")
    why = "was missing" if exe is None else f"pointed at {exe}"
    print(f"[course] registered Jupyter kernel '{name}' for {sys.executable} ({why}): {where}")


@contextlib.contextmanager
def _profile_env(profile: str):
    """Set RELCOURSE_PROFILE while the notebooks run (their kernels inherit it), then restore it."""
    old = os.environ.get("RELCOURSE_PROFILE")
    os.environ["RELCOURSE_PROFILE"] = profile
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RELCOURSE_PROFILE", None)
        else:
            os.environ["RELCOURSE_PROFILE"] = old


def _select(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the notebooks named in ``only`` ("00", "00_welcome" or "00_welcome.ipynb")."""
    if not only:
        return list(notebooks)
    chosen = []
    for key in only:
        key = key.removesuffix(".ipynb")
        hits = [p for p in notebooks if p.stem == key or p.stem.split("_", 1)[0] == key]
        if not hits:
            names = ", ".join(p.stem for p in notebooks)
            raise CourseError(f"no notebook matches {key!r}; the course has: {names}")
        chosen += [p for p in hits if p not in chosen]
    return sorted(chosen)


def _failing_cell(src: Path, dst: Path, err: Exception) -> str:
    """Describe the failing cell as '<n> (first line of its source)', counted in ``src``."""
    import nbformat

    source = getattr(err, "source", None)
    if source is None and dst.exists():
        # A timeout or a dead kernel: the cell papermill flagged, else the last one it started
        # (the cells after it are still 'pending').
        try:
            executed = nbformat.read(dst, as_version=4)
            for cell in executed.cells:
                meta = cell.get("metadata", {}).get("papermill", {})
                if cell.cell_type != "code" or meta.get("status", "pending") == "pending":
                    continue
                source = cell.source
                if meta.get("exception"):
                    break
        except Exception:  # the partial output may be unreadable; say what we can
            pass
    if source is None:
        return "?"
    cells = nbformat.read(src, as_version=4).cells
    index = next((i for i, c in enumerate(cells) if c.source == source), None)
    first = next((ln for ln in source.splitlines() if ln.strip()), "").strip()
    return f"{'?' if index is None else index + 1} of {len(cells)} (`{first[:70]}`)"


def _execute(src: Path, dst: Path, parameters: dict, timeout: int, log_output: bool) -> None:
    import papermill as pm

    try:
        pm.execute_notebook(
            str(src),
            str(dst),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            execution_timeout=timeout,
            progress_bar=False,
            # Stream the cells' printed output (not the papermill logger, which needs setup).
            stdout_file=sys.stdout if log_output else None,
            stderr_file=sys.stderr if log_output else None,
            cwd=str(src.parent),
        )
    except Exception as err:
        where = _failing_cell(src, dst, err)
        what = f"{err.ename}: {err.evalue}" if hasattr(err, "ename") else f"{type(err).__name__}: {err}"
        raise CourseError(
            f"notebook {src.name} failed at cell {where}\n  {what.strip()}\n"
            f"  the partly executed notebook, with the traceback, is {dst}"
        ) from err


def run_course(
    profile: str,
    seed: int = 0,
    out_dir: Path | None = None,
    only: list[str] | None = None,
    *,
    overrides: dict | None = None,
    log_output: bool = False,
) -> list[Path]:
    """Execute the course's notebooks in order on ``profile``; return the executed copies.

    ``overrides`` (dotted keys, e.g. ``{"pretrain.steps": 50}``) reach every notebook as its
    ``overrides`` parameter; they are checked here first, so a bad key fails before any kernel
    starts. Writes ``<out_dir>/<name>.ipynb`` (default ``build/<profile>/``), prints each notebook's
    wall time, and stops at the first failure with a :class:`CourseError` naming the notebook
    and the cell. Run whole on a profile whose notebooks read their claims (laptop, on CPU), it
    first builds the runs the notebooks train, two chains at once (relcourse.experiments.course_jobs).
    """
    from relcourse.config import load_profile
    from relcourse.experiments import build_course_runs, builds_course_first

    overrides = dict(overrides or {})
    cfg = load_profile(profile, overrides)   # raises ConfigError naming the key and its valid values
    out_dir = Path(out_dir) if out_dir is not None else BUILD_DIR / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = _select(list_notebooks(), only)
    if not notebooks:
        raise CourseError(f"no notebooks found in {NOTEBOOKS_DIR}")
    ensure_kernel()
    timeout = cell_timeout(profile)
    shown = "".join(f" {k}={v}" for k, v in overrides.items())
    print(f"[course] profile={profile}{shown} seed={seed}: {len(notebooks)} notebook(s) -> {out_dir}")
    done = []
    t_all = time.perf_counter()
    runs_first = not only and builds_course_first(cfg)
    if runs_first:
        # The notebooks train one stage after another; first building their runs, one chain per
        # 1-thread process, keeps both cores busy (README, "Profiles"). The notebooks then read them back.
        print(f"[course] building the notebooks' training runs first, one chain per process (seed {seed})")
        build_course_runs(cfg, seed)
        print(f"[course] runs built in {time.perf_counter() - t_all:.1f} s")
    t_notebooks = time.perf_counter()
    # The kernels inherit the environment: code that reads RELCOURSE_PROFILE (the notebooks'
    # parameter defaults, subprocesses) agrees with the injected parameters.
    with _profile_env(profile):
        for src in notebooks:
            dst = out_dir / src.name
            t0 = time.perf_counter()
            _execute(src, dst, {"profile": profile, "seed": seed, "overrides": overrides}, timeout, log_output)
            print(f"[course] {src.name:<40s} {time.perf_counter() - t0:8.1f} s")
            done.append(dst)
    print(f"[course] all {len(done)} notebook(s) ran in {time.perf_counter() - t_notebooks:.1f} s"
          + (f", {time.perf_counter() - t_all:.1f} s with their runs built first" if runs_first else ""))
    print(f"[course] executed notebooks: {out_dir}")
    if not only:
        _write_report(profile, out_dir / "report.md")
    return done


def _write_report(profile: str, path: Path) -> None:
    """After a full run, the claims table next to the executed notebooks."""
    try:
        from relcourse.report import write_report

        print(f"[course] report: {write_report(profile, path)}")
    except Exception as err:  # the notebooks ran; a report problem should not hide that
        print(f"[course] report not written ({type(err).__name__}: {err}); "
              f"try `python -m relcourse report --profile {profile}`")


def _strip_run_metadata(nb) -> None:
    """Drop what papermill records per run (timings, paths), so committed diffs stay small."""
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]


def stamp(nb, profile: str = REFRESH_PROFILE) -> None:
    """Record in the notebook's metadata which sources its committed outputs came from."""
    nb.metadata["relcourse"] = {"source_hash": source_hash(nb), "profile": profile}


def refresh_notebooks(only: list[str] | None = None, *, log_output: bool = False) -> list[Path]:
    """Re-execute notebooks/ on the smoke profile and write the outputs back in place.

    No parameters are injected (the ``parameters`` cell's default reads RELCOURSE_PROFILE,
    set to smoke here), so the committed sources stay exactly as written. A notebook is
    written back only if it ran without error.
    """
    import nbformat

    notebooks = _select(list_notebooks(), only)
    if not notebooks:
        raise CourseError(f"no notebooks found in {NOTEBOOKS_DIR}")
    ensure_kernel()
    timeout = cell_timeout(REFRESH_PROFILE)
    print(f"[course] refreshing {len(notebooks)} notebook(s) in place on {REFRESH_PROFILE}")
    with _profile_env(REFRESH_PROFILE), tempfile.TemporaryDirectory(prefix="relcourse-refresh-") as tmp:
        for src in notebooks:
            dst = Path(tmp) / src.name
            t0 = time.perf_counter()
            _execute(src, dst, {}, timeout, log_output)
            nb = nbformat.read(dst, as_version=4)
            _strip_run_metadata(nb)
            stamp(nb)
            nbformat.write(nb, src)
            print(f"[course] {src.name:<40s} {time.perf_counter() - t0:8.1f} s  (refreshed)")
    return notebooks


def published_dir(profile: str) -> Path:
    """Where `--publish` keeps a profile's executed notebooks: reports/<profile>/notebooks/."""
    return REPORTS_DIR / profile / "notebooks"


def as_published(nb, name: str, profile: str, seed: int, commit: str | None, overrides: dict | None = None,
                 uncommitted: bool = False) -> None:
    """Make an executed notebook a read-only copy: run metadata stripped, stamped with the
    hash of the sources it ran (profile, seed and commit beside it), and opened by a cell that
    says so and links the runnable notebook.

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    >>> as_published(nb, "04_fine_tune.ipynb", "laptop", 0, "abc1234def")
    >>> nb.cells[0].source.splitlines()[0]
    '> **Executed on the `laptop` profile** (seed 0, commit `abc1234`): a copy to read, not to run.'
    >>> nb.metadata["relcourse"]["profile"], nb.metadata["relcourse"]["source_hash"] == source_hash(
    ...     nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]))
    ('laptop', True)

    Run from a checkout with changes its commit does not hold, the copy says so:

    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    >>> as_published(nb, "04_fine_tune.ipynb", "laptop", 0, "abc1234def", uncommitted=True)
    >>> nb.cells[0].source.split(":")[0]
    '> **Executed on the `laptop` profile** (seed 0, commit `abc1234` with uncommitted changes)'
    """
    import nbformat

    _strip_run_metadata(nb)
    nb.metadata["relcourse"] = {"source_hash": source_hash(nb), "profile": profile, "seed": seed,
                                "git_commit": commit, "uncommitted_changes": uncommitted, "overrides": dict(overrides or {})}
    changed = "".join(f", `{k}={v}`" for k, v in (overrides or {}).items())
    version = f"commit `{(commit or 'unknown')[:7]}`" + (" with uncommitted changes" if uncommitted else "")
    banner = (f"> **Executed on the `{profile}` profile** (seed {seed}{changed}, {version}): "
              "a copy to read, not to run.\n"
              f"> Its outputs are the numbers the course measures at this size. The notebook to run is "
              f"[`notebooks/{name}`](../../../notebooks/{name}), whose committed outputs come from the tiny "
              f"`{REFRESH_PROFILE}` profile; regenerate this copy with "
              f"`python -m relcourse course --profile {profile} --publish`.")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(banner))


def publish_notebooks(profile: str, seed: int = 0, only: list[str] | None = None, *,
                      overrides: dict | None = None, log_output: bool = False) -> list[Path]:
    """Execute the course on `profile` (run_course) and keep each executed notebook, as_published,
    in reports/<profile>/notebooks/. Nothing is replaced unless every selected notebook ran;
    each file is written to a temporary name and renamed."""
    import nbformat

    from relcourse.store import git_commit, git_uncommitted

    out = published_dir(profile)
    commit, uncommitted = git_commit(), git_uncommitted()   # the version that runs, before anything is written
    with tempfile.TemporaryDirectory(prefix="relcourse-publish-") as tmp:
        executed = run_course(profile, seed, Path(tmp), only, overrides=overrides, log_output=log_output)
        out.mkdir(parents=True, exist_ok=True)
        for path in executed:
            nb = nbformat.read(path, as_version=4)
            as_published(nb, path.name, profile, seed, commit, overrides, uncommitted)
            partial = out / f".{path.name}.tmp"
            nbformat.write(nb, partial)
            os.replace(partial, out / path.name)
    print(f"[course] published {len(executed)} notebook(s) in {out}")
    return [out / path.name for path in executed]
