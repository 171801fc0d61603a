"""The audit history: an append-only JSON-lines log of every run under the state dir.

Each run appends a ``started`` entry before anything is changed and a ``finished`` entry
after, so a run that crashed mid-way still shows (as unfinished). Entries are never
rewritten: each is one ``write`` to a file opened with O_APPEND, then fsync'd.

Reading trusts nothing: a line that is torn, not UTF-8, not a JSON object or has a field of
the wrong type is skipped with a warning (returned, never printed) and the rest still reads.
A history that cannot be written or read at all is a :class:`StateDirError`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback_ops import paths
from rollback_ops.exceptions import StateDirError
from rollback_ops.text import short

MAX_WARNINGS = 50  # then one line counts the rest: a wrecked file must not flood the terminal


def history_path(state_dir: Path) -> Path:
    return state_dir / "history.jsonl"


def append(state_dir: Path, entry: dict[str, Any]) -> None:
    """Add one entry; :class:`StateDirError` if the history cannot be written (full disk,
    read-only file system, the state dir is a file ...)."""
    path = history_path(state_dir)
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        problem = "not a directory" if isinstance(exc, FileExistsError) else paths.os_problem(exc)
        raise StateDirError(state_dir, f"cannot write {path.name}: {problem}") from None


@dataclass
class HistoryRow:
    run_id: str
    started: str = ""
    operator: str = ""
    approved_by: str = ""
    break_glass: bool = False
    confirmed_by_typing: bool = False
    reason: str = ""
    level: str = ""
    inventory: str = ""
    environment: list[str] = field(default_factory=list)
    check: bool = False
    hosts: list[str] = field(default_factory=list)
    result: str = "unfinished"
    duration: float | None = None
    receipt: str = ""


_STARTED_FIELDS: dict[str, type] = {
    "operator": str,
    "approved_by": str,
    "break_glass": bool,
    "confirmed_by_typing": bool,
    "reason": str,
    "level": str,
    "inventory": str,
    "environment": list,
    "check": bool,
    "hosts": list,
    "receipt": str,
}


def read(state_dir: Path, warnings: list[str] | None = None) -> list[HistoryRow]:
    """Every run, oldest first; a run with no ``finished`` entry is ``unfinished``.

    A damaged line is skipped; ``warnings`` (when given) gets one line per damaged line,
    ``history.jsonl line N: skipped (why)``. :class:`StateDirError` if the file cannot be read.
    """
    path = history_path(state_dir)
    try:
        with path.open("rb") as handle:
            lines = list(handle)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if isinstance(exc, NotADirectoryError):
            problem = "not a directory"
        elif isinstance(exc, IsADirectoryError):
            problem = f"{path.name} is a directory, not a file"
        else:
            problem = f"cannot read {path.name}: {paths.os_problem(exc)}"
        raise StateDirError(state_dir, problem) from None
    rows: dict[str, HistoryRow] = {}
    damaged = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            _apply(rows, _entry(raw))
        except _Damaged as exc:
            damaged += 1
            if warnings is not None and damaged <= MAX_WARNINGS:
                warnings.append(f"{path.name} line {number}: skipped ({exc})")
    if warnings is not None and damaged > MAX_WARNINGS:
        warnings.append(f"{path.name}: {damaged - MAX_WARNINGS} more damaged lines skipped")
    return list(rows.values())


class _Damaged(Exception):
    """A line of the history that cannot be used; the message says why."""


def _entry(raw: bytes) -> dict[str, Any]:
    """One line as a checked entry: a JSON object whose fields have the types written."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Damaged(f"not UTF-8 at byte {exc.start + 1}") from None
    try:
        entry = json.loads(text)
    except RecursionError:
        raise _Damaged("nested too deeply") from None
    except ValueError as exc:
        raise _Damaged(f"not JSON, torn by a crash mid-write? {exc}") from None
    if not isinstance(entry, dict):
        raise _Damaged(f"not a JSON object but {type(entry).__name__} {short(entry, 40)}")
    run_id = entry.get("run_id")
    if not isinstance(run_id, str) or not run_id.strip():
        raise _Damaged(f"run_id: not a non-empty string but {short(run_id, 40)}")
    event = entry.get("event")
    if event not in ("started", "finished"):
        raise _Damaged(f"event: not started or finished but {short(event, 40)}")
    expected = _STARTED_FIELDS if event == "started" else {"result": str}
    for key, kind in {"at": str, **expected}.items():
        value = entry.get(key)
        if value is not None and not _is(value, kind):
            raise _Damaged(f"{key}: not {_name(kind)} but {short(value, 40)}")
    duration = entry.get("duration")
    if event == "finished" and duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise _Damaged(f"duration: not a number but {short(duration, 40)}")
        if not math.isfinite(duration) or duration < 0:
            raise _Damaged(f"duration: not a number of seconds but {short(duration, 40)}")
    return entry


def _is(value: Any, kind: type) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is str or kind is bool:
        return type(value) is kind
    return isinstance(value, kind)


def _name(kind: type) -> str:
    return {str: "a string", bool: "true or false", list: "a list of strings"}.get(kind, str(kind))


def _apply(rows: dict[str, HistoryRow], entry: dict[str, Any]) -> None:
    row = rows.setdefault(entry["run_id"], HistoryRow(entry["run_id"]))
    if entry["event"] == "started":
        row.started = entry.get("at") or ""
        for key in _STARTED_FIELDS:
            if entry.get(key) is not None:
                setattr(row, key, entry[key])
    else:
        row.result = entry.get("result") or row.result
        duration = entry.get("duration")
        row.duration = float(duration) if duration is not None else None
