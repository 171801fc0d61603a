"""The audit history: an append-only JSON-lines log of every run under the state dir.

Each run appends a ``started`` entry before anything is changed and a ``finished`` entry
after, so a run that crashed mid-way still shows (as unfinished). Entries are never
rewritten: each is one ``write`` to a file opened with O_APPEND, then fsync'd.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def history_path(state_dir: Path) -> Path:
    return state_dir / "history.jsonl"


def append(state_dir: Path, entry: dict[str, Any]) -> None:
    path = history_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **entry}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


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


def read(state_dir: Path) -> list[HistoryRow]:
    """Every run, oldest first; a run with no ``finished`` entry is ``unfinished``."""
    path = history_path(state_dir)
    if not path.exists():
        return []
    rows: dict[str, HistoryRow] = {}
    for raw in path.read_text().splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue  # a line torn by a crash mid-write: the rest of the log still reads
        run_id = entry.get("run_id")
        if not isinstance(run_id, str):
            continue
        row = rows.setdefault(run_id, HistoryRow(run_id))
        if entry.get("event") == "started":
            row.started = entry.get("at", "")
            for key in (
                "operator",
                "approved_by",
                "break_glass",
                "confirmed_by_typing",
                "reason",
                "level",
                "inventory",
                "environment",
                "check",
                "hosts",
                "receipt",
            ):
                if key in entry:
                    setattr(row, key, entry[key])
        elif entry.get("event") == "finished":
            row.result = entry.get("result", row.result)
            row.duration = entry.get("duration")
    return list(rows.values())
