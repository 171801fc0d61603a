"""Turning ansible-runner events into typed results (pure logic; real runs are in integration)."""

from __future__ import annotations

from rollback_ops.events import EventCollector
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


def collect(*events: dict) -> EventCollector:
    c = EventCollector(None)
    for e in events:
        c(e)
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


def test_a_host_started_at_its_first_task():
    c = EventCollector(None)
    c(event("runner_on_start", "w", "A"))
    first = c.hosts["w"].started
    c(event("runner_on_ok", "w", "A"))
    c(event("runner_on_start", "w", "B"))
    c(event("runner_on_ok", "w", "B"))
    assert c.hosts["w"].started == first > 0
    assert c.hosts["w"].ended >= first


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
