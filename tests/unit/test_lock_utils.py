"""The host's rollback lock (plugins/module_utils/lock.py): the record, taking and releasing."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import pytest

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rollback.lock", "rollback.lock.takeover"]


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


def test_the_maximum_age_is_counted_in_minutes_to_the_minute():
    # 240 minutes: a lock half a minute either side of it is live, then dead
    assert lock.is_live(record("run-A", age_minutes=239.5), 240)
    assert not lock.is_live(record("run-A", age_minutes=240.5), 240)
    assert lock.is_live(record("run-A", age_minutes=5), 240)
    assert not lock.is_live(record("run-A", age_minutes=300), 240)


def test_a_lock_without_an_epoch_is_of_unknown_age_and_dead():
    assert lock.lock_age({"run_id": "run-A"}) == float("inf")
    assert not lock.is_live({"run_id": "run-A"}, 240)


def test_a_record_without_a_pid_names_no_process():
    # pid 0 is "no process": the controller must not look up a pid it was never given
    assert lock.lock_record("run-A")["pid"] == 0
    assert lock.lock_record("run-A")["pid_start"] == ""


def test_whichever_order_the_run_ids_sort_in_another_runs_lock_is_never_taken(tmp_path: Path):
    # run ids are compared for equality, never ordered: both orders are another run
    for holder, other in (("run-B", "run-A"), ("run-A", "run-B")):
        path = str(tmp_path / f"{holder}.lock")
        lock.take_lock(path, record(holder))
        problem, held, _ = lock.acquire(path, record(other), 240)
        assert problem.startswith(f"host locked by run {holder} ") and held["run_id"] == holder
        assert lock.release(path, other)[:2] == ({}, lock.read_lock(path))
        assert lock.release(path, clear=True, clear_run_id=other)[2] is False
        assert lock.read_lock(path)["run_id"] == holder


def test_the_lock_directory_is_private(tmp_path: Path):
    path = tmp_path / "state" / "rollback.lock"
    assert lock.take_lock(str(path), record("run-A")) == (True, {})
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_record_that_cannot_be_written_leaves_no_temp_file(tmp_path: Path):
    bad = record("run-A")
    bad["operator"] = object()  # not JSON
    with pytest.raises(TypeError):
        lock.take_lock(str(tmp_path / "rollback.lock"), bad)
    assert list(tmp_path.iterdir()) == []


def test_a_lock_that_keeps_changing_is_reported_with_its_path(tmp_path: Path):
    path = str(tmp_path / "rollback.lock")
    problem, held, taken_over = lock.acquire(path, record("run-A"), 240, attempts=0)
    assert problem == f"could not take the host lock {path} (it keeps changing)"
    assert (held, taken_over) == ({}, {})


def test_a_dead_lock_another_run_moved_first_is_not_an_error(tmp_path: Path, monkeypatch):
    """Two runs take over one dead lock: the one whose rename finds it gone takes it next."""
    path = tmp_path / "rollback.lock"
    path.write_text(json.dumps(record("run-dead", age_minutes=300)))
    real_rename = os.rename

    def other_run_first(src, dst):  # the other run moved it aside a moment before us
        if str(src) == str(path) and path.exists():
            path.unlink()
        return real_rename(src, dst)

    monkeypatch.setattr(lock.os, "rename", other_run_first)
    problem, held, taken_over = lock.acquire(str(path), record("run-A"), 240)
    monkeypatch.undo()
    assert (problem, held, taken_over) == ("", {}, {})
    assert lock.read_lock(str(path))["run_id"] == "run-A"


@pytest.mark.parametrize("code", [errno.EPERM, errno.EMLINK])
def test_a_lock_that_cannot_be_linked_is_an_error_not_a_holder(tmp_path: Path, monkeypatch, code):
    # only "it exists" means another run holds it; any other error of link() is raised
    def failing_link(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lock.os, "link", failing_link)
    with pytest.raises(OSError) as err:
        lock.take_lock(str(tmp_path / "rollback.lock"), record("run-A"))
    assert err.value.errno == code
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("code", [errno.EPERM, errno.EBUSY])
def test_a_dead_lock_that_cannot_be_moved_aside_is_an_error(tmp_path: Path, monkeypatch, code):
    path = tmp_path / "rollback.lock"
    path.write_text(json.dumps(record("run-dead", age_minutes=300)))

    def failing_rename(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(lock.os, "rename", failing_rename)
    with pytest.raises(OSError) as err:
        lock.acquire(str(path), record("run-A"), 240)
    monkeypatch.undo()
    assert err.value.errno == code
    assert lock.read_lock(str(path))["run_id"] == "run-dead"


def test_clearing_a_named_run_removes_its_lock_read_from_the_file(tmp_path: Path):
    path = str(tmp_path / "rollback.lock")
    lock.take_lock(path, record("run-A"))
    wanted = "".join(["run-", "A"])  # a string of its own, as the module's parameter is
    removed, held, changed = lock.release(path, clear=True, clear_run_id=wanted)
    assert (removed["run_id"], held, changed) == ("run-A", {}, True)
    assert not Path(path).exists()


def test_a_run_that_read_a_dead_lock_never_moves_away_the_lock_another_run_took_since(
    tmp_path: Path, monkeypatch
):
    """B reads the dead run's lock; before B moves it aside, A takes it over. B must judge
    again and be refused naming A, not move A's live lock away (both would hold the host)."""
    path = str(tmp_path / "rollback.lock")
    Path(path).write_text(json.dumps(record("run-dead", age_minutes=300)))
    real_read = lock.read_lock
    raced: list = []

    def read_then_race(where):
        held = real_read(where)
        if not raced:  # B's first read: A takes the host over right after it
            raced.append(None)
            raced[0] = lock.acquire(path, record("run-A"), 240)
        return held

    monkeypatch.setattr(lock, "read_lock", read_then_race)
    problem, holder, taken_over = lock.acquire(path, record("run-B"), 240)
    monkeypatch.undo()
    assert raced[0][0] == "" and raced[0][2]["run_id"] == "run-dead"  # A took it over
    assert problem.startswith("host locked by run run-A ") and holder["run_id"] == "run-A"
    assert taken_over == {}
    assert lock.read_lock(path)["run_id"] == "run-A"


def test_the_takeover_guard_is_a_private_empty_file_left_in_place(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    path.write_text(json.dumps(record("run-dead", age_minutes=300)))
    assert lock.acquire(str(path), record("run-A"), 240)[2]["run_id"] == "run-dead"
    guard = tmp_path / "rollback.lock.takeover"
    assert guard.stat().st_mode & 0o777 == 0o600 and guard.stat().st_size == 0


def test_a_host_lock_stamped_in_the_distant_past_is_dead():
    assert not lock.is_live({"run_id": "run-A", "epoch": 1000.0}, 240)
    assert lock.lock_age({"run_id": "run-A", "epoch": 1000.0}) > 50 * 365 * 86400
