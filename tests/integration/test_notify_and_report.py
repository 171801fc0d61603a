"""A real lab run notifies a real webhook and SMTP server on loopback, a dead webhook does
not fail the rollback, and `report` renders the run's Rollback Log."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import LabHosts
from tests.servers import free_port, smtp_sink, webhook_sink


def test_a_rollback_notifies_start_and_success_and_its_report_renders(
    lab: LabHosts, tmp_path: Path
):
    with webhook_sink() as (url, bodies), smtp_sink() as (port, mails):
        inv = lab.inventory_with(
            tmp_path,
            rollback_notify={
                "webhook": {"url_env": "TEST_HOOK_URL"},
                "email": {"host": "127.0.0.1", "port": port, "to": ["oncall@example.com"]},
            },
        )
        run = lab.cli(
            "apply",
            "--level",
            "flag",
            "--inventory",
            inv,
            "--yes",
            "--json",
            "--flag",
            "ENABLE_TIME_WEIGHTING=false",
            "--reason",
            "INC-9 p95 > 5s",
            TEST_HOOK_URL=url,
        )
    assert run.code == 0, run.stderr
    assert [b["text"].split(":")[0] for b in bodies] == [
        "ROLLBACK IN PROGRESS",
        "ROLLBACK COMPLETED",
    ]
    assert [m["Subject"].split(":")[0] for m in mails] == [
        "ROLLBACK IN PROGRESS",
        "ROLLBACK COMPLETED",
    ]
    assert "Reason: INC-9 p95 > 5s" in bodies[1]["text"]
    assert all(n["ok"] for n in run.receipt["notifications"])
    assert (
        url not in run.stdout + run.stderr
    )  # the webhook URL is a secret: only its variable's name

    report = lab.cli("report", run.receipt["run_id"])
    assert report.code == 0, report.stderr
    text = report.stdout
    assert text.startswith("# Rollback Log")
    assert "**Strategy**: Feature Flag (level `flag`)" in text
    assert "**Reason**: INC-9 p95 > 5s" in text
    # the timeline names each host once, in its header
    assert "| Time | Step | web1 | web2 | web3 |" in text
    assert re.search(
        r"\n\| \d\d:\d\d:\d\d UTC \| envfile: Set values in the env file \| "
        r"changed \| changed \| changed \|\n",
        text,
    ), text
    assert "1. set ENABLE_TIME_WEIGHTING from true to false: web1, web2, web3" in text
    for check in ("Require the units to be active", "Require the running process to report"):
        assert re.search(rf"\n\| healthcheck: {check}[^|]* \| ok \| ok \| ok \|\n", text), text
    assert "None: the flag level does not restore databases." in text
    assert "rollback completed: ok" in text


def test_a_dead_webhook_never_fails_the_rollback(lab: LabHosts, tmp_path: Path):
    inv = lab.inventory_with(
        tmp_path, rollback_notify={"webhook": {"url": f"http://127.0.0.1:{free_port()}/x"}}
    )
    run = lab.cli("apply", "--level", "emergency", "--inventory", inv, "--yes", "--json")
    assert run.code == 0, run.stderr
    assert [n["ok"] for n in run.receipt["notifications"]] == [False, False]
    assert "notification start by webhook: FAILED" in run.stderr
    assert all(lab.health(h)["config"]["APP_MODE"] == "research" for h in lab.names)
