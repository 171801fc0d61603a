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
