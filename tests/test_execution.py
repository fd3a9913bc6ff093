"""Executors and the result cache: same tables on every backend, clear errors, survived worker loss, resume."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pandas as pd
import pytest

import astrostats.runner as runner
from astrostats.execution import Executor, ResultCache, make_executor
from astrostats.provenance import code_version
from astrostats.targets.synthetic import synthetic_head
from astrostats.validation import InputError

pytestmark = pytest.mark.slow  # Dask clusters and sweeps


def smoke_targets():
    """Two small heads: a bidirectional one and a causal, peaked one (streaming write phase)."""
    return [synthetic_head(n_sequences=3, n_tokens=40, d_head=16, seed=1),
            synthetic_head(n_sequences=2, n_tokens=70, d_head=16, logit_scale="peaked", causal=True, seed=2)]


SMOKE_SWEEP = runner.Sweep(m=(8, 64, 256), n_seeds=3, feature_maps=("positive", "trigonometric"),
                           circuits=("astrocyte", "no_astrocyte", "shuffled_kv", "mismatched_target", "uniform"))


@pytest.fixture(scope="module")
def cluster_executor():
    with make_executor(workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def in_process_table():
    return runner.run_sweep(smoke_targets(), SMOKE_SWEEP, progress=False)


def test_local_cluster_gives_the_in_process_table(cluster_executor, in_process_table):
    assert cluster_executor.workers == 2
    table = runner.run_sweep(smoke_targets(), SMOKE_SWEEP, progress=False, executor=cluster_executor)
    pd.testing.assert_frame_equal(table, in_process_table, check_exact=True)


def _run_task_killing_worker_once(common, task):
    """The runner's task, except that the first attempt at one task kills its worker process."""
    marker, sweep_common = common
    if task.m == 64 and task.circuit == "astrocyte" and task.feature == "positive" and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return runner.run_task(sweep_common, task)


def test_worker_lost_mid_run_is_survived(cluster_executor, in_process_table, tmp_path):
    targets = smoke_targets()
    tasks = runner.sweep_tasks(targets, SMOKE_SWEEP)
    sweep_common = (SMOKE_SWEEP, targets, [runner.references(target) for target in targets])
    marker = tmp_path / "worker-killed"
    frames = cluster_executor.map(_run_task_killing_worker_once, tasks, common=(str(marker), sweep_common),
                                  progress=False)
    assert marker.exists()  # a worker really died during the run
    table = pd.concat(frames, ignore_index=True)
    table["m"] = table["m"].astype("Int64")
    table["seed"] = table["seed"].astype("Int64")
    pd.testing.assert_frame_equal(table, in_process_table, check_exact=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_scheduler_is_a_clear_input_error():
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(InputError, match="scheduler") as error:
        make_executor(scheduler=address)
    assert address in str(error.value)


@pytest.mark.parametrize("arguments", [
    {"scheduler": "127.0.0.1:8786"}, {"scheduler": "tcp://host"}, {"scheduler": "tcp://host:99999"},
    {"workers": 0}, {"workers": 1.5}, {"workers": 2, "scheduler": "tcp://127.0.0.1:8786"}, {"resume": True},
])
def test_bad_executor_arguments_are_input_errors(arguments):
    with pytest.raises(InputError):
        make_executor(**arguments)


def test_map_keys_must_match_tasks(tmp_path):
    executor = Executor(cache_dir=tmp_path)
    with pytest.raises(InputError, match="keys"):
        executor.map(abs, [1, 2], keys=["a"], progress=False)
    with pytest.raises(InputError, match="keys"):
        executor.map(abs, [1, 2], keys=["a", "a"], progress=False)


class Counter:
    """Counts calls of a function that squares its task (in process, so the count is visible)."""

    def __init__(self):
        self.calls = []

    def __call__(self, task):
        self.calls.append(task)
        return task * task


def test_resume_reuses_results_and_a_fresh_run_recomputes(tmp_path):
    tasks = list(range(6))
    keys = [f"task-{task}" for task in tasks]
    first = Counter()
    assert Executor(cache_dir=tmp_path).map(first, tasks, keys=keys, progress=False) == [t * t for t in tasks]
    resumed = Counter()
    executor = Executor(cache_dir=tmp_path, resume=True)
    assert executor.map(resumed, tasks, keys=keys, progress=False) == [t * t for t in tasks]
    assert resumed.calls == [] and executor.stats.reused == len(tasks)
    fresh = Counter()
    Executor(cache_dir=tmp_path).map(fresh, tasks, keys=keys, progress=False)  # no resume: recompute all
    assert fresh.calls == tasks


def _entry_paths(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.entry"))


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "garbage"])
def test_corrupted_cache_entry_is_detected_and_recomputed(tmp_path, damage):
    tasks = [3, 4, 5]
    keys = ["a", "b", "c"]
    Executor(cache_dir=tmp_path).map(Counter(), tasks, keys=keys, namespace="spec", progress=False)
    cache = ResultCache(tmp_path, code_version())
    victim = cache.path("spec", f"{Counter.__module__}.Counter", "b")
    blob = bytearray(victim.read_bytes())
    if damage == "flip_byte":
        blob[-5] ^= 0xFF
    elif damage == "truncate":
        blob = blob[: len(blob) // 2]
    else:
        blob = bytearray(b"not a cache entry")
    victim.write_bytes(bytes(blob))
    counter = Counter()
    executor = Executor(cache_dir=tmp_path, resume=True)
    assert executor.map(counter, tasks, keys=keys, namespace="spec", progress=False) == [9, 16, 25]
    assert counter.calls == [4]
    assert executor.stats.corrupted == 1 and executor.stats.reused == 2
    found, value = cache.load("spec", f"{Counter.__module__}.Counter", "b")  # rewritten, valid again
    assert found and value == 16


def test_cache_entries_are_invalidated_by_namespace_key_function_or_code_version(tmp_path):
    cache = ResultCache(tmp_path, "version-1")
    cache.store("spec-1", "module.function", "key", {"value": 1})
    assert cache.load("spec-1", "module.function", "key") == (True, {"value": 1})
    assert not cache.load("spec-2", "module.function", "key")[0]
    assert not cache.load("spec-1", "module.other", "key")[0]
    assert not cache.load("spec-1", "module.function", "other")[0]
    assert not ResultCache(tmp_path, "version-2").load("spec-1", "module.function", "key")[0]


def test_code_version_hashes_the_sources(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    before = code_version(package)
    assert code_version(package) == before
    (package / "a.py").write_text("x = 2\n")
    assert code_version(package) != before


class Interrupted(Exception):
    pass


def test_resume_after_interruption_recomputes_nothing_that_finished(tmp_path, monkeypatch, in_process_table):
    original = runner.run_random_circuit
    finished_before_interruption = 5
    calls = []

    def interrupted_after_some(*args):
        if len(calls) == finished_before_interruption:
            raise Interrupted
        calls.append((args[0].q.shape[1], *args[2:5]))
        return original(*args)

    monkeypatch.setattr(runner, "run_random_circuit", interrupted_after_some)
    with pytest.raises(Interrupted):
        runner.run_sweep(smoke_targets(), SMOKE_SWEEP, progress=False, executor=Executor(cache_dir=tmp_path))
    done_first = list(calls)

    resumed_calls = []

    def counting(*args):
        resumed_calls.append((args[0].q.shape[1], *args[2:5]))
        return original(*args)

    monkeypatch.setattr(runner, "run_random_circuit", counting)
    executor = Executor(cache_dir=tmp_path, resume=True)
    table = runner.run_sweep(smoke_targets(), SMOKE_SWEEP, progress=False, executor=executor)
    pd.testing.assert_frame_equal(table, in_process_table, check_exact=True)
    n_random = sum(task.m is not None for task in runner.sweep_tasks(smoke_targets(), SMOKE_SWEEP))
    assert len(resumed_calls) == n_random - finished_before_interruption
    assert not set(done_first) & set(resumed_calls)

    resumed_calls.clear()
    again = runner.run_sweep(smoke_targets(), SMOKE_SWEEP, progress=False,
                             executor=Executor(cache_dir=tmp_path, resume=True))
    assert resumed_calls == []
    pd.testing.assert_frame_equal(again, in_process_table, check_exact=True)


def test_changed_sweep_or_target_is_not_served_from_cache(tmp_path, monkeypatch):
    targets = smoke_targets()[:1]
    sweep = runner.Sweep(m=(8,), n_seeds=2)
    runner.run_sweep(targets, sweep, progress=False, executor=Executor(cache_dir=tmp_path))
    calls = []
    original = runner.run_random_circuit
    monkeypatch.setattr(runner, "run_random_circuit", lambda *args: calls.append(1) or original(*args))
    changed_seeds = runner.Sweep(m=(8,), n_seeds=3)
    runner.run_sweep(targets, changed_seeds, progress=False, executor=Executor(cache_dir=tmp_path, resume=True))
    assert len(calls) == 1
    other_target = [synthetic_head(n_sequences=3, n_tokens=40, d_head=16, seed=9)]
    runner.run_sweep(other_target, sweep, progress=False, executor=Executor(cache_dir=tmp_path, resume=True))
    assert len(calls) == 2
