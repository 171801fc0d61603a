"""The production prompt, driven through a real terminal (a pty), as an operator meets it.

``rollback-ops apply`` runs as its own process with a pseudo-terminal for stdin, stdout and
stderr, on the demo's sandbox app (local connection, everything under tmp_path) with its
inventory marked production. Without an approved request it is refused before any prompt
(typing the name approves nothing). With break-glass (a reason, acting alone) it must ask for
the inventory's name as a confirmation, refuse any other answer with nothing changed, and go
on (a real run) when the name is typed.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rollback_ops import demo, history

PROMPT = b"to go on: "
KEY = "ENABLE_TIME_WEIGHTING"


class Terminal:
    """A process on a pty: read what it shows, type answers, wait for it to end."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.shown = b""
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, start_new_session=True
        )
        os.close(slave)

    def _read(self, timeout: float) -> bool:
        """Read what is there within timeout; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        self.shown += chunk
        return bool(chunk)

    def expect(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.shown:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"{text!r} never shown; the terminal showed:\n{self.text}")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.2):
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout}s:\n{self.text}")
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(self.master)

    @property
    def text(self) -> str:
        return self.shown.decode(errors="replace")


@pytest.fixture
def production(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(state dir, the team's project dir, the env file): the demo sandbox, its inventory
    marked production and kept as the project's ``inventories/production``."""
    state = tmp_path / "state"
    sandbox = demo.create_sandbox(state)
    inventory = yaml.safe_load(sandbox.read_text())
    inventory["all"]["vars"]["rollback_environment"] = "production"
    project = tmp_path / "project"
    (project / "inventories" / "production").mkdir(parents=True)
    (project / "inventories" / "production" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    sandbox.unlink()
    env_file = state / "demo" / "srv" / "analyticbot" / ".env.production"
    return state, project, env_file


def apply(state: Path, project: Path, inventory: str, *extra: str) -> Terminal:
    env = {**os.environ, "ROLLBACK_OPS_OPERATOR": "ana", "TERM": "xterm", "COLUMNS": "100"}
    env.pop("ROLLBACK_OPS_STATE_DIR", None)
    argv = [sys.executable, "-m", "rollback_ops", "--state-dir", str(state), "apply"]
    argv += ["--level", "flag", "-i", inventory, "--flag", f"{KEY}=false", *extra]
    return Terminal(argv, project, env)


GLASS = ("--break-glass", "--reason", "P0: checkout down")


def test_without_an_approval_nothing_is_asked_and_nothing_changes(
    production: tuple[Path, Path, Path],
):
    state, project, env_file = production
    before = env_file.read_bytes()
    term = apply(state, project, "prod")
    code = term.finish()
    assert code == 3, term.text
    assert "needs an approved request" in term.text
    assert "Type the inventory name" not in term.text
    assert env_file.read_bytes() == before
    assert history.read(state) == []


def test_a_wrong_name_is_refused_and_nothing_changes(production: tuple[Path, Path, Path]):
    state, project, env_file = production
    before = env_file.read_bytes()
    for answer in ("staging", "y", "yes", "productions", "local"):
        term = apply(state, project, "prod", *GLASS)
        term.expect(
            b"PRODUCTION: level flag on localhost, by ana, BREAK-GLASS (P0: checkout down)."
        )
        term.expect(b"Type the inventory name (prod) " + PROMPT)
        term.type(answer)
        code = term.finish()
        assert code == 3, term.text
        assert "not confirmed; nothing was changed" in term.text
        assert env_file.read_bytes() == before
        assert history.read(state) == []
        assert not (state / "runs").exists()
        assert not (state / "demo" / "lock" / "rollback.lock").exists()


@pytest.mark.parametrize(
    ("given", "typed"),
    [
        ("prod", "prod"),  # -i prod: prod, though the directory is inventories/production
        ("path", "path"),
        ("path", "path/"),  # a directory typed with the slash shell completion adds
        ("path/", "path"),  # or given with it and typed without
        ("./inventories/production", "./inventories/production"),
    ],
)
def test_the_typed_inventory_name_is_accepted_and_the_run_goes_on(
    production: tuple[Path, Path, Path], given: str, typed: str
):
    state, project, env_file = production
    spelled = {"path": str(project / "inventories" / "production")}
    inventory = given.replace("path", spelled["path"]) if given.startswith("path") else given
    answer = typed.replace("path", spelled["path"]) if typed.startswith("path") else typed
    assert f"{KEY}=true" in env_file.read_text()
    term = apply(state, project, inventory, *GLASS)
    term.expect(PROMPT)
    term.type(answer)
    code = term.finish()
    assert code == 0, term.text
    assert "not confirmed" not in term.text
    assert f"{KEY}=false" in env_file.read_text()
    (row,) = history.read(state)
    assert (row.operator, row.approved_by, row.confirmed_by_typing) == ("ana", "", True)
    assert row.break_glass and row.reason == "P0: checkout down"
    assert row.result == "ok" and row.environment == ["production"]
