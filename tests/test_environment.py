"""The three install paths agree: pyproject.toml (pip / make), environment.yml (conda), Makefile."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_requirements() -> dict[str, Requirement]:
    reqs = [Requirement(d) for d in pyproject()["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def conda_env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_pip_requirements() -> dict[str, Requirement]:
    pip = [d for d in conda_env()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs one `pip:` section"
    reqs = [Requirement(line) for line in pip[0]["pip"] if not line.startswith("-e")]
    return {canonicalize_name(r.name): r for r in reqs}


def makefile_torch() -> str:
    m = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert m, "the Makefile must pin torch (TORCH_SPEC ?= torch==X.Y.Z)"
    return m.group(1)


def test_every_dependency_is_in_both_files():
    ours, conda = set(pyproject_requirements()), set(conda_pip_requirements())
    assert not ours - conda, f"in pyproject.toml but not environment.yml: {sorted(ours - conda)}"
    assert not conda - ours, f"in environment.yml but not pyproject.toml: {sorted(conda - ours)}"


def test_conda_env_is_python_311_and_installs_the_package():
    env = conda_env()
    assert env["name"] == "relcourse"
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in plain and "pip" in plain
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip


def test_pins_fall_inside_the_pyproject_ranges():
    """A pin (conda's torch==, the Makefile's torch==) outside pyproject's range would make pip
    replace it, and an unpinned torch pulls a CUDA build of several GB."""
    ranges = pyproject_requirements()
    assert ranges["torch"].specifier, "pyproject.toml must bound torch"
    assert Version(makefile_torch()) in ranges["torch"].specifier
    for name, req in conda_pip_requirements().items():
        pins = [s.version for s in req.specifier if s.operator == "=="]
        for pin in pins:
            assert Version(pin) in ranges[name].specifier, f"{name}=={pin} is outside {ranges[name]}"
    assert any(s.operator == "==" for s in conda_pip_requirements()["torch"].specifier)
    assert Version(makefile_torch()) in conda_pip_requirements()["torch"].specifier


def test_every_dependency_has_a_version_range():
    for name, req in pyproject_requirements().items():
        assert req.specifier, f"{name} has no version range in pyproject.toml"
        assert not any(s.operator == "==" for s in req.specifier), f"{name} is pinned in pyproject.toml"


def test_package_metadata():
    project = pyproject()["project"]
    assert project["name"] == "relcourse"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["relcourse"] == "relcourse.cli:main"
    ini = pyproject()["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests"]
    assert "nbval" not in ini.get("addopts", ""), "nbval runs separately over notebooks/ (make test)"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in ci
    assert re.search(r"^make test$", ci, re.MULTILINE)
    assert "make test" in (ROOT / "README.md").read_text()
