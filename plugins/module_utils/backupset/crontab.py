"""Users' crontabs in a backup set: ``crontab -l -u USER`` saved as ``crontabs/<user>``
(a user without a crontab recorded as absent), and put back with ``crontab -u USER FILE``
(``crontab -r -u USER`` for an absent one), the current crontab copied first."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from ..files import backup_path
from .common import CHUNK, BackupError, HashingWriter, Json, new_file, private_dir, tail

USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
COPIES = ".crontab-copies"  # <root>/<app>/.crontab-copies/<user>.backup.<stamp>


def check_user(user: str) -> None:
    if not USER.match(user):
        raise BackupError(f"crontab user {user!r} is not a user name")


def _crontab(argv: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["crontab", *argv], input=data, capture_output=True, check=False, cwd="/"
        )
    except FileNotFoundError as exc:
        raise BackupError("crontab is not installed on this host (package cron)") from exc


def read_crontab(user: str) -> bytes | None:
    """The user's crontab as ``crontab -l`` shows it, or None when the user has none."""
    check_user(user)
    proc = _crontab(["-l", "-u", user])
    if proc.returncode == 0:
        return proc.stdout
    said = proc.stderr.decode(errors="replace")
    if "no crontab for" in said:
        return None
    raise BackupError(f"crontab -l -u {user} failed (exit {proc.returncode}): {tail(said)}")


def save_crontab(user: str, set_dir: Path) -> Json:
    """The manifest's entry of the user's crontab, written to crontabs/<user> when present."""
    data = read_crontab(user)
    entry: Json = {"user": user, "present": data is not None, "file": "", "size": 0}
    if data is None:
        entry["sha256"] = ""
        return entry
    rel = f"crontabs/{user}"
    private_dir(set_dir / "crontabs")
    with new_file(set_dir / rel) as out:
        writer = HashingWriter(out)
        for start in range(0, len(data), CHUNK):
            writer.write(data[start : start + CHUNK])
        out.flush()
        os.fsync(out.fileno())
    entry.update(file=rel, size=writer.size, sha256=writer.digest.hexdigest())
    return entry


def install_crontab(user: str, data: bytes | None) -> None:
    """Make data the user's crontab (None: remove it)."""
    check_user(user)
    if data is None:
        proc = _crontab(["-r", "-u", user])
        said = proc.stderr.decode(errors="replace")
        if proc.returncode != 0 and "no crontab for" not in said:
            raise BackupError(f"crontab -r -u {user} failed (exit {proc.returncode}): {tail(said)}")
        return
    with tempfile.NamedTemporaryFile(prefix="rbo-crontab-", delete=False) as handle:
        handle.write(data)
        name = handle.name
    try:
        proc = _crontab(["-u", user, name])
    finally:
        os.unlink(name)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace")
        raise BackupError(f"crontab -u {user} FILE failed (exit {proc.returncode}): {tail(said)}")


def copy_crontab(user: str, data: bytes, root: str, app: str) -> str:
    """Keep the user's current crontab as <root>/<app>/.crontab-copies/<user>.backup.<UTC
    stamp> (mode 0600; the directory 0700); its path."""
    copies = private_dir(Path(root) / app / COPIES)
    path = backup_path(str(copies / user))
    with new_file(Path(path)) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    return path
