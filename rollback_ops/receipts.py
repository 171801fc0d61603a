"""The receipts of runs (``<state>/runs/<run_id>/receipt.json``): written by :func:`save`,
read back by :func:`load`.

A receipt is a file on disk, so nothing in it is trusted: :func:`load` checks that it is a
JSON object whose keys have the types the receipt writer gives them (:data:`FIELDS`, and
per host :data:`HOST_FIELDS`), and a run id is checked against :data:`RUN_ID` before it
becomes part of a path. Receipts are versioned documents (:mod:`rollback_ops.jsonout`, kind
``receipt``); one written before receipts carried ``schema_version`` reads as version 1, one
of a newer version than this rollback-ops knows is refused, naming both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from rollback_ops import jsonout, paths
from rollback_ops.exceptions import ConfigError, StateDirError
from rollback_ops.text import one_line, short

# what a run id may be before it is joined to a path: new_run_id() makes
# 20250102T030405Z-a1b2c3; letters, digits, - and _ (no dot, no slash, no NUL), at most 64
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_BYTES = 64 << 20  # a receipt of many hosts is a few MB; beyond this it is not ours

_STR, _BOOL, _NUM, _DICT, _LIST = "a string", "true or false", "a number", "an object", "a list"
_OPT_STR = "a string or null"
# key: (kind, required)
FIELDS: dict[str, tuple[str, bool]] = {
    "run_id": (_STR, True),
    "level": (_STR, True),
    "result": (_STR, True),
    "hosts": (_DICT, True),
    "inventory": (_STR, False),
    "inventory_path": (_STR, False),
    "check": (_BOOL, False),
    "authorization": (_DICT, False),
    "apps": (_DICT, False),
    "request": (_DICT, False),
    "resumes": (_STR, False),
    "undoes": (_STR, False),
    "started": (_STR, False),
    "duration": (_NUM, False),
    "backups": (_LIST, False),
    "warnings": (_LIST, False),
}
HOST_FIELDS: dict[str, str] = {
    "status": _STR,
    "steps": _LIST,
    "flags": _LIST,
    "failed_step": _STR,
    "message": _STR,
    "code": _DICT,
    "data": _DICT,
}
# every step and flag change a host lists has all of these (the writer's dataclasses; a step's
# stable ``id`` is checked where present: receipts written before it have none)
STEP_FIELDS = {"step": _STR, "status": _STR, "action": _STR, "message": _STR}
STEP_OPTIONAL = {"id": _STR}
FLAG_FIELDS = {"key": _STR, "before": _OPT_STR, "after": _STR, "changed": _BOOL}
BACKUP_FIELDS = {"host": _STR, "path": _STR}


def check_run_id(run_id: str) -> str:
    """``run_id`` if it can name a run; ConfigError (echoing at most 80 characters) if not."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"no receipt for run {short(run_id)}: not a run id (run ids look like "
            "20250102T030405Z-a1b2c3; see `rollback-ops history`)"
        )
    return run_id


def load(state_dir: Path, run_id: str) -> tuple[dict[str, Any], Path]:
    """A run's receipt and its run dir; ConfigError naming the latest runs when it is unknown,
    or saying what is wrong with the file; StateDirError if the state dir is unusable."""
    check_run_id(run_id)
    state_dir = paths.readable_state_dir(state_dir)
    runs = state_dir / "runs"
    run_dir = runs / run_id
    receipt = run_dir / "receipt.json"
    try:
        if not receipt.exists():
            raise ConfigError(f"no receipt for run {short(run_id)} in {runs}{_latest(runs)}")
        if not receipt.is_file():
            raise ConfigError(f"receipt {receipt}: not a file")
        if receipt.stat().st_size > MAX_BYTES:
            raise ConfigError(f"receipt {receipt}: larger than {MAX_BYTES >> 20} MB")
        raw = receipt.read_bytes()
    except OSError as exc:
        raise StateDirError(state_dir, f"cannot read {receipt}: {paths.os_problem(exc)}") from None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ConfigError(f"receipt {receipt} is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(
            f"receipt {receipt} is not valid JSON: {one_line(str(exc), 120)}"
        ) from None
    problems = validate(data)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"receipt {receipt}: {'; '.join(problems[:3])}{more}")
    return data, run_dir


def validate(data: Any) -> list[str]:
    """What is wrong with a receipt's shape, one line per problem (empty: it is sound)."""
    if not isinstance(data, dict):
        return [f"not a JSON object but {_kind(data)}"]
    problems = _version(data)
    for key, (kind, required) in FIELDS.items():
        if key not in data:
            if required:
                problems.append(f"{key}: missing")
        elif not _is(data[key], kind):
            problems.append(f"{key}: not {kind} but {_kind(data[key])}")
    backups = data.get("backups")
    for i, item in enumerate(backups if isinstance(backups, list) else []):
        problems += _items(item, BACKUP_FIELDS, f"backups[{i}]")
    hosts = data.get("hosts")
    for host, h in hosts.items() if isinstance(hosts, dict) else []:
        where = f"hosts.{one_line(host, 40)}"
        if not isinstance(h, dict):
            problems.append(f"{where}: not an object but {_kind(h)}")
            continue
        problems += _fields(h, HOST_FIELDS, where)
        for part, fields in (("steps", STEP_FIELDS), ("flags", FLAG_FIELDS)):
            items = h.get(part)
            for i, item in enumerate(items if isinstance(items, list) else []):
                problems += _items(item, fields, f"{where}.{part}[{i}]")
                if part == "steps" and isinstance(item, dict):
                    problems += _fields(item, STEP_OPTIONAL, f"{where}.{part}[{i}]")
    return problems


def _version(data: dict[str, Any]) -> list[str]:
    """What is wrong with the document's kind and version (absent: a receipt of before)."""
    problems = []
    if "kind" in data and data["kind"] != "receipt":
        problems.append(f"kind: not receipt but {_kind(data['kind'])}")
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        problems.append(f"schema_version: not a whole number but {_kind(version)}")
    elif version > jsonout.SCHEMA_VERSION:
        problems.append(
            f"schema_version {version}: written by a newer rollback-ops (this one reads "
            f"version {jsonout.SCHEMA_VERSION} and before)"
        )
    return problems


def _items(item: Any, fields: dict[str, str], where: str) -> list[str]:
    """An entry of a list: an object with every one of ``fields``, each of its type."""
    if not isinstance(item, dict):
        return [f"{where}: not an object but {_kind(item)}"]
    missing = [f"{where}.{key}: missing" for key in fields if key not in item]
    return missing + _fields(item, fields, where)


def _fields(data: dict[str, Any], fields: dict[str, str], where: str) -> list[str]:
    return [
        f"{where}.{key}: not {kind} but {_kind(data[key])}"
        for key, kind in fields.items()
        if key in data and not _is(data[key], kind)
    ]


def _is(value: Any, kind: str) -> bool:
    if kind == _NUM:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _OPT_STR:
        return value is None or isinstance(value, str)
    types = {_STR: str, _BOOL: bool, _DICT: dict, _LIST: list}
    return isinstance(value, types[kind])


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {short(value, 40)}"


def _latest(runs: Path) -> str:
    try:
        known = sorted(p.name for p in runs.iterdir() if RUN_ID.fullmatch(p.name) and p.is_dir())
    except OSError:
        return ""
    return f" (latest: {', '.join(known[-5:])})" if known else ""


def save(receipt: dict[str, Any], path: Path) -> str:
    """Write a receipt atomically (0600: a temp file, flushed, renamed over the receipt).

    Returns "" or why it could not be written (the CLI then prints the receipt on stdout so
    nothing is lost); a failed write leaves no temp file and no half receipt.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(receipt, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return f"{path}: {exc.strerror or exc}"
    return ""
