"""Will a profile's training step fit on its GPU? An estimate, checked against a measurement on CPU.

One optimizer step of a stage holds, besides the CUDA context (CUDA_OVERHEAD):
- per parameter N: fp32 weights (4 B), fp32 gradients (4 B), AdamW's two moments (8 B), and,
  under bf16 autocast, the bf16 copy of each weight that autocast casts once and keeps (2 B);
- the activations autograd saves for backward, per token per layer
      c_hidden * hidden + c_score * heads * seq_len   bytes   (PER_LAYER)
  The first term is the linear layers' inputs, the GELU, LayerNorm inputs and dropout masks;
  the second is attention's scores, softmax and dropout (12 B per score) when attention runs as
  plain matrix products ("math"), as it does on CPU under dropout. The constants are measured
  (`measured_activations`: the bytes autograd saves, at 1-2 layers and 1-2 rows, full width and
  length) and the test checks them at each GPU profile's shapes. On a GPU, PyTorch's fused
  attention (sdpa, memory-efficient kernel) saves no score matrix: the "fused" estimate drops
  the second term, "math" is the upper bound;
- outside the layers, 8 x hidden per token (embeddings, [CLS] head) and, per token the MLM head
  predicts, 10 x hidden + 6 x vocab (its transform, bf16 logits and their fp32 log-softmax).

Rows per step (`training_steps`): pretraining's batch through the MLM head; post-pretraining's
batch, plus its masked copy of `mlm_batch_share` of it (a second encoder pass); fine-tuning's
batch in whole query groups; distillation's batch through the student. Distillation also holds
its teacher's fp32 weights on the device (4 B per parameter, no gradients or moments), and with
layer-wise distillation (distill.hidden_weight > 0, claim D8) the model whose scores the student
fits runs beside it on every batch: its hidden states are held while the student's pass runs, and
the loss saves the projected student states for backward (`layerwise_bytes`; in a chain the mid
student's weights are held too). With gradient accumulation (a stage's `grad_accum`) the
activations are those of one micro-batch, 1/grad_accum of the rows; the gradients add up in the
same fp32 buffers, so the weights' share does not change.

>>> from relcourse.config import load_profile
>>> steps = {s.stage: s for s in training_steps(load_profile("gpu"))}
>>> steps["post_pretrain"].rows, steps["post_pretrain"].mlm_rows, steps["distill"].model.layers
(256, 64, 4)
>>> e = estimate(steps["pretrain"], "bf16", "fused")
>>> round(e.params / 1e6, 1), round(e.total / GIB, 1)       # BERT-base with a 16k vocabulary
(98.6, 17.4)
>>> xl = training_steps(load_profile("gpu-xl"))[0]                # BERT-large, 512 x 256 tokens a step
>>> xl.micro_batches, xl.mlm_rows, round(estimate(xl).total / GIB), round(estimate(whole(xl)).total / GIB)
(4, 128, 45, 161)
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
from dataclasses import dataclass

import torch

from .config import ModelConfig, Profile
from .distill import mid_profile
from .finetune import batch_rows
from .models import RelevanceBert
from .data import COMPACT

GIB = 2 ** 30
# Usable memory as nvidia-smi reports it (81,559 and 143,771 MiB).
GPUS = {"H100 80GB": 81_559 * 2 ** 20, "H200 141GB": 143_771 * 2 ** 20}
TARGET_GPU = {"gpu": "H100 80GB", "gpu-xl": "H100 80GB"}   # README: one H100; gpu-xl "one GPU": the same card
CUDA_OVERHEAD = 1 * GIB      # CUDA context, cuBLAS workspace: a round figure
HEADROOM = 0.9               # the caching allocator fragments: call a step that needs > 90% a misfit
PER_LAYER = {"bf16": (50, 12), "fp32": (72, 12)}   # (c_hidden, c_score): bytes per token per layer, measured
OUTSIDE_LAYERS = 8           # x hidden bytes per token: embeddings and the [CLS] head
MLM_PER_TOKEN = (10, 6)      # (x hidden, x vocab) bytes per token the MLM head predicts


@dataclass(frozen=True)
class Step:
    stage: str
    model: ModelConfig
    rows: int          # sequences the encoder reads with gradients, without the MLM head
    mlm_rows: int      # sequences the encoder reads with gradients, with the MLM head
    seq_len: int
    vocab: int
    mask_prob: float
    micro_batches: int = 1   # per optimizer step (grad_accum): rows and mlm_rows are those of one of them
    frozen: tuple[ModelConfig, ...] = ()   # models held on the device without gradients (distill's teacher)
    layerwise: ModelConfig | None = None   # the model whose hidden states the student fits (D8), if any


def training_steps(profile: Profile) -> list[Step]:
    """The full-size step of each training stage of `profile`, as its stage module batches it and
    the training loop cuts it into micro-batches (relcourse.train.micro_batches: the largest)."""
    p, pp = profile, profile.post_pretrain
    shape = dict(seq_len=p.tokenizer.max_len, vocab=p.tokenizer.vocab_size, mask_prob=p.pretrain.mask_prob)

    def step(stage, model, rows, mlm_rows, k, **frozen):
        return Step(stage, model, -(-rows // k), -(-mlm_rows // k), micro_batches=k, **shape, **frozen)
    d = p.distill
    # relcourse.distill.run_distill: the teacher is always loaded; a chain's mid student only for D8
    mid = mid_profile(p).distill.student if d.via_layers else None
    scorer = mid or p.pretrain.model     # whose scores (and, for D8, hidden states) the student fits
    distill_frozen = dict(frozen=(p.pretrain.model,) + ((mid,) if mid and d.hidden_weight else ()),
                          layerwise=scorer if d.hidden_weight else None)
    return [step("pretrain", p.pretrain.model, 0, p.pretrain.batch_size, p.pretrain.grad_accum),
            step("post_pretrain", p.pretrain.model, pp.batch_size, pp.mlm_rows if pp.mlm_weight else 0, pp.grad_accum),
            step("finetune", p.pretrain.model, batch_rows(p.finetune), 0, p.finetune.grad_accum),
            step("distill", d.student, d.batch_size, 0, d.grad_accum, **distill_frozen)]


def whole(step: Step) -> Step:
    """`step` without gradient accumulation: its whole batch in one pass."""
    k = step.micro_batches
    return dataclasses.replace(step, rows=step.rows * k, mlm_rows=step.mlm_rows * k, micro_batches=1)


def parameter_count(model: ModelConfig, vocab: int, seq_len: int) -> int:
    """The model's parameters, counted on the meta device (no memory, no duplicated formula)."""
    with torch.device("meta"):
        return RelevanceBert(model, vocab, seq_len).num_parameters()


@dataclass(frozen=True)
class Estimate:
    step: Step
    precision: str         # bf16 (autocast) or fp32
    attention: str         # math (scores kept, the CPU path) or fused (GPU sdpa kernels)
    params: int
    weights: int           # bytes: fp32 weights + gradients + AdamW moments (+ bf16 weight copies), + frozen models
    activations: int
    total: int             # weights + activations + CUDA_OVERHEAD

    def fits(self, gpu: str) -> bool:
        return self.total <= HEADROOM * GPUS[gpu]


def activation_bytes(step: Step, precision: str, attention: str = "math", layers: int | None = None) -> float:
    """What autograd saves in one forward pass of `step` (see the module docstring)."""
    m, layers = step.model, step.model.layers if layers is None else layers
    c_hidden, c_score = PER_LAYER[precision]
    per_token = layers * (c_hidden * m.hidden + (c_score * m.heads * step.seq_len if attention == "math" else 0))
    tokens = (step.rows + step.mlm_rows) * step.seq_len
    mlm_tokens = step.mlm_rows * step.seq_len * step.mask_prob
    return tokens * (per_token + OUTSIDE_LAYERS * m.hidden) + mlm_tokens * (MLM_PER_TOKEN[0] * m.hidden
                                                                          + MLM_PER_TOKEN[1] * step.vocab)


def layerwise_bytes(student: ModelConfig, teacher: ModelConfig, tokens: int, precision: str) -> tuple[int, int]:
    """(saved, held): bytes layer-wise distillation (relcourse.losses.hidden_mse) adds to a step
    of `tokens` real tokens. Saved for backward: per token, for each of the student's S+1 states,
    the projection's input (w·H_s, w the bytes of the autocast dtype) and the fp32 difference
    (4·H_t), and the real-token mask (1 B); once, the projection's weight as the matmul reads
    it (w·H_s·H_t). tests/test_gpu_memory.py checks this against what autograd saves. Held while
    the student's pass runs: the teacher's T+1 fp32 states (4·H_t per token each)."""
    w = 2 if precision == "bf16" else 4
    saved = tokens * ((student.layers + 1) * (w * student.hidden + 4 * teacher.hidden) + 1)
    held = tokens * (teacher.layers + 1) * 4 * teacher.hidden
    return saved + w * student.hidden * teacher.hidden, held


def estimate(step: Step, precision: str = "bf16", attention: str = "fused") -> Estimate:
    params = parameter_count(step.model, step.vocab, step.seq_len)
    frozen = sum(parameter_count(m, step.vocab, step.seq_len) for m in step.frozen)
    weights = params * (16 + (2 if precision == "bf16" else 0)) + 4 * frozen
    activations = int(activation_bytes(step, precision, attention))
    if step.layerwise:
        activations += sum(layerwise_bytes(step.model, step.layerwise, step.rows * step.seq_len, precision))
    return Estimate(step, precision, attention, params, weights, activations, weights + activations + CUDA_OVERHEAD)


# --- the host's memory ----------------------------------------------------------------------

TOKEN_BYTES = sum(torch.empty(0, dtype=dtype).element_size() for dtype in COMPACT.values())   # as PairSet keeps them


def host_pretraining_rows(profile: Profile) -> int:
    """Rows pretraining tokenises at once (relcourse.pretrain.pretraining_data): a segment pair
    per corpus line (held-out lines included; an upper bound: cleaning drops the dirt) and,
    for TAPT, every candidate pair of the training and unlabelled queries."""
    d = profile.data
    pool = d.n_queries * d.docs_per_query * (1 - d.labelled_queries_share * (d.valid_share + d.test_share))
    lines = {"general": d.general_corpus_lines, "domain": d.domain_corpus_lines}
    corpus = sum(n for which, n in lines.items() if which in profile.pretrain.corpus)
    return int(corpus + (pool if profile.pretrain.tapt_share else 0))


def host_pretraining_bytes(profile: Profile) -> int:
    """Host memory of those rows' token tensors (relcourse.data.COMPACT), before any Python strings;
    the encoding's temporaries are bounded by relcourse.data.ENCODE_CHUNK rows."""
    return host_pretraining_rows(profile) * profile.tokenizer.max_len * TOKEN_BYTES


# --- measured on CPU --------------------------------------------------------------------------

def saved_bytes(forward) -> int:
    """Bytes of the tensors autograd saves while `forward()` runs (each storage once,
    parameters left out): the activation memory of that forward pass."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(seen.values())


def step_inputs(rows: int, step: Step, mlm: bool) -> tuple:
    """The arguments of the stage's forward on random rows (every other one half padded):
    (batch,) for a relevance pass, (batch, mlm labels, sentence labels, False) for an MLM pass."""
    g = torch.Generator().manual_seed(rows)
    ids = torch.randint(5, step.vocab, (rows, step.seq_len), generator=g)
    mask = torch.ones_like(ids)
    mask[1::2, step.seq_len // 2:] = 0
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask}
    if not mlm:
        return (batch,)
    selected = slice(1, 1 + round(step.seq_len * step.mask_prob))
    labels = torch.full_like(ids, -100)
    labels[:, selected] = ids[:, selected]
    return batch, labels, torch.zeros(rows, dtype=torch.long), False


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def measured_activations(step: Step, precision: str) -> float:
    """`step`'s activations extrapolated from what autograd saves on CPU (`per_row_bytes`)."""
    width = dataclasses.replace(step.model, layers=1)     # per row and layer: the depth is extrapolated
    per_layer, outside, mlm = per_row_bytes(width, step.seq_len, step.vocab, step.mask_prob, precision)
    return (step.rows + step.mlm_rows) * (step.model.layers * per_layer + outside) + step.mlm_rows * mlm


@functools.lru_cache(maxsize=8)
def per_row_bytes(model: ModelConfig, seq_len: int, vocab: int, mask_prob: float, precision: str):
    """(per layer, outside the layers, MLM head extra): bytes autograd saves per row, measured at
    1 and 2 layers and 1 and 2 rows of the full width, length and vocabulary. Saved bytes are
    L·R·x + R·y + L·w + u (w, u: the bf16 weight copies, counted with the weights), so
    differences of four points give x and y; one more pair gives the MLM head's extra."""
    step = Step("measure", model, 0, 0, seq_len, vocab, mask_prob)
    at = {}
    for layers, mlm in ((1, False), (2, False), (1, True)):
        net = RelevanceBert(dataclasses.replace(model, layers=layers), vocab, seq_len)
        for rows in (1, 2):
            args = step_inputs(rows, step, mlm)
            with _autocast(precision):
                at[layers, mlm, rows] = saved_bytes(lambda: net(*args))
    row = {key: at[key + (2,)] - at[key + (1,)] for key in ((1, False), (2, False), (1, True))}
    per_layer = row[2, False] - row[1, False]
    return per_layer, row[1, False] - per_layer, row[1, True] - row[1, False]


def peak_rss_of_step(step: Step, rows: int, layers: int, precision: str) -> tuple[int, float] | None:
    """(bytes the resident set grew by during one training step, fwd + bwd + AdamW, of `rows` rows
    at `layers` layers; the estimate of the same), or None where Linux's peak-RSS reset
    (/proc/self/clear_refs) is unavailable. Coarse: the C allocator may reuse pages freed earlier."""
    small = dataclasses.replace(step, model=dataclasses.replace(step.model, layers=layers), rows=rows,
                                mlm_rows=rows if step.mlm_rows else 0)
    model = RelevanceBert(small.model, step.vocab, step.seq_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    args = step_inputs(rows, small, bool(small.mlm_rows))
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")          # reset the peak resident set size (VmHWM) to the current one
    except OSError:
        return None
    before = _status_kib("VmRSS")
    with _autocast(precision):
        out = model(*args)
    loss = sum(v for k, v in out.items() if k in ("mlm", "sentence", "relevance") and v.requires_grad)
    loss.float().sum().backward()
    optimizer.step()
    grown = (_status_kib("VmHWM") - before) * 1024
    e = estimate(small, precision, "math")
    return grown, e.weights - 4 * e.params + e.activations   # the fp32 weights were there before


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
