"""The embedded default: `rollback-ops demo` rolls a sandbox app back through Ansible's local
connection, with no Docker and no remote host; installed from the wheel, it needs no root
and no Docker SDK, and the wheel leaves the test lab out; without the Docker SDK,
`rollback-ops lab` says how to get it. No Docker here: the fast tier.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT


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


# Put first on PYTHONPATH, it records (and refuses, as if not installed) every import of the
# Docker SDK in every Python process of the run: rollback-ops, ansible-playbook and the
# modules it runs locally.
NO_DOCKER = """\
import os, sys

class NoDocker:
    def find_spec(self, name, path=None, target=None):
        if name == "docker" or name.startswith("docker."):
            with open(os.environ["NO_DOCKER_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"{name}: the demo must not import the Docker SDK", name=name)
        return None

sys.meta_path.insert(0, NoDocker())
"""


@dataclass
class Installed:
    """The wheel, installed into a fresh venv any user can read, and an unprivileged user's
    way to run it (``runuser -u nobody`` as root, the current user otherwise)."""

    wheel: Path
    venv: Path
    home: Path
    as_user: list[str]
    env: dict[str, str]
    no_docker_log: Path

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *argv],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []  # already unprivileged
    if shutil.which("runuser") is None:
        pytest.fail("running as root without runuser: cannot run the demo as another user")
    return ["runuser", "-m", "-u", "nobody", "--"]


def _python_for(as_user: list[str]) -> str:
    """A Python >= 3.11 with venv that the unprivileged user can run (this test's own may
    live under a home directory only root can enter, as a pyenv under /root does)."""
    candidates = [sys._base_executable, shutil.which("python3"), "/usr/bin/python3"]
    probe = "import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))"
    for python in dict.fromkeys(p for p in candidates if p):
        if subprocess.run([*as_user, python, "-c", probe], capture_output=True).returncode == 0:
            return python
    pytest.fail(f"no Python >= 3.11 with venv that the test user can run among {candidates}")


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """Build the wheel once, install it with its dependencies (pip's cache, the configured
    index) into a fresh venv, for every test of this module."""
    as_user = _unprivileged()
    top = Path(tempfile.mkdtemp(prefix="rollback-ops-wheel-"))
    try:
        top.chmod(0o755)
        dist, venv, home = top / "dist", top / "venv", top / "home"
        home.mkdir()
        if as_user:
            shutil.chown(home, "nobody")
        pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)]
        subprocess.run(pip, check=True, capture_output=True, timeout=600)
        (wheel,) = dist.glob("rollback_ops-*.whl")
        python = _python_for(as_user)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
        install = [str(venv / "bin/pip"), "install", "-q", str(wheel)]
        subprocess.run(install, check=True, capture_output=True, timeout=900)
        blocker = top / "no-docker"
        blocker.mkdir()
        (blocker / "sitecustomize.py").write_text(NO_DOCKER)
        log = top / "no-docker.log"
        log.touch()
        log.chmod(0o666)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ROLLBACK_OPS_", "ANSIBLE_", "XDG_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(HOME=str(home), PYTHONPATH=str(blocker), NO_DOCKER_LOG=str(log))
        env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        yield Installed(wheel, venv, home, as_user, env, log)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_the_wheel_leaves_the_lab_out_and_ships_the_demo(installed: Installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist: ")
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist: ")
        ]
    assert not [n for n in names if n.startswith("rollback_ops/lab/")]
    assert {"rollback_ops/demo/app.yml", "rollback_ops/demo/env.production"} <= set(names)
    assert "rollback_ops/_ansible/playbooks/flag.yml" in names
    # the Docker SDK only comes with the lab (and test) extras
    assert [r for r in requires if r.startswith("docker")] == [
        r for r in requires if r.startswith("docker") and "extra ==" in r
    ]
    assert any(r.startswith("docker") and "extra == 'lab'" in r for r in requires)


def test_the_installed_demo_runs_unprivileged_without_docker(installed: Installed):
    # the import blocker is live in this venv: importing the SDK is refused and recorded
    control = installed.run(str(installed.venv / "bin/python"), "-c", "import docker")
    assert control.returncode != 0 and "the demo must not import" in control.stderr
    assert installed.no_docker_log.read_text() == "docker\n"
    installed.no_docker_log.write_text("")

    proc = installed.run(str(installed.venv / "bin/rollback-ops"), "demo", "--json")
    assert proc.returncode == 0, proc.stderr
    assert installed.no_docker_log.read_text() == ""  # nothing on the demo path imported it
    receipt = json.loads(proc.stdout)
    assert receipt["result"] == "ok"
    state = installed.home / ".local/state/rollback-ops"  # the default state dir
    env_file = state / "demo/srv/analyticbot/.env.production"
    assert "ENABLE_ADVANCED_RECOMMENDATIONS=false\n" in env_file.read_text()
    assert "ENABLE_ADVANCED_RECOMMENDATIONS=true\n" in (
        (ROOT / "rollback_ops/demo/env.production").read_text()
    )
    assert env_file.stat().st_uid == (
        pwd.getpwnam("nobody").pw_uid if installed.as_user else os.getuid()
    )


def test_the_installed_lab_command_says_the_lab_is_not_there(installed: Installed):
    proc = installed.run(str(installed.venv / "bin/rollback-ops"), "lab", "status")
    assert proc.returncode == 4
    assert "rollback-ops: " in proc.stderr and "the test lab is not installed: " in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # one line, no traceback


def test_lab_without_the_docker_sdk_says_how_to_get_it(tmp_path: Path):
    (tmp_path / "sitecustomize.py").write_text(NO_DOCKER)
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NO_DOCKER_LOG=str(tmp_path / "log"))
    proc = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(tmp_path), "lab", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 4
    assert "the test lab needs the Docker SDK: pip install -e '.[lab]'" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr  # one line, no traceback
    assert (tmp_path / "log").read_text().startswith("docker")
