"""How long the controller keeps run directories (``<state>/runs/<run id>/``: the receipt,
ansible-runner's artifacts, the private extra-vars file).

A run directory is removed only when it is beyond the newest ``keep`` runs **and** older
than ``max_age`` (both: the last ``keep`` runs and every run of the last ``max_age`` stay),
and never when it is

- unfinished: no readable receipt (running now, or killed mid-run), or the history says
  ``unfinished``;
- a run that left host locks (``locks_left`` in its receipt): ``unlock --run`` names it;
- the newest run on any host its receipt names: what ``apply --resume`` and an undo of the
  last change would read.

Only entries of ``runs/`` whose names are run ids and that are real directories (not
symlinks) are considered; removal never follows a symlink. Every run prunes automatically
when it ends (:func:`after_run`) with ``$ROLLBACK_OPS_KEEP_RUNS`` (default 100; 0 turns
the automatic pruning off) and ``$ROLLBACK_OPS_KEEP_RUNS_FOR`` (default 90d);
``rollback-ops runs prune`` does it on demand, ``--check`` lists without removing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback_ops import durations, history
from rollback_ops.exceptions import ConfigError
from rollback_ops.receipts import MAX_BYTES, RUN_ID

KEEP = 100
MAX_AGE = 90 * 86400
KEEP_ENV = "ROLLBACK_OPS_KEEP_RUNS"
MAX_AGE_ENV = "ROLLBACK_OPS_KEEP_RUNS_FOR"


@dataclass
class RunsPruned:
    """What a pruning removed (or would, in check mode) and why the others stay."""

    check: bool
    keep: int
    max_age_seconds: int
    removed: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # run id -> why it stays
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "keep": self.keep,
            "max_age_seconds": self.max_age_seconds,
            "removed": list(self.removed),
            "kept": dict(self.kept),
            "errors": list(self.errors),
        }


def settings(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """(keep, max age in seconds) from the environment, else the defaults; ConfigError
    names the variable of a bad value."""
    env = os.environ if environ is None else environ
    keep_text = env.get(KEEP_ENV, "").strip()
    keep = KEEP
    if keep_text:
        if not keep_text.isdigit():
            raise ConfigError(f"${KEEP_ENV}={keep_text[:20]!r}: a whole number of runs (0: off)")
        keep = int(keep_text)
    age_text = env.get(MAX_AGE_ENV, "").strip()
    try:
        age = durations.parse(age_text) if age_text else MAX_AGE
    except ValueError as exc:
        raise ConfigError(f"${MAX_AGE_ENV}: {exc}") from None
    return keep, age


def _started(run_id: str, fallback: float) -> float:
    """When a run started, from its id (20250102T030405Z-...), else the dir's mtime."""
    try:
        return (datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)).timestamp()
    except ValueError:
        return fallback


def _receipt(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "receipt.json"
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def run_dirs(state: Path) -> list[tuple[str, float]]:
    """(run id, mtime) of every real directory in runs/ named as a run id, oldest first."""
    runs = state / "runs"
    found = []
    try:
        entries = list(os.scandir(runs))
    except FileNotFoundError:
        return []
    for entry in entries:
        if RUN_ID.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            found.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
    return sorted(found)


def prune_runs(
    state: Path,
    *,
    keep: int = KEEP,
    max_age_seconds: int = MAX_AGE,
    check: bool = False,
    spare: str = "",
    now: float | None = None,
) -> RunsPruned:
    """Remove the run directories the rules above allow (none with ``check``); ``spare`` is
    a run that must stay whatever it says (the one ending now)."""
    now = time.time() if now is None else now
    out = RunsPruned(check=check, keep=keep, max_age_seconds=max_age_seconds)
    found = run_dirs(state)
    unfinished = {r.run_id for r in history.read(state) if r.result == "unfinished"}
    newest_on: dict[str, str] = {}  # host -> its newest run (run ids sort by time)
    receipts: dict[str, dict[str, Any] | None] = {}
    for run_id, _ in found:
        receipts[run_id] = receipt = _receipt(state / "runs" / run_id)
        for host in (receipt or {}).get("hosts") or {}:
            if isinstance(host, str):
                newest_on[host] = run_id
    newest = set(newest_on.values())
    for position, (run_id, mtime) in enumerate(reversed(found)):
        receipt = receipts[run_id]
        if run_id == spare:
            why = "the run ending now"
        elif position < keep:
            why = f"one of the newest {keep}"
        elif now - _started(run_id, mtime) <= max_age_seconds:
            why = "younger than the maximum age"
        elif receipt is None or run_id in unfinished:
            why = "unfinished (no readable receipt, or the history says so)"
        elif receipt.get("locks_left"):
            why = "left host locks (unlock --run names it)"
        elif run_id in newest:
            why = "the newest run on one of its hosts (resume and undo read it)"
        else:
            why = ""
        if why:
            out.kept[run_id] = why
            continue
        if not check:
            try:
                _remove(state / "runs" / run_id)
            except OSError as exc:
                out.errors.append(f"{run_id}: {exc.strerror or exc}")
                continue
        out.removed.append(run_id)
    return out


def _remove(path: Path) -> None:
    """Remove a run directory; never through a symlink (checked again just before)."""
    if not stat.S_ISDIR(path.lstat().st_mode):
        raise OSError(0, "not a directory any more")
    shutil.rmtree(path)  # does not follow symlinks inside (a link is removed, not its target)


def after_run(state: Path, run_id: str) -> RunsPruned | None:
    """The pruning every run does as it ends, with the environment's settings; None when
    turned off ($ROLLBACK_OPS_KEEP_RUNS=0)."""
    keep, age = settings()
    if keep == 0:
        return None
    return prune_runs(state, keep=keep, max_age_seconds=age, spare=run_id)
