"""The host's rollback lock (plugins/module_utils/lock.py): the record, taking and releasing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.conftest import load_module

lock = load_module("plugins/module_utils/lock.py")


def record(run_id: str, age_minutes: float = 0) -> dict:
    made = lock.lock_record(run_id, "ana", "ops1", 4242, "123")
    made["epoch"] -= age_minutes * 60
    return made


def test_a_record_names_its_holder(tmp_path: Path):
    made = lock.lock_record("run-A", "ana", "ops1", 4242, "123")
    assert {k: made[k] for k in ("run_id", "operator", "controller", "pid", "pid_start")} == {
        "run_id": "run-A",
        "operator": "ana",
        "controller": "ops1",
        "pid": 4242,
        "pid_start": "123",
    }
    assert lock.describe(made) == f"run run-A of ana from ops1 (pid 4242) since {made['since']}"
    assert lock.is_live(made, 1)
    assert not lock.is_live(record("run-A", age_minutes=2), 1)
    assert not lock.is_live({}, 1)
    assert not lock.is_live({"run_id": "x", "epoch": "garbage"}, 1)


def test_an_unreadable_lock_reads_as_none(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    assert lock.read_lock(str(path)) == {}
    path.write_text("{not json")
    assert lock.read_lock(str(path)) == {}
    path.write_text("[1, 2]")
    assert lock.read_lock(str(path)) == {}


def test_one_run_takes_the_lock_and_another_is_refused_naming_it(tmp_path: Path):
    path = str(tmp_path / "locks" / "rollback.lock")
    assert lock.acquire(path, record("run-A"), 240) == ("", {}, {})
    assert lock.read_lock(path)["run_id"] == "run-A"
    problem, holder, taken_over = lock.acquire(path, record("run-B"), 240)
    assert problem.startswith("host locked by run run-A of ana from ops1 (pid 4242)")
    assert holder["run_id"] == "run-A" and taken_over == {}
    assert sorted(p.name for p in Path(path).parent.iterdir()) == ["rollback.lock"]


def test_a_run_renews_its_own_lock_and_takes_over_a_dead_runs(tmp_path: Path):
    path = str(tmp_path / "rollback.lock")
    Path(path).write_text(json.dumps(record("run-A", age_minutes=300)))
    renewed = record("run-A")
    assert lock.acquire(path, renewed, 240) == ("", {}, {})
    assert lock.read_lock(path)["epoch"] == renewed["epoch"]
    Path(path).write_text(json.dumps(record("run-A", age_minutes=300)))
    problem, holder, taken_over = lock.acquire(path, record("run-B"), 240)
    assert (problem, holder, taken_over["run_id"]) == ("", {}, "run-A")
    assert lock.read_lock(path)["run_id"] == "run-B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollback.lock"]


def test_release_removes_only_the_runs_own_lock_and_clear_anyones(tmp_path: Path):
    path = str(tmp_path / "rollback.lock")
    assert lock.release(path, "run-A") == ({}, {}, False)
    lock.take_lock(path, record("run-A"))
    removed, held, changed = lock.release(path, "run-B")
    assert (removed, held["run_id"], changed) == ({}, "run-A", False)
    removed, held, changed = lock.release(path, "run-A", check_mode=True)
    assert (removed["run_id"], held, changed) == ("run-A", {}, False)
    assert Path(path).exists()
    assert lock.release(path, clear=True, clear_run_id="run-B")[2] is False
    removed, held, changed = lock.release(path, clear=True)
    assert (removed["run_id"], held, changed) == ("run-A", {}, True)
    assert not Path(path).exists()


def test_a_lock_is_stamped_now():
    assert abs(lock.lock_record("r")["epoch"] - time.time()) < 5
