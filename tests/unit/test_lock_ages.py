"""Lock ages are minutes: with the default maximum of 240, a lock 5 minutes old belongs to a
live run (refused, never taken over) and one 5 hours old to a dead run (taken over).

Ages far from both ends of the limit tell a unit slip (seconds for minutes) from the truth:
0-second and 5-hour-old locks alone read the same either way.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from rollback_ops.lock import LOCK_MAX_AGE_MINUTES, liveness
from tests.conftest import load_module, run_module

lock = load_module("plugins/module_utils/lock.py")
PREFLIGHT = "plugins/modules/preflight.py"
MAX_AGE = 240
FIVE_MINUTES, FIVE_HOURS = 5, 5 * 60


def record(run_id: str, age_minutes: float) -> dict:
    made = lock.lock_record(run_id, "ana", "ops-other", 4242, "123")
    made["epoch"] -= age_minutes * 60
    return made


def plant(path: Path, run_id: str, age_minutes: float) -> bytes:
    """Another run's lock, this old, at path; returns its bytes."""
    path.write_text(json.dumps(record(run_id, age_minutes)))
    return path.read_bytes()


def test_the_default_maximum_is_four_hours():
    assert LOCK_MAX_AGE_MINUTES == MAX_AGE


@pytest.mark.parametrize(
    ("age", "live"),
    [(FIVE_MINUTES, True), (MAX_AGE - 1, True), (MAX_AGE + 1, False), (FIVE_HOURS, False)],
)
def test_the_hosts_lock_is_live_until_its_maximum_age_in_minutes(age: int, live: bool):
    assert lock.is_live(record("run-A", age), MAX_AGE) is live


def test_a_five_minute_old_lock_of_another_run_is_refused_not_taken_over(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    before = plant(path, "run-A", FIVE_MINUTES)
    problem, holder, taken_over = lock.acquire(str(path), record("run-B", 0), MAX_AGE)
    assert problem.startswith("host locked by run run-A of ana from ops-other (pid 4242)")
    assert holder["run_id"] == "run-A" and taken_over == {}
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rollback.lock"]


def test_a_five_hour_old_lock_of_another_run_is_taken_over(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    plant(path, "run-A", FIVE_HOURS)
    problem, holder, taken_over = lock.acquire(str(path), record("run-B", 0), MAX_AGE)
    assert (problem, holder, taken_over["run_id"]) == ("", {}, "run-A")
    assert lock.read_lock(str(path))["run_id"] == "run-B"


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (FIVE_MINUTES, "unknown"),
        (MAX_AGE - 1, "unknown"),
        (MAX_AGE + 1, "expired"),
        (FIVE_HOURS, "expired"),
    ],
)
def test_another_controllers_lock_expires_after_its_maximum_age_in_minutes(age: int, state: str):
    other = {
        "run_id": "run-A",
        "controller": socket.gethostname() + "-other",
        "pid": 4242,
        "epoch": time.time() - age * 60,
    }
    assert liveness(other) == state
    assert liveness(other, max_age_minutes=MAX_AGE) == state


def preflight(path: Path, run_id: str, check_mode: bool) -> dict:
    return run_module(
        PREFLIGHT,
        {"lock_path": str(path), "run_id": run_id, "lock_max_age": MAX_AGE, "min_free_mb": 0},
        check_mode=check_mode,
    )


def test_preflight_check_mode_reports_a_live_lock_and_takes_nothing(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    before = plant(path, "run-A", FIVE_MINUTES)
    result = preflight(path, "run-B", check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["lock"] == {} and result["lock_taken_over"] == {}
    # (ansible-core 2.19 reports a warning as a structured event: its text is in it)
    assert "another rollback holds this host: run run-A of ana" in str(result["warnings"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rollback.lock"]


def test_preflight_check_mode_leaves_even_a_dead_runs_lock_in_place(tmp_path: Path):
    path = tmp_path / "rollback.lock"
    before = plant(path, "run-A", FIVE_HOURS)
    result = preflight(path, "run-B", check_mode=True)
    assert not result.get("failed"), result
    assert (result["changed"], result["lock"], result["lock_taken_over"]) == (False, {}, {})
    assert not result.get("warnings")
    assert path.read_bytes() == before


def test_preflight_refuses_a_five_minute_old_lock_and_takes_over_a_five_hour_old_one(
    tmp_path: Path,
):
    path = tmp_path / "rollback.lock"
    before = plant(path, "run-A", FIVE_MINUTES)
    refused = preflight(path, "run-B", check_mode=False)
    assert refused.get("failed") and "host locked by run run-A of ana" in refused["msg"]
    assert refused["lock_holder"]["run_id"] == "run-A" and refused["lock"] == {}
    assert path.read_bytes() == before
    plant(path, "run-A", FIVE_HOURS)
    taken = preflight(path, "run-B", check_mode=False)
    assert not taken.get("failed"), taken
    assert taken["lock_taken_over"]["run_id"] == "run-A"
    assert json.loads(path.read_text())["run_id"] == "run-B"
