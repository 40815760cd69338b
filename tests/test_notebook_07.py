"""Notebook 07 (what reproduced) without a kernel: its reasons cover the registry, its prose types no
measured number, its commands are the CLI's, and it trains nothing.

nbval re-executes the notebook in `make test`; these checks read its cells, so they run in
milliseconds with the unit tests and name the cell at fault.
"""
from __future__ import annotations

import re
import shlex

import nbformat
import pytest

from relcourse import cli, course
from relcourse.claims import CLAIMS, CLAIMS_BY_ID
from relcourse.takeaways import committed_report

NOTEBOOK = course.NOTEBOOKS_DIR / "07_what_reproduced.ipynb"


@pytest.fixture(scope="module")
def cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def cell_starting(cells, first_line: str) -> str:
    found = [c.source for c in cells if c.cell_type == "code" and c.source.startswith(first_line)]
    assert len(found) == 1, f"07 should have exactly one code cell starting {first_line!r}"
    return found[0]


def reasons(cells) -> dict:
    namespace: dict = {}
    exec(cell_starting(cells, "CATEGORIES = ("), namespace)  # noqa: S102 - our own committed notebook cell
    return namespace


def test_every_claim_that_does_not_hold_in_the_committed_report_has_a_reason(cells):
    ns = reasons(cells)
    status = {r["id"]: r["status"] for r in committed_report("laptop")["claims"]}
    missing = [c.id for c in CLAIMS if status.get(c.id) != "holds" and c.id not in ns["REASONS"]]
    assert not missing, f"add a reason to 07's REASONS for {missing}"
    assert set(ns["REASONS"]) <= set(CLAIMS_BY_ID)
    assert {category for category, _ in ns["REASONS"].values()} <= set(ns["CATEGORIES"])


def test_the_notebooks_own_check_fails_for_a_claim_without_a_reason(cells):
    ns = reasons(cells)
    check = cell_starting(cells, "# Every claim of the registry must have a reason")
    # D5 stops holding in a regenerated report, and nobody writes why: the notebook must stop there
    assert "D5" not in ns["REASONS"]
    ns.update(CLAIMS=CLAIMS, CLAIMS_BY_ID=CLAIMS_BY_ID,
              rows={c.id: {"status": "holds" if c.id == "D7" else "inconclusive"} for c in CLAIMS})
    with pytest.raises(AssertionError, match="D5"):
        exec(check, ns)  # noqa: S102


def test_prose_types_no_measured_number(cells):
    """Numbers with two decimals or more (an AUC, an effect) come from the report, rendered by code."""
    ns = reasons(cells)
    texts = {f"markdown cell {i}": c.source for i, c in enumerate(cells) if c.cell_type == "markdown"}
    texts |= {f"REASONS[{k!r}]": reason for k, (_, reason) in ns["REASONS"].items()}
    typed = {where: re.findall(r"\d\.\d{2,}", text) for where, text in texts.items()}
    assert not {w: n for w, n in typed.items() if n}, "render these from the report instead"


def test_every_command_it_shows_is_accepted_by_the_cli(cells):
    parser = cli.build_parser()
    commands = [m.group(1) for c in cells for m in re.finditer(r"python -m relcourse ([^`\n#]+)", c.source)]
    assert len(commands) >= 10, commands
    for command in commands:
        words = []
        for word in shlex.split(command):
            if word.startswith((">", "2>", "&")):
                break   # the shell's redirections and '&' are not the CLI's
            words.append(word)
        parser.parse_args(words)   # exits (fails the test) on a flag the CLI does not have


def test_it_trains_nothing(cells):
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert not re.findall(r"\brun_(?:claims?|arm|pretrain|post_pretrain|finetune|distill)\(|\bensure_\w+\(", code)
