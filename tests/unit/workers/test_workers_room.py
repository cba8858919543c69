"""The workers room: sharding, retries, failed items, dead workers, checkpoint and resume."""
from __future__ import annotations

import json

import pytest

from certnn.errors import ConfigError
from certnn.workers import WorkerConfig, make_tasks, run_tasks
from certnn.workers.checkpoint import open_checkpoint, read_checkpoint
from certnn.workers.driver import FatalTaskError
from certnn.workers.local import InlineBackend, LocalBackend

import workers_testfns as fns


def test_make_tasks_contiguous_and_split_at_gaps():
    tasks = make_tasks([0, 1, 2, 3, 4, 7, 8, 12], 3)
    assert [t.indices for t in tasks] == [(0, 1, 2), (3, 4), (7, 8), (12,)]
    assert [t.id for t in tasks] == [0, 1, 2, 3]


def test_task_size_balances_workers():
    cfg = WorkerConfig(workers=2)
    assert cfg.effective_task_size(200, 32) == 25
    assert cfg.effective_task_size(10_000, 32) == 32
    assert WorkerConfig(workers=2, task_size=7).effective_task_size(200, 32) == 7
    with pytest.raises(ConfigError):
        WorkerConfig(workers=0)


def test_inline_every_item_once():
    res = run_tasks(InlineBackend(fns.square, None), make_tasks(range(10), 3))
    assert sorted(res.records) == list(range(10))
    assert all(res.records[i]["value"] == i * i for i in range(10))


def test_failing_item_recorded_after_two_attempts_neighbours_finish(tmp_path):
    ck, _ = open_checkpoint(tmp_path / "c.jsonl", {"run": 1}, resume=False)
    res = run_tasks(InlineBackend(fns.fail_on, {"bad": [4]}), make_tasks(range(8), 4), checkpoint=ck)
    assert sorted(res.records) == [0, 1, 2, 3, 5, 6, 7]
    assert list(res.failed) == [4] and "RuntimeError: bad item" in res.failed[4]
    _, state, _ = read_checkpoint(tmp_path / "c.jsonl")
    assert sorted(state.items) == [0, 1, 2, 3, 5, 6, 7] and state.failed[4]["attempts"] == 2


def test_certnn_error_is_fatal():
    def bad(payload, indices):
        raise ConfigError("no such method")
    with pytest.raises(FatalTaskError, match="no such method"):
        run_tasks(InlineBackend(bad, None), make_tasks(range(3), 1))


def test_killed_worker_process_is_replaced_and_every_item_finishes(tmp_path):
    backend = LocalBackend(fns.die_once, {"victim": 5, "marker": str(tmp_path / "m")}, workers=2)
    assert len(set(backend.pids())) == 2
    res = run_tasks(backend, make_tasks(range(12), 2), poll_s=0.1)
    assert (tmp_path / "m").exists()  # a worker really was killed
    assert sorted(res.records) == list(range(12)) and not res.failed
    assert res.retried == 1  # only the killed task was run again


def test_checkpoint_resume_skips_finished_and_refuses_other_runs(tmp_path):
    path, log = tmp_path / "c.jsonl", tmp_path / "log.txt"
    ck, _ = open_checkpoint(path, {"run": "a"}, resume=False)
    run_tasks(InlineBackend(fns.log_calls, {"log": str(log)}), make_tasks(range(4), 2), checkpoint=ck)
    with path.open("a") as f:  # a line torn by a kill
        f.write('{"kind": "item", "index": 9, "rec')
    with pytest.raises(ConfigError, match="--resume"):
        open_checkpoint(path, {"run": "a"}, resume=False)
    with pytest.raises(ConfigError, match="different run"):
        open_checkpoint(path, {"run": "b"}, resume=True)
    ck, state = open_checkpoint(path, {"run": "a"}, resume=True)
    assert sorted(state.items) == [0, 1, 2, 3]
    pending = [i for i in range(8) if i not in state.items]
    run_tasks(InlineBackend(fns.log_calls, {"log": str(log)}), make_tasks(pending, 2), checkpoint=ck)
    computed = [int(v) for line in log.read_text().split("\n") for v in line.split()]
    assert sorted(computed) == list(range(8))  # nothing computed twice
    lines = [json.loads(s) for s in path.read_text().splitlines()]  # the torn tail was cut: all lines parse
    assert sorted(e["index"] for e in lines if e["kind"] == "item") == list(range(8))
