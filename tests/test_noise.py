"""The nested split of a result's spread into stage 2's and fine-tuning's noise (relcourse.noise),
checked against data drawn with known components."""
import numpy as np
import pandas as pd
import pytest

from relcourse.noise import nested_components, summary


def test_the_components_recover_those_the_data_was_drawn_with():
    rng = np.random.default_rng(0)
    between, within = 0.03, 0.01
    values = {a: list(0.85 + rng.normal(0, between) + rng.normal(0, within, size=4)) for a in range(2_000)}
    c = nested_components(values)
    assert c["within_sd"] == pytest.approx(within, rel=0.03)
    assert c["between_sd"] == pytest.approx(between, rel=0.05)
    assert c["one_run_sd"] == pytest.approx(np.hypot(between, within), rel=0.05)
    assert (c["within_df"], c["between_df"]) == (2_000 * 3, 1_999)


def test_no_between_component_when_the_outer_draw_adds_nothing():
    rng = np.random.default_rng(1)
    c = nested_components({a: list(rng.normal(0.8, 0.02, size=3)) for a in range(500)})
    assert c["between_sd"] < 0.004 and c["within_sd"] == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("values", [{0: [0.9, 0.8], 1: [0.7]}, {0: [0.9, 0.8]}, {0: [0.9], 1: [0.8]}])
def test_an_unbalanced_or_too_small_design_is_named(values):
    with pytest.raises(ValueError, match="nested design needs"):
        nested_components(values)


def test_summary_gives_components_only_where_the_design_has_them():
    one = pd.DataFrame({"stage_2_draw": [0], "finetune_draw": [0], "auc": [0.9]})
    assert summary(one) == {"mean": 0.9}   # one run has no SD (and writes no NaN into the JSON)
    stage_2_only = pd.DataFrame({"stage_2_draw": [0, 1, 2], "finetune_draw": [0, 0, 0], "auc": [0.90, 0.88, 0.86]})
    assert summary(stage_2_only) == {"mean": 0.88, "all_runs_sd": 0.02}
    finetune_only = stage_2_only.assign(stage_2_draw=0, finetune_draw=[0, 1, 2])
    assert summary(finetune_only) == {"mean": 0.88, "all_runs_sd": 0.02}
    nested = pd.DataFrame({"stage_2_draw": [0, 0, 1, 1], "finetune_draw": [0, 1, 0, 1], "auc": [0.90, 0.92, 0.86, 0.88]})
    assert summary(nested)["within_df"] == 2 and summary(nested)["between_df"] == 1
