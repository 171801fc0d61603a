"""Turning ansible-runner events into typed results (pure logic; real runs are in integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollback_ops.events import DATA_KEYS, EventCollector, scrub_artifacts
from rollback_ops.progress import recap
from rollback_ops.results import RunResult, StepEvent


def event(kind: str, host: str, task: str, res: dict | None = None, **data: object) -> dict:
    return {
        "event": kind,
        "event_data": {"host": host, "task": task, "task_uuid": task, "res": res or {}, **data},
    }


def test_collector_builds_host_results_and_forwards_steps():
    seen: list[StepEvent] = []
    c = EventCollector(seen.append)
    c(event("runner_on_start", "web1", "Set values"))
    c(
        event(
            "runner_on_ok",
            "web1",
            "Set values",
            {
                "changed": True,
                "before": {"A": "true"},
                "after": {"A": "false"},
                "changed_keys": ["A"],
                "backup_file": "/srv/.env.backup.1",
            },
            task_action="rollback_ops.rollback.envfile",
            role="envfile",
        )
    )
    c(event("runner_on_unreachable", "web2", "Preflight", {"msg": "ssh: connect refused"}))
    c(event("runner_on_skipped", "web1", "Quiet skip"))
    c(
        event(
            "runner_on_ok",
            "web1",
            "Why",
            {"msg": "Skipped: systemd is not running"},
            task_action="ansible.builtin.debug",
        )
    )
    c(
        event(
            "runner_on_ok",
            "web1",
            "Validating",
            {},
            task_action="ansible.builtin.validate_argument_spec",
        )
    )
    web1, web2 = c.hosts["web1"], c.hosts["web2"]
    assert web1.status == "changed"
    assert [(f.key, f.before, f.after, f.changed) for f in web1.flags] == [
        ("A", "true", "false", True)
    ]
    assert web1.backups == ["/srv/.env.backup.1"]
    assert web2.status == "unreachable"
    assert web2.failed_step == "Preflight"
    assert "connect refused" in web2.message
    # quiet skips and argument validation are recorded but not shown; explained skips are shown
    assert [s.step for s in seen] == ["envfile: Set values", "Preflight", "Why"]
    assert seen[-1].status == "skipped"
    assert seen[-1].message == "systemd is not running"


def test_first_failure_names_the_step_and_rescue_does_not_overwrite_it():
    c = EventCollector(None)
    c(event("runner_on_failed", "h", "Restart", {"msg": "unit failed"}))
    c(
        event(
            "runner_on_failed",
            "h",
            "Report the failed step",
            {"msg": "appservice: Restart: unit failed"},
        )
    )
    assert c.hosts["h"].failed_step == "Restart"
    assert c.hosts["h"].message == "unit failed"


def test_recap_and_receipt_say_what_happened():
    c = EventCollector(None)
    c(
        event(
            "runner_on_ok",
            "web1",
            "Set",
            {
                "changed": True,
                "after": {"A": "0"},
                "before": {"A": "1"},
                "changed_keys": ["A"],
                "backup_file": "/b",
            },
            task_action="rollback_ops.rollback.envfile",
        )
    )
    result = RunResult("r1", "flag", "lab", "/inv", False, c.hosts, "t", 1.5, 0, "/runs/r1")
    text = recap(result)
    assert "web1: A 1 -> 0" in text
    assert "web1: /b" in text
    assert result.exit_status == 0
    receipt = result.receipt()
    assert receipt["backups"] == [{"host": "web1", "path": "/b"}]
    assert receipt["hosts"]["web1"]["flags"] == [
        {"key": "A", "before": "1", "after": "0", "changed": True}
    ]
    failed = RunResult("r2", "flag", "lab", "/inv", False, {}, "t", 1.0, 2, "/runs/r2")
    assert failed.exit_status == 1


def collect(*events: dict, sink: list[StepEvent] | None = None) -> EventCollector:
    """Events as ansible-runner hands them over: decoded from JSON (no interned strings)."""
    c = EventCollector(sink.append if sink is not None else None)
    for e in events:
        c(json.loads(json.dumps(e)))
    return c


MOD = "rollback_ops.rollback."
HOLDER = {"run_id": "run-B", "operator": "ben", "since": "then"}


def test_the_lock_is_held_only_when_the_preflight_succeeded_with_it():
    ok = collect(event("runner_on_ok", "w", "P", {"lock": True}, task_action=MOD + "preflight"))
    assert ok.hosts["w"].lock == "held"
    failed = collect(
        event("runner_on_failed", "w", "P", {"lock": True}, task_action=MOD + "preflight")
    )
    skipped = collect(
        event("runner_on_skipped", "w", "P", {"lock": True}, task_action=MOD + "preflight")
    )
    other = collect(event("runner_on_ok", "w", "P", {"lock": True}, task_action=MOD + "envfile"))
    assert failed.hosts["w"].lock == skipped.hosts["w"].lock == other.hosts["w"].lock == ""


def test_a_lock_holder_is_read_from_the_preflight_refusal_and_from_unlock_only():
    refused = collect(
        event("runner_on_failed", "w", "P", {"lock_holder": HOLDER}, task_action=MOD + "preflight")
    )
    assert refused.hosts["w"].lock_holder == HOLDER
    unlock = collect(event("runner_on_ok", "w", "U", {"held": HOLDER}, task_action=MOD + "unlock"))
    assert unlock.hosts["w"].lock_holder == HOLDER
    other = collect(
        event("runner_on_ok", "w", "P", {"held": HOLDER}, task_action=MOD + "preflight")
    )
    assert other.hosts["w"].lock_holder == {}


def test_notes_of_a_lock_taken_over_or_cleared_come_from_their_modules_only():
    taken = {"run_id": "run-old", "operator": "ana", "since": "yesterday"}
    over = collect(
        event("runner_on_ok", "w", "P", {"lock_taken_over": taken}, task_action=MOD + "preflight")
    )
    assert over.hosts["w"].notes == [
        "took over the lock left by run run-old of ana since yesterday (older than the lock's "
        "maximum age)"
    ]
    elsewhere = collect(
        event("runner_on_ok", "w", "X", {"lock_taken_over": taken}, task_action=MOD + "envfile"),
        event("runner_on_changed", "w", "Y", {"removed": taken}, task_action=MOD + "envfile"),
        event(
            "runner_on_ok", "w", "Z", {"removed": taken, "changed": True}, task_action=MOD + "code"
        ),
        # releasing one's own lock is not a change: no note
        event("runner_on_ok", "w", "U", {"removed": taken}, task_action=MOD + "unlock"),
    )
    assert elsewhere.hosts["w"].notes == []
    cleared = collect(
        event(
            "runner_on_ok",
            "w",
            "U",
            {"removed": taken, "changed": True},
            task_action=MOD + "unlock",
        )
    )
    assert cleared.hosts["w"].notes == ["cleared the lock of run run-old of ana"]


def test_code_and_container_records_come_from_their_modules_only():
    res = {"current": "abc", "target": "def", "images": ["i"], "containers": ["c"]}
    code = collect(event("runner_on_ok", "w", "C", res, task_action=MOD + "code"))
    assert code.hosts["w"].code == {"current": "abc", "target": "def"}
    containers = collect(event("runner_on_ok", "w", "D", res, task_action=MOD + "containers"))
    assert containers.hosts["w"].code == {"images": ["i"], "containers": ["c"]}
    for module in ("backup", "envfile", "code_x", "a"):
        other = collect(event("runner_on_ok", "w", "E", res, task_action=MOD + module))
        assert other.hosts["w"].code == {}, module
    failed = collect(event("runner_on_failed", "w", "C", res, task_action=MOD + "code"))
    assert failed.hosts["w"].code == {}


def test_a_failure_is_a_failure_even_if_it_says_changed_and_ignored_errors_keep_changes():
    c = collect(
        event("runner_on_failed", "w", "A", {"changed": True, "msg": "boom"}),
        event("runner_on_ok", "v", "B", {"changed": True}, ignore_errors=True),
        event("runner_on_failed", "u", "C", {"msg": "tolerated"}, ignore_errors=True),
    )
    assert (c.hosts["w"].status, c.hosts["w"].steps[0].status) == ("failed", "failed")
    assert c.hosts["v"].steps[0].status == "changed"
    assert (c.hosts["u"].status, c.hosts["u"].steps[0].status) == ("ok", "ok")


def test_backup_copies_are_recorded_from_changes_only():
    res = {"backup_files": ["/a.backup.1"], "changed": False}
    c = collect(
        event("runner_on_ok", "w", "A", res),
        event("runner_on_failed", "v", "A", res),
        event("runner_on_ok", "u", "A", {**res, "changed": True}),
    )
    assert (c.hosts["w"].backups, c.hosts["v"].backups) == ([], [])
    assert c.hosts["u"].backups == ["/a.backup.1"]


def test_a_diff_is_shown_whichever_way_it_sorts_and_ends_each_line():
    for before, after in (("b=1\n", "a=1"), ("a=1", "b=1\n")):
        c = collect(
            event(
                "runner_on_ok",
                "w",
                "D",
                {"changed": True, "diff": {"before": before, "after": after}},
            )
        )
        text = c.hosts["w"].steps[0].diff
        assert text.endswith("\n") and "\n\n" not in text
        assert f"-{before.strip()}\n" in text and f"+{after.strip()}\n" in text
    same = collect(event("runner_on_ok", "w", "D", {"diff": {"before": "x", "after": "x"}}))
    assert same.hosts["w"].steps[0].diff == ""


def test_a_host_started_at_its_first_task_and_each_step_is_timed():
    c = EventCollector(None)
    for e in (
        event("runner_on_start", "w", "A"),
        event("runner_on_ok", "w", "A"),
        event("runner_on_start", "w", "B"),
        event("runner_on_ok", "w", "B"),
    ):
        c(json.loads(json.dumps(e)))  # as ansible-runner hands them over
        if e["event"] == "runner_on_start" and e["event_data"]["task"] == "A":
            first = c.hosts["w"].started
    assert c.hosts["w"].started == first > 0
    assert c.hosts["w"].ended >= first
    assert all(0 <= step.duration < 60 for step in c.hosts["w"].steps)


def test_a_failure_message_falls_back_to_stderr_then_reason():
    c = collect(
        event("runner_on_failed", "a", "T", {"stderr": "disk full"}),
        event("runner_on_unreachable", "b", "T", {"reason": "no route"}),
        event(
            "runner_on_failed",
            "c",
            "T",
            {"results": [{"failed": False}, {"failed": True, "msg": "item 2"}]},
        ),
    )
    assert [c.hosts[h].message for h in "abc"] == ["disk full", "no route", "item 2"]


RICH = {
    "changed_keys": ["A"],
    "before": {"A": "1"},
    "after": {"A": "2"},
    "lock": True,
    "held": HOLDER,
    "lock_taken_over": {"run_id": "run-old", "operator": "ana", "since": "then"},
    "current": "abc",
    "images": ["img"],
    "containers": ["c1"],
    **{key: f"{key}-value" for key in DATA_KEYS},
}
OWNED = {  # what each module's result contributes to its host, and no other module's
    "envfile": lambda h: [(f.key, f.before, f.after) for f in h.flags] == [("A", "1", "2")],
    "preflight": lambda h: h.lock == "held" and len(h.notes) == 1,
    "unlock": lambda h: h.lock_holder == HOLDER,
    "code": lambda h: h.code == {"current": "abc"},
    "containers": lambda h: h.code == {"images": ["img"], "containers": ["c1"]},
    "backup": lambda h: h.data == {key: f"{key}-value" for key in DATA_KEYS},
    "dbrestore": lambda h: h.data == {key: f"{key}-value" for key in DATA_KEYS},
}
NOTHING = {
    "flags": lambda h: h.flags == [],
    "lock": lambda h: h.lock == "" and h.notes == [],
    "holder": lambda h: h.lock_holder == {},
    "code": lambda h: h.code == {},
    "data": lambda h: h.data == {},
}
SHARES = {  # which of NOTHING each module fills
    "envfile": {"flags"},
    "preflight": {"lock"},
    "unlock": {"holder"},
    "code": {"code"},
    "containers": {"code"},
    "backup": {"data"},
    "dbrestore": {"data"},
}


@pytest.mark.parametrize(
    "module", [*OWNED, "aaa", "backupx", "d", "envfilez", "p", "preflightz", "u", "unlockz", "zzz"]
)
def test_each_modules_result_is_read_by_its_own_module_only(module: str) -> None:
    c = collect(event("runner_on_ok", "w", "T", RICH, task_action=MOD + module))
    host = c.hosts["w"]
    if module in OWNED:
        assert OWNED[module](host), host
    for part, empty in NOTHING.items():
        if part not in SHARES.get(module, set()):
            assert empty(host), (part, host)


def test_a_lock_is_released_by_unlock_only_once_held() -> None:
    removed = {"removed": HOLDER}
    held = event("runner_on_ok", "w", "P", {"lock": True}, task_action=MOD + "preflight")
    released = collect(held, event("runner_on_ok", "w", "U", removed, task_action=MOD + "unlock"))
    assert released.hosts["w"].lock == "released"
    never = collect(event("runner_on_ok", "w", "U", removed, task_action=MOD + "unlock"))
    assert never.hosts["w"].lock == ""
    for module in ("envfile", "unlockz", "aaa", "zzz"):
        other = collect(held, event("runner_on_ok", "w", "U", removed, task_action=MOD + module))
        assert other.hosts["w"].lock == "held", module
    empty = collect(
        held, event("runner_on_ok", "w", "U", {"removed": {}}, task_action=MOD + "unlock")
    )
    assert empty.hosts["w"].lock == "held"
    listed = collect(
        held, event("runner_on_ok", "w", "U", {"removed": ["x"]}, task_action=MOD + "unlock")
    )
    assert listed.hosts["w"].lock == "held"


def test_only_well_formed_holders_and_backup_paths_are_kept() -> None:
    c = collect(
        event(
            "runner_on_failed", "w", "P", {"lock_holder": "someone"}, task_action=MOD + "preflight"
        ),
        event("runner_on_ok", "w", "B", {"backup_file": ["/x"]}),
        event("runner_on_ok", "w", "B", {"backup_file": ""}),
        event("runner_on_ok", "w", "B", {"backup_file": "/srv/a.backup.1"}),
        event("runner_on_ok", "w", "B", {"changed": True, "backup_files": ["/b", 3, None]}),
    )
    assert c.hosts["w"].lock_holder == {}
    assert c.hosts["w"].backups == ["/srv/a.backup.1", "/b"]


def test_a_failed_or_unreachable_host_stays_so_after_later_changes() -> None:
    for first in ("runner_on_failed", "runner_on_unreachable"):
        c = collect(
            event(first, "w", "A", {"msg": "boom"}),
            event("runner_on_ok", "w", "Rescue", {"changed": True}),
        )
        assert c.hosts["w"].status == first.removeprefix("runner_on_")
        assert c.hosts["w"].failed_step == "A" and c.hosts["w"].message == "boom"
    ok = collect(
        event("runner_on_ok", "w", "A"), event("runner_on_ok", "w", "B", {"changed": True})
    )
    assert ok.hosts["w"].status == "changed"


def test_unreachable_is_never_ignored_and_always_shown() -> None:
    seen: list[StepEvent] = []
    c = collect(event("runner_on_unreachable", "w", "A", {}, ignore_errors=True), sink=seen)
    assert c.hosts["w"].status == "unreachable"
    assert [(s.step, s.status) for s in seen] == [("A", "unreachable")]


def test_bookkeeping_tasks_are_hidden_unless_they_fail() -> None:
    seen: list[StepEvent] = []
    for action in ("ansible.builtin.include_role", "ansible.builtin.validate_argument_spec"):
        collect(
            event("runner_on_ok", "w", "ok", {}, task_action=action),
            event("runner_on_ok", "w", "changed", {"changed": True}, task_action=action),
            event("runner_on_skipped", "w", "skipped", {}, task_action=action),
            event("runner_on_failed", "w", "failed", {"msg": "bad"}, task_action=action),
            sink=seen,
        )
    assert [s.step for s in seen] == ["failed", "failed"]


def test_a_failure_message_is_the_first_failed_items_and_at_most_1000_characters() -> None:
    c = collect(
        event(
            "runner_on_failed",
            "a",
            "T",
            {"results": [{"failed": True, "stderr": "first"}, {"failed": True, "msg": "second"}]},
        ),
        event("runner_on_failed", "b", "T", {"msg": "x " * 800}),
        event("runner_on_failed", "c", "T", {"results": "not a list"}),
    )
    assert c.hosts["a"].message == "first"
    assert c.hosts["b"].message == ("x " * 800)[:1000]
    assert c.hosts["c"].message == ""


def test_malformed_diffs_are_skipped_and_the_rest_shown() -> None:
    diffs = [
        "not a dict",
        {"before": "only before"},
        {"after": "only after"},
        {"before": "same", "after": "same"},
        {
            "before": "one\ntwo\n",
            "after": "one\nTWO\n",
            "before_header": "/e",
            "after_header": "/e",
        },
        {"before": "x", "after": "y"},
    ]
    c = collect(event("runner_on_ok", "w", "D", {"changed": True, "diff": diffs}))
    text = c.hosts["w"].steps[0].diff
    assert text.startswith("--- before: /e\n+++ after: /e\n")
    assert " one\n-two\n+TWO\n" in text and "-x\n+y\n" in text
    assert "only" not in text and "same" not in text
    assert collect(event("runner_on_ok", "w", "D", {"diff": "text"})).hosts["w"].steps[0].diff == ""


def test_artifacts_keep_the_environments_names_only(tmp_path: Path) -> None:
    command = tmp_path / "command"
    command.write_text(
        json.dumps({"command": ["ansible-playbook"], "env": {"B": "s3cret", "A": "1"}})
    )
    scrub_artifacts(tmp_path)
    assert json.loads(command.read_text()) == {"command": ["ansible-playbook"], "env": ["A", "B"]}
    command.write_text("{not json")
    scrub_artifacts(tmp_path)  # not ours to judge: left as it is, no traceback
    assert command.read_text() == "{not json"
    command.unlink()
    command.mkdir()
    scrub_artifacts(tmp_path)
    scrub_artifacts(tmp_path / "missing")


def test_only_an_ok_result_becomes_changed() -> None:
    c = collect(
        event("runner_on_skipped", "s", "A", {"changed": True}),
        event("runner_on_unreachable", "u", "A", {"changed": True, "msg": "gone"}),
    )
    assert c.hosts["s"].steps[0].status == "skipped" and c.hosts["s"].status == "ok"
    assert c.hosts["u"].steps[0].status == "unreachable"


def test_a_module_named_after_unlock_clears_nothing() -> None:
    removed = {"run_id": "run-old", "operator": "ana"}
    for module in ("unlockz", "zzz", "a"):
        c = collect(
            event(
                "runner_on_ok",
                "w",
                "U",
                {"removed": removed, "changed": True},
                task_action=MOD + module,
            )
        )
        assert c.hosts["w"].notes == [], module


def test_the_events_of_a_real_run_replayed_give_the_same_results(tmp_path: Path) -> None:
    """ansible-runner's own events (a real flag run on the local connection, the demo's
    sandbox) read back from the artifacts build the same host results as the live run."""
    from rollback_ops import api, demo
    from rollback_ops.authorization import Authorization
    from rollback_ops.operations import Request

    state = tmp_path / "state"
    demo.create_sandbox(state)
    live = api.apply(
        "flag",
        "local",
        Request(flags={"ENABLE_TIME_WEIGHTING": "false"}),
        state_dir=state,
        auth=Authorization(operator="ana"),
    )
    assert live.ok and live.changed > 0, live.receipt()
    files = (Path(live.run_dir) / "artifacts" / "ansible" / "job_events").glob("*.json")
    events = sorted((json.loads(f.read_text()) for f in files), key=lambda e: e["counter"])
    seen: list[StepEvent] = []
    replayed = collect(*events, sink=seen)
    for name, host in live.hosts.items():
        again = replayed.hosts[name]
        assert (again.status, again.lock, again.backups) == (host.status, host.lock, host.backups)
        assert [(s.step, s.status) for s in again.steps] == [(s.step, s.status) for s in host.steps]
        assert again.flags == host.flags
    assert host.lock == "released" and any(s.status == "changed" for s in seen)
    assert [f.key for f in host.flags] == ["ENABLE_TIME_WEIGHTING"]
