"""The shipped playbooks are safe on their own: a plain `ansible-playbook` run (no rollback-ops)
of playbooks/flag.yml with only the collection on the collections path makes its run id, takes
and releases the host lock, and refuses production without an approved request (a name passed
in the request approves nothing)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import COLLECTIONS
from tests.integration.conftest import ENV_FILE, LabHosts

ROOT = Path(__file__).resolve().parents[2]
LOCK = "/var/lib/rollback-ops/rollback.lock"
FLAG = "ENABLE_TIME_WEIGHTING"


def ansible_playbook(
    lab: LabHosts, tmp_path: Path, environment: str, request: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """flag.yml on web1, as a team would run it: ansible-playbook, the lab's inventory with
    this rollback_environment, one -e rollback_request; every result printed (oneline)."""
    inventory = lab.inventory_with(tmp_path, rollback_environment=environment)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ROLLBACK_OPS_"))}
    env |= {
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "oneline",
        "ANSIBLE_NOCOLOR": "1",
        "ROLLBACK_OPS_OPERATOR": "ana",
    }
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory]
    argv += ["-l", "web1", str(ROOT / "playbooks" / "flag.yml")]
    argv += ["-e", json.dumps({"rollback_request": request})]
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False
    )


def lock_taken(output: str) -> dict[str, Any]:
    """The lock record the preflight task reported taking on web1."""
    for line in output.splitlines():
        if line.startswith("web1 | ") and '"lock": {"' in line:
            return dict(json.loads(line.split(" => ", 1)[1])["lock"])
    raise AssertionError(f"no lock taken in:\n{output}")


def lock_of(lab: LabHosts) -> str:
    return lab.sh("web1", f"cat {LOCK} 2>/dev/null || true").strip()


def test_staging_changes_the_flag_holding_the_host_lock_for_a_generated_run_id(
    lab: LabHosts, tmp_path: Path
):
    run = ansible_playbook(lab, tmp_path, "staging", {"flags": {FLAG: "false"}})
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{FLAG}=false" in lab.read("web1")
    lock = lock_taken(run.stdout)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", lock["run_id"])
    assert lock["operator"] == "ana" and lock["controller"]
    assert lock_of(lab) == ""  # released at the end
    assert f"{FLAG}=false" not in lab.read("web2")  # -l web1 only


def test_production_without_approval_is_refused_before_any_change(lab: LabHosts, tmp_path: Path):
    before = lab.fingerprint()
    run = ansible_playbook(lab, tmp_path, "production", {"flags": {FLAG: "false"}})
    assert run.returncode != 0
    assert "production hosts (web1)" in run.stdout
    assert "rollback-ops approve RUN_ID" in run.stdout
    assert "Check the host can take the rollback" not in run.stdout  # refused before preflight
    lab.assert_unchanged(before)
    assert lock_of(lab) == ""


def test_production_approved_by_a_name_is_refused(lab: LabHosts, tmp_path: Path):
    before = lab.fingerprint()
    for name in (" ANA", "bob"):
        run = ansible_playbook(
            lab, tmp_path, "production", {"flags": {FLAG: "false"}, "approved_by": name}
        )
        assert run.returncode != 0
        assert "a change needs an approved request" in run.stdout
    lab.assert_unchanged(before)
    assert lock_of(lab) == ""


def test_production_break_glass_with_a_reason_runs(lab: LabHosts, tmp_path: Path):
    run = ansible_playbook(
        lab,
        tmp_path,
        "production",
        {"flags": {FLAG: "false"}, "break_glass": True, "reason": "P0: checkout down"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert lab.sh("web1", f"grep -c '^{FLAG}=false$' {ENV_FILE}").strip() == "1"
    assert lock_taken(run.stdout)["operator"] == "ana"
    assert lock_of(lab) == ""
