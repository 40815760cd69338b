"""Serving, part 1: export a trained run as a plain `transformers` model folder, and as ONNX.

    python -m relcourse export --run runs/smoke/distill/0-<hash> --out served/student --onnx --int8

writes a folder that needs neither this package nor its runs/ to be read:

    README.md                               a model card: how to score with transformers alone
    config.json, model.safetensors          AutoModelForSequenceClassification.from_pretrained(DIR)
    tokenizer.json, tokenizer_config.json   AutoTokenizer.from_pretrained(DIR)
    relcourse_export.json                   the input layout, the source run, the measured checks
    model.onnx, model.int8.onnx             with --onnx / --int8 (ONNX Runtime; int8 implies --onnx)

**Why the folder holds an ELECTRA model, not a BERT one.** Our relevance head is one linear
layer on the raw [CLS] vector: score = w·h + b. transformers' BertForSequenceClassification
first passes [CLS] through BERT's *pooler*, tanh(W h + c), and tanh is not the identity for
any W, c (it is bounded; our score is not), so no choice of weights makes it compute our score;
only an approximation (tiny W, a huge classifier) would, and it would lose digits. The classes
that fit exactly are those whose encoder is BERT's and whose head we can fold w into.
ElectraForSequenceClassification is one: its encoder *is* BERT's (the same embeddings with
token types, layers and weight names; no embedding projection when embedding_size == hidden)
and its head is out_proj(gelu(dense(h))). Since gelu(z) - gelu(-z) = zΦ(z) + zΦ(-z) = z
exactly, `to_transformers` sets dense's first two rows to +w and -w (biases +b and -b) and
out_proj to [1, -1, 0, ...]: the head computes w·h + b for every input, to float32 rounding
(about 1e-6 on smoke), with no extra code (trust_remote_code) for whoever loads it. To know:
- it is the same network; "ELECTRA" names the pretraining recipe (replaced-token detection),
  not the architecture, which is why transformers can hold our BERT in its classes;
- the folder is for inference: fine-tuning it further in transformers trains a general
  2-layer head (and drops out at two places instead of our one), which is fine but not ours;
- a 4-class model (the `multiclass` anti-pattern) exports the same way, with rows ±w_k per tier;
  `relcourse_export.json` says its score is the expected tier (`relcourse.losses.expected_tier`).

**Tokenisation.** The saved tokenizer is the course's own (same vocabulary and normaliser), with
model_max_length = max_len. The course's layout gives the query a budget of its own (its first
`max_query_len` word pieces; the document gets the rest of `max_len`), which transformers'
truncation options cannot express: the plain call

    tok(queries, documents, truncation="only_second", max_length=max_len, padding=True)

cuts only the document, so it matches `relcourse.tokenizer.encode_pairs` only for queries that
fit their budget (on smoke, 81% of the test pairs: the world's brand and product names fall
into many pieces). The folder's README.md (`model_card`) gives the exact recipe, transformers
alone: cut each query's *text* after its last kept piece, then make the plain call;
tests/test_export.py checks it equals the course's encoding on every smoke test pair. An
exact-match model (token type 2) also needs `relcourse.tokenizer.shared_tokens`.
`relcourse.scoring` encodes with `encode_pairs` itself, so it is exact in every case.

**ONNX.** `torch.onnx.export` with the TorchScript exporter (dynamo=False: the dynamo exporter
needs onnxscript, one more dependency), opset 17, batch and sequence axes dynamic, attention
traced the eager way (`export_onnx` says why). The example input it traces has padding on
purpose: transformers skips the attention mask when a batch has none, and a trace of that would
ignore the mask forever after. Every export is checked against the course's model on a padded
random batch and the largest |Δ| is recorded; the int8 file is ONNX Runtime's dynamic
quantisation of the MatMul weights (as PyTorch's `quantize_dynamic` does for Linear layers), so
it is only close: see benchmarks/serving.py.

>>> from relcourse.config import ModelConfig
>>> _ = torch.manual_seed(0)
>>> ours = RelevanceBert(ModelConfig(layers=1, hidden=16, heads=2, intermediate=32), vocab_size=50, max_len=12).eval()
>>> theirs = to_transformers(ours)
>>> type(theirs).__name__
'ElectraForSequenceClassification'
>>> batch = random_batch(ours.vocab_size, ours.max_len, rows=4)
>>> with torch.no_grad():
...     delta = (ours.relevance(batch) - theirs(**batch).logits.squeeze(-1)).abs().max()
>>> float(delta) < 1e-5
True
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import ElectraConfig, ElectraForSequenceClassification

from .models import RelevanceBert, load_model
from .pretrain import MODEL_DIR
from .store import MANIFEST, StoreError, atomic_dir, load_manifest, write_json_atomic, write_text_atomic
from .tokenizer import FIRST_REGULAR_ID, load_tokenizer

EXPORT_INFO = "relcourse_export.json"
ONNX_FILE, ONNX_INT8_FILE = "model.onnx", "model.int8.onnx"
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OPSET = 17
EXPORTABLE_STAGES = ("finetune", "distill")   # the runs whose relevance head is trained on the task
TOLERANCE = {"transformers": 1e-5, "onnx": 1e-4}   # largest |Δ| from the course's model an export may have


class ExportError(ValueError):
    """A run cannot be exported, or an export folder is missing or broken; the message says why."""


# --- our model as a transformers model -------------------------------------------------------

def to_transformers(model: RelevanceBert) -> ElectraForSequenceClassification:
    """The same network as an ElectraForSequenceClassification, in eval mode (the head folded
    in exactly; see the module docstring)."""
    bert = model.encoder.config
    head = model.relevance_head[1]
    hidden, outputs = head.in_features, head.out_features
    config = ElectraConfig(
        vocab_size=bert.vocab_size, embedding_size=hidden, hidden_size=hidden,
        num_hidden_layers=bert.num_hidden_layers, num_attention_heads=bert.num_attention_heads,
        intermediate_size=bert.intermediate_size, hidden_act=bert.hidden_act,
        hidden_dropout_prob=bert.hidden_dropout_prob, attention_probs_dropout_prob=bert.attention_probs_dropout_prob,
        max_position_embeddings=bert.max_position_embeddings, type_vocab_size=bert.type_vocab_size,
        layer_norm_eps=bert.layer_norm_eps, pad_token_id=bert.pad_token_id, num_labels=outputs,
        id2label={0: "relevance"} if outputs == 1 else {k: f"tier {k}" for k in range(outputs)})
    hf = ElectraForSequenceClassification(config)
    state = {f"electra.{k}": v for k, v in model.encoder.state_dict().items()}
    dense_w, dense_b = torch.zeros(hidden, hidden), torch.zeros(hidden)
    out_w = torch.zeros(outputs, hidden)
    for k in range(outputs):     # gelu(+z) - gelu(-z) = z, with z = w_k·h + b_k
        dense_w[2 * k], dense_w[2 * k + 1] = head.weight[k], -head.weight[k]
        dense_b[2 * k], dense_b[2 * k + 1] = head.bias[k], -head.bias[k]
        out_w[k, 2 * k], out_w[k, 2 * k + 1] = 1.0, -1.0
    state |= {"classifier.dense.weight": dense_w, "classifier.dense.bias": dense_b,
              "classifier.out_proj.weight": out_w, "classifier.out_proj.bias": torch.zeros(outputs)}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]   # a buffer, not a weight
    if missing or unexpected:
        raise ExportError(f"the encoder does not map onto ELECTRA's: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]} (a transformers release renamed its weights?)")
    return hf.eval()


def random_batch(vocab_size: int, length: int, rows: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random [CLS] q [SEP] d [SEP] inputs of `length` tokens, every other row padded from
    mid-way: what the export traces and what its checks compare on."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_REGULAR_ID, vocab_size, (rows, length), generator=g)
    types = torch.zeros_like(ids)
    types[:, length // 4:] = 1
    mask = torch.ones_like(ids)
    mask[1::2, length // 2:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return {"input_ids": ids, "token_type_ids": types * mask, "attention_mask": mask}


class _Logits(torch.nn.Module):
    """The transformers model as a function of three tensors to logits, for torch.onnx.export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, token_type_ids, attention_mask):
        return self.model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits


def export_onnx(hf_model: ElectraForSequenceClassification, path: Path) -> None:
    """`hf_model` as ONNX (inputs INPUT_NAMES, output `logits` (batch, labels)), both axes dynamic.

    Traced through transformers' eager attention (softmax(QKᵀ/√d + mask)·V written out), not its
    default SDPA path, whose trace carries some two dozen more operators a layer (312 against 263
    for two layers, the mask's NaN guards among them): on this course's 2-core CPU the int8 file
    traced the eager way scored 0-20% more pairs a second (median 6%) in 13 of 14 paired timings
    and as many in the 14th (widths 128-768), the same network to float rounding. `hf_model`
    itself is left as it is."""
    eager = copy.deepcopy(hf_model).eval()
    eager.set_attn_implementation("eager")
    example = random_batch(hf_model.config.vocab_size, hf_model.config.max_position_embeddings, rows=2)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():   # the TorchScript exporter is deprecated and its tracer chatty
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(eager), tuple(example[n] for n in INPUT_NAMES), str(path),
                          dynamo=False, opset_version=OPSET, input_names=list(INPUT_NAMES),
                          output_names=["logits"], dynamic_axes=axes)


def quantize_int8(onnx_path: Path, int8_path: Path) -> None:
    """ONNX Runtime dynamic int8: MatMul weights stored as int8, activations quantised per batch.

    The plain graph is quantised. The usual BERT pipeline first fuses it with ONNX Runtime's
    offline optimizer (onnxruntime.transformers.optimizer, model_type "bert": one Attention
    operator a layer, SkipLayerNormalization, BiasGelu); on this course's 2-core CPU the fused
    int8 file scored fewer pairs a second than the plain one in 10 of 12 paired timings (widths
    128-768, 32 and 128 tokens), the fused fp32 file likewise in 10 of 12, so the export does
    not fuse."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)   # it advises a pre-processing pass, which changes nothing here
    try:
        quantize_dynamic(str(onnx_path), str(int8_path), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        logging.disable(previous)


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; `threads` sets its intra-op threads (None: ONNX Runtime's default).

    Its threads sleep between runs instead of spinning. Spinning (busy-waiting for the next run)
    buys a little latency on a machine the session has to itself; on a shared one the spinning
    threads take the cores from whatever runs next, here the other backends timed in turn by
    benchmarks/serving.py. Turned off, 29 of the 30 timings of the laptop profile's serving
    benchmark ran faster, PyTorch's too (the student in fp32: 7,298 -> 8,860 pairs a second at
    32 tokens), the ONNX ones most (the student in int8: 11,602 -> 17,038)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, batch: dict[str, torch.Tensor]) -> np.ndarray:
    return session.run(["logits"], {n: batch[n].numpy() for n in INPUT_NAMES})[0]


# --- the model card: how to use the folder with transformers alone ----------------------------

CARD = """# RelCourse relevance model ({stage}, profile {profile}, seed {seed}, run {config_hash})

A search-relevance cross-encoder trained from scratch with the RelCourse kit. It reads
`[CLS] query [SEP] document [SEP]` (token types 0 and 1) and returns {score_text}.
It is a BERT encoder with a linear head on [CLS], stored as `ElectraForSequenceClassification`:
the same encoder, the head folded in exactly (why: the docstring of relcourse/export.py).
Without the kit, with transformers alone:

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

DIR = "path/to/this/folder"
model = AutoModelForSequenceClassification.from_pretrained(DIR).eval()
tok = AutoTokenizer.from_pretrained(DIR)


def encode(queries, documents, max_query_len={max_query_len}, max_len={max_len}):
    # The course's layout: the query keeps its first max_query_len word pieces, the document the rest.
    pieces = tok(queries, add_special_tokens=False, truncation=True, max_length=max_query_len,
                 return_offsets_mapping=True)["offset_mapping"]
    queries = [q[:spans[-1][1]] if spans else q for q, spans in zip(queries, pieces)]
    return tok(queries, documents, truncation="only_second", max_length=max_len, padding=True,
               return_tensors="pt")


with torch.inference_mode():
    logits = model(**encode(["red kettle"], ["a red kettle that boils fast"])).logits
scores = {score_expr}
```
{note}"""
SCORES = {1: ("one logit per pair (higher: more relevant)", "logits[:, 0]"),
          4: ("4 tier logits per pair; rank by the expected tier", "logits.softmax(-1) @ torch.arange(4.0)")}
EXACT_MATCH_NOTE = """
This model reads the exact-match input: document tokens that also occur in the query have token
type 2, which `encode` above does not set; score with `python -m relcourse score` (or set them as
`relcourse.tokenizer.shared_tokens` does).
"""


def model_card(encoding: dict, num_outputs: int, manifest: dict) -> str:
    """README.md of an export folder. Cutting the query *text* after its last kept piece and
    encoding it again gives the same pieces (WordPiece matches greedily from a word's start),
    which is how two plain tokenizer calls give the course's per-segment budget."""
    score_text, score_expr = SCORES[num_outputs]
    return CARD.format(**{k: manifest[k] for k in ("stage", "profile", "seed", "config_hash")}, **encoding,
                       score_text=score_text, score_expr=score_expr,
                       note=EXACT_MATCH_NOTE if encoding["exact_match"] else "")


# --- a run folder in, an export folder out ---------------------------------------------------

def read_run(run_dir: str | Path):
    """(model, tokenizer, encoding, manifest) of a finished fine-tuning or distillation run;
    `encoding` holds the input layout the run trained with (max_query_len, max_len, exact_match)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir} is not a folder: give a finished fine-tuning or distillation run, e.g. the "
                          "folder `python -m relcourse run finetune --profile smoke` prints")
    if not (run_dir / MANIFEST).is_file():
        inside = sorted(d.name for d in run_dir.iterdir() if (d / MANIFEST).is_file())[:3]
        raise ExportError(f"{run_dir} has no {MANIFEST}: it is not a finished run folder"
                          + (f"; it holds runs, e.g. {', '.join(inside)}" if inside else
                             " (a run still being built is a hidden .<name>.partial folder beside it)"))
    manifest = load_manifest(run_dir)          # a StoreError for a corrupt or unfinished manifest
    if manifest.get("stage") not in EXPORTABLE_STAGES:
        raise ExportError(f"{run_dir} is a {manifest.get('stage')!r} run; export reads a "
                          f"{' or '.join(EXPORTABLE_STAGES)} run (a model whose relevance head learnt the task)")
    model = load_model(run_dir / MODEL_DIR).eval()
    tok_hash = manifest.get("upstream", {}).get("tokenizer")
    tok_dir = run_dir.parent.parent / "tokenizer" / f"{manifest['seed']}-{tok_hash}"
    try:
        load_manifest(tok_dir)
    except StoreError:
        raise ExportError(f"the tokenizer run of {run_dir} ({tok_dir}) is missing or unfinished; it lives beside "
                          "the run's stage folder: keep the runs/<profile>/ folder together") from None
    tokenizer = load_tokenizer(tok_dir / "tokenizer")
    if len(tokenizer) != model.vocab_size:
        raise ExportError(f"the model reads {model.vocab_size} token ids, the tokenizer in {tok_dir} has "
                          f"{len(tokenizer)}: they come from different worlds; rebuild the run")
    tok = manifest["config"]["tokenizer"]
    encoding = {"max_query_len": tok["max_query_len"], "max_len": tok["max_len"],
                "exact_match": bool(tok.get("exact_match", False))}
    return model, tokenizer, encoding, manifest


def max_abs_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def export_model(run_dir: str | Path, out: str | Path, onnx: bool = False, int8: bool = False) -> Path:
    """Write the export folder `out` (atomically: it appears complete or not at all) and return it.
    An existing `out` is replaced only if it is an earlier export."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_INFO).is_file())):
        raise ExportError(f"{out} exists and is not an earlier export: give a new folder (export replaces only "
                          f"a folder with {EXPORT_INFO})")
    model, tokenizer, encoding, manifest = read_run(run_dir)
    hf = to_transformers(model)
    check = random_batch(model.vocab_size, model.max_len)
    with torch.inference_mode():
        ours, theirs = model.relevance(check).reshape(len(check["input_ids"]), -1), hf(**check).logits
    checks = {"transformers_max_abs_diff": max_abs_diff(ours, theirs)}
    if checks["transformers_max_abs_diff"] > TOLERANCE["transformers"]:
        raise ExportError(f"the transformers model differs from ours by {checks['transformers_max_abs_diff']:.2e}")
    with atomic_dir(out) as tmp:
        hf.save_pretrained(tmp)
        tokenizer.model_max_length = encoding["max_len"]
        tokenizer.save_pretrained(tmp)
        if onnx or int8:
            export_onnx(hf, tmp / ONNX_FILE)
            checks["onnx_max_abs_diff"] = max_abs_diff(onnx_logits(onnx_session(tmp / ONNX_FILE), check), ours)
            if checks["onnx_max_abs_diff"] > TOLERANCE["onnx"]:
                raise ExportError(f"the ONNX model differs from ours by {checks['onnx_max_abs_diff']:.2e}")
        if int8:
            quantize_int8(tmp / ONNX_FILE, tmp / ONNX_INT8_FILE)
            checks["onnx_int8_max_abs_diff"] = max_abs_diff(onnx_logits(onnx_session(tmp / ONNX_INT8_FILE), check), ours)
        write_text_atomic(tmp / "README.md", model_card(encoding, model.num_outputs, manifest))
        write_json_atomic(tmp / EXPORT_INFO, {
            **encoding, "num_outputs": model.num_outputs,
            "score": "logit" if model.num_outputs == 1 else "expected tier of the 4 logits",
            "architecture": type(hf).__name__, "source": {k: manifest[k] for k in ("stage", "profile", "seed",
                                                                                      "config_hash")},
            "source_run": str(Path(run_dir).resolve()), "checks": checks,
            "onnx": sorted(p.name for p in tmp.glob("*.onnx"))})
    return out


def read_export_info(directory: str | Path) -> dict:
    """The export's relcourse_export.json, or an ExportError saying how to make one."""
    path = Path(directory) / EXPORT_INFO
    if not path.is_file():
        raise ExportError(f"{directory} is not an export folder (no {EXPORT_INFO}); write one with "
                          "`python -m relcourse export --run RUN_DIR --out DIR`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path} is corrupt ({e}); export the run again") from None
