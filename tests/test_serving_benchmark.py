"""benchmarks/serving.py, the measurements of notebook 06: on a tiny random-weight model exported to
ONNX (seconds), so that the table's shape, its quality columns and its helpers are checked without
training anything. tests/test_export.py checks the export and the scores of each backend,
tests/test_serving.py the PyTorch arithmetics and the timing core (relcourse.serving)."""
import doctest

import matplotlib
import numpy as np
import pytest
import torch

from benchmarks import serving
from relcourse import metrics
from relcourse.config import ModelConfig
from relcourse.data import COMPACT, PairSet
from relcourse.export import ONNX_FILE, ONNX_INT8_FILE, export_onnx, quantize_int8, random_batch, to_transformers
from relcourse.models import RelevanceBert

matplotlib.use("Agg")
VOCAB, MAX_LEN, ROWS = 60, 16, 48


def tiny_model(layers: int, seed: int) -> RelevanceBert:
    torch.manual_seed(seed)
    model = RelevanceBert(ModelConfig(layers=layers, hidden=16, heads=2, intermediate=32), VOCAB, MAX_LEN).eval()
    torch.nn.init.normal_(model.relevance_head[1].weight)   # scores of several units, not all near 0
    return model


def pairset(length: int) -> PairSet:
    """ROWS random pairs of `length` tokens, stored in the compact dtypes make_pairset uses."""
    inputs = random_batch(VOCAB, length, ROWS, seed=length)
    rng = np.random.default_rng(length)
    return PairSet(np.repeat(np.arange(ROWS // 8), 8), np.arange(ROWS), rng.integers(0, 4, ROWS).astype(float),
                   {k: v.to(COMPACT[k]) for k, v in inputs.items()})


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    models = {}
    for name, layers in (("teacher", 2), ("student", 1)):
        model, served = tiny_model(layers, seed=layers), tmp_path_factory.mktemp(name)
        export_onnx(to_transformers(model), served / ONNX_FILE)
        quantize_int8(served / ONNX_FILE, served / ONNX_INT8_FILE)
        models[name] = (model, served)
    threads = torch.get_num_threads()
    out = serving.benchmark(models, {MAX_LEN: pairset(MAX_LEN), 12: pairset(12)}, threads=1, batch_size=16,
                            repeats=2, timed_pairs=ROWS - 16, rounds=3)   # timed on 32 rows; quality on all 48
    assert torch.get_num_threads() == threads           # the benchmark's thread count does not leak out
    return out


def test_one_row_per_model_length_and_backend(table):
    backends = ["fp32", "int8 dynamic", *(["bf16 autocast"] if serving.bf16_supported() else []),
                "onnx fp32", "onnx int8"]
    assert len(table) == 2 * 2 * len(backends)
    assert table.groupby(["model", "length"]).backend.apply(list).map(lambda b: b == backends).all()
    assert (table["docs/s"] > 0).all() and (table["p50 ms"] <= table["p99 ms"]).all()
    assert set(table.layers) == {1, 2}


def test_speed_ups_are_paired_with_fp32_round_by_round(table):
    fp32 = table[table.backend == "fp32"]
    assert (fp32[["× fp32", "× fp32 min", "× fp32 max"]] == 1.0).all().all()
    assert ((table["× fp32 min"] <= table["× fp32"]) & (table["× fp32"] <= table["× fp32 max"])).all()
    assert (table["× fp32 min"] < table["× fp32 max"]).any()       # three rounds of real timings differ
    text = serving.speed_ups(table, ["model", "length"])
    assert text.shape == (4, table.backend.nunique()) and list(text.columns) == list(table.backend.unique())
    assert (text["fp32"] == "1.00").all()


def test_quality_columns_follow_each_backend(table):
    by = table.set_index(["model", "length", "backend"])
    assert (by.xs("fp32", level="backend")["max |Δ| vs fp32"] == 0).all()
    assert (by.xs("onnx fp32", level="backend")["max |Δ| vs fp32"] < 1e-4).all()
    int8 = by.xs("onnx int8", level="backend")["max |Δ| vs fp32"]
    assert ((int8 > 0) & (int8 < 0.2)).all()                          # quantised: close, not equal
    pairs = pairset(12)
    model = tiny_model(1, seed=1)
    with torch.no_grad():
        scores = model.relevance({k: v.long() for k, v in pairs.inputs.items()}).numpy()
    row = by.loc[("student", 12, "fp32")]
    assert row["test AUC"] == pytest.approx(metrics.auc(pairs.targets, scores))
    assert row["PNR"] == pytest.approx(metrics.pnr(pairs.targets, scores, pairs.query_ids))


def test_headline_prefers_bf16_and_compares_with_the_teacher_at_full_length(table):
    arms = serving.headline(table)
    assert list(arms.index) == ["teacher", "student"] and arms.loc["teacher", "speed-up"] == 1.0
    assert arms.loc["teacher", "length"] == MAX_LEN and arms.loc["student", "length"] == 12
    assert arms.loc["student", "backend"] == ("bf16 autocast" if serving.bf16_supported() else "int8 dynamic")


def test_plots_label_every_model_and_backend(table):
    ax = serving.plot_quality_cost(table)
    labels = [t.get_text() for t in ax.get_legend().texts]
    assert len(labels) == table.groupby(["model", "backend"]).ngroups and "student · onnx int8" in labels
    assert len(ax.lines) == len(table) + len(labels) and ax.get_xscale() == "log"   # a point per row, a line per pair
    ax = serving.plot_sources()
    assert len(ax.texts) == len(serving.MS_MARCO_CROSS_ENCODERS)


def test_machine_names_cores_and_threads():
    line = serving.machine(2)
    assert "logical cores" in line and "2 thread(s)" in line and "bf16" in line


def test_docstring_examples():
    assert doctest.testmod(serving).failed == 0

