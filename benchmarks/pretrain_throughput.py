"""Pretraining throughput: tokens/s and achieved FLOP/s against what this machine's matmul can do.

    python benchmarks/pretrain_throughput.py                   # smoke and laptop model sizes
    python benchmarks/pretrain_throughput.py --profiles gpu --device cuda

A training step of the real pretraining objective (MLM on 15% of the tokens + the sentence
head) on random token ids at the profile's batch size and length. The FLOP count per token is
the usual estimate for a transformer, 6 N + 12 L H T (PaLM appendix B: forward and backward
of the N non-embedding parameters, plus attention scores), with the MLM projection counted
for the selected tokens only. The ceiling is a large fp32 (or bf16 on GPU) matmul on the
same device with the same threads: the share of it a small model reaches says how much of
the step is spent outside big matrix products (attention softmax, layer norms, the optimizer).
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


def training_tokens_per_s(profile_name: str, device: str, steps: int) -> dict:
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
    return {"profile": profile_name, "model": f"{cfg.model.layers}L x {cfg.model.hidden}",
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ceiling = matmul_flops(args.device, torch.bfloat16 if args.device == "cuda" else torch.float32)
    print(f"device {args.device}, {args.threads} threads: matmul ceiling {ceiling / 1e9:.1f} GFLOP/s")
    print(f"{'profile':8} {'model':>10} {'params':>8} {'batch x len':>12} {'tokens/s':>10} {'GFLOP/s':>8} {'of ceiling':>10}")
    for name in args.profiles:
        r = training_tokens_per_s(name, args.device, args.steps)
        print(f"{r['profile']:8} {r['model']:>10} {r['params_M']:7.2f}M {r['batch x len']:>12} "
              f"{r['tokens_per_s']:10.0f} {r['flop_per_s'] / 1e9:8.2f} {r['flop_per_s'] / ceiling:9.1%}")


if __name__ == "__main__":
    main()
