"""Production safety on real hosts: no approval by a name, break-glass, one run at a time, the
history (approvals by a second login: test_approvals.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rollback_ops import history
from tests.integration.conftest import LabHosts


def test_production_without_approval_changes_nothing_and_says_why(lab: LabHosts, tmp_path: Path):
    inv = lab.inventory_with(tmp_path, rollback_environment="production")
    before = lab.fingerprint()
    run = lab.cli("apply", "--level", "emergency", "--inventory", inv, "--yes")
    assert run.code == 3
    assert "production" in run.stderr and "rollback-ops approve RUN_ID" in run.stderr
    named = lab.cli(
        "apply", "--level", "emergency", "--inventory", inv, "--yes", "--approved-by", "ben"
    )
    assert named.code == 2 and "unrecognized arguments: --approved-by" in named.stderr
    lab.assert_unchanged(before)


def test_break_glass_acts_alone_on_flag_levels_only_and_is_marked(lab: LabHosts, tmp_path: Path):
    inv = lab.inventory_with(tmp_path, rollback_environment="production")
    before = lab.fingerprint()
    refused = lab.cli("apply", "--level", "flag", "--inventory", inv, "--yes", "--break-glass")
    assert refused.code == 3 and "--reason" in refused.stderr
    lab.assert_unchanged(before)
    run = lab.cli(
        "apply",
        "--level",
        "flag",
        "--inventory",
        inv,
        "--yes",
        "--json",
        "--break-glass",
        "--reason",
        "P0: recommendations 500",
        "--limit",
        "web1",
    )
    assert run.code == 0, run.stderr
    assert run.receipt["authorization"]["break_glass"] is True
    out = lab.cli("history", "--json")
    last = json.loads(out.stdout)["runs"][-1]
    assert last["break_glass"] is True and last["reason"] == "P0: recommendations 500"
    assert "BREAK-GLASS" in lab.cli("history").stdout


def test_two_applies_on_one_inventory_one_is_refused_naming_the_holder(lab: LabHosts):
    earlier = {r.run_id for r in history.read(lab.state_dir)}
    first = lab.start(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--yes",
        "--flag",
        "ENABLE_TIME_WEIGHTING=false",
        operator="carol",
    )
    try:
        deadline = time.monotonic() + 30
        while not any(r.run_id not in earlier for r in history.read(lab.state_dir)):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first apply wrote no history entry in 30 s"
            time.sleep(0.05)
        second = lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes")
        assert second.code == 3
        # the same hosts: refused by this controller's per-host lock, naming the holder
        assert "is in use by run" in second.stderr and "of carol" in second.stderr
        assert "running now on this controller" in second.stderr
    finally:
        _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # once the first run is over, the inventory is free again
    assert lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes").code == 0


def test_a_run_killed_mid_way_stays_in_history_and_frees_the_lock(lab: LabHosts):
    earlier = {r.run_id for r in history.read(lab.state_dir)}
    victim = lab.start(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--yes",
        "--flag",
        "ENABLE_CONTENT_TYPE_ANALYSIS=false",
        operator="dave",
    )
    deadline = time.monotonic() + 30
    while not (new := [r for r in history.read(lab.state_dir) if r.run_id not in earlier]):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the apply wrote no history entry in 30 s"
        time.sleep(0.05)
    victim.kill()  # SIGKILL: no cleanup of any kind runs
    victim.wait()
    (killed,) = new
    assert killed.operator == "dave"
    assert killed.result == "unfinished"
    # its ansible-playbook must not outlive it (the pty hangs up): nothing may go on
    # changing hosts once the lock is free
    assert_no_orphans(killed.run_id)
    run = lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes", "--json")
    assert run.code == 0, run.stderr  # the dead run's lock did not outlive it...
    assert any(f"run {killed.run_id} of dave" in w and "died" in w for w in run.receipt["warnings"])
    rows = {r.run_id: r for r in history.read(lab.state_dir)}
    assert rows[killed.run_id].result == "unfinished"  # ...and its entry was never rewritten
    assert rows[run.receipt["run_id"]].result == "ok"


def assert_no_orphans(run_id: str) -> None:
    """No process mentioning the run is left within 10 s (its ansible-playbook and workers)."""
    deadline = time.monotonic() + 10
    while processes_mentioning(run_id):
        assert time.monotonic() < deadline, processes_mentioning(run_id)
        time.sleep(0.2)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args[:200])
    return found
