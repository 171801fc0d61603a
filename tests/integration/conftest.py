"""Real lab hosts for the integration tests: containers with systemd as PID 1 and sshd,
reached over SSH on their own loopback addresses (127.0.1.11..13, lab "test").

The session starts what it needs: the Docker engine (installing Debian's docker.io and
debootstrap when missing, as root), the lab image (built when missing) and three hosts.
Set ROLLBACK_OPS_KEEP_LAB=1 to leave the hosts running after the session (the next session
reuses them); its state lives in ROLLBACK_OPS_TEST_STATE (default ~/.cache/rollback-ops/test-lab).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops.lab import Lab

ENV_FILE = "/srv/analyticbot/.env.production"
HOSTS = 3
# What LabHosts.fingerprint reads on a host; {section: lines} per host
FINGERPRINT = (Path(__file__).with_name("fingerprint.sh")).read_text()
Fingerprint = dict[str, list[str]]


@dataclass
class CliRun:
    code: int
    stdout: str
    stderr: str

    @property
    def receipt(self) -> dict[str, Any]:
        return json.loads(self.stdout)


class LabHosts:
    def __init__(self, lab: Lab, state_dir: Path):
        self.lab = lab
        self.state_dir = state_dir
        self.names = [f"web{i}" for i in range(1, HOSTS + 1)]

    @property
    def inventory(self) -> str:
        return str(self.lab.inventory_path)

    def address(self, host: str) -> str:
        return self.lab.address(int(host.removeprefix("web")))

    def sh(self, host: str, script: str) -> str:
        result = self.lab.container(host).exec_run(["sh", "-c", script])
        assert result.exit_code == 0, f"{host}: {script}: {result.output.decode()}"
        return result.output.decode()

    def read(self, host: str, path: str = ENV_FILE) -> str:
        return self.sh(host, f"cat {path}")

    def unit_since(self, host: str) -> int:
        return int(
            self.sh(host, "systemctl show -p ActiveEnterTimestampMonotonic --value analyticbot-api")
        )

    def fingerprint(self, hosts: str | Iterable[str] | None = None) -> dict[str, Fingerprint]:
        """Everything a rollback could change on each host (every lab host, or HOSTS: a name or
        names), one ``exec`` per host, as {host: {section: lines}}: compare two for equality.

        - files: path, type, mode, owner and sha256 (or link target) of everything under the
          app's directories: /srv/analyticbot (the env file, its copies, MAINTENANCE),
          /etc/analyticbot (settings.yml and its copies), /opt/analyticbot (the work tree,
          the venv, migration rollback copies), /var/cache/analyticbot, /var/lib/rollback-ops
          (the host lock, code snapshots), /var/backups/rollback-ops (backup sets),
          /etc/rollback-ops, /usr/local/lib/rollback-ops, /etc/systemd/system;
        - git: the work tree's HEAD, its branch, every ref (refs/rollback-ops/ too), status
          with ignored and untracked files, the stash;
        - units: state, sub state, MainPID, start time and restart count of the app's unit
          and PostgreSQL's (a restart changes MainPID and the start time), rollback-ops' own;
        - docker: the worker container's id, image, state and start time (of one the engine
          restarts on its own, as it does the bad release's dying worker, only id and image),
          its image's id;
        - postgresql: the databases' names, analyticbot's schema (pg_dump -s) and, per table,
          its row count and the md5 of its rows in order, its sequences' values;
        - sqlite: the sha256 of analytics.db's ``.dump``.

        Left out, as they change on their own: the logs (/var/log, the journal), __pycache__,
        git's own files under .git (``git status`` rewrites the index), the bytes of SQLite's
        file and its -wal/-shm (a checkpoint rewrites them; the dump is compared instead),
        PostgreSQL's data directory (compared through SQL), the container's uptime text."""
        if hosts is None:
            names = list(self.names)
        elif isinstance(hosts, str):
            names = [hosts]
        else:
            names = list(hosts)
        with ThreadPoolExecutor(max(len(names), 1)) as pool:
            outputs = list(pool.map(lambda h: self.sh(h, FINGERPRINT), names))
        return {host: parse_fingerprint(out) for host, out in zip(names, outputs, strict=True)}

    def assert_unchanged(self, before: dict[str, Fingerprint]) -> None:
        """Each host of BEFORE (a ``fingerprint``) is as it was; else names what changed where."""
        after = self.fingerprint(before)
        changes = {
            f"{host}/{section}": sorted(
                {f"- {line}" for line in set(then) - set(after[host].get(section, []))}
                | {f"+ {line}" for line in set(after[host].get(section, [])) - set(then)}
            )
            for host, sections in before.items()
            for section, then in sections.items()
            if after[host].get(section) != then
        }
        assert not changes, "hosts changed:\n" + json.dumps(changes, indent=1)

    def health(self, host: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{self.address(host)}:10300/health", timeout=5) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        """Back to the state a rollback starts from: every flag on, production mode, no backups."""
        for host in self.names:
            self.sh(
                host,
                f"cp /opt/analyticbot/env.production.orig {ENV_FILE} && chmod 0640 {ENV_FILE} "
                f"&& rm -f {ENV_FILE}.backup.* /var/lib/rollback-ops/rollback.lock "
                "&& systemctl reset-failed analyticbot-api; "
                "systemctl restart analyticbot-api",
            )
        deadline = time.monotonic() + 30
        for host in self.names:
            while True:
                try:
                    if self.health(host)["config"]["APP_MODE"] == "production":
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{host} did not come back after reset"
                time.sleep(0.2)

    def argv(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "rollback_ops", "--state-dir", str(self.state_dir), *argv]

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "ROLLBACK_OPS_STATE_DIR"}
        # the lab's database password reaches rollback-ops as the inventory's password_env says
        env["ROLLBACK_OPS_LAB_DB_PASSWORD"] = self.lab.db_password()
        return {**env, "ROLLBACK_OPS_OPERATOR": "ana", **extra}

    def start(self, *argv: str, operator: str) -> subprocess.Popen[str]:
        """A CLI run in the background, as OPERATOR (for concurrency and crash tests)."""
        return subprocess.Popen(
            self.argv(*argv),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env(ROLLBACK_OPS_OPERATOR=operator),
        )

    def inventory_with(self, directory: Path, **all_vars: Any) -> str:
        """A copy of the lab inventory with these group vars set for all hosts."""
        data = yaml.safe_load(Path(self.inventory).read_text())
        data["all"]["vars"].update(all_vars)
        path = directory / "lab-variant.yml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def cli(self, *argv: str, cwd: Path | None = None, **env: str) -> CliRun:
        """The CLI run to its end (from CWD: a team's project, its ansible.cfg)."""
        proc = subprocess.run(
            self.argv(*argv),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=self.env(**env),
        )
        return CliRun(proc.returncode, proc.stdout, proc.stderr)


def parse_fingerprint(output: str) -> Fingerprint:
    """fingerprint.sh's output as {section: lines}; of the Docker engine's answers, only what
    a new container, a start or stop, or a new image changes (not the uptime, nor the
    restarts of a container the engine restarts by its policy)."""
    sections: Fingerprint = {}
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith("@@ "):
            lines = sections.setdefault(line[3:], [])
        elif line:
            lines.append(line)
    docker = []
    for raw in sections.get("docker", []):
        try:
            found = json.loads(raw)
        except ValueError:
            docker.append(raw)
            continue
        state = found.get("State") or {}
        kept = {"id": found.get("Id"), "image": found.get("Image"), "message": found.get("message")}
        if found.get("RestartCount"):  # dies and is restarted by its policy, on its own
            kept["status"] = "restarted by its policy"
        else:  # a start, stop or restart by anyone shows
            kept.update(status=state.get("Status"), started=state.get("StartedAt"))
        docker.append(json.dumps({k: v for k, v in kept.items() if v is not None}))
    sections["docker"] = docker
    return sections


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabHosts]:
    default = Path.home() / ".cache" / "rollback-ops" / "test-lab"
    state = Path(os.environ.get("ROLLBACK_OPS_TEST_STATE", default))
    with exclusive(state / "session.lock"):  # one test session per lab at a time
        lab = Lab(state, name="test", first_address="127.0.1.11")
        lab.up(HOSTS, install=True)  # reuses hosts a kept lab left running
        yield LabHosts(lab, state)
        if os.environ.get("ROLLBACK_OPS_KEEP_LAB") != "1":
            lab.down()


@contextmanager
def exclusive(path: Path, wait: float = 3600) -> Iterator[None]:
    """Hold an flock on path, waiting for another test session to finish with the lab (an
    hour at most: several sessions of a few minutes each may be queued; tests/conftest.py
    gives the first lab test this time on top of its timeout). The holder writes who it is
    into the file, so a session that waits too long can name it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = path.read_text(errors="replace").strip() or "unknown"
                    pytest.fail(
                        f"another test session has held {path} for over {wait:.0f} s: {holder}"
                    )
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.ctime()}: {' '.join(sys.argv)}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def lab(lab_session: LabHosts) -> LabHosts:
    lab_session.reset()
    return lab_session


@pytest.hookimpl(tryfirst=True)  # before -m "not lab" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here runs against the lab: marked `lab`, so `-m "not lab"` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.lab)
