"""Build many cached runs at once, each in its own worker process, in an order that keeps every
core busy.

The runs of a claim share upstream stages per seed: every arm of seed 0 starts from seed 0's
pretraining and post-pretraining. Stages are cached and locked (relcourse.store), so two workers
that need one unbuilt upstream run build it once, but the second waits on the lock while its core
idles; on `laptop` that wait can be a 30-minute post-pretraining. So jobs come in groups (a seed),
and a group's first job, which builds what the group shares, runs before the rest of its group
may start. A free worker takes, in this order: the first job of a group not started yet (it
unlocks the most work), then any job whose group's first job has finished, else it waits for a
job to finish (JobQueue).
"""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Hashable

from tqdm.auto import tqdm


class JobQueue:
    """The jobs not yet taken, in order, and which groups have started and have their shared
    runs built (see the module's docstring).

    >>> queue = JobQueue(["s0 a", "s0 b", "s1 a"], group_of=lambda name: name[:2])
    >>> queue.take(), queue.take(), queue.take()   # s0 b must wait until s0 a has finished
    ('s0 a', 's1 a', None)
    >>> queue.finished("s0 a"); queue.take()
    's0 b'
    """

    def __init__(self, names: list[str], group_of: Callable[[str], Hashable]):
        self.pending, self.group_of = list(names), group_of
        self.started, self.leaders_done, self.leaders = set(), set(), set()

    def take(self) -> str | None:
        """The next job a free worker should build, or None: wait for a running job to finish."""
        ready = ([name for name in self.pending if self.group_of(name) not in self.started]
                 or [name for name in self.pending if self.group_of(name) in self.leaders_done])
        if not ready:
            return None
        name = ready[0]
        self.pending.remove(name)
        if self.group_of(name) not in self.started:
            self.started.add(self.group_of(name))
            self.leaders.add(name)
        return name

    def finished(self, name: str) -> None:
        if name in self.leaders:
            self.leaders_done.add(self.group_of(name))


def build_in_processes(jobs: dict[str, Callable], workers: int, progress: bool = True,
                       on_built: Callable[[set[str]], str] | None = None,
                       group_of: Callable[[str], Hashable] = lambda name: name) -> dict:
    """Run the named jobs (picklable callables that build cached runs), `workers` at a time, each
    in its own process; their results by name, in the jobs' order.

    `group_of(name)` names the group whose shared upstream a job needs (a seed); by default each
    job is its own group, so jobs simply start in order. `on_built(names built so far)` runs
    after each job and returns a progress line. If a job fails, the jobs not started are dropped
    and the error is raised; what finished stays cached.
    """
    queue, running, out = JobQueue(list(jobs), group_of), {}, {}
    # spawn, not fork: a forked child inherits torch's thread pools in whatever state they are in
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            tqdm(total=len(jobs), desc="runs", disable=not progress) as bar:
        try:
            while queue.pending or running:
                while len(running) < workers and (name := queue.take()):
                    running[pool.submit(jobs[name])] = name
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    out[name] = future.result()
                    queue.finished(name)
                    bar.update()
                    line = on_built(set(out)) if on_built else ""
                    if progress:
                        tqdm.write(f"{time.strftime('%H:%M:%S')} built {name}; {line}")
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return {name: out[name] for name in jobs}
