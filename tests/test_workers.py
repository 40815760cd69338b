import functools
import operator

import pytest

from relcourse.workers import JobQueue, build_in_processes


def simulate(durations: dict[str, float], workers: int) -> dict[str, tuple[float, float]]:
    """(start, end) of each job when `workers` workers take jobs from a JobQueue grouped by the
    name's first word; a job's duration is as given."""
    queue, running, times, clock = JobQueue(list(durations), group_of=lambda name: name.split()[0]), {}, {}, 0.0
    while queue.pending or running:
        while len(running) < workers and (name := queue.take()):
            running[name] = clock + durations[name]
        name = min(running, key=running.get)
        clock = running.pop(name)
        times[name] = (clock - durations[name], clock)
        queue.finished(name)
    return times


def test_a_seeds_shared_run_is_built_before_its_other_arms_and_no_worker_waits_for_it():
    # Three seeds on two workers: each seed's first job builds its upstream (30 min), the other
    # three arms take 3 min each. In plain order the second worker would pick seed 2's arm while
    # seed 2's upstream is still being built, and wait on its lock.
    durations = {f"s{seed} {arm}": 30.0 if arm == "a" else 3.0 for arm in "abcd" for seed in range(3)}
    times = simulate(durations, workers=2)
    for seed in range(3):
        leader_end = times[f"s{seed} a"][1]
        assert all(times[f"s{seed} {arm}"][0] >= leader_end for arm in "bcd")
    # the lower bound for 2 workers is half the total work, 58.5; the plan finishes in one
    # upstream build more than that at most, against 90 if each job had to queue for its seed
    assert max(end for _, end in times.values()) <= 117 / 2 + 30


def test_results_come_back_in_the_jobs_order_and_a_failure_is_raised():
    jobs = {f"seed {s} {p}": functools.partial(pow, s + 2, p) for p in (1, 2) for s in range(3)}
    assert build_in_processes(jobs, workers=2, progress=False, group_of=lambda n: n.split()[1]) == {
        name: job() for name, job in jobs.items()}
    with pytest.raises(ZeroDivisionError):
        build_in_processes({"ok": functools.partial(pow, 2, 3), "bad": functools.partial(operator.truediv, 1, 0)},
                           workers=2, progress=False)
