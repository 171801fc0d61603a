"""The code level's other sources on the three lab hosts, chosen through named procedures
(rollback_app.procedures, apply --procedure): seed 001 phases 4-6 (only listed paths back
from the previous release, what the bad release added under them removed, HEAD and the rest
of the work tree untouched) and phase 11 (files copied back from the newest of two archive
directories). Every assertion reads the hosts' real state (git, files, Docker, HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback_ops import history
from tests.integration.conftest import LabHosts
from tests.integration.test_code_level import APP, GOOD, CodeLab

PROCEDURES = {
    "phase-4": {
        "description": "seed 001 phases 4-6: the app and the worker back, its new modules gone",
        "code": {
            "path": APP,
            "git": {
                "release_tags": "release-*",
                "paths": ["analyticbot_app.py", "worker"],
                "remove_added": True,
            },
            "deps": {
                "requirements": "requirements.txt",
                "venv": "/opt/analyticbot/venv",
                "pip_args": "--no-index",
            },
        },
    },
    "phase-11": {
        "description": "seed 001 phase 11: the archived worker scripts back",
        "code": {
            "path": APP,
            "archive": {"dir": "archive/worker_*", "files": "*.sh", "to": "worker"},
        },
    },
}


@pytest.fixture
def code(lab: LabHosts) -> Iterator[CodeLab]:
    """Lab hosts with the bad release deployed on top of the good one, reset afterwards."""
    c = CodeLab(lab)
    c.each("lab-release reset && lab-release deploy-bad")
    yield c
    c.each(f"rm -rf {APP}/archive; lab-release reset")


def test_git_paths_and_added_files_then_refusals(code: CodeLab, tmp_path: Path):
    inv = code.variant(tmp_path, procedures=PROCEDURES)
    # an uncommitted change outside the paths: not in the way, and kept
    code.each(f"echo '# local note' >> {APP}/.gitignore")
    head = {h: code.git(h, "rev-parse", "HEAD") for h in code.names}

    unknown = code.apply("--procedure", "phase-9", inventory=inv)
    assert unknown.code != 0
    assert "app analyticbot has no procedure 'phase-9' (declared: phase-11, phase-4)" in (
        unknown.stderr
    )
    assert "Traceback" not in unknown.stderr

    before = code.lab.fingerprint()
    checked = code.apply("--procedure", "phase-4", "--check", "--diff", inventory=inv)
    assert checked.code == 0, checked.stderr
    assert checked.receipt["changed"] > 0
    assert f"remove {APP}/worker/errors/handlers.sh" in checked.stderr  # the diff
    code.lab.assert_unchanged(before)

    run = code.apply("--procedure", "phase-4", inventory=inv)
    assert run.code == 0, run.stderr
    assert run.receipt["request"]["procedure"] == "phase-4"
    for host in code.names:
        code.assert_good(host)  # API 1.4.0, worker rebuilt from 1.4.0's orchestrator
        assert code.git(host, "rev-parse", "HEAD") == head[host]  # HEAD stays on 1.5.0
        assert code.git(host, "diff", "--cached", GOOD, "--", "analyticbot_app.py", "worker") == ""
        files = code.lab.sh(host, f"cd {APP} && ls worker migrations && tail -1 .gitignore")
        assert "errors" not in files.split() and "config" not in files.split()  # removed
        assert "busybox" in files.split()  # untracked under the path: not the release's
        assert "004_add_scores.sql" in files  # the release's file outside the paths stays
        assert files.endswith("# local note\n")  # the local change outside the paths too
        result = run.receipt["hosts"][host]["code"]
        assert result["target"]["ref"] == GOOD
        assert result["snapshot"]["source"] == "git-paths"
        tarball = result["snapshot"]["path"]
        assert tarball in run.receipt["hosts"][host]["backups"]
        listing = code.lab.sh(host, f"stat -c %a {tarball} && tar -tzf {tarball}")
        assert listing.startswith("600\n")
        assert "worker/errors/handlers.sh" in listing and "worker/orchestrator.sh" in listing
        bad = code.lab.sh(host, f"tar -xzOf {tarball} analyticbot_app.py")
        assert 'VERSION = "1.5.0"' in bad

    again = code.apply("--procedure", "phase-4", inventory=inv)
    assert again.code == 0 and again.receipt["changed"] == 0, again.stderr
    (row,) = [r for r in history.read(code.lab.state_dir) if r.run_id == run.receipt["run_id"]]
    assert row.procedure == "phase-4"

    undo = code.lab.cli("undo", run.receipt["run_id"], "--yes", "--json")
    assert undo.code != 0
    refused = "restored git paths (not the whole tree) on web1: undo puts back git runs only"
    assert refused in undo.stderr


def test_archive_restores_from_the_newest_directory_by_its_stamp(code: CodeLab, tmp_path: Path):
    inv = code.variant(tmp_path, procedures=PROCEDURES)
    # the bad release's app file is fixed by hand; its worker is not. Two archives of the
    # worker scripts: the newest by name (20260120) holds the good one, and is the older on
    # disk (mtime), so only the stamp can choose it
    code.each(
        f"cd {APP} && git checkout {GOOD} -- analyticbot_app.py && "
        "mkdir -p archive/worker_20260110 archive/worker_20260120 && "
        "echo 'echo stale' > archive/worker_20260110/orchestrator.sh && "
        f"git show {GOOD}:worker/orchestrator.sh > archive/worker_20260120/orchestrator.sh && "
        "touch -d 2026-01-01 archive/worker_20260120 && chmod 0750 worker/orchestrator.sh"
    )
    run = code.apply("--procedure", "phase-11", inventory=inv)
    assert run.code == 0, run.stderr
    for host in code.names:
        code.assert_good(host)
        target = run.receipt["hosts"][host]["code"]["target"]
        assert target["archive"] == f"{APP}/archive/worker_20260120"
        assert target["candidates"] == [
            f"{APP}/archive/worker_20260120",
            f"{APP}/archive/worker_20260110",
        ]
        assert code.lab.sh(host, f"stat -c %a {APP}/worker/orchestrator.sh") == "750\n"
        tarball = run.receipt["hosts"][host]["code"]["snapshot"]["path"]
        assert "worker 1.5.0" in code.lab.sh(host, f"tar -xzOf {tarball} worker/orchestrator.sh")
    again = code.apply("--procedure", "phase-11", inventory=inv)
    assert again.code == 0 and again.receipt["changed"] == 0, again.stderr
