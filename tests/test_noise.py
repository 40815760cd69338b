"""The nested split of a result's spread into stage 2's and fine-tuning's noise (relcourse.noise),
checked against data drawn with known components."""
import numpy as np
import pytest

from relcourse.noise import nested_components


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
