"""Showing a run to a person: live per-host progress, diffs, failures and the final recap.

Two renderers with one interface (:func:`observer` picks one): ``LiveProgress`` redraws one
line per host on a terminal, with the task running on it and a clock that ticks while it
runs; ``PlainProgress`` prints one line per finished step (logs, CI, a pipe, ``TERM=dumb``,
and ``NO_COLOR``, which asks for text without escape sequences: https://no-color.org). Both
write to a stream (stderr by default), so ``--json`` output on stdout stays clean.

The live region never leaves a stale line: each host's line is cut to the terminal's width
(read again at every redraw, so a narrower window or a resize does not make it wrap), lines
a resize rewrapped are counted before they are erased, and the region is removed when the
run ends, fails or is interrupted (:meth:`LiveProgress.finish`; :func:`stop_displays` for an
error on the way out), with the cursor shown again. While it is drawn the terminal does not
echo (a typed key or the ``^C`` of Ctrl-C would push its last line out of place), and a
signal handler's notice is printed by the display's ticker thread, which also redraws four
times a second so that the clock ticks during a long step.

The live region is drawn by ``rich`` (a runtime dependency for this): it measures the
terminal and each character's cell width (wide and combining characters included), cuts
and styles text, prints notable events above the region from any thread, and hides and
restores the cursor; doing that by hand with escape sequences is what left stale lines and
a frozen clock before.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import termios
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from rollback_ops.operations import OPERATIONS
from rollback_ops.results import HostResult, RunResult, StepEvent

MARK = {
    "ok": "ok",
    "changed": "changed",
    "failed": "FAILED",
    "unreachable": "UNREACHABLE",
    "skipped": "skipped",
    "interrupted": "INTERRUPTED",
}
STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "skipped": "dim",
    "interrupted": "bold magenta",
    "running": "cyan",
}
NOTABLE = ("changed", "failed", "unreachable")


def observer(stream: TextIO | None = None) -> PlainProgress:
    """The live display on a terminal that can redraw and may show colour; plain lines on
    anything else (not a TTY, ``TERM=dumb``, ``NO_COLOR`` set to anything but "")."""
    stream = stream or sys.stderr
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        tty = False
    dumb = os.environ.get("TERM", "") in ("dumb", "unknown")
    if tty and not dumb and not os.environ.get("NO_COLOR"):
        return LiveProgress(stream)
    return PlainProgress(stream)


class PlainProgress:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.width = 8
        self.t0 = time.monotonic()

    def started(self, run_id: str, level: str, hosts: list[str], check: bool) -> None:
        self.width = max([len(h) for h in hosts] + [4])
        mode = " in check mode" if check else ""
        self.write(f"run {run_id}: level {level}{mode} on {len(hosts)} host(s): {', '.join(hosts)}")

    def task_started(self, host: str, step: str) -> None:
        """A task began on a host (the plain lines show finished steps only)."""

    def step(self, event: StepEvent) -> None:
        self.write_step(event, self._head(event), self._tail(event))
        if event.diff:
            self.write(_indent(event.diff.rstrip("\n"), f"{event.host}| "))

    def _head(self, event: StepEvent) -> str:
        return f"[{time.monotonic() - self.t0:6.1f}s] {event.host:<{self.width}}  "

    def _tail(self, event: StepEvent) -> str:
        line = " " * max(0, 8 - len(MARK[event.status])) + f" {event.step}"  # marks in a column
        if event.duration >= 1:
            line += f" ({event.duration:.1f}s)"
        if event.message:
            line += f"\n{'':>{self.width + 12}}{event.message}"
        return line

    def write_step(self, event: StepEvent, head: str, rest: str) -> None:
        """One finished step: head, its status mark, then rest."""
        self.write(head + MARK[event.status] + rest)

    def notice(self, text: str) -> None:
        """Something the person at the terminal must know now (e.g. an interruption)."""
        self.write(f"!! {text}")

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def finish(self) -> None:
        """The run is over (or failed): nothing to tidy for plain lines."""


# the live displays running now: stop_displays() ends them before an error is printed
_LIVE: set[LiveProgress] = set()


def stop_displays() -> None:
    """End every live display still drawn (a command failed on its way out)."""
    for display in list(_LIVE):
        display.finish()


class LiveProgress(PlainProgress):
    """One status line per host, redrawn in place four times a second; notable events are
    printed above it; :meth:`finish` removes it."""

    REFRESH_PER_SECOND = 4
    FIXED = 44  # the columns of a line besides the host name, up to the running task's clock

    def __init__(self, stream: TextIO | None = None, console: Console | None = None):
        super().__init__(stream)
        self.console = console or Console(file=self.stream, highlight=False, emoji=False)
        self.hosts: list[str] = []
        self.last: dict[str, tuple[str, str]] = {}  # host: (status, step) of its last step
        self.running: dict[str, tuple[str, float]] = {}  # host: (task, since)
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.notices: list[str] = []  # said by a signal handler: printed by the ticker
        self.ticker: threading.Thread | None = None
        self.stopping = threading.Event()
        self.echo: list[Any] | None = None  # the terminal's settings, echo on, to restore

    def started(self, run_id: str, level: str, hosts: list[str], check: bool) -> None:
        super().started(run_id, level, hosts, check)
        with self.lock:
            self.hosts = list(hosts)
            self.counts = dict.fromkeys(hosts, 0)
        self.live = _Live(
            get_renderable=self.render,
            console=self.console,
            auto_refresh=False,  # self.ticker redraws
            transient=True,  # removed at the end: the recap follows
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        _LIVE.add(self)
        self._echo_off()
        self.live.start(refresh=True)
        self.ticker = threading.Thread(target=self._tick, name="rollback-ops-display", daemon=True)
        self.ticker.start()

    def _tick(self) -> None:
        """Redraw (the clocks tick) and print what a signal handler said."""
        while not self.stopping.wait(1 / self.REFRESH_PER_SECOND):
            self._say_notices()
            self._refresh()

    def _say_notices(self) -> None:
        while self.notices:
            self._print(Text(f"!! {self.notices.pop(0)}", style="bold"))

    def task_started(self, host: str, step: str) -> None:
        with self.lock:
            self.running[host] = (step, time.monotonic())

    def step(self, event: StepEvent) -> None:
        with self.lock:
            self.counts[event.host] = self.counts.get(event.host, 0) + 1
            self.last[event.host] = (event.status, event.step)
            self.running.pop(event.host, None)
        if event.status in NOTABLE or event.message or event.diff:
            super().step(event)
        self._refresh()

    def write_step(self, event: StepEvent, head: str, rest: str) -> None:
        line = Text(head)
        line.append(MARK[event.status], style=STYLE[event.status])
        line.append(rest)
        self._print(line)

    def write(self, text: str) -> None:
        self._print(Text(text))

    def notice(self, text: str) -> None:
        """Printed by the ticker within a quarter second: a signal handler calls this, and
        must not write to the terminal while the code it interrupted may be writing."""
        self.notices.append(text)

    def _print(self, text: Text) -> None:
        """Above the live region (rich moves it down); long lines are left for the terminal
        to wrap, so that a copied line stays one line."""
        self.console.print(text, soft_wrap=True)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.refresh()

    def render(self) -> RenderableType:
        """The live region: one line per host, cut to the terminal's width."""
        now = time.monotonic()
        # long host names give way first: the clocks and the status stay in sight
        names = min(self.width, max(8, self.console.size.width - self.FIXED))
        with self.lock:
            lines = [self._line(host, names, now) for host in self.hosts]
        for line in lines:
            line.no_wrap = True
            line.overflow = "ellipsis"
        return Group(*lines)

    def _line(self, host: str, names: int, now: float) -> Text:
        name = host if len(host) <= names else host[: names - 1] + "…"
        line = Text(f"  {name:<{names}} {self.counts.get(host, 0):>3} steps ")
        line.append(f"{now - self.t0:6.1f}s  ", style="dim")
        if host in self.running:
            task, since = self.running[host]
            line.append("running ", style=STYLE["running"])
            line.append(f"{now - since:5.1f}s", style="bold")  # before the task: never cut
            line.append(f" {task}")
        elif host in self.last:
            status, step = self.last[host]
            line.append(f"{MARK[status]:<8}", style=STYLE[status])
            line.append(f" {step}")
        else:
            line.append("waiting", style="dim")
        return line

    def finish(self) -> None:
        """Remove the live region and show the cursor again (at the end, on an error and
        after an interruption); safe to call twice."""
        live, self.live = self.live, None
        _LIVE.discard(self)
        self.stopping.set()
        if self.ticker is not None:
            self.ticker.join()
        self._say_notices()
        if live is not None:
            live.stop()
        self._echo_on()

    def _echo_off(self) -> None:
        """No echo while the region is drawn: a key typed, or the ``^C`` the terminal echoes
        for Ctrl-C, would land after its last line and push it onto a row it does not know."""
        try:
            fd = self.stream.fileno()
            self.echo = termios.tcgetattr(fd)
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except (AttributeError, OSError, ValueError, termios.error):  # not a terminal's fd
            self.echo = None

    def _echo_on(self) -> None:
        echo, self.echo = self.echo, None
        if echo is not None:
            with contextlib.suppress(OSError, ValueError, termios.error):
                termios.tcsetattr(self.stream.fileno(), termios.TCSANOW, echo)


class _Live(Live):
    """rich's Live, erasing what a resize rewrapped: a terminal that narrows rewraps the
    lines drawn at the old width (tmux, VTE, kitty), so the region is taller than rich drew
    it; this counts those rows at the new width before moving up to redraw."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drawn: list[int] = []  # the cell widths of the lines drawn last
        self._drawn_at = 0  # the terminal width they were drawn at

    def refresh(self) -> None:
        with self._lock:
            width = self.console.size.width
            shape = self._live_render._shape
            if shape is not None and self._drawn and width < self._drawn_at:
                rows = sum(max(1, math.ceil(cells / width)) for cells in self._drawn)
                self._live_render._shape = (shape[0], max(shape[1], rows))
            super().refresh()
            lines = self.console.render_lines(self.renderable, pad=False) if self._started else []
            self._drawn = [sum(s.cell_length for s in line) for line in lines]
            self._drawn_at = width


def recap(result: RunResult) -> str:
    """The table every run ends with: host, result, changed, failed step, duration."""
    rows = [("HOST", "RESULT", "CHANGED", "DURATION", "FAILED STEP")]
    for name, host in sorted(result.hosts.items()):
        rows.append(
            (
                name,
                host.status,
                str(host.changed),
                f"{host.duration:.1f}s",
                f"{host.failed_step}: {host.message}" if host.failed_step else "",
            )
        )
    lines = [
        "",
        f"RECAP run {result.run_id} level {result.level} on {result.inventory}"
        + (" (check mode: nothing was changed)" if result.check else ""),
    ]
    lines += ["  " + line for line in table(rows)]
    flags = [(name, f) for name, h in sorted(result.hosts.items()) for f in h.flags if f.changed]
    if flags:
        lines.append("  values " + ("that would change:" if result.check else "changed:"))
        lines += [f"    {name}: {f.key} {f.before} -> {f.after}" for name, f in flags]
    code = [
        f"    {name}: {line}"
        for name, h in sorted(result.hosts.items())
        if (result.check or h.changed) and (line := _code(h))
    ]
    if code:
        lines += ["  code " + ("that would be reverted:" if result.check else "reverted:"), *code]
    for name, h in sorted(result.hosts.items()):
        lines += [f"  {name}: {line}" for line in _restore(h)]
    backups = [(name, b) for name, h in sorted(result.hosts.items()) for b in h.backups]
    if backups:
        lines.append("  backups made (copies taken before the change):")
        lines += [f"    {name}: {b}" for name, b in backups]
    lines += [f"  {name}: {note}" for name, h in sorted(result.hosts.items()) for note in h.notes]
    lines += [f"  warning: {w}" for w in result.warnings]
    for n in result.notifications:
        state = "sent" if n["ok"] else f"FAILED ({n['error']})"
        lines.append(f"  notification {n['event']} by {n['channel']}: {state}")
    lines += _how_to_continue(result)
    verdict = {
        "ok": "OK",
        "failed": "FAILED",
        "refused": "REFUSED (nothing was changed)",
        "interrupted": f"INTERRUPTED ({result.interrupted})",
    }[result.outcome]
    saved = (
        f"receipt NOT saved ({result.receipt_error}): printed on stdout"
        if result.receipt_error
        else f"receipt: {result.run_dir}/receipt.json"
    )
    lines.append(
        f"  {verdict}: {len(result.hosts)} host(s), {result.changed} change(s), "
        f"{result.duration:.1f}s; {saved}"
    )
    return "\n".join(lines)


def _how_to_continue(result: RunResult) -> list[str]:
    """After a failure or an interruption: what changed, what is left, how to go on."""
    if result.ok or result.check or result.refused:
        return []
    lines = []
    if result.interrupted:
        changed = ", ".join(result.changed_hosts) or "none"
        unfinished = ", ".join(h.name for h in result.failed_hosts) or "none"
        how = "stopped at once" if result.hard_stop else "stopped between two steps"
        lines.append(f"  interrupted by {result.interrupted}, {how}")
        lines.append(f"  hosts changed before the stop: {changed}")
        lines.append(f"  hosts that did not finish: {unfinished}")
    if result.level in OPERATIONS and OPERATIONS[result.level].resumable:
        lines.append(
            "  where a host stopped, it stays in maintenance; once the cause is fixed, continue "
            f"with: rollback-ops apply --resume {result.run_id}"
        )
    elif result.level in ("flag", "emergency", "config"):
        lines.append(
            "  to finish, run the same command again: the hosts already done report no change"
        )
    if result.locks_left:
        # after a hard stop the release may have run on a host without its result arriving
        held = "may still hold" if result.hard_stop else "still hold"
        lines.append(
            f"  {', '.join(result.locks_left)} {held} this run's host lock: clear it with "
            f"rollback-ops unlock -i {result.inventory_path} --run {result.run_id}"
        )
    return lines


def _code(host: HostResult) -> str:
    """The code a host went from and to (code level), for the recap."""
    code = host.code
    target = code.get("target") or {}
    if not target or not code.get("needed"):
        return ""
    if "sha" in target:
        head = str((code.get("current") or {}).get("head", ""))[:12]
        return f"{head} -> {target.get('ref')} ({str(target['sha'])[:12]})"
    backups = target.get("backups") or {}
    return "restored from " + ", ".join(str(b) for b in backups.values())


def _schema(host: HostResult) -> list[str]:
    """The schema level on a host: what its migration rollback dropped (or would)."""
    data = host.data
    costs = data.get("dropped") or data.get("planned") or {}
    if "restored" in data or not costs:
        return []
    verb = "dropped" if data.get("dropped") else "would drop"
    lines = []
    for name, cost in costs.items():
        if not cost.get("changes"):
            lines.append(f"{name}: schema already rolled back, nothing to drop")
            continue
        what = [
            f"column {c['table']}.{c['column']} ({c['non_null']} value(s))"
            for c in cost.get("columns", [])
        ]
        what += [
            f"table {t['table']} ({t['rows']} row(s), {t['non_null']} value(s))"
            for t in cost.get("tables", [])
        ]
        lines.append(
            f"{name}: migration rollback {verb} {'; '.join(what) or 'nothing'} "
            f"- {cost.get('values_lost', 0)} non-null value(s) lost"
        )
    if data.get("forensic_set_id"):
        lines.append(f"live data from before kept in forensic set {data['forensic_set_id']}")
    return lines


def _restore(host: HostResult) -> list[str]:
    """The full level's database restore on a host: set, migrations, integrity, data loss."""
    data = host.data
    if "restored" not in data:
        return _schema(host)
    lines = [f"databases restored from backup set {data.get('set_id')}"]
    first = data.get("migrations_first") or {}
    for name, files in (data.get("migrations") or {}).items():
        if files:
            when = f" before the restore ({'; '.join(first[name])})" if name in first else ""
            names = ", ".join(str(f["file"]) if isinstance(f, dict) else str(f) for f in files)
            lines.append(f"  {name}: migration rollback ran{when}: {names}")
    for name, check in (data.get("integrity") or {}).items():
        state = "ok" if check.get("ok") else "FAILED"
        lines.append(f"  {name}: integrity checks {state}")
    for database, tables in (data.get("data_loss") or {}).items():
        for table, loss in tables.items():
            lines.append(
                f"  data loss in {database}.{table}: {loss.get('missing_count', 0)} row(s) "
                f"written since the backup, {loss.get('changed_count', 0)} changed (kept in "
                f"forensic set {data.get('forensic_set_id')})"
            )
    return lines


def backup_table(result: RunResult) -> str:
    """What a backup command found or made, per host."""
    rows = [("HOST", "SET", "KIND", "CREATED", "SIZE", "VERIFIED", "CODE")]
    for name, host in sorted(result.hosts.items()):
        data = host.data
        sets = data.get("sets")
        if sets is None and data.get("manifest"):
            sets = [_summary(data["manifest"])]
        for item in sets or []:
            verified = item.get("verified")
            rows.append(
                (
                    name,
                    str(item.get("set_id", "")),
                    str(item.get("kind", "")),
                    str(item.get("created", "")),
                    _size(int(item.get("size") or 0)),
                    "yes" if verified else "NO" if verified is False else "?",
                    str(item.get("describe", "")),
                )
            )
        if "verification" in data and "manifest" not in data:
            v = data["verification"] or {}
            problems = "; ".join(v.get("problems") or [])
            rows.append(
                (
                    name,
                    str(data.get("set_id", "")),
                    "",
                    "",
                    "",
                    "yes" if v.get("ok") else "NO",
                    problems,
                )
            )
        for removed in data.get("removed") or []:
            what = removed if isinstance(removed, str) else removed.get("set_id", "")
            rows.append(
                (name, str(what), "", "", "", "", "would remove" if result.check else "removed")
            )
    if len(rows) == 1:
        return ""
    return "\n".join(["", *table(rows)])


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    size = sum(int(d.get("size") or 0) for d in manifest.get("databases", []))
    size += sum(int(f.get("size") or 0) for f in manifest.get("files", []))
    return {
        "set_id": manifest.get("set_id"),
        "kind": manifest.get("kind"),
        "created": manifest.get("created"),
        "size": size,
        "verified": (manifest.get("verification") or {}).get("ok"),
        "describe": (manifest.get("code") or {}).get("describe", ""),
    }


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines with aligned columns (the last column, often long, is not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    ]


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())
