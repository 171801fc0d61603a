"""A fingerprint of a directory tree, to show a step changed nothing under it.

``fingerprint(path)`` maps every entry under path (path itself as ".") to what a change would
alter: its type, mode, owner, size, mtime (ns), inode, and its bytes' sha256 (files) or its
target (symlinks). Access times are left out: reading is not a change. Two fingerprints are
compared with ``==``; ``changes(before, after)`` lists the entries that differ, for the
assertion message.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def _entry(path: Path) -> tuple[object, ...]:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        kind, content = "link", os.readlink(path)
    elif stat.S_ISREG(st.st_mode):
        kind, content = "file", hashlib.sha256(path.read_bytes()).hexdigest()
    elif stat.S_ISDIR(st.st_mode):
        kind, content = "dir", ""
    else:
        kind, content = "other", ""
    return (
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_size if kind != "dir" else 0,
        st.st_mtime_ns,
        st.st_ino,
        content,
    )


def fingerprint(path: str | os.PathLike[str]) -> dict[str, tuple[object, ...]]:
    """Every entry under path, symlinks not followed: relative name -> (kind, mode, uid, gid,
    size, mtime_ns, inode, sha256 of a file's bytes or a link's target)."""
    root = Path(path)
    out = {".": _entry(root)}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            full = Path(directory) / name
            out[str(full.relative_to(root))] = _entry(full)
    return out


def changes(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> list:
    """The names added, removed or changed between two fingerprints, sorted."""
    names = sorted(set(before) | set(after))
    return [(n, before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)]
