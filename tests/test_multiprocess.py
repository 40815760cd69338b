"""Data-parallel training: two processes on CPU (torchrun, gloo) end with the weights of one
process trained on the same global batches, through relcourse's own training loop, model and loss.

This is how Accelerate tests its own data parallelism (its training check: one process at a
batch of 8·N against N processes at 8 each, the same seeds, compared with a tolerance): equal up
to rounding, not bit for bit, because each process averages the gradient of its half and the two
means are then averaged again, the same sum in another order. Dropout is off, as in Accelerate's
regression model: its masks are random draws, which two processes cannot make as one does.

Run as a script under torchrun, this file is the worker: `torchrun --nproc_per_node 2
tests/test_multiprocess.py OUT` trains into OUT and saves what each process ended with there.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from relcourse.config import ModelConfig
from relcourse.losses import CombinedLoss
from relcourse.models import RelevanceBert
from relcourse.train import TrainConfig, read_log, train

GROUPS, DOCS, LENGTH, VOCAB = 4, 4, 12, 50   # a global batch of 4 queries x 4 documents: 2 queries a process
LOSS = CombinedLoss(pairwise_weight=1.0)       # fine-tuning's loss: soft CE + pairwise, both means
# Rounding only: measured, the weights of 2 processes and of 1 differ by at most ~1e-7 after the
# 6 steps, in which training moves them by up to ~3e-3. 1e-5 leaves room for other CPUs' float
# sums and is still far below what a wrong share of the batch would change (~lr = 1e-3 a step).
ATOL = RTOL = 1e-5


def tiny_model(dropout: bool = False) -> RelevanceBert:
    """The same initial weights on every call and in every process; dropout off unless asked for."""
    torch.manual_seed(0)
    model = RelevanceBert(ModelConfig(layers=1, hidden=16, heads=2, intermediate=32), VOCAB, LENGTH)
    for module in model.modules():
        if isinstance(module, nn.Dropout) and not dropout:
            module.p = 0.0
    return model


def batch_at(step: int, groups: int = GROUPS) -> dict:
    """`groups` queries (ids 10·step + 0, 1, ...) of DOCS random inputs, one of each tier 0..3."""
    generator = torch.Generator().manual_seed(step)
    rows = groups * DOCS
    input_ids = torch.randint(5, VOCAB, (rows, LENGTH), generator=generator)
    input_ids[:, 0] = 2                                           # [CLS]
    return {"input_ids": input_ids, "attention_mask": torch.ones(rows, LENGTH, dtype=torch.long),
            "token_type_ids": (torch.arange(LENGTH) >= 4).long().expand(rows, LENGTH).contiguous(),
            "targets": torch.cat([torch.randperm(DOCS, generator=generator) for _ in range(groups)]).float(),
            "query_ids": torch.arange(groups).repeat_interleave(DOCS) + 10 * step}


def minus_held_out_loss(model) -> dict:
    batch = batch_at(10**6)
    return {"neg_loss": -LOSS(model(batch)["relevance"], batch["targets"], batch["query_ids"]).item()}


class Killed(Exception):
    pass


def run(run_dir: Path, grad_accum: int = 1, seen: list | None = None, dropout: bool = False, groups: int = GROUPS,
        kill_at: int | None = None):
    """(model, TrainResult) of 6 steps of fine-tuning's loss on tiny_model(), evaluated every 2,
    with an MLM term in the first 3 only: heads that stop getting gradients, as in pretraining's
    switch to TAPT, must stop moving. `seen` collects the query ids of every micro-batch; the
    run raises Killed when it comes to step `kill_at`."""
    def batches(step):
        if step == kill_at:
            raise Killed(f"killed at step {step}")
        return batch_at(step, groups)

    def loss_fn(m, batch):
        if seen is not None:
            seen.append(sorted(set(batch["query_ids"].tolist())))
        if batch["query_ids"][0] >= 30:                            # steps 3, 4, 5
            return {"loss": LOSS(m(batch)["relevance"], batch["targets"], batch["query_ids"])}
        mlm_labels = torch.full_like(batch["input_ids"], -100)
        mlm_labels[:, 5] = batch["input_ids"][:, 5]
        out = m(batch, mlm_labels=mlm_labels)
        return {"loss": LOSS(out["relevance"], batch["targets"], batch["query_ids"]) + out["mlm"]}
    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=1, grad_accum=grad_accum, checkpoint_every=2, log_every=1,
                      eval_every=2, threads=1)
    model = tiny_model(dropout)
    result = train(model, batches, loss_fn, cfg, run_dir, evaluate=minus_held_out_loss, metric="neg_loss",
                   progress=False)
    return model, result


def worker(out: Path) -> None:
    """One torchrun process: a run at grad_accum 1 and one at 2, each then asked again (finished:
    it must load the checkpoint, not train), and a run killed and resumed. Only the main
    process's run_dir is the run's folder; the other's is a scratch folder, which must stay empty."""
    rank = int(os.environ["RANK"])

    def run_dir(name):
        return out / name if rank == 0 else out / f"scratch{rank}"
    for accum in (1, 2):
        seen = []
        model, result = run(run_dir(f"accum{accum}"), accum, seen)
        again, rerun = run(run_dir(f"accum{accum}"), accum)
        torch.save({"weights": model.state_dict(), "result": result, "seen": seen,
                    "rerun": (again.state_dict(), rerun)}, out / f"accum{accum}-rank{rank}.pt")
    # Dropout on, and 3 queries a step: shares of 2 queries and 1 draw unequal numbers of dropout
    # masks, so the processes' RNGs part ways, and a resume must restore each one's own.
    whole, _ = run(run_dir("whole"), dropout=True, groups=3)
    try:
        run(run_dir("resumed"), dropout=True, groups=3, kill_at=5)   # the last checkpoint: step 4
    except Killed:
        pass
    resumed, _ = run(run_dir("resumed"), dropout=True, groups=3)
    torch.save({"whole": whole.state_dict(), "resumed": resumed.state_dict()}, out / f"resume-rank{rank}.pt")


def per_step(seen: list, accum: int) -> list:
    """The query ids a process trained on at each step (its grad_accum micro-batches together)."""
    return [sum(seen[i:i + accum], []) for i in range(0, len(seen), accum)]


def logged_values(lines: list[dict]) -> torch.Tensor:
    """The losses and evaluations of log lines, in order."""
    return torch.tensor([line["loss"] if "loss" in line else line["eval"]["neg_loss"] for line in lines])


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Path:
    """The folder of one torchrun launch of `worker` on 2 processes (gloo, CPU)."""
    out = tmp_path_factory.mktemp("torchrun")
    start = time.perf_counter()
    # A session of its own: on a timeout the workers go down with torchrun instead of living on.
    launch = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               __file__, str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"},
                              start_new_session=True)
    try:
        output = launch.communicate(timeout=600)[0]    # ~20 s on 2 idle cores
    except subprocess.TimeoutExpired:
        os.killpg(launch.pid, signal.SIGKILL)
        raise
    assert launch.returncode == 0, output[-8000:]
    print(f"torchrun, 2 processes: {time.perf_counter() - start:.1f}s")
    return out


def test_two_processes_train_the_weights_of_one(launched, tmp_path):
    """2 processes at 2 queries each (grad_accum 1, then 2) against 1 process at 4 queries."""
    single_model, single = run(tmp_path, seen=(seen := []))
    reference = single_model.state_dict()
    for accum in (1, 2):
        ranks = [torch.load(launched / f"accum{accum}-rank{r}.pt", weights_only=False) for r in (0, 1)]
        for name, value in reference.items():
            assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name   # in step, exactly
            torch.testing.assert_close(ranks[0]["weights"][name], value, atol=ATOL, rtol=RTOL, msg=name)
        # Each process trained on its own half of every global batch, in grad_accum pieces.
        first, second = (per_step(r["seen"], accum) for r in ranks)
        assert [a + b for a, b in zip(first, second)] == seen and [len(ids) for ids in first] == [2] * 6
        assert all(len(piece) == 2 // accum for r in ranks for piece in r["seen"])
        # The main process wrote the log once: the single process's lines, losses averaged over both.
        lines = read_log(launched / f"accum{accum}")
        assert [line["step"] for line in lines] == [line["step"] for line in single.history]
        torch.testing.assert_close(logged_values(lines), logged_values(single.history), atol=ATOL, rtol=RTOL)
        # Every process returns the same result; asked again, both load the main process's checkpoint.
        assert ranks[0]["result"] == ranks[1]["result"] and ranks[0]["result"].history == lines
        assert ranks[0]["result"].best["step"] == single.best["step"]
        for r in ranks:
            assert r["rerun"][1] == r["result"]
            assert all(torch.equal(r["rerun"][0][name], value) for name, value in r["weights"].items())
    assert not (launched / "scratch1").exists(), "only the main process writes the run's files"


def test_a_killed_two_process_run_resumes_exactly(launched):
    """Killed at step 5 and restarted, with dropout on: bit for bit the weights of a run never stopped."""
    for rank in (0, 1):
        runs = torch.load(launched / f"resume-rank{rank}.pt")
        assert all(torch.equal(runs["resumed"][name], value) for name, value in runs["whole"].items())


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
