"""Backups that page someone, on real lab hosts: a failing scheduled backup sends the
inventory's notification from the host to a real webhook on loopback (the lab hosts share
the controller's network), with no secret in the units, the journal or the message;
`backup verify --max-age` fails on a stale set and passes on a fresh one; `backup prune
--check` removes nothing, prune removes the expected sets, and on production it needs an
approval."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import LabHosts
from tests.integration.test_full_level import ROOT, FullLab
from tests.servers import webhook_sink

SERVICE = "rollback-ops-backup-analyticbot.service"
UNITS = "/etc/systemd/system/rollback-ops-backup*"
TOKEN = "f14-hook-token-5d0c7e"  # the webhook URL's secret part


@pytest.fixture
def full(lab: LabHosts) -> Iterator[FullLab]:
    f = FullLab(lab)
    f.each("lab-release reset")
    yield f
    f.each("lab-release reset")


def sets(full: FullLab, host: str = "web1") -> list[str]:
    return sorted(full.lab.sh(host, f"ls {ROOT} 2>/dev/null || true").split())


def fingerprint(full: FullLab, host: str = "web1") -> str:
    """Every file and directory under the backup root: path, mode, size, mtime, sha256."""
    return full.lab.sh(
        host,
        f"cd {ROOT} && find . -printf '%p %m %s %T@\\n' | sort && "
        "find . -type f -exec sha256sum {} + | sort",
    )


def test_a_failing_scheduled_backup_notifies_the_webhook_without_secrets(
    full: FullLab, tmp_path: Path
):
    password = full.lab.lab.db_password()
    with webhook_sink() as (url, bodies):
        secret_url = f"{url}/{TOKEN}"
        inv = full.lab.inventory_with(
            tmp_path,
            rollback_notify={"webhook": {"url_env": "TEST_HOOK_URL"}},
            backup_schedule_randomized_delay="90s",
        )
        run = full.lab.cli(
            "backup",
            "schedule",
            "--inventory",
            inv,
            "--limit",
            "web1",
            "--at",
            "*-*-* 03:00:00",
            TEST_HOOK_URL=secret_url,
        )
        assert run.code == 0, run.stderr
        try:
            unit = full.lab.read("web1", f"/etc/systemd/system/{SERVICE}")
            for line in ("Nice=19", "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch"):
                assert f"\n{line}\n" in unit
            assert "\nOnFailure=rollback-ops-backup-failed@%n.service\n" in unit
            timer = full.lab.read(
                "web1", "/etc/systemd/system/rollback-ops-backup-analyticbot.timer"
            )
            assert "\nRandomizedDelaySec=90s\n" in timer
            notify = "/etc/rollback-ops/backup-analyticbot.notify.json"
            assert full.lab.sh("web1", f"stat -c '%a %U' {notify}") == "600 root\n"

            # the scheduled job fails: the database refuses its (now wrong) password
            full.lab.sh(
                "web1",
                "sed -i 's/=.*/=wrong-f14-password/' /etc/rollback-ops/backup-analyticbot.env",
            )
            started = full.lab.sh("web1", f"systemctl start {SERVICE} 2>&1; echo rc=$?")
            assert "rc=0" not in started, started
            deadline = time.monotonic() + 60
            while not bodies:
                assert time.monotonic() < deadline, "no notification 60 s after the failure"
                time.sleep(0.5)
            time.sleep(1)  # a second message would show here
            journal = full.lab.sh(
                "web1",
                f"journalctl --no-pager -o cat -u {SERVICE} "
                "-u 'rollback-ops-backup-failed@*' || true",
            )
            units = full.lab.sh("web1", f"cat {UNITS}")
        finally:
            full.lab.cli("backup", "unschedule", "--inventory", inv, "--limit", "web1")
            full.lab.sh("web1", "systemctl reset-failed || true")

    (body,) = bodies
    assert body["host"] == "web1"
    assert body["app"] == "analyticbot"
    assert body["unit"] == SERVICE
    assert body["result"] == "exit-code"
    assert body["text"].startswith("SCHEDULED BACKUP FAILED: analyticbot on web1")
    assert 0 < len(body["journal"]) <= 20
    assert "notified" in journal  # the notifier's own line
    payload = json.dumps(body)
    for secret in (TOKEN, password):
        for where, text in (("payload", payload), ("journal", journal), ("units", units)):
            assert secret not in text, (secret, where)
    assert TOKEN not in run.stdout + run.stderr
    # unscheduled: the job's files are gone, the notification config with them
    left = full.lab.sh(
        "web1", "ls /etc/rollback-ops/ /etc/systemd/system/ | grep backup-analyticbot || true"
    )
    assert left.strip() == ""


def test_verify_max_age_fails_on_a_stale_set_and_passes_on_a_fresh_one(full: FullLab):
    inv = full.lab.inventory
    none = full.lab.cli("backup", "verify", "-i", inv, "--limit", "web1", "--max-age", "1h")
    assert none.code == 1, none.stderr  # no set at all
    assert "no backup set of analyticbot" in none.stderr

    made = full.lab.cli("backup", "create", "-i", inv, "--limit", "web1")
    assert made.code == 0, made.stderr
    fresh = full.lab.cli(
        "backup", "verify", "-i", inv, "--limit", "web1", "--max-age", "2d", "--json"
    )
    assert fresh.code == 0, fresh.stderr
    time.sleep(2)
    stale = full.lab.cli(
        "backup", "verify", "-i", inv, "--limit", "web1", "--max-age", "1s", "--json"
    )
    assert stale.code == 1, stale.stderr
    host = stale.receipt["hosts"]["web1"]
    assert host["status"] == "failed"
    (set_id,) = sets(full)
    assert "no verified backup set of analyticbot younger than 1s on this host" in host["message"]
    assert f"the newest verified set, {set_id}, is " in host["message"]
    assert "web1" in stale.stderr and "younger than 1s" in stale.stderr


def test_prune_check_removes_nothing_then_prune_removes_and_production_needs_approval(
    full: FullLab, tmp_path: Path
):
    inv = full.lab.inventory
    for _ in range(3):
        made = full.lab.cli("backup", "create", "-i", inv, "--limit", "web1")
        assert made.code == 0, made.stderr
        time.sleep(1.1)  # one set per second: distinct set ids
    three = sets(full)
    assert len(three) == 3
    before = fingerprint(full)

    check = full.lab.cli(
        "backup", "prune", "-i", inv, "--limit", "web1", "--keep", "1", "--check", "--json"
    )
    assert check.code == 0, check.stderr
    would = [r["set_id"] for r in check.receipt["hosts"]["web1"]["data"]["removed"]]
    assert would == [three[1], three[0]]  # newest first: all but the newest
    assert fingerprint(full) == before  # a real check-mode run: not a byte changed

    production = full.lab.inventory_with(tmp_path, rollback_environment="production")
    refused = full.lab.cli(
        "backup", "prune", "-i", production, "--limit", "web1", "--keep", "1", "--yes"
    )
    assert refused.code == 3, refused.stderr
    assert "production" in refused.stderr
    assert fingerprint(full) == before

    pruned = full.lab.cli(
        "backup",
        "prune",
        "-i",
        production,
        "--limit",
        "web1",
        "--keep",
        "1",
        "--break-glass",
        "--reason",
        "disk 95% full",
        "--yes",
        "--json",
    )
    assert pruned.code == 0, pruned.stderr
    assert sets(full) == [three[2]]
    assert pruned.receipt["authorization"]["break_glass"] is True
    assert pruned.receipt["authorization"]["reason"] == "disk 95% full"
