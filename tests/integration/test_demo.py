"""The embedded default: `rollback-ops demo` rolls a sandbox app back through Ansible's local
connection, with no Docker and no remote host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_rolls_the_sandbox_back_and_reports_skips(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(tmp_path), "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    receipt = json.loads(proc.stdout)
    env_file = tmp_path / "demo/srv/analyticbot/.env.production"
    assert "ENABLE_ADVANCED_RECOMMENDATIONS=false\n" in env_file.read_text()
    (backup,) = receipt["hosts"]["localhost"]["backups"]
    assert "ENABLE_ADVANCED_RECOMMENDATIONS=true\n" in Path(backup).read_text()
    assert "no health URL configured" in proc.stderr  # a skipped step says why
    assert "RECAP" in proc.stderr
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollback_ops",
            "--state-dir",
            str(tmp_path),
            "apply",
            "--level",
            "flag",
            "--inventory",
            "local",
            "--yes",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changed"] == 0
