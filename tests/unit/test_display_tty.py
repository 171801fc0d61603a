"""The live display in a real terminal: tmux, 60 columns, as an operator's window.

A detached tmux session runs rollback-ops (the demo, a real playbook through the local
connection) or a small driver feeding the real LiveProgress real StepEvents with a long
step; ``capture-pane`` reads what the terminal shows, with wrapped lines joined (``-J``), so
a line the display let wrap shows as longer than the window. Checked: the running task's
clock ticks during a long step, no line of the live region is wider than the window (at 60
columns, and after the window narrows mid-run), no status line is left anywhere (screen or
scrollback) once the run ends or is interrupted, and the cursor is shown again. Off a
terminal, and with NO_COLOR, the output is plain lines without one escape sequence.
"""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback_ops import progress
from tests.conftest import ROOT
from tests.requirements import need, unavailable

# a line of the live region: "  HOST  N steps  T.Ts  ..."
STATUS = re.compile(r"^\s+\S+\s+\d+ steps\s+\d+\.\ds")
RUNNING = re.compile(r"^\s+(\S+)\s+\d+ steps\s+\d+\.\ds\s+running\s+(\d+\.\d)s")
LONG_HOST = "db-primary-with-a-rather-long-name"

DRIVER = f"""
import sys, time
from pathlib import Path
from rollback_ops import progress
from rollback_ops.results import StepEvent

display = progress.observer(sys.stderr)
print("display:", type(display).__name__, file=sys.stderr)
hosts = ["web1", "{LONG_HOST}"]
display.started("20260101T000000Z-abcdef", "code", hosts, False)
name = "code: a task whose name alone is longer than the sixty columns of this window"
for i in range(3):
    for host in hosts:
        display.task_started(host, f"{{name}} {{i}}")
        time.sleep(0.1)
        display.step(StepEvent(host, f"{{name}} {{i}}", "ok", 0.1))
for host in hosts:
    display.task_started(host, "code: Stop the app units (a long step)")
display.write("long step")
long = float(sys.argv[1])
time.sleep(long)
for host in hosts:
    display.step(
        StepEvent(host, "code: Stop the app units (a long step)", "changed", long,
                  diff="--- before\\n+++ after\\n-a\\n+b\\n")
    )
display.finish()
print("driver done", file=sys.stderr)
"""


def ensure_tool(tool: str, package: str) -> str:
    """A tool on PATH, installed from its Debian package with apt-get as root when missing
    (without root or apt-get: skipped, failed under CI)."""
    if shutil.which(tool) is None:
        need(os.geteuid() == 0, f"{tool} not installed, and installing it needs root")
        need(shutil.which("apt-get") is not None, f"{tool} not installed, and no apt-get here")
        from rollback_ops.exceptions import LabError
        from rollback_ops.lab import engine

        try:
            engine.install_packages([package])
        except LabError as exc:
            unavailable(f"{tool} not installed, and installing it failed: {exc}")
    found = shutil.which(tool)
    need(found is not None, f"{tool} still missing after installing {package}")
    assert found is not None
    return found


class Pane:
    """A detached tmux session (its own server) running one command at a given size."""

    def __init__(self, tmux: str, command: list[str], width: int, tmp: Path, **env: str) -> None:
        self.tmux = tmux
        self.socket = f"rollback-ops-test-{uuid.uuid4().hex[:8]}"
        self.done = tmp / f"exit-{self.socket}"
        environment = " ".join(
            f"{k}={_sh(v)}" for k, v in {"TERM": "xterm-256color", **env}.items()
        )
        shell = (
            f"cd {_sh(str(ROOT))} && env -u NO_COLOR -u COLUMNS -u LINES {environment} "
            f"{' '.join(_sh(a) for a in command)}; echo $? > {_sh(str(self.done))}; sleep 600"
        )
        self._tmux("new-session", "-d", "-x", str(width), "-y", "20", shell)
        self.width = width

    def _tmux(self, *args: str) -> str:
        proc = subprocess.run(
            [self.tmux, "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return proc.stdout

    def lines(self, history: bool = False, escapes: bool = False) -> list[str]:
        """What the pane shows (and its scrollback), each wrapped line joined back."""
        args = ["capture-pane", "-p", "-J", *(["-S", "-"] if history else [])]
        text = self._tmux(*args, *(["-e"] if escapes else []))
        return [line.rstrip() for line in text.splitlines()]

    def resize(self, width: int) -> None:
        self._tmux("resize-window", "-x", str(width), "-y", "20")
        self.width = width

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def echoes(self) -> bool:
        """Whether the pane's terminal echoes what is typed (its termios ECHO flag)."""
        tty = self._tmux("display-message", "-p", "#{pane_tty}").strip()
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
        try:
            return bool(termios.tcgetattr(fd)[3] & termios.ECHO)
        finally:
            os.close(fd)

    def cursor_shown(self) -> bool:
        return self._tmux("display-message", "-p", "#{cursor_flag}").strip() == "1"

    def wait(self, condition: str | re.Pattern[str], timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.lines()
            if any(re.search(condition, line) for line in shown):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{condition!r} never shown:\n" + "\n".join(self.lines()))

    def exit_code(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while not self.done.exists() or not self.done.read_text().strip():
            if time.monotonic() > deadline:
                raise AssertionError("still running:\n" + "\n".join(self.lines()))
            time.sleep(0.2)
        time.sleep(0.3)  # tmux has drawn what the process wrote before it ended
        return int(self.done.read_text())

    def close(self) -> None:
        subprocess.run([self.tmux, "-L", self.socket, "kill-server"], check=False, timeout=30)


def _sh(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Any]:
    tmux = ensure_tool("tmux", "tmux")
    opened: list[Pane] = []

    def open_pane(command: list[str], width: int = 60, **env: str) -> Pane:
        opened.append(Pane(tmux, command, width, tmp_path, **env))
        return opened[-1]

    yield open_pane
    for p in opened:
        p.close()


def driver(tmp_path: Path, long_step: float) -> list[str]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    return [sys.executable, str(script), str(long_step)]


def demo(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "rollback_ops", "--state-dir", str(tmp_path / "state"), "demo"]


def no_status_line_left(p: Pane) -> None:
    left = [line for line in p.lines(history=True) if STATUS.match(line)]
    assert not left, "stale status lines:\n" + "\n".join(left)


def test_the_clock_ticks_during_a_long_step_and_nothing_is_left_at_60_columns(pane, tmp_path):
    p = pane(driver(tmp_path, long_step=6))
    p.wait("long step")
    ticks: dict[str, list[float]] = {}
    widths = []
    for _ in range(8):
        time.sleep(0.4)
        for line in p.lines():
            if STATUS.match(line):  # a line of the live region, joined if it wrapped
                widths.append(len(line))
            if m := RUNNING.match(line):
                ticks.setdefault(m[1], []).append(float(m[2]))
    assert max(widths) <= 60, "a line wider than the window:\n" + "\n".join(p.lines())
    # both hosts' lines, the long name cut to the width but the clock shown
    assert sorted(ticks) == ["db-primary-with…", "web1"], p.lines()
    for host, seen in ticks.items():
        assert seen == sorted(seen) and len(set(seen)) >= 4, (host, seen)
        assert seen[-1] - seen[0] >= 2, (host, seen)
    assert p.exit_code() == 0
    shown = p.lines(history=True)
    assert "display: LiveProgress" in shown
    assert "driver done" in shown
    assert any("changed" in line and "a long step" in line for line in shown)  # above it
    assert any(line.endswith("| +b") for line in shown)  # the diff too
    no_status_line_left(p)
    assert p.cursor_shown()


def test_a_window_narrowing_mid_run_leaves_no_stale_line(pane, tmp_path):
    p = pane(driver(tmp_path, long_step=5), width=100)
    p.wait("long step")
    time.sleep(0.5)  # full-width lines drawn at 100 columns
    p.resize(45)
    time.sleep(1)
    status = [line for line in p.lines() if STATUS.match(line)]
    assert len(status) == 2 and max(map(len, status)) <= 45, "\n".join(p.lines())
    p.resize(70)
    time.sleep(0.5)
    assert p.exit_code() == 0
    no_status_line_left(p)
    assert sum(bool(RUNNING.match(line)) for line in p.lines()) == 0


def test_a_real_run_at_60_columns_ends_with_the_recap_and_no_live_line(pane, tmp_path):
    p = pane(demo(tmp_path))
    p.wait(RUNNING)
    assert p.exit_code() == 0
    shown = p.lines(history=True)
    assert any(line.startswith("RECAP run ") for line in shown)
    assert any("OK: 1 host(s), 1 change(s)" in line for line in shown)
    no_status_line_left(p)
    assert p.cursor_shown()


def test_ctrl_c_removes_the_live_lines_and_shows_the_cursor(pane, tmp_path):
    p = pane(demo(tmp_path))
    p.wait(RUNNING)
    assert not p.cursor_shown()  # hidden while the region is redrawn
    p.keys("C-c")
    assert p.exit_code() == 130
    shown = p.lines(history=True)
    assert any("INTERRUPTED (SIGINT)" in line for line in shown), shown
    assert any(line.startswith("!! SIGINT: stopping after the running step") for line in shown)
    no_status_line_left(p)
    assert p.cursor_shown()
    assert p.echoes()  # the terminal's echo, off while the region was drawn, is back


def test_no_color_in_a_terminal_prints_plain_lines_without_escapes(pane, tmp_path):
    p = pane(demo(tmp_path), NO_COLOR="1")
    assert p.exit_code() == 0
    shown = "\n".join(p.lines(history=True, escapes=True))
    assert "\x1b" not in shown
    assert re.search(r"^\[\s*\d+\.\ds\] localhost\s+changed\s+envfile: ", shown, re.M), shown
    no_status_line_left(p)


def test_off_a_terminal_the_output_is_plain_lines(tmp_path: Path):
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.run(
        demo(tmp_path), capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr
    assert re.search(r"^\[\s*\d+\.\ds\] localhost\s+changed\s+envfile: ", proc.stderr, re.M)
    assert not [line for line in proc.stderr.splitlines() if STATUS.match(line)]


@pytest.mark.parametrize(
    ("env", "live"),
    [({}, True), ({"NO_COLOR": "1"}, False), ({"NO_COLOR": ""}, True), ({"TERM": "dumb"}, False)],
)
def test_the_display_is_live_only_on_a_terminal_that_can_redraw_and_show_colour(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], live: bool
):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty, open(os.devnull, "w") as devnull:
        assert isinstance(progress.observer(tty), progress.LiveProgress) is live
        assert type(progress.observer(devnull)) is progress.PlainProgress
    os.close(master)


@pytest.mark.parametrize("status", sorted(progress.MARK))
def test_every_status_is_shown_by_both_displays(status: str):
    from rich.console import Console

    from rollback_ops.results import StepEvent

    event = StepEvent("web1", "code: a step", status, 1.5, message="why" if status != "ok" else "")
    plain = io.StringIO()
    shown = progress.PlainProgress(plain)
    shown.started("RUN", "code", ["web1"], False)
    shown.step(event)
    assert re.search(rf"web1  {progress.MARK[status]} +code: a step \(1\.5s\)", plain.getvalue())
    terminal = io.StringIO()
    live = progress.LiveProgress(terminal, Console(file=terminal, force_terminal=True, width=60))
    live.started("RUN", "code", ["web1"], False)
    live.task_started("web1", "code: a step")
    live.step(event)
    live.finish()
    assert progress.MARK[status] in terminal.getvalue()
    assert not progress._LIVE


def test_a_command_failing_mid_run_ends_the_live_display(monkeypatch: pytest.MonkeyPatch):
    """cli.main ends every live display before it prints an error: the region goes, the
    cursor comes back, the terminal echoes again."""
    from rollback_ops import cli
    from rollback_ops.exceptions import RunnerError

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:

        def failing(args: object) -> int:
            display = progress.observer(tty)
            assert isinstance(display, progress.LiveProgress)
            display.started("RUN", "flag", ["web1"], False)
            assert not termios.tcgetattr(tty.fileno())[3] & termios.ECHO
            raise RunnerError("ansible-runner failed during flag.yml")

        monkeypatch.setitem(cli.COMMANDS, "levels", failing)
        assert cli.main(["levels"]) == 4
        assert not progress._LIVE
        assert termios.tcgetattr(tty.fileno())[3] & termios.ECHO
        shown = b""
        while select.select([master], [], [], 0.5)[0]:  # a pty hands its output in pieces
            shown += os.read(master, 65536)
    os.close(master)
    assert b"\x1b[?25l" in shown and shown.rindex(b"\x1b[?25h") > shown.rindex(b"\x1b[?25l")
