"""Which text teaches a small BERT route direction? A probe behind world version 3.

A route query ("bus from A to B") is served by a document about A → B and not by one about
B → A: the same words in another order. The recipe's `laptop` model scored both alike. This
probe isolates the skill: a fresh model of the profile's size reads route paragraphs with
masked-language modelling only (`--text restated`: each paragraph names its route twice, as
world version 3's corpus does; `--text once`: named once, as version 2's did; `--mlm-steps 0`:
no pretraining), then is fine-tuned on the route queries' pairs of the non-test splits with
their true labels, and judged on the test route pairs: relevant against the same route reversed
(0.5 = blind to order).

    python benchmarks/route_order_probe.py --profile laptop --text restated   # about 12 min on one core
    python benchmarks/route_order_probe.py --profile laptop --text once

Measured with an earlier draft of this script (the same steps and sizes) on `laptop`, seed 0,
world version 2's data, 20,000 lines, 3,000 MLM steps then 1,500 fine-tuning steps: relevant vs
reversed 0.960 with restated text, 0.502 with text that names the route once, 0.516 with no
pretraining (`data_gen/CHANGES.md`, version 3).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import data_gen
from data_gen.corpus import route_paragraph
from data_gen.world import build_world
from relcourse import metrics
from relcourse.config import load_profile
from relcourse.data import PairSet, make_pairset, pointwise_batch, query_grouped_batch
from relcourse.finetune import score
from relcourse.lexical import reversed_routes
from relcourse.losses import make_loss
from relcourse.pretrain import masked, new_model, tokenizer_of
from relcourse.store import ensure_data
from relcourse.tokenizer import encode_pairs
from relcourse.train import TrainConfig, train


def route_pairs(data_dir, tokenizer, profile, split_is_test: bool) -> PairSet:
    """The route queries' candidate pairs of the test split (or of the others), target = relevant."""
    truth = data_gen.read_table(data_dir, "truth", columns=["query_id", "doc_id", "tier_v2"])
    queries = data_gen.read_table(data_dir, "queries", columns=["query_id", "group", "split"])
    routes = queries[(queries.group == "route") & ((queries.split == "test") == split_is_test)]
    rows = truth[truth.query_id.isin(routes.query_id)]
    return make_pairset(data_dir, tokenizer, rows.doc_id.to_numpy(),
                        (rows.tier_v2 >= metrics.RELEVANT_TIER).astype(float).to_numpy(), profile.tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text", choices=["restated", "once"], default="restated")
    parser.add_argument("--lines", type=int, default=20_000, help="route paragraphs to pretrain on")
    parser.add_argument("--mlm-steps", type=int, default=3_000, help="0 = no pretraining")
    parser.add_argument("--finetune-steps", type=int, default=1_500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile, {"threads": args.threads})
    data_dir = ensure_data(profile, args.seed)
    tokenizer = tokenizer_of(profile, args.seed)
    model = new_model(profile, len(tokenizer))
    work = tempfile.mkdtemp(prefix="route-probe-")
    started = time.time()

    def config(steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, lr=5e-4, warmup_steps=steps // 10, threads=args.threads, seed=args.seed,
                           checkpoint_every=0)

    if args.mlm_steps:
        rng = np.random.default_rng(args.seed)
        world = build_world(profile.data, args.seed)
        halves = [route_paragraph(world, rng, args.text == "restated").split(". ", 1) for _ in range(args.lines)]
        inputs = encode_pairs(tokenizer, [h[0] for h in halves], [h[1] for h in halves],
                              profile.tokenizer.max_len // 2, profile.tokenizer.max_len)
        ids = np.arange(len(halves))
        text = PairSet(ids, ids, np.zeros(len(halves)), inputs)

        def mlm_batch(step: int) -> dict:
            batch = pointwise_batch(text, step, 64, args.seed)
            batch["input_ids"], batch["mlm_labels"] = masked(batch, tokenizer, profile,
                                                             torch.Generator().manual_seed(step))
            return batch

        train(model, mlm_batch, lambda m, b: {"loss": m(b, mlm_labels=b["mlm_labels"], relevance=False)["mlm"]},
              config(args.mlm_steps), f"{work}/mlm")

    pairs, test = route_pairs(data_dir, tokenizer, profile, False), route_pairs(data_dir, tokenizer, profile, True)
    loss = make_loss("soft_ce")
    train(model, lambda step: query_grouped_batch(pairs, step, 64, 8, args.seed),
          lambda m, b: {"loss": loss(m(b)["relevance"], b["targets"], b["query_ids"])},
          config(args.finetune_steps), f"{work}/finetune")
    scores = score(model, test)
    relevant, reversed_ = test.targets == 1, np.isin(test.doc_ids, reversed_routes(data_dir))
    keep = relevant | reversed_
    print(f"text {args.text}, {args.mlm_steps} MLM steps, {args.finetune_steps} fine-tuning steps: "
          f"route AUC {roc_auc_score(relevant, scores):.3f}, relevant vs reversed "
          f"{roc_auc_score(relevant[keep], scores[keep]):.3f} "
          f"({relevant.sum()} relevant, {reversed_.sum()} reversed test pairs; {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
