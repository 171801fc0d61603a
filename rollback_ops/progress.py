"""Showing a run to a person: live per-host progress, diffs, failures and the final recap.

Two renderers with one interface: ``LiveProgress`` redraws one line per host on a TTY;
``PlainProgress`` prints one line per finished step (logs, CI). Both write to a stream
(stderr by default), so ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

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


class PlainProgress:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.width = 8
        self.t0 = time.monotonic()

    def started(self, run_id: str, level: str, hosts: list[str], check: bool) -> None:
        self.width = max([len(h) for h in hosts] + [4])
        mode = " in check mode" if check else ""
        self.write(f"run {run_id}: level {level}{mode} on {len(hosts)} host(s): {', '.join(hosts)}")

    def step(self, event: StepEvent) -> None:
        line = (
            f"[{time.monotonic() - self.t0:6.1f}s] {event.host:<{self.width}}  "
            f"{MARK[event.status]:<8} {event.step}"
        )
        if event.duration >= 1:
            line += f" ({event.duration:.1f}s)"
        if event.message:
            line += f"\n{'':>{self.width + 12}}{event.message}"
        self.write(line)
        if event.diff:
            self.write(_indent(event.diff.rstrip("\n"), f"{event.host}| "))

    def notice(self, text: str) -> None:
        """Something the person at the terminal must know now (e.g. an interruption)."""
        self.write(f"!! {text}")

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class LiveProgress(PlainProgress):
    """One status line per host, redrawn in place; notable events are printed above it."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        self.lines: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.drawn = 0

    def started(self, run_id: str, level: str, hosts: list[str], check: bool) -> None:
        super().started(run_id, level, hosts, check)
        self.lines = {h: "waiting" for h in hosts}
        self.counts = dict.fromkeys(hosts, 0)
        self._draw()

    def step(self, event: StepEvent) -> None:
        self.counts[event.host] = self.counts.get(event.host, 0) + 1
        self.lines[event.host] = f"{MARK[event.status]:<8} {event.step}"
        if event.status in ("changed", "failed", "unreachable") or event.message or event.diff:
            self._clear()
            super().step(event)
        self._draw()

    def notice(self, text: str) -> None:
        self._clear()
        super().notice(text)
        self._draw()

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def _draw(self) -> None:
        self._clear()
        elapsed = time.monotonic() - self.t0
        for host, text in self.lines.items():
            self.stream.write(
                f"  {host:<{self.width}} [{self.counts.get(host, 0):>3} steps "
                f"{elapsed:5.1f}s] {text}"[:150]
                + "\n"
            )
        self.drawn = len(self.lines)
        self.stream.flush()

    def finish(self) -> None:
        self._clear()


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


def _restore(host: HostResult) -> list[str]:
    """The full level's database restore on a host: set, migrations, integrity, data loss."""
    data = host.data
    if "restored" not in data:
        return []
    lines = [f"databases restored from backup set {data.get('set_id')}"]
    for name, files in (data.get("migrations") or {}).items():
        if files:
            lines.append(f"  {name}: migration rollback ran: {', '.join(map(str, files))}")
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
