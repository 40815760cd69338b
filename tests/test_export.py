"""Serving: a run exported as a plain transformers folder (and ONNX) scores as the course's model
does, and `relcourse score` scores a pairs file. Unit tests use tiny random-weight runs written
straight into a temporary store; one end-to-end test exports a distilled student of a tiny world."""
import doctest
import json

import numpy as np
import pandas as pd
import pytest
import torch

from relcourse import export, finetune, metrics, scoring
from relcourse.cli import main
from relcourse.config import ModelConfig, load_profile
from relcourse.data import PairSet, make_pairset, pair_texts
from relcourse.export import (EXPORT_INFO, ONNX_FILE, ONNX_INT8_FILE, export_model, max_abs_diff, onnx_logits,
                              onnx_session, random_batch, to_transformers)
from relcourse.finetune import score
from relcourse.models import RelevanceBert, load_model, save_model
from relcourse.pretrain import MODEL_DIR
from relcourse.store import RUNS_ENV, cached_stage, run_hash
from relcourse.tokenizer import encode_pairs, load_tokenizer, save_tokenizer, train_tokenizer

TEXTS = ["the red kettle boils water fast", "a blue kettle with a steel lid", "the red lamp lights the desk",
         "cheap steel lamp for the garden", "kettle descaler tablets, pack of ten"] * 10
QUERIES = ["red kettle", "steel lamp", "kettle", "garden lamp cheap", "blue lid", "descaler"]
DOCS = ["the red kettle boils water fast", "cheap steel lamp for the garden, with a \"quoted\" word",
        "a blue kettle", "the red lamp lights the desk and the garden at night", "a steel lid", "tablets"]
MAX_QUERY_LEN, MAX_LEN = 4, 16


def make_run(root, name: str, outputs: int = 1, exact_match: bool = False):
    """A finished 'finetune' run (random weights, a head far from zero) and its tokenizer run."""
    profile = load_profile("smoke")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNS_ENV, str(root))

        def tokenizer_stage(out):
            save_tokenizer(train_tokenizer(TEXTS, vocab_size=120), out / "tokenizer", "test")
            return {}

        tok_dir = cached_stage(profile, "tokenizer", 0, {"test": "export"}, tokenizer_stage)
        encoding = {"max_query_len": MAX_QUERY_LEN, "max_len": MAX_LEN, "exact_match": exact_match}

        def finetune_stage(out):
            torch.manual_seed(0)
            model = RelevanceBert(ModelConfig(layers=2, hidden=16, heads=2, intermediate=32),
                                  len(load_tokenizer(tok_dir / "tokenizer")), MAX_LEN, outputs,
                                  token_types=3 if exact_match else 2)
            torch.nn.init.normal_(model.relevance_head[1].weight)
            save_model(model, out / MODEL_DIR)
            return {}

        return cached_stage(profile, "finetune", 0, {"tokenizer": encoding, "name": name}, finetune_stage,
                            upstream={"tokenizer": run_hash(tok_dir)})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def run(store):
    return make_run(store, "one logit")


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    return export_model(run, tmp_path_factory.mktemp("served") / "model", onnx=True, int8=True)


def card_snippet(served) -> dict:
    """Run the Python example of the export's README.md (transformers alone); its namespace."""
    card = (served / "README.md").read_text()
    code = card.split("```python\n")[1].split("```")[0].replace('"path/to/this/folder"', repr(str(served)))
    namespace = {}
    exec(code, namespace)
    return namespace


def course_scores(run_dir, queries, docs) -> np.ndarray:
    """What the course computes: its tokenisation (encode_pairs) and relcourse.finetune.score."""
    model, tokenizer, enc, _ = export.read_run(run_dir)
    inputs = encode_pairs(tokenizer, queries, docs, enc["max_query_len"], enc["max_len"], enc["exact_match"])
    n = len(queries)
    return score(model, PairSet(np.arange(n), np.arange(n), np.zeros(n), inputs))


@pytest.mark.parametrize("outputs,token_types", [(1, 2), (4, 2), (1, 3)])
def test_the_head_folds_into_electra_exactly(outputs, token_types):
    torch.manual_seed(1)
    ours = RelevanceBert(ModelConfig(layers=2, hidden=32, heads=4, intermediate=64), 200, 24, outputs,
                         token_types).eval()
    torch.nn.init.normal_(ours.relevance_head[1].weight)   # logits of several units (centred below)
    batch = random_batch(200, 24, rows=16, seed=2)
    batch["token_type_ids"] = batch["token_type_ids"] * torch.randint(1, token_types, batch["input_ids"].shape)
    with torch.no_grad():                                            # centred: scores of both signs
        ours.relevance_head[1].bias -= ours.relevance(batch).reshape(16, -1).median(0).values
    theirs = to_transformers(ours)
    with torch.no_grad():
        a, b = ours.relevance(batch).reshape(16, -1), theirs(**batch).logits
    assert a.abs().max() > 1.0 and (a > 0).any() and (a < 0).any()
    print(f"max |Δ| course vs transformers: {max_abs_diff(a, b):.2e}")
    assert max_abs_diff(a, b) < 1e-5


def test_the_export_loads_with_plain_transformers_and_scores_as_the_course(run, exported):
    info = json.loads((exported / EXPORT_INFO).read_text())
    assert info["architecture"] == "ElectraForSequenceClassification" and info["max_query_len"] == MAX_QUERY_LEN
    assert info["source"]["stage"] == "finetune" and info["checks"]["transformers_max_abs_diff"] < 1e-5
    assert [p.name for p in exported.parent.iterdir()] == ["model"]          # no temp folder left behind
    card = card_snippet(exported)                   # the model card's example, transformers alone
    _, course_tok, _, _ = export.read_run(run)
    ours = encode_pairs(course_tok, QUERIES, DOCS, MAX_QUERY_LEN, MAX_LEN)
    query_pieces = [len(ids) for ids in card["tok"](QUERIES, add_special_tokens=False)["input_ids"]]
    assert max(query_pieces) > MAX_QUERY_LEN and (ours["attention_mask"].sum(1) == MAX_LEN).any()  # both get cut
    theirs = card["encode"](QUERIES, DOCS)
    width = theirs["input_ids"].shape[1]                # padded to the longest pair, not to max_len
    for key in ours:
        assert torch.equal(theirs[key], ours[key][:, :width]), key
    with torch.no_grad():
        logits = card["model"](**theirs).logits
    delta = max_abs_diff(logits.squeeze(-1), course_scores(run, QUERIES, DOCS))
    print(f"max |Δ| AutoModel vs course: {delta:.2e}")
    assert delta < 1e-5 and card["scores"].shape == (1,)


def test_onnx_fp32_matches_and_int8_is_close_at_any_batch_and_length(run, exported):
    model = load_model(run / MODEL_DIR).eval()
    fp32, int8 = onnx_session(exported / ONNX_FILE), onnx_session(exported / ONNX_INT8_FILE)
    worst = {"fp32": 0.0, "int8": 0.0}
    for rows, length in ((1, 16), (7, 5), (32, 16)):
        batch = random_batch(model.vocab_size, length, rows, seed=rows)
        with torch.no_grad():
            ref = model.relevance(batch).numpy()
        worst["fp32"] = max(worst["fp32"], max_abs_diff(onnx_logits(fp32, batch).squeeze(-1), ref))
        worst["int8"] = max(worst["int8"], max_abs_diff(onnx_logits(int8, batch).squeeze(-1), ref))
    print(f"max |Δ| vs PyTorch: ONNX fp32 {worst['fp32']:.2e}, int8 {worst['int8']:.2e}")
    assert worst["fp32"] < 1e-4
    assert 0 < worst["int8"] < 0.1      # quantised, so not equal; the end-to-end test checks AUC


def test_export_refuses_what_it_cannot_export(run, store, tmp_path, capsys):
    def error(run_dir, out=None) -> str:
        with pytest.raises(ValueError) as e:
            export_model(run_dir, out or tmp_path / "out")
        return str(e.value)

    assert "is not a folder" in error(tmp_path / "missing")
    assert "it holds runs, e.g. 0-" in error(store / "smoke" / "finetune")           # the stage, not a run
    partial = run.parent / f".{run.name}.partial"
    partial.mkdir()
    assert "not a finished run folder" in error(partial)                             # a run still building
    partial.rmdir()
    tokenizer_run = next(d for d in (store / "smoke" / "tokenizer").iterdir() if d.is_dir())
    assert "'tokenizer' run" in error(tokenizer_run)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "not an earlier export" in error(run, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    # An earlier export is replaced, through the CLI.
    first = export_model(run, tmp_path / "again")
    assert main(["export", "--run", str(run), "--out", str(first)]) == 0
    assert capsys.readouterr().out.strip() == str(first) and (first / EXPORT_INFO).is_file()
    assert not (first / ONNX_FILE).exists()


def write_pairs(path, frame: pd.DataFrame):
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        lines = ["\t".join(frame.columns), *("\t".join(map(str, row)) for row in frame.itertuples(index=False))]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix,backend", [(".tsv", "torch"), (".parquet", "onnx")])
def test_score_cli_writes_one_score_per_row_in_input_order(run, exported, tmp_path, capsys, suffix, backend):
    pairs = pd.DataFrame({"id": range(18), "query": QUERIES * 3, "document": DOCS[::-1] * 3})
    path = write_pairs(tmp_path / f"pairs{suffix}", pairs)
    assert main(["score", str(path), "--model", str(exported), "--backend", backend, "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "pairs.scores.tsv"
    assert printed.startswith(str(out)) and "docs/s" in printed
    scores = pd.read_csv(out, sep="\t")["score"].to_numpy()
    delta = max_abs_diff(scores, course_scores(run, pairs["query"].tolist(), pairs["document"].tolist()))
    print(f"max |Δ| relcourse score ({backend}) vs course: {delta:.2e}")
    assert len(scores) == len(pairs) and delta < {"torch": 1e-5, "onnx": 1e-4}[backend]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["pairs.scores.tsv", f"pairs{suffix}"])   # no temp


@pytest.mark.parametrize("outputs,exact_match", [(4, False), (1, True)])
def test_score_reads_four_class_and_exact_match_models(store, tmp_path, outputs, exact_match):
    run_dir = make_run(store, f"{outputs} outputs, exact match {exact_match}", outputs, exact_match)
    served = export_model(run_dir, tmp_path / "served", onnx=True)
    for backend in ("torch", "onnx"):
        scores = scoring.load_scorer(served, backend).score(QUERIES, DOCS, batch_size=3)
        expected = course_scores(run_dir, QUERIES, DOCS)
        assert max_abs_diff(scores, expected) < 1e-4
        if outputs == 4:
            assert ((scores >= 0) & (scores <= 3)).all()      # the expected tier, not a logit


def test_score_cli_explains_bad_input(exported, run, tmp_path, capsys):
    def fails(*argv) -> str:
        with pytest.raises(SystemExit) as e:
            main(["score", *map(str, argv)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("relcourse: error: ") and "Traceback" not in err
        return err

    good = write_pairs(tmp_path / "good.tsv", pd.DataFrame({"query": QUERIES, "document": DOCS}))
    no_doc = write_pairs(tmp_path / "no_doc.tsv", pd.DataFrame({"query": QUERIES, "doc": DOCS}))
    assert "lacks the column(s) document" in fails(no_doc, "--model", exported)
    (tmp_path / "ragged.tsv").write_text("query\tdocument\nred\tkettle\nblue\tlamp\textra\n")
    assert "ragged.tsv, line 3: 3 tab-separated fields" in fails(tmp_path / "ragged.tsv", "--model", exported)
    (tmp_path / "empty.tsv").write_text("")
    assert "is empty" in fails(tmp_path / "empty.tsv", "--model", exported)
    (tmp_path / "binary.tsv").write_bytes(b"\xff\xfe\x00garbage")
    assert "cannot be read as tsv" in fails(tmp_path / "binary.tsv", "--model", exported)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert "cannot be read as parquet" in fails(tmp_path / "broken.parquet", "--model", exported)
    (tmp_path / "pairs.csv").write_text("query,document\n")
    assert "give a .tsv" in fails(tmp_path / "pairs.csv", "--model", exported)
    assert "does not exist" in fails(tmp_path / "nowhere.tsv", "--model", exported)
    assert "not an export folder" in fails(good, "--model", run)
    assert "batch_size=0" in fails(good, "--model", exported, "--batch-size", "0")
    bare = export_model(run, tmp_path / "bare")
    assert "export the run again with --int8" in fails(good, "--model", bare, "--backend", "onnx-int8")
    assert not (tmp_path / "good.scores.tsv").exists()


def test_docstring_examples():
    for module in (export, scoring):
        assert doctest.testmod(module).failed == 0


# --- end to end: the smoke profile's distilled student (about a minute to build) -----------------

def test_a_distilled_smoke_student_exports_with_its_tokenisation_and_quality(tmp_path_factory):
    from relcourse.distill import run_distill, test_auc

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNS_ENV, str(tmp_path_factory.mktemp("runs")))
        profile = load_profile("smoke", {"threads": 1})
        run_dir = run_distill(profile, 0, progress=False)
        served = export_model(run_dir, tmp_path_factory.mktemp("served") / "student", onnx=True, int8=True)
        model, course_tok, enc, manifest = export.read_run(run_dir)
        data_dir = run_dir.parents[1] / "data" / f"0-{manifest['upstream']['data']}"
        truth = finetune.test_truth(data_dir)
        pairs = make_pairset(data_dir, course_tok, truth["doc_id"].to_numpy(), truth["label"].to_numpy(),
                             profile.tokenizer)
    reference = score(model, pairs)
    # Tokenisation: the plain transformers call against the course's, on the world's test pairs.
    texts = pair_texts(data_dir, pairs.doc_ids)
    queries, documents = texts["query"].tolist(), texts["document"].tolist()
    card = card_snippet(served)
    theirs = card["encode"](queries, documents)
    width = theirs["input_ids"].shape[1]
    plain = card["tok"](queries, documents, truncation="only_second", max_length=enc["max_len"],
                        padding="max_length", return_tensors="pt")
    pieces = np.array([len(ids) for ids in card["tok"](queries, add_special_tokens=False)["input_ids"]])
    fits = pieces <= enc["max_query_len"]
    assert 0 < fits.mean() < 1
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(theirs[key], pairs.inputs[key][:, :width]), key           # the card's recipe: every pair
        assert torch.equal(plain[key][fits], pairs.inputs[key][fits]), key           # the plain call: short queries
        assert not torch.equal(plain[key][~fits], pairs.inputs[key][~fits]) or key == "attention_mask"
    print(f"the card's encoding = the course's on {len(fits)} pairs; the plain call on the {fits.sum()} "
          "whose query fits its budget")
    # Scores, per backend, against the course's own scoring of the same pairs.
    found = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        scores = scoring.load_scorer(served, backend).score(queries, documents)
        found[backend] = (max_abs_diff(scores, reference), metrics.auc(pairs.targets, scores))
    print({k: f"max |Δ| {d:.2e}, AUC {a:.4f}" for k, (d, a) in found.items()},
          f"course AUC {metrics.auc(pairs.targets, reference):.4f}")
    assert found["torch"][0] < 1e-5 and found["onnx"][0] < 1e-4
    assert abs(found["torch"][1] - test_auc(run_dir)) < 1e-6      # the AUC the run recorded
    assert 0 < found["onnx-int8"][0] < 0.1 and abs(found["onnx-int8"][1] - found["torch"][1]) < 0.005
