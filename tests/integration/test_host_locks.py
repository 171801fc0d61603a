"""Host locks: one rollback at a time per host, across controllers; released after every run;
a dead run's lock is taken over when old, or cleared with `rollback-ops unlock`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.conftest import LabHosts

LOCK = "/var/lib/rollback-ops/rollback.lock"


def plant_lock(lab: LabHosts, host: str, run_id: str, age_s: float = 0) -> None:
    """A lock as another controller's run would leave it."""
    record = {
        "run_id": run_id,
        "operator": "eve",
        "controller": "ctl-2",
        "since": "2026-01-01T00:00:00Z",
        "epoch": time.time() - age_s,
    }
    lab.sh(host, f"mkdir -p /var/lib/rollback-ops && echo '{json.dumps(record)}' > {LOCK}")


def lock_of(lab: LabHosts, host: str) -> str:
    return lab.sh(host, f"cat {LOCK} 2>/dev/null || true").strip()


def test_no_lock_remains_after_a_run_nor_after_a_failed_one(lab: LabHosts):
    ok = lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes")
    assert ok.code == 0, ok.stderr
    failed = lab.cli(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--yes",
        "--limit",
        "web1",
        "--flag",
        "FAULT_INJECTION=log_error",
        "--allow-new-flag",
    )
    assert failed.code == 1
    assert all(lock_of(lab, h) == "" for h in lab.names)


def test_a_host_held_by_another_run_is_refused_naming_the_holder_then_unlocked(lab: LabHosts):
    plant_lock(lab, "web2", "other-run-1")
    before = lab.fingerprint("web2")
    run = lab.cli(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--yes",
        "--json",
        "--flag",
        "ENABLE_TIME_WEIGHTING=false",
    )
    assert run.code == 1
    web2 = run.receipt["hosts"]["web2"]
    assert web2["status"] == "failed"
    assert "host locked by run other-run-1 of eve from ctl-2" in web2["message"]
    assert lab.fingerprint("web2") == before  # nothing changed there
    assert "other-run-1" in lock_of(lab, "web2")  # and someone else's lock is left alone
    # the other run's hosts are its own business; this run's locks are gone
    assert lock_of(lab, "web1") == "" and lock_of(lab, "web3") == ""

    # the refusal says what to do: the holder ran from another controller and may still run
    assert any("--run other-run-1 --force" in n for n in web2["notes"])

    wrong = lab.cli("unlock", "--inventory", lab.inventory, "--yes", "--run", "not-that-one")
    assert wrong.code == 3 and "nothing to clear" in wrong.stderr
    assert "other-run-1" in lock_of(lab, "web2")
    # another controller's young lock: it may be alive, so only --force clears it
    kept = lab.cli("unlock", "--inventory", lab.inventory, "--yes", "--run", "other-run-1")
    assert kept.code == 3 and "may still run (--force" in kept.stderr, kept.stderr
    assert "other-run-1" in lock_of(lab, "web2")
    cleared = lab.cli(
        "unlock", "--inventory", lab.inventory, "--yes", "--run", "other-run-1", "--force"
    )
    assert cleared.code == 0, cleared.stderr
    assert "web2: cleared the lock of run other-run-1 of eve" in cleared.stderr
    assert lock_of(lab, "web2") == ""
    again = lab.cli(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--yes",
        "--flag",
        "ENABLE_TIME_WEIGHTING=false",
    )
    assert again.code == 0, again.stderr


def test_unlock_never_clears_a_live_run_and_clears_a_dead_one_of_this_controller(
    lab: LabHosts, tmp_path
):
    """The lock records the controller process (pid and start time): a run still running
    here is refused by name, whatever inventory file unlock is given; a dead one is cleared."""
    import socket
    import subprocess

    from rollback_ops.lock import process_start

    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        record = {
            "run_id": "live-run-1",
            "operator": "fay",
            "controller": socket.gethostname(),
            "pid": sleeper.pid,
            "pid_start": process_start(sleeper.pid),
            "since": "2026-01-01T00:00:00Z",
            "epoch": time.time(),
        }
        lab.sh("web1", f"mkdir -p /var/lib/rollback-ops && echo '{json.dumps(record)}' > {LOCK}")
        # another inventory file naming the same host
        other = tmp_path / "other.yml"
        other.write_text(Path(lab.inventory).read_text())
        refused = lab.cli("unlock", "--inventory", str(other), "--yes", "--limit", "web1")
        assert refused.code == 3 and "which is running now" in refused.stderr, refused.stderr
        assert "live-run-1" in lock_of(lab, "web1")
        forced = lab.cli("unlock", "--inventory", str(other), "--yes", "--force")
        assert forced.code == 3 and "live-run-1" in lock_of(lab, "web1")
    finally:
        sleeper.kill()
        sleeper.wait()
    cleared = lab.cli("unlock", "--inventory", lab.inventory, "--yes")
    assert cleared.code == 0, cleared.stderr
    assert "cleared the lock of run live-run-1 of fay" in cleared.stderr
    assert lock_of(lab, "web1") == ""


def test_an_old_lock_from_a_dead_run_is_taken_over_and_said(lab: LabHosts):
    plant_lock(lab, "web3", "dead-run-7", age_s=5 * 3600)
    run = lab.cli("apply", "--level", "emergency", "--inventory", lab.inventory, "--yes", "--json")
    assert run.code == 0, run.stderr
    assert any(
        "took over the lock left by run dead-run-7 of eve" in n
        for n in run.receipt["hosts"]["web3"]["notes"]
    )
    assert lock_of(lab, "web3") == ""


def test_check_mode_takes_no_lock_and_only_warns_about_one(lab: LabHosts):
    plant_lock(lab, "web1", "other-run-2")
    run = lab.cli(
        "apply",
        "--level",
        "flag",
        "--inventory",
        lab.inventory,
        "--check",
        "--json",
        "--flag",
        "ENABLE_TIME_WEIGHTING=false",
    )
    assert run.code == 0, run.stderr
    assert any(
        "another rollback holds this host" in n for n in run.receipt["hosts"]["web1"]["notes"]
    )
    assert "other-run-2" in lock_of(lab, "web1")
    assert lock_of(lab, "web2") == ""
    lab.sh("web1", f"rm -f {LOCK}")
