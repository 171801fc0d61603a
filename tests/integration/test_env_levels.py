"""The flag and emergency levels end to end: real playbooks through ansible-runner, over SSH,
against three lab hosts; every assertion reads the hosts' real state afterwards.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.integration.conftest import ENV_FILE, LabHosts

ORIGINAL = (
    Path(__file__).resolve().parents[2] / "rollback_ops/lab/files/env.production"
).read_text()


def flag_on_lab(lab: LabHosts, *extra: str) -> list[str]:
    return ["apply", "--level", "flag", "--inventory", lab.inventory, "--yes", "--json", *extra]


def test_flag_changes_that_flag_and_nothing_else_restarts_and_verifies(lab: LabHosts):
    since = {h: lab.unit_since(h) for h in lab.names}
    run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTING=false"))
    assert run.code == 0, run.stderr
    expected = ORIGINAL.replace("ENABLE_TIME_WEIGHTING=true", "ENABLE_TIME_WEIGHTING=false")
    receipt = run.receipt
    assert receipt["result"] == "ok" and receipt["exit_status"] == 0
    for host in lab.names:
        assert lab.read(host) == expected  # that line and not one other byte
        assert lab.unit_since(host) > since[host]  # the unit really restarted
        config = lab.health(host)["config"]
        assert config["ENABLE_TIME_WEIGHTING"] is False  # as the running process sees it
        assert config["ENABLE_ADVANCED_RECOMMENDATIONS"] is True
        assert "Time-weighting: False" in lab.read(host, "/var/log/analyticbot/production.log")
        result = receipt["hosts"][host]
        assert result["status"] == "changed"
        assert result["flags"] == [
            {"key": "ENABLE_TIME_WEIGHTING", "before": "true", "after": "false", "changed": True}
        ]
        (backup,) = result["backups"]
        assert re.fullmatch(re.escape(ENV_FILE) + r"\.backup\.\d{8}T\d{6}Z", backup)
        assert lab.read(host, backup) == ORIGINAL  # the copy is the file as it was
        assert (
            lab.sh(host, f"stat -c '%a %U' {backup} {ENV_FILE}").split("\n")[:2] == ["640 root"] * 2
        )
    assert {b["host"] for b in receipt["backups"]} == set(lab.names)
    assert "RECAP" in run.stderr and "ENABLE_TIME_WEIGHTING true -> false" in run.stderr
    assert Path(receipt["run_dir"], "receipt.json").exists()


def test_check_mode_shows_the_diff_and_changes_no_byte(lab: LabHosts):
    before = lab.fingerprint()
    run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTING=false", "--check", "--diff"))
    assert run.code == 0, run.stderr
    line = ORIGINAL.splitlines().index("ENABLE_TIME_WEIGHTING=true") + 1
    assert f"-{line}: ENABLE_TIME_WEIGHTING=true" in run.stderr
    assert f"+{line}: ENABLE_TIME_WEIGHTING=false" in run.stderr
    assert run.receipt["check"] is True
    assert all(h["backups"] == [] for h in run.receipt["hosts"].values())
    lab.assert_unchanged(before)
    for host in lab.names:
        assert lab.health(host)["config"]["ENABLE_TIME_WEIGHTING"] is True


def test_second_identical_apply_changes_nothing(lab: LabHosts):
    first = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_CONTENT_TYPE_ANALYSIS=false"))
    assert first.code == 0, first.stderr
    after_first = lab.fingerprint()
    second = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_CONTENT_TYPE_ANALYSIS=false"))
    assert second.code == 0, second.stderr
    assert second.receipt["changed"] == 0
    assert all(h["status"] == "ok" and h["backups"] == [] for h in second.receipt["hosts"].values())
    lab.assert_unchanged(after_first)  # no restart either


def test_flag_level_without_flags_turns_the_master_switch_off(lab: LabHosts):
    run = lab.cli(*flag_on_lab(lab))
    assert run.code == 0, run.stderr
    for host in lab.names:
        assert "ENABLE_ADVANCED_RECOMMENDATIONS=false\n" in lab.read(host)
        assert lab.health(host)["config"]["ENABLE_ADVANCED_RECOMMENDATIONS"] is False
        assert "Using SIMPLE query (legacy mode)" in lab.read(
            host, "/var/log/analyticbot/production.log"
        )


def test_emergency_puts_every_host_in_research_mode(lab: LabHosts):
    run = lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes", "--json")
    assert run.code == 0, run.stderr
    for host in lab.names:
        assert lab.health(host)["config"]["APP_MODE"] == "research"
        assert lab.read(host) == ORIGINAL.replace("APP_MODE=production", "APP_MODE=research")
    again = lab.cli(
        "apply", "--level", "emergency", "--inventory", lab.inventory, "--yes", "--json"
    )
    assert again.code == 0 and again.receipt["changed"] == 0


def test_unknown_flag_is_refused_before_any_host_is_touched(lab: LabHosts):
    before = lab.fingerprint()
    run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTNG=false"))
    assert run.code == 2
    assert "unknown flag ENABLE_TIME_WEIGHTNG" in run.stderr
    assert "Traceback" not in run.stderr
    lab.assert_unchanged(before)


def test_missing_env_file_fails_preflight_on_every_host_before_any_change(lab: LabHosts):
    lab.sh("web2", f"mv {ENV_FILE} {ENV_FILE}.moved")
    try:
        before = lab.fingerprint()
        run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTING=false"))
        assert run.code == 1
        web2 = run.receipt["hosts"]["web2"]
        assert web2["status"] == "failed"
        assert web2["failed_step"] == "preflight: Check the host can take the rollback"
        assert f"env file not found: {ENV_FILE}" in web2["message"]
        lab.assert_unchanged({"web2": before["web2"]})  # web2: no byte, no restart
        # the others went on (a host's own problem does not hold the rest hostage): each
        # one's file and unit changed, and nothing else
        after = lab.fingerprint(["web1", "web3"])
        for host in ("web1", "web3"):
            assert run.receipt["hosts"][host]["status"] == "changed"
            changed = {s for s, lines in after[host].items() if lines != before[host][s]}
            assert changed == {"files", "units"}, (host, changed)
            assert "ENABLE_TIME_WEIGHTING=false\n" in lab.read(host)
    finally:
        lab.sh("web2", f"mv {ENV_FILE}.moved {ENV_FILE}")


def test_a_failed_check_fails_the_run_naming_host_and_check(lab: LabHosts):
    run = lab.cli(
        *flag_on_lab(
            lab, "--flag", "FAULT_INJECTION=log_error", "--allow-new-flag", "--limit", "web1"
        )
    )
    assert run.code == 1
    web1 = run.receipt["hosts"]["web1"]
    assert web1["status"] == "failed"
    assert web1["failed_step"] == "healthcheck: Require no new error lines in the log"
    assert "Injected fault" in web1["message"]
    assert "web1" in run.stderr and "FAILED" in run.stderr
    assert "FAULT_INJECTION=log_error\n" in lab.read("web1")  # appended only because allowed


def test_unreachable_host_is_reported_while_the_others_complete(lab: LabHosts):
    lab.lab.container("web3").kill()
    try:
        run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTING=false"))
        assert run.code == 1
        hosts = run.receipt["hosts"]
        assert hosts["web3"]["status"] == "unreachable"
        assert hosts["web3"]["message"]
        assert hosts["web1"]["status"] == hosts["web2"]["status"] == "changed"
        for host in ("web1", "web2"):
            assert lab.health(host)["config"]["ENABLE_TIME_WEIGHTING"] is False
        assert "UNREACHABLE" in run.stderr
    finally:
        lab.lab.up(3)


def test_verify_runs_only_the_checks(lab: LabHosts):
    before = lab.fingerprint()
    run = lab.cli("verify", "--inventory", lab.inventory, "--json")
    assert run.code == 0, run.stderr
    assert run.receipt["changed"] == 0
    lab.assert_unchanged(before)


def test_verify_fails_naming_a_broken_host_and_changes_nothing(lab: LabHosts):
    lab.sh("web2", "systemctl stop analyticbot-api")  # the app is down there
    before = lab.fingerprint()
    run = lab.cli("verify", "--inventory", lab.inventory, "--json")
    assert run.code == 1, run.stderr
    hosts = run.receipt["hosts"]
    assert hosts["web2"]["status"] == "failed"
    assert "not every unit is active" in hosts["web2"]["message"]
    assert '"analyticbot-api": "inactive"' in hosts["web2"]["message"]
    assert hosts["web1"]["status"] == hosts["web3"]["status"] == "ok"
    assert "web2" in run.stderr and "FAILED" in run.stderr
    lab.assert_unchanged(before)  # verify did not start it, nor touch any other host


def test_no_secret_from_the_env_file_reaches_output_artifacts_or_receipt(lab: LabHosts):
    run = lab.cli(*flag_on_lab(lab, "--flag", "ENABLE_TIME_WEIGHTING=false", "--diff"))
    assert run.code == 0, run.stderr
    assert "change-me" in ORIGINAL  # the lab's DATABASE_URL password
    assert "change-me" not in run.stdout + run.stderr
    for path in Path(run.receipt["run_dir"]).rglob("*"):
        if path.is_file():
            assert b"change-me" not in path.read_bytes(), path


def test_plan_contacts_no_host(lab: LabHosts):
    # (imported here: this function is the only part of the file this change touches)
    import subprocess
    import sys

    from tests import tripwires

    before = {h: lab.fingerprint(h) for h in lab.names}
    since = {h: lab.sh(h, "date +%s.%N").strip() for h in lab.names}
    # the CLI with tripwires on ansible-runner, the runner adapter, every new process (ssh,
    # ansible-playbook) and every connection: one that trips ends it with exit 99
    plan = ["plan", "--level", "emergency", "--inventory", lab.inventory, "--json"]
    run = subprocess.run(
        [sys.executable, tripwires.__file__, "--state-dir", str(lab.state_dir), *plan],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env=lab.env(),
    )
    assert run.returncode == 0, run.stderr
    # and on the hosts' side: sshd logs every connection, even one that never logs in
    # (lab.sh goes through docker exec, not SSH)
    for host in lab.names:
        assert lab.sh(host, f"journalctl _COMM=sshd --since @{since[host]} -q -o cat") == ""
    plan = json.loads(run.stdout)
    assert plan["kind"] == "plan" and plan["level"] == "emergency"
    plans = plan["hosts"]
    assert [p["host"] for p in plans] == lab.names
    assert any("APP_MODE=research" in s for s in plans[0]["changes"])
    # the steps are the playbook's own tasks, with the lab's values resolved
    steps = [s["step"] for s in plans[0]["steps"]]
    assert "envfile: Set values in the env file" in steps
    assert not any("{{" in s for s in steps + plans[0]["changes"])
    time.sleep(0.1)
    assert {h: lab.fingerprint(h) for h in lab.names} == before
