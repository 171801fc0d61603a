"""The audit history (append-only, survives a crash) and the per-inventory lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rollback_ops import history
from rollback_ops.exceptions import Refused
from rollback_ops.lock import InventoryLock


def test_history_pairs_start_and_finish_and_keeps_unfinished_runs(state_dir: Path):
    for i in range(200):
        history.append(
            state_dir,
            {
                "event": "started",
                "run_id": f"r{i}",
                "operator": "ana",
                "level": "flag",
                "environment": ["staging"],
                "check": False,
            },
        )
        if i != 7:  # r7 crashed mid-run
            history.append(
                state_dir, {"event": "finished", "run_id": f"r{i}", "result": "ok", "duration": 1.5}
            )
    rows = history.read(state_dir)
    assert len(rows) == 200
    assert rows[7].result == "unfinished" and rows[7].duration is None
    assert rows[8].result == "ok" and rows[8].operator == "ana"


def test_history_is_only_ever_appended_to(state_dir: Path):
    history.append(state_dir, {"event": "started", "run_id": "a"})
    before = history.history_path(state_dir).read_bytes()
    history.append(state_dir, {"event": "finished", "run_id": "a", "result": "ok"})
    assert history.history_path(state_dir).read_bytes().startswith(before)
    assert oct(history.history_path(state_dir).stat().st_mode)[-3:] == "600"


def test_a_torn_last_line_does_not_hide_the_rest(state_dir: Path):
    history.append(state_dir, {"event": "started", "run_id": "a"})
    with history.history_path(state_dir).open("a") as f:
        f.write('{"event": "finished", "run_')  # the process died mid-write
    assert [r.run_id for r in history.read(state_dir)] == ["a"]


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rollback_ops.lock import InventoryLock
    lock = InventoryLock(Path(sys.argv[1]), Path("/inv/prod"), "production")
    lock.acquire("run-A", "ana")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def test_a_second_run_is_refused_naming_the_holder(state_dir: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout and holder.stdout.readline().strip() == "held"
        with pytest.raises(Refused, match=r"locked by run run-A of ana \(pid \d+\) since "):
            InventoryLock(state_dir, Path("/inv/prod"), "production").acquire("run-B", "ben")
        # another inventory is not held
        with InventoryLock(state_dir, Path("/inv/staging"), "staging") as other:
            other.acquire("run-C", "ben")
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_run_is_detected_and_taken(state_dir: Path):
    subprocess.run(
        [
            sys.executable,
            "-c",
            HOLDER.replace("time.sleep", "import os; os._exit(0); time.sleep"),
            str(state_dir),
            "0",
        ],
        check=True,
        capture_output=True,
    )
    lock = InventoryLock(state_dir, Path("/inv/prod"), "production")
    lock.acquire("run-B", "ben")
    assert "run run-A of ana" in lock.stale_previous and "died" in lock.stale_previous
    lock.release()
    again = InventoryLock(state_dir, Path("/inv/prod"), "production")
    again.acquire("run-C", "ben")
    assert again.stale_previous == ""  # a released lock leaves no record behind
    again.release()


def test_history_records_how_production_was_authorized(state_dir: Path):
    history.append(state_dir, {"event": "started", "run_id": "t", "confirmed_by_typing": True})
    history.append(state_dir, {"event": "started", "run_id": "v", "environment": ["production"]})
    typed, verify_run = history.read(state_dir)
    assert typed.confirmed_by_typing is True
    assert verify_run.confirmed_by_typing is False  # read from the entry, never inferred
