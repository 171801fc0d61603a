"""The log scanner (plugins/modules/logscan_info.py)."""

from __future__ import annotations

import io
import re

from tests.conftest import load_module

logscan = load_module("plugins/modules/logscan_info.py")
ERR = re.compile(r"\[ERROR\]")


def test_only_lines_after_the_offset_are_scanned():
    old = b"x [ERROR] old\n"
    handle = io.BytesIO(old + b"ok\ny [ERROR] new\n")
    matches, count, rotated = logscan.scan(handle, len(old), ERR, 20)
    assert matches == ["y [ERROR] new"]
    assert count == 1
    assert rotated is False


def test_a_shorter_file_was_rotated_and_is_read_from_the_start():
    handle = io.BytesIO(b"[ERROR] a\n")
    matches, _count, rotated = logscan.scan(handle, 10_000, ERR, 20)
    assert rotated is True
    assert matches == ["[ERROR] a"]


def test_matches_are_capped_but_counted():
    handle = io.BytesIO(b"[ERROR]\n" * 50)
    matches, count, _ = logscan.scan(handle, 0, ERR, 3)
    assert len(matches) == 3
    assert count == 50
