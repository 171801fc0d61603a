"""The log scanner (plugins/modules/logscan_info.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from tests.conftest import load_module, run_module
from tests.fingerprint import changes, fingerprint

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


# ----------------------------------------------------------------------------- main(): issue 15


def logscan_run(path: Path, check_mode: bool = False, **kw: object) -> dict:
    args = {"path": str(path), "pattern": r"\[ERROR\]", **kw}
    return run_module("plugins/modules/logscan_info.py", args, check_mode=check_mode)


def test_main_reports_the_new_matches_and_writes_nothing(tmp_path: Path):
    log = tmp_path / "app.log"
    old = b"x [ERROR] old\n"
    log.write_bytes(old + b"ok\ny [ERROR] new\nz [ERROR] newer\n")
    before = fingerprint(tmp_path)
    for check_mode in (False, True):
        result = logscan_run(log, check_mode, offset=len(old), max_matches=1)
        assert result["changed"] is False, result
        assert (result["matches"], result["count"], result["rotated"]) == (
            ["y [ERROR] new"],
            2,
            False,
        )
    rotated = logscan_run(log, offset=10_000)
    assert rotated["rotated"] is True and rotated["count"] == 3, rotated
    assert changes(before, fingerprint(tmp_path)) == []


def test_main_a_missing_log_has_no_lines_and_a_bad_pattern_is_one_line(tmp_path: Path):
    missing = logscan_run(tmp_path / "nope.log")
    assert missing == {**missing, "changed": False, "matches": [], "count": 0, "rotated": False}
    assert not missing.get("failed")
    bad = logscan_run(tmp_path / "nope.log", pattern="([")
    assert bad["failed"] is True
    assert bad["msg"].startswith("bad error pattern '([': ") and "\n" not in bad["msg"]
    assert "Traceback" not in json.dumps(bad)
