"""Pretraining throughput: tokens/s and achieved FLOP/s against what this machine's matmul can do.

    python benchmarks/pretrain_throughput.py                   # smoke and laptop model sizes
    python benchmarks/pretrain_throughput.py --profiles laptop --threads 1 --precisions fp32 bf16
    python benchmarks/pretrain_throughput.py --profiles gpu --device cuda --precisions bf16

A training step of the real pretraining objective (MLM on 15% of the tokens + the sentence
head) on random token ids at the profile's batch size and length. The FLOP count per token is
the usual estimate for a transformer, 6 N + 12 L H T (PaLM appendix B: forward and backward
of the N non-embedding parameters, plus attention scores), with the MLM projection counted
for the selected tokens only. The ceiling is a large matmul in the step's arithmetic (bf16 on a
GPU) on the same device with the same threads: the share of it a small model reaches says how
much of the step is spent outside big matrix products (attention softmax, layer norms, the
optimizer).

`--precisions fp32 bf16` times the same step under each arithmetic, in turns (the profile
setting `precision`: bf16 autocasts the forward, weights and optimizer stay fp32). On a CPU with
AVX512-BF16 or AMX this prices a cheaper recipe before anyone retrains one: the CPU profiles'
committed results are all fp32, and `precision` is in every stage's cache key, so switching it
retrains every stage and re-measures every claim.
"""
from __future__ import annotations

import argparse
import time

import torch

from relcourse.compute import flops_per_token
from relcourse.config import load_profile
from relcourse.models import RelevanceBert

MASK_SHARE = 0.15


def matmul_flops(device: str, dtype: torch.dtype, n: int | None = None, repeats: int = 10) -> float:
    n = n or (8192 if device == "cuda" else 2048)      # a GPU needs a big product to fill it
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def step_flops_per_token(model: RelevanceBert, length: int) -> float:
    """A training step's FLOPs per token, with the MLM output layer (tied to the embeddings, so
    not among the counted weights) on the selected tokens only."""
    mlm_projection = MASK_SHARE * model.cfg.hidden * model.vocab_size
    return flops_per_token(model, length, training=True) + 6 * mlm_projection


def training_tokens_per_s(profile_name: str, device: str, steps: int, precision: str = "fp32") -> dict:
    profile = load_profile(profile_name)
    cfg, length, batch_size = profile.pretrain, profile.tokenizer.max_len, profile.pretrain.batch_size
    torch.manual_seed(0)
    model = RelevanceBert(cfg.model, profile.tokenizer.vocab_size, length).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(5, profile.tokenizer.vocab_size, (batch_size, length), device=device)
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": torch.ones_like(ids)}
    labels = torch.where(torch.rand(ids.shape, device=device) < MASK_SHARE, ids, torch.full_like(ids, -100))
    sentence = torch.randint(0, 2, (batch_size,), device=device)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(batch, labels, sentence, relevance=False)
        (out["mlm"] + out["sentence"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()                      # warm-up: allocator, kernels
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - start
    tokens_per_s = steps * batch_size * length / seconds
    return {"profile": profile_name, "precision": precision, "model": f"{cfg.model.layers}L x {cfg.model.hidden}",
            "params_M": model.num_parameters() / 1e6, "batch x len": f"{batch_size} x {length}",
            "tokens_per_s": tokens_per_s, "flop_per_s": tokens_per_s * step_flops_per_token(model, length)}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["smoke", "laptop"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="the arithmetic of each timed step (bf16: autocast, as the profile setting)")
    parser.add_argument("--rounds", type=int, default=1, help="time every precision this many times, in turns")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Each precision against a matmul in its own arithmetic; a GPU's against its bf16 one for both.
    ceiling = {p: matmul_flops(args.device, torch.bfloat16 if p == "bf16" or args.device == "cuda" else torch.float32)
               for p in args.precisions}
    print(f"device {args.device}, {args.threads} threads: matmul ceiling "
          + ", ".join(f"{p} {c / 1e9:.1f} GFLOP/s" for p, c in ceiling.items()))
    print(f"{'profile':8} {'precision':>9} {'model':>10} {'params':>8} {'batch x len':>12} {'tokens/s':>10} "
          f"{'GFLOP/s':>8} {'of ceiling':>10}")
    for name in args.profiles:
        best = {}
        for _ in range(args.rounds):
            for precision in args.precisions:
                r = training_tokens_per_s(name, args.device, args.steps, precision)
                best[precision] = max(best.get(precision, 0.0), r["tokens_per_s"])
                print(f"{r['profile']:8} {precision:>9} {r['model']:>10} {r['params_M']:7.2f}M {r['batch x len']:>12} "
                      f"{r['tokens_per_s']:10.0f} {r['flop_per_s'] / 1e9:8.2f} {r['flop_per_s'] / ceiling[precision]:9.1%}")
        if len(best) > 1:
            print(f"{name}: bf16 / fp32 tokens/s (best of {args.rounds}): {best['bf16'] / best['fp32']:.2f}x")


if __name__ == "__main__":
    main()
