"""The app's hooks (rollback_app.hooks) on the code level, end to end on the lab hosts: each
hook appends its step, user, directory and environment to a file on the host, so the order
and the user are read from the host itself; check mode lists them and runs none; a failing
after_revert hook stops that host in maintenance and `apply --resume` runs it again (and not
the hooks that passed); a secret value reaches the hook and no receipt, artifact or log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import LabHosts
from tests.integration.test_code_level import MAINTENANCE, CodeLab

LOG = "/tmp/rollback-ops-test-hooks.log"
GATE = "/tmp/rollback-ops-test-hook-gate"
SECRET = "hooksecret-7f3c-NEVER-LOGGED-91ab"
APP_DIR = "/opt/analyticbot/app"


def record(step: str) -> list[str]:
    """An argv that appends one line saying where and how it ran (sh is the hook's program)."""
    return ["sh", "-c", f'echo "{step} $(id -un) $(pwd) ${{HOOK_MODE:-}}" >> {LOG}']


def hooks(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "note-stop", "step": "before_stop", "command": record("before_stop")},
        {
            "name": "collectstatic",
            "step": "after_revert",
            "user": "analyticbot",
            "chdir": APP_DIR,
            "environment": {"HOOK_MODE": "lab"},
            "environment_from": {"HOOK_TOKEN": "ROLLBACK_OPS_TEST_HOOK_TOKEN"},
            # the token reaches the hook (its length is written) and its own output
            "command": [
                "sh",
                "-c",
                'echo "after_revert $(id -un) $(pwd) $HOOK_MODE '
                f'$(printf %s "$HOOK_TOKEN" | wc -c)" >> {LOG}; '
                'echo "token is $HOOK_TOKEN"',
            ],
        },
        *extra,
        {"name": "full-only", "step": "after_revert", "levels": ["full"], "command": ["false"]},
        {"name": "note-start", "step": "after_start", "command": record("after_start")},
        {"name": "smoke", "step": "verify", "command": record("verify")},
    ]


@pytest.fixture
def hooked(lab: LabHosts) -> Iterator[CodeLab]:
    c = CodeLab(lab)
    c.each(f"rm -f {LOG} {GATE}; touch {LOG}; chmod 666 {LOG}")
    c.each("lab-release reset && lab-release deploy-bad")
    yield c
    c.each(f"rm -f {LOG} {GATE}; lab-release reset")


def lines(c: CodeLab, host: str) -> list[str]:
    return [line.rstrip() for line in c.lab.sh(host, f"cat {LOG}").splitlines()]


def apply(c: CodeLab, inventory: str, *extra: str) -> Any:
    return c.lab.cli(
        "apply",
        "--level",
        "code",
        "--inventory",
        inventory,
        "--yes",
        "--json",
        *extra,
        ROLLBACK_OPS_TEST_HOOK_TOKEN=SECRET,
    )


EXPECTED = [
    "before_stop root /root",
    f"after_revert analyticbot {APP_DIR} lab {len(SECRET)}",
    "after_start root /root",
    "verify root /root",
]


def test_hooks_run_in_order_as_their_user_listed_in_check_mode_secret_never_kept(
    hooked: CodeLab, tmp_path: Path
):
    inventory = hooked.variant(tmp_path, hooks=hooks())
    plan = hooked.lab.cli("plan", "--level", "code", "--inventory", inventory)
    assert plan.code == 0, plan.stderr
    assert "hook after_revert: collectstatic: sh -c" in plan.stdout
    assert "as analyticbot; in /opt/analyticbot/app; secret env HOOK_TOKEN" in plan.stdout

    check = apply(hooked, inventory, "--check")
    assert check.code == 0, check.stderr
    for host in hooked.names:
        assert lines(hooked, host) == []  # listed, not run
        listed = check.receipt["hosts"][host]["data"]["hooks"]
        assert [(h["step"], h["name"]) for h in listed] == [
            ("before_stop", "note-stop"),
            ("after_revert", "collectstatic"),
            ("after_start", "note-start"),
            ("verify", "smoke"),
        ]
        assert all(h["would_run"] and not h["ran"] for h in listed)

    run = apply(hooked, inventory)
    assert run.code == 0, run.stderr
    for host in hooked.names:
        assert lines(hooked, host) == EXPECTED, host
        ran = run.receipt["hosts"][host]["data"]["hooks"]
        assert [(h["name"], h["rc"]) for h in ran] == [
            ("note-stop", 0),
            ("collectstatic", 0),
            ("note-start", 0),
            ("smoke", 0),
        ]
        assert all(h["duration"] >= 0 for h in ran)
    report = hooked.lab.cli("report", run.receipt["run_id"])
    assert report.code == 0, report.stderr
    assert "| web1 | after_revert | collectstatic | 0 |" in report.stdout

    again = apply(hooked, inventory)
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
    assert lines(hooked, "web1") == EXPECTED  # nothing to roll back: no hook ran again

    # the secret reached the hook (its length is on the host) and nothing kept on the controller
    for out in (plan, check, run, again, report):
        assert SECRET not in out.stdout + out.stderr
    for path in hooked.lab.state_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_failing_hook_stops_its_host_in_maintenance_and_resume_runs_it_again(
    hooked: CodeLab, tmp_path: Path
):
    gate = {"name": "gate", "step": "after_revert", "command": ["test", "-e", GATE]}
    inventory = hooked.variant(tmp_path, hooks=hooks(gate))
    for host in ("web1", "web3"):
        hooked.lab.sh(host, f"touch {GATE}")
    run = apply(hooked, inventory)
    assert run.code == 1
    web2 = run.receipt["hosts"]["web2"]
    assert web2["status"] == "failed"
    assert "hook gate (after_revert) exited 1 (expected 0)" in web2["message"]
    assert hooked.lab.sh("web2", f"cat {MAINTENANCE}").startswith("rollback-ops run")
    assert lines(hooked, "web2") == EXPECTED[:2]  # stopped at the failing hook
    assert [(h["name"], h["rc"]) for h in web2["data"]["hooks"]] == [
        ("note-stop", 0),
        ("collectstatic", 0),
        ("gate", 1),
    ]
    for host in ("web1", "web3"):
        hooked.assert_good(host)
        assert lines(hooked, host) == EXPECTED
    assert f"--resume {run.receipt['run_id']}" in run.stderr

    hooked.lab.sh("web2", f"touch {GATE}")  # the cause fixed on the host
    resumed = hooked.lab.cli(
        "apply",
        "--resume",
        run.receipt["run_id"],
        "--yes",
        "--json",
        ROLLBACK_OPS_TEST_HOOK_TOKEN=SECRET,
    )
    assert resumed.code == 0, resumed.stderr
    assert list(resumed.receipt["hosts"]) == ["web2"]
    hooked.assert_good("web2")
    # the hooks that passed were not run again; the failed one was, then the rest
    assert lines(hooked, "web2") == EXPECTED
    again = resumed.receipt["hosts"]["web2"]["data"]["hooks"]
    assert [(h["name"], h.get("passed_in", "")) for h in again] == [
        ("note-stop", run.receipt["run_id"]),
        ("collectstatic", run.receipt["run_id"]),
        ("gate", ""),
        ("note-start", ""),
        ("smoke", ""),
    ]
