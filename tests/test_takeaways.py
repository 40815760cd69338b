"""The notebooks' conclusions (relcourse.takeaways): they name real claims, each stage's chapter quotes
every claim of its stage, their numbers are the report's, and what the committed notebooks show is
what the committed report says today.

A notebook quotes a claim only through a call such as `takeaway("P1")` or `takeaways("P1", "P2")`;
the calls are found by parsing the notebooks' code cells, so a renamed or mistyped claim fails here
rather than in front of a learner.
"""
from __future__ import annotations

import ast
import json
import re

import pytest

from relcourse import course, takeaways as tk
from relcourse.claims import CLAIMS, CLAIMS_BY_ID
from relcourse.report import REPORTS_ENV

NOTEBOOKS = course.list_notebooks()
QUOTING = {"takeaway", "takeaways"}   # the calls that quote claims by id
RENDERERS = QUOTING | {"status_table", "ladder_takeaway", "phenomenon_takeaway", "variant_takeaways"}   # all that render the report
# Each stage's chapter, which must quote every claim of its stage.
STAGE_CHAPTERS = {"02": "pretrain", "03": "post_pretrain", "04": "finetune", "05": "distill"}


def code_cells(path) -> list[str]:
    """The code cells' sources, IPython magics and shell lines dropped so that `ast` can parse them."""
    cells = json.loads(path.read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c["cell_type"] == "code"]
    return ["\n".join(line for line in s.splitlines() if not line.lstrip().startswith(("%", "!"))) for s in sources]


def _name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def quoting_calls(source: str) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call) and _name(node) in QUOTING]


def quoted_ids(path) -> list[str]:
    """The claim ids a notebook passes, as string literals, to takeaway(...) and takeaways(...)."""
    return [arg.value for source in code_cells(path) for call in quoting_calls(source)
            for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]


def chapter(number: str):
    matches = [p for p in NOTEBOOKS if p.name.startswith(f"{number}_")]
    assert len(matches) == 1, f"no single notebook numbered {number}: {[p.name for p in NOTEBOOKS]}"
    return matches[0]


# --- (a) every quoted claim exists ------------------------------------------------------------

def test_the_parser_finds_calls_and_their_ids():
    source = 'from relcourse.takeaways import takeaway\nx = takeaway("P1")\ntk.takeaways("T1", "T2", profile="laptop")\n' \
             'ladder_takeaway()\nphenomenon_takeaway("route")'
    assert [_name(c) for c in quoting_calls(source)] == ["takeaway", "takeaways"]
    assert [a.value for c in quoting_calls(source) for a in c.args] == ["P1", "T1", "T2"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_quoted_claim_exists(path):
    unknown = sorted(set(quoted_ids(path)) - set(CLAIMS_BY_ID))
    assert not unknown, f"{path.name} quotes claims that relcourse.claims.CLAIMS does not define: {unknown}"
    for source in code_cells(path):
        for call in quoting_calls(source):
            assert call.args, f"{path.name}: {ast.unparse(call)} names no claim"


# --- (b) each stage's chapter quotes every claim of its stage ------------------------------------

@pytest.mark.parametrize("number", list(STAGE_CHAPTERS))
def test_a_stage_chapter_quotes_every_claim_of_its_stage(number):
    path, stage = chapter(number), STAGE_CHAPTERS[number]
    missing = [c.id for c in CLAIMS if c.stage == stage and c.id not in quoted_ids(path)]
    assert not missing, (f"{path.name} concludes on the {stage} stage without quoting {missing}: "
                         f"add them to a takeaway(...) or takeaways(...) call")


# --- (c) clear errors -----------------------------------------------------------------------------

def fake_report(*rows: dict, ladders: list | None = None) -> dict:
    return {"profile": "laptop", "claims": list(rows), "ladders": ladders or [],
            "inputs": [{"label": "A", "ladder_world": 3}]}


def row(claim_id: str, **values) -> dict:
    claim = CLAIMS_BY_ID[claim_id]
    base = {"id": claim.id, "stage": claim.stage, "statement": claim.statement, "source_figure": claim.source_figure,
            "metric": claim.metric, "arm": claim.arm, "baseline": claim.baseline,
            "status": "not run", "mean": None, "interval": [None, None], "seeds": [], "world": None}
    return base | values


@pytest.fixture
def reports(tmp_path, monkeypatch):
    """An empty reports folder that takeaways read instead of the committed one."""
    monkeypatch.setenv(REPORTS_ENV, str(tmp_path))
    return tmp_path


def write(reports_dir, document: dict) -> None:
    (reports_dir / document["profile"]).mkdir(parents=True, exist_ok=True)
    (reports_dir / document["profile"] / "results.json").write_text(json.dumps(document))


def test_an_unknown_claim_names_itself_and_the_known_ones():
    with pytest.raises(KeyError, match=r"no claim 'P99' in the laptop report; claims: P1, P2"):
        tk.takeaway("P99", results=fake_report(row("P1"), row("P2")))
    with pytest.raises(KeyError, match="P99"):
        tk.takeaways("P1", "P99", results=fake_report(row("P1")))


def test_a_missing_report_says_where_and_how_to_make_it(reports):
    with pytest.raises(FileNotFoundError, match=r"laptop/results\.json is missing; regenerate it with "
                                                 r"`python -m relcourse report --profile laptop`"):
        tk.takeaway("P1")


def test_an_unknown_phenomenon_lists_the_known_ones():
    ladder = {"from": "A", "seeds": [0], "summary": {"auc_by_phenomenon": {"cross-encoder": {
        "route": {"mean": 0.8, "per_seed": [0.8]}}}}}
    with pytest.raises(KeyError, match="phenomena: route"):
        tk.phenomenon_takeaway("routes", results=fake_report(ladders=[ladder]))


# --- (d) a takeaway's numbers are the report's ----------------------------------------------------

SIGNED = r"([+-]\d+\.\d{3})"


def test_a_rendered_takeaway_carries_the_reports_numbers(reports):
    measured = row("T2", status="holds", mean=0.18754, interval=[0.1021, 0.27298], seeds=[0, 1, 2], world=3)
    write(reports, fake_report(row("P1"), measured))
    text = tk.takeaway("T2").text
    mean = re.search(rf"\*\*{SIGNED}\*\*", text).group(1)
    low, high = re.search(rf"95% interval \[{SIGNED}, {SIGNED}\]", text).groups()
    assert [float(mean), float(low), float(high)] == [0.188, 0.102, 0.273]
    assert "world v3, seeds 0, 1, 2" in text and text.endswith("**holds**.")
    assert f"*{CLAIMS_BY_ID['T2'].statement[0].lower()}{CLAIMS_BY_ID['T2'].statement[1:]}*" in text
    assert f"({CLAIMS_BY_ID['T2'].arm}) minus ({CLAIMS_BY_ID['T2'].baseline})" in text
    # the same sentence from the document itself, and as one item of a list
    assert tk.takeaway("T2", results=fake_report(measured)).text == text
    assert tk.takeaways("P1", "T2").text.splitlines()[1] == f"- {text}"


def test_one_seed_and_not_run_are_said_plainly():
    one_seed = row("P3", status="inconclusive", mean=-0.0421, interval=[None, None], seeds=[0])
    text = tk.takeaway("P3", results=fake_report(one_seed)).text
    assert "**-0.042** (one seed: no interval): **inconclusive**" in text
    not_run = tk.takeaway("P2", results=fake_report(row("P2"))).text
    assert "*SOP is a harder task" in not_run     # an acronym keeps its capitals
    assert "Not yet measured on `laptop`" in not_run and "--claim P2 --profile laptop" in not_run


def test_a_result_on_an_older_recipe_says_which_stages_changed_since():
    measured = dict(status="holds", mean=0.2224, interval=[0.188, 0.257], seeds=[0, 1, 2], world=3)
    older = tk.takeaway("T2", results=fake_report(row("T2", **measured, recipe_changed=["post_pretrain"]))).text
    assert older.endswith("That was on an earlier recipe: the post_pretrain settings have changed since, "
                          "so it is due to be re-run.")
    for current in ([], None):      # the current recipe's, or recorded before fingerprints: said nothing of
        assert "earlier recipe" not in tk.takeaway("T2", results=fake_report(row("T2", **measured,
                                                                                 recipe_changed=current))).text


def test_a_variant_of_a_claims_design_is_quoted_with_its_settings():
    design = {"feedback_loop.teacher_labels": "shown_top"}
    variant = row("T4", status="does not hold", mean=0.0225, interval=[0.003, 0.042], seeds=[0, 1, 2], world=3,
                  key="T4 [feedback_loop.teacher_labels=shown_top]", design=design)
    document = fake_report(row("T4", status="inconclusive", mean=0.001, interval=[-0.005, 0.008], seeds=[0, 1, 2]))
    text = tk.takeaway("T4", results={**document, "variants": [variant]}, design=design).text
    assert "We measured on `laptop` with `feedback_loop.teacher_labels=shown_top` (world v3" in text
    assert "**+0.022**, 95% interval [+0.003, +0.042]: **does not hold**" in text
    assert "**+0.001**" in tk.takeaway("T4", results={**document, "variants": [variant]}).text   # the claim itself
    not_run = tk.takeaway("T4", results=document, design=design).text
    assert "Not yet measured on `laptop` with `feedback_loop.teacher_labels=shown_top`" in not_run
    assert "--claim T4 --profile laptop --set feedback_loop.teacher_labels=shown_top`" in not_run
    listed = tk.variant_takeaways("T4", results={**document, "variants": [variant]}).text.splitlines()
    assert listed[0].startswith("**T4** on `laptop`, (model score fed back) minus (behaviour features only)")
    assert listed[1:] == ["- with `feedback_loop.teacher_labels=shown_top` (world v3, seeds 0, 1, 2): **+0.022**, "
                          "95% interval [+0.003, +0.042]: **does not hold**"]
    assert tk.variant_takeaways("T4", results=document).text == "The `laptop` report holds no variant of T4's design."


def test_status_table_and_ladder_numbers_are_the_reports():
    document = fake_report(row("P1", status="holds", mean=0.1, interval=[0.05, 0.15], seeds=[0, 1]), row("P2"),
                           ladders=[{"from": "A", "seeds": [0, 1], "summary": {"auc_by_phenomenon": {
                               "cross-encoder": {"route direction": {"mean": 0.6245, "per_seed": [0.5248, 0.7242]}}}}}])
    assert tk.status_table(results=document).text.startswith(
        "The `laptop` report: **2 claims**: 1 holds, 0 does not hold, 0 inconclusive, 1 not run.")
    assert "| Stage 1: pretraining | P1 | — | — | P2 |" in tk.status_table(results=document).text
    text = tk.phenomenon_takeaway("route direction", results=document).text
    assert "`laptop` (world v3, seeds 0, 1)" in text and "**0.625** (per seed 0.525 / 0.724)" in text


# --- what the committed notebooks show is what the committed report says -------------------------

def shown_takeaways(path):
    """(call, committed Markdown) of each code cell that ends in a takeaways function called with
    literal arguments."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for cell, source in zip(cells, code_cells(path)):
        body = ast.parse(source).body
        last = body[-1] if body else None
        if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)):
            continue
        call = last.value
        if not (_name(call) in RENDERERS and all(isinstance(a, ast.Constant) for a in call.args)
                and all(isinstance(k.value, ast.Constant) for k in call.keywords)):
            continue
        shown = [o["data"]["text/markdown"] for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
        yield call, "".join(shown[0]) if shown else None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_takeaways_match_the_committed_report(path, monkeypatch):
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    for call, shown in shown_takeaways(path):
        function = getattr(tk, _name(call))
        expected = function(*[a.value for a in call.args], **{k.arg: k.value.value for k in call.keywords}).text
        refresh = f"run `python -m relcourse course --refresh --only {path.name[:2]}`"
        assert shown is not None, f"{path.name}: `{ast.unparse(call)}` has no committed output; {refresh}"
        assert shown == expected, f"{path.name}: `{ast.unparse(call)}` shows what an older report said; {refresh}"


# --- (e) the pictures of the same results --------------------------------------------------------

def plotting_calls(path) -> list[ast.Call]:
    return [node for source in code_cells(path) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and _name(node) == "effects_plot"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_plotted_claim_is_in_the_committed_report_and_shares_a_unit(path, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt
    matplotlib.use("Agg")
    monkeypatch.delenv(REPORTS_ENV, raising=False)
    for call in plotting_calls(path):
        ids = [a.value for a in call.args]
        ax = tk.effects_plot(*ids)                      # raises for an id the report lacks, or mixed units
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert sorted(label.split()[0] for label in labels) == sorted(ids), f"{path.name}: {ast.unparse(call)}"
        plt.close(ax.figure)


def test_effects_plot_refuses_unknown_ids_and_mixed_units():
    rows = [{"id": "F1", "metric": "test PNR", "arm": "a", "baseline": "b", "effects": [0.1], "mean": 0.1,
             "interval": [None, None], "status": "inconclusive"},
            {"id": "F3", "metric": "test AUC", "arm": "a", "baseline": "b", "effects": [0.01], "mean": 0.01,
             "interval": [None, None], "status": "inconclusive"}]
    results = {"profile": "laptop", "claims": rows, "probes": []}
    with pytest.raises(ValueError, match=r"different units \(AUC, PNR\)"):
        tk.effects_plot("F1", "F3", results=results)
    with pytest.raises(KeyError, match="no claim or probe X9 in the laptop report"):
        tk.effects_plot("F3", "X9", results=results)
