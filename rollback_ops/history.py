"""The audit history: an append-only JSON-lines log of every run under the state dir.

Each run appends a ``started`` entry before anything is changed and a ``finished`` entry
after, so a run that crashed mid-way still shows (as unfinished). Entries are never
rewritten: each is one ``write`` to a file opened with O_APPEND, then fsync'd.

Reading trusts nothing: a line that is torn, not UTF-8, not a JSON object or has a field of
the wrong type is skipped with a warning (returned, never printed) and the rest still reads.
The descriptive fields added later (:data:`_DETAIL_FIELDS`: apps, inventory path, links) are
checked the same way, but a damaged one is dropped alone, with a warning, and its run stays.
A history that cannot be written or read at all is a :class:`StateDirError`.

A run that follows another (a resume, an undo, an escalation) says so in its ``started``
entry: ``follows: RUN_ID`` and ``relation``; older entries say ``resumes: RUN_ID`` (and an
undo ``undoes: RUN_ID``), read the same way. The other direction ("resumed by") is computed
when reading: entries are never rewritten.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback_ops import paths, receipts
from rollback_ops.exceptions import RollbackOpsError, StateDirError
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


# how one run follows another: the relation, and the key older entries (and receipts) use
RELATIONS = {"resume": "resumes", "undo": "undoes", "escalate": "escalates"}
# how each relation reads in the table, from the later run and from the earlier one
RELATION_WORDS = {
    "resume": ("resumes", "resumed by"),
    "undo": ("undoes", "undone by"),
    "escalate": ("escalates", "escalated by"),
}


@dataclass
class Link:
    """Another run this one is linked to, and how (see :data:`RELATIONS`)."""

    run_id: str
    relation: str


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
    apps: list[str] = field(default_factory=list)  # the apps the run targeted
    inventory_path: str = ""
    follows: str = ""  # the run this one resumes, undoes or escalates
    relation: str = ""  # how: resume, undo or escalate (RELATIONS)
    reason_from: str = ""  # the run whose reason this one kept (a resume given no --reason)
    procedure: str = ""  # the app's named procedure the run followed (apply --procedure)
    followed_by: list[Link] = field(default_factory=list)  # the later runs that follow this one


def link(relation: str, run_id: str) -> dict[str, str]:
    """The started entry's fields of a run that follows ``run_id`` (none when it is empty):
    ``follows`` and ``relation``, and the relation's own key (``resumes``) older readers know."""
    if not run_id:
        return {}
    return {"follows": run_id, "relation": relation, RELATIONS[relation]: run_id}


def reason_of(state_dir: Path, run_id: str) -> str:
    """The reason run ``run_id`` was given: from its history row, else from its receipt;
    empty when neither says (or neither can be read)."""
    try:
        row = next((r for r in read(state_dir) if r.run_id == run_id), None)
        if row is not None and row.reason:
            return row.reason
        receipt, _ = receipts.load(state_dir, run_id)
    except RollbackOpsError:
        return ""
    reason = (receipt.get("authorization") or {}).get("reason")
    return reason if isinstance(reason, str) else ""


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
# fields added later: a damaged one is dropped alone (with a warning), the run still reads
_DETAIL_FIELDS: dict[str, type] = {
    "apps": list,
    "inventory_path": str,
    "follows": str,
    "relation": str,
    "reason_from": str,
    "procedure": str,
    **{key: str for key in RELATIONS.values()},  # resumes, undoes, escalates
}
_RUN_ID_FIELDS = ("follows", "reason_from", *RELATIONS.values())


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
            entry, dropped = _entry(raw)
            _apply(rows, entry)
        except _Damaged as exc:
            damaged += 1
            if warnings is not None and damaged <= MAX_WARNINGS:
                warnings.append(f"{path.name} line {number}: skipped ({exc})")
            continue
        for why in dropped:
            damaged += 1
            if warnings is not None and damaged <= MAX_WARNINGS:
                warnings.append(f"{path.name} line {number}: {why}")
    if warnings is not None and damaged > MAX_WARNINGS:
        warnings.append(f"{path.name}: {damaged - MAX_WARNINGS} more damaged lines or fields")
    for row in rows.values():  # the other direction of each link, computed, never written
        if row.follows in rows and row.follows != row.run_id:
            rows[row.follows].followed_by.append(Link(row.run_id, row.relation))
    return list(rows.values())


class _Damaged(Exception):
    """A line of the history that cannot be used; the message says why."""


def _entry(raw: bytes) -> tuple[dict[str, Any], list[str]]:
    """One line as a checked entry: a JSON object whose fields have the types written; and
    why each damaged detail field (:data:`_DETAIL_FIELDS`) was dropped from it."""
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
    dropped = []
    for key in _DETAIL_FIELDS if event == "started" else ():
        why = _detail_problem(key, entry.get(key))
        if why:
            dropped.append(f"{key} ignored ({why})")
            del entry[key]
    return entry, dropped


def _detail_problem(key: str, value: Any) -> str:
    """Why a detail field's value cannot be used ("" if it can, or is not there)."""
    kind = _DETAIL_FIELDS[key]
    if value is None:
        return ""
    if not _is(value, kind):
        return f"not {_name(kind)} but {short(value, 40)}"
    if key in _RUN_ID_FIELDS and not receipts.RUN_ID.fullmatch(value):
        return f"not a run id but {short(value, 40)}"
    if key == "relation" and value not in RELATIONS:
        return f"not {', '.join(RELATIONS)} but {short(value, 40)}"
    return ""


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
        for key in (*_STARTED_FIELDS, "apps", "inventory_path", "reason_from", "procedure"):
            if entry.get(key) is not None:
                setattr(row, key, entry[key])
        # older entries name the run they follow by the relation's own key (resumes: ID)
        for relation, key in RELATIONS.items():
            if entry.get(key) and not entry.get("follows"):
                row.follows, row.relation = entry[key], relation
        if entry.get("follows"):
            row.follows, row.relation = entry["follows"], entry.get("relation") or ""
    else:
        row.result = entry.get("result") or row.result
        duration = entry.get("duration")
        row.duration = float(duration) if duration is not None else None
