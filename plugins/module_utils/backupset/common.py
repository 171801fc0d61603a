"""What every part of the backup engine shares: its error, the clock, names, private files.

Shared file operations that are not about backup sets (sha256, atomic replace keeping mode
and owner, free space) live in ``module_utils/files.py``; this module holds what only the
backup sets need.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from ..files import FileError, safe_write, sha256

Json = dict[str, Any]
CHUNK = 1 << 20
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BackupError(Exception):
    """A refusal or failure, with a message fit for an operator (never holding a password)."""

    def __init__(self, msg: str, result: Json | None = None) -> None:
        super().__init__(msg)
        self.result = result or {}


# ----------------------------------------------------------------------------- time


def now() -> datetime:
    """The engine's clock (set ids, ages, verification times); tests set it here."""
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- names, text


def check_name(what: str, value: str) -> None:
    if not value or not NAME_RE.match(value):
        raise BackupError(f"{what} {value!r}: letters, digits and . _ - only")


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def quote(name: str, mark: str) -> str:
    """An identifier or literal between marks, the mark doubled inside."""
    return mark + name.replace(mark, mark + mark) + mark


def natural(key: str) -> tuple[int, int, str]:
    return (0, int(key), "") if key.lstrip("-").isdigit() else (1, 0, key)


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ----------------------------------------------------------------------------- files


def size_and_sha256(path: Path) -> tuple[int, str]:
    return path.stat().st_size, sha256(str(path))


class HashingWriter:
    """A binary sink that counts and hashes what it writes (so no second read is needed)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.size = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.handle.write(data)
        self.size += len(data)
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        self.handle.flush()


def new_file(path: Path) -> BinaryIO:
    """Create a new file, mode 0600, refusing to overwrite."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def write_json_atomic(path: Path, data: Json) -> None:
    """Replace path with data as JSON, mode 0600, atomically (files.safe_write, no copy)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    try:
        safe_write(str(path), None, text.encode(), backup=False, mode=0o600)
    except FileError as exc:
        raise BackupError(str(exc)) from exc


def private_dir(path: Path) -> Path:
    """The directory, created mode 0700 if missing (an existing one is made 0700 too)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
