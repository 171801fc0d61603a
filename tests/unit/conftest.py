"""Fixtures the unit tests share."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.requirements import need


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """mount(size, inodes) -> a fresh tmpfs directory, unmounted at the end (root only)."""
    mounted: list[Path] = []

    def mount(size: str = "1m", inodes: int | None = None) -> Path:
        need(os.geteuid() == 0, "mounting a small tmpfs (a real full disk) needs root")
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        need(proc.returncode == 0, f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=False)


def fill(directory: Path, pages_free: int) -> int:
    """Fill the filesystem of directory with page-sized files until pages_free pages are
    left (a real, nearly full disk); returns the page size."""
    page = os.statvfs(directory).f_frsize
    n = 0
    while os.statvfs(directory).f_bavail > pages_free:
        (directory / f"filler{n}").write_bytes(b"x" * page)
        n += 1
    return page
