"""The code level end to end on three lab hosts: the bad release (lab-release deploy-bad) is
rolled back through real playbooks over SSH: git revert or checkout, or seed 004's backup
files; the worker image rebuilt on the host and recreated with compose; units and health.
Every assertion reads the hosts' real state (git, files, Docker engine, systemd, HTTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import yaml

from tests.integration.conftest import LabHosts

APP = "/opt/analyticbot/app"
MAINTENANCE = "/srv/analyticbot/MAINTENANCE"
GOOD, BAD = "release-1.4.0", "release-1.5.0"


class CodeLab:
    def __init__(self, lab: LabHosts):
        self.lab = lab
        self.names = lab.names

    def each(self, script: str) -> dict[str, str]:
        with ThreadPoolExecutor(len(self.names)) as pool:
            return dict(
                zip(self.names, pool.map(lambda h: self.lab.sh(h, script), self.names), strict=True)
            )

    def git(self, host: str, *args: str) -> str:
        return self.lab.sh(host, f"git -c safe.directory='*' -C {APP} " + " ".join(args)).strip()

    def worker(self, host: str) -> dict[str, Any]:
        """The worker container as the engine sees it, and the image it runs."""
        project = f"rollback-ops-test-{host}-worker"
        client = self.lab.lab.container(host).client
        (container,) = client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"}
        )
        image = client.images.get(f"analyticbot-worker:test-{host}")
        try:  # a crash-looping container may be between two starts
            orchestrator = container.exec_run(["cat", "/app/orchestrator.sh"]).output.decode()
        except docker.errors.APIError:
            orchestrator = ""
        return {
            "id": container.id,
            "status": container.status,
            "restarting": container.attrs["State"]["Restarting"],
            "image": container.attrs["Image"],
            "tag_id": image.id,
            "logs": container.logs(tail=20).decode(),
            "orchestrator": orchestrator,
        }

    def apply(self, *extra: str, inventory: str | None = None) -> Any:
        argv = ["apply", "--level", "code", "--inventory", inventory or self.lab.inventory]
        return self.lab.cli(*argv, "--yes", "--json", *extra)

    def variant(self, directory: Path, **app: Any) -> str:
        data = yaml.safe_load(Path(self.lab.inventory).read_text())
        base = dict(data["all"]["vars"]["rollback_app"])
        base.update(app)
        return self.lab.inventory_with(directory, rollback_app=base)

    def assert_good(self, host: str) -> None:
        health = self.lab.health(host)
        assert (health["version"], health["status"]) == ("1.4.0", "healthy"), health
        assert health["maintenance"] is False
        assert self.lab.sh(host, f"test ! -e {MAINTENANCE} && echo gone").strip() == "gone"
        worker = self.worker(host)
        assert worker["status"] == "running" and not worker["restarting"], worker
        assert worker["image"] == worker["tag_id"]  # runs the image just built
        assert "orchestrator 1.4.0" in worker["orchestrator"]
        assert "Traceback" not in worker["logs"]


@pytest.fixture
def code(lab: LabHosts) -> Iterator[CodeLab]:
    """Lab hosts with the bad release deployed on top of the good one, reset afterwards."""
    c = CodeLab(lab)
    c.each("lab-release reset && lab-release deploy-bad")
    for host in c.names:
        assert lab.health(host)["version"] == "1.5.0"
    yield c
    c.each("rm -f /opt/analyticbot/app/worker/FAIL_BUILD; lab-release reset")


def test_git_revert_brings_every_host_back_to_the_good_release(code: CodeLab):
    bad = {h: code.git(h, "rev-parse", "HEAD") for h in code.names}
    old_image = {h: code.worker(h)["tag_id"] for h in code.names}
    run = code.apply()
    assert run.code == 0, run.stderr
    receipt = run.receipt
    assert receipt["result"] == "ok"
    for host in code.names:
        code.assert_good(host)
        # seed 003: a revert commit on top of the bad release, history kept, main moved
        assert code.git(host, "rev-parse", "HEAD^") == bad[host]
        assert code.git(host, "rev-parse", "HEAD^{tree}") == code.git(
            host, "rev-parse", f"{GOOD}^{{tree}}"
        )
        assert code.git(host, "symbolic-ref", "--short", "HEAD") == "main"
        assert code.worker(host)["tag_id"] != old_image[host]
        result = receipt["hosts"][host]
        assert result["code"]["target"]["ref"] == GOOD
        assert result["code"]["current"]["head"] == bad[host]
        snapshot = result["code"]["snapshot"]
        assert code.git(host, "rev-parse", snapshot["ref"]) == bad[host]  # the undo record
        assert f"{APP}#{snapshot['ref']}" in result["backups"]
        steps = [s["step"] for s in result["steps"] if s["status"] == "changed"]
        assert any("Turn maintenance mode on" in s or "maintenance flag" in s for s in steps)
        assert any("Rebuild the stale images" in s for s in steps)
    assert "RECAP" in run.stderr

    again = code.apply()
    assert again.code == 0, again.stderr
    assert again.receipt["changed"] == 0, json.dumps(again.receipt["hosts"], indent=1)
    assert "already at release-1.4.0" in again.stderr


def test_check_mode_shows_the_change_and_changes_nothing(code: CodeLab):
    before = code.lab.fingerprint()
    run = code.apply("--check", "--diff")
    assert run.code == 0, run.stderr
    assert run.receipt["check"] is True and run.receipt["changed"] > 0
    assert f"{GOOD} at" in run.stderr  # the diff names the target
    code.lab.assert_unchanged(before)  # code, refs, image, containers, units, databases


def test_checkout_mode_to_a_given_ref(code: CodeLab, tmp_path: Path):
    inv = code.variant(
        tmp_path,
        code={"path": APP, "git": {"mode": "checkout", "release_tags": "release-*"}},
    )
    good = code.git("web1", "rev-parse", f"{GOOD}^{{commit}}")
    run = code.apply("--to", GOOD, inventory=inv)
    assert run.code == 0, run.stderr
    for host in code.names:
        code.assert_good(host)
        assert code.git(host, "rev-parse", "HEAD") == good  # seed 002: checkout, detached
        assert code.lab.sh(host, f"git -C {APP} symbolic-ref -q HEAD || echo detached").strip() == (
            "detached"
        )


def files_variant(code: CodeLab, tmp_path: Path) -> str:
    return code.variant(
        tmp_path,
        code={
            "path": APP,
            "files": {
                "restore": ["analyticbot_app.py", "worker/orchestrator.sh"],
                "remove": ["worker/errors", "worker/config/timeouts.sh"],
            },
        },
    )


def test_seed_004_backup_files_restored_added_modules_removed_image_rebuilt(
    code: CodeLab, tmp_path: Path
):
    inv = files_variant(code, tmp_path)
    run = code.apply(inventory=inv)
    assert run.code == 0, run.stderr
    for host in code.names:
        code.assert_good(host)
        (backup,) = code.lab.sh(host, f"ls {APP}/worker/orchestrator.sh.backup.*").split()
        assert code.lab.read(host, f"{APP}/worker/orchestrator.sh") == code.lab.read(host, backup)
        assert code.lab.sh(host, f"ls {APP}/worker").split().count("errors") == 0
        assert code.lab.sh(host, f"test ! -e {APP}/worker/config/timeouts.sh && echo ok") == "ok\n"
        (tarball,) = [b for b in run.receipt["hosts"][host]["backups"] if b.endswith(".tar.gz")]
        listing = code.lab.sh(host, f"stat -c %a {tarball} && tar -tzf {tarball}")
        assert listing.startswith("600\n")
        assert "worker/errors/handlers.sh" in listing and "worker/config/timeouts.sh" in listing
        bad_copy = code.lab.sh(host, f"tar -xzOf {tarball} worker/orchestrator.sh")
        assert "worker 1.5.0" in bad_copy  # the bad code is kept: the rollback can be undone
    again = code.apply(inventory=inv)
    assert again.code == 0 and again.receipt["changed"] == 0, again.stderr


def test_a_missing_backup_fails_preflight_and_no_host_is_changed(code: CodeLab, tmp_path: Path):
    inv = files_variant(code, tmp_path)
    code.lab.sh("web2", f"rm {APP}/worker/orchestrator.sh.backup.*")
    before = code.lab.fingerprint()
    run = code.apply(inventory=inv)
    assert run.code == 3, run.stderr  # refused at preflight: nothing changed
    web2 = run.receipt["hosts"]["web2"]
    assert web2["status"] == "failed"
    assert f"no backup file found for {APP}/worker/orchestrator.sh" in web2["message"]
    for host in ("web1", "web3"):
        assert "nothing was changed on any host" in run.receipt["hosts"][host]["message"]
    code.lab.assert_unchanged(before)
    for host in code.names:  # and every lock was released
        assert code.lab.sh(host, "ls /var/lib/rollback-ops/").split().count("rollback.lock") == 0


def test_an_unknown_ref_fails_preflight_naming_it(code: CodeLab):
    before = code.lab.fingerprint()
    run = code.apply("--to", "release-9.9.9")
    assert run.code == 3, run.stderr  # refused at preflight: nothing changed
    assert "git ref 'release-9.9.9' not found" in run.receipt["hosts"]["web1"]["message"]
    code.lab.assert_unchanged(before)


def test_a_failed_build_stops_that_host_in_maintenance_and_resume_finishes(code: CodeLab):
    code.lab.sh("web2", f"touch {APP}/worker/FAIL_BUILD")
    before = code.lab.fingerprint()
    run = code.apply()
    assert run.code == 1
    after = code.lab.fingerprint()
    for host in code.names:  # the code level leaves the databases alone, failed or not
        for section in ("postgresql", "sqlite"):
            assert after[host][section] == before[host][section], (host, section)
    receipt = run.receipt
    web2 = receipt["hosts"]["web2"]
    assert web2["status"] == "failed"
    assert "Rebuild the stale images" in web2["failed_step"]
    assert "build of analyticbot-worker:test-web2 failed" in web2["message"]
    assert code.lab.sh("web2", f"cat {MAINTENANCE}").startswith("rollback-ops run")
    for host in ("web1", "web3"):
        code.assert_good(host)
    assert f"--resume {receipt['run_id']}" in run.stderr  # the recap says how to continue

    code.lab.sh("web2", f"rm {APP}/worker/FAIL_BUILD")
    resumed = code.lab.cli("apply", "--resume", receipt["run_id"], "--yes", "--json")
    assert resumed.code == 0, resumed.stderr
    assert resumed.receipt["resumes"] == receipt["run_id"]
    assert list(resumed.receipt["hosts"]) == ["web2"]
    web2 = resumed.receipt["hosts"]["web2"]
    assert web2["code"]["target"]["sha"] == receipt["hosts"]["web2"]["code"]["target"]["sha"]
    code.assert_good("web2")
    # the code was reverted by the first run: the resumed one found it done
    revert = [s for s in web2["steps"] if "Record the current code" in s["step"]]
    assert revert and revert[0]["status"] == "ok"
