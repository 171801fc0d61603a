"""The audit history (append-only, survives a crash)."""

from __future__ import annotations

from pathlib import Path

from rollback_ops import history


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


def test_history_records_how_production_was_authorized(state_dir: Path):
    history.append(state_dir, {"event": "started", "run_id": "t", "confirmed_by_typing": True})
    history.append(state_dir, {"event": "started", "run_id": "v", "environment": ["production"]})
    typed, verify_run = history.read(state_dir)
    assert typed.confirmed_by_typing is True
    assert verify_run.confirmed_by_typing is False  # read from the entry, never inferred
