"""No Python traceback, ever, on bad input or a bad state dir (defect 11).

One test per defect found: each failed before the fix. The bad-input sweep
(test_bad_input_sweep.py) then runs hundreds of generated inputs through the same paths.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import cli, history, paths, receipts
from rollback_ops.exceptions import ConfigError, StateDirError
from rollback_ops.text import one_line, short
from tests.requirements import need

RUN_ID = "20250101T000000Z-abcdef"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    return lines[0]


def mount_tmpfs(request: pytest.FixtureRequest, where: Path, options: str) -> None:
    where.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)])
    need(mounted.returncode == 0, "cannot mount a tmpfs here (needs root)")
    request.addfinalizer(
        lambda: subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
    )


def fill(where: Path) -> None:
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A local app (env file on this machine) and its inventory: tmp_path/inv/hosts.yml."""
    for name in ("app", "log", "inv"):
        (tmp_path / name).mkdir()
    (tmp_path / "app" / ".env").write_text("ENABLE_A=true\nMASTER=on\n")
    (tmp_path / "log" / "app.log").write_text("")
    app = {
        "name": "notb",
        "env_file": str(tmp_path / "app" / ".env"),
        "master_switch": "MASTER",
        "flags": ["ENABLE_A"],
        "units": [],
        "health": {},
        "log": {"path": str(tmp_path / "log" / "app.log"), "error_pattern": "ERROR"},
    }
    inventory = {
        "all": {
            "vars": {"rollback_environment": "staging", "rollback_app": app},
            "hosts": {"localhost": {"ansible_connection": "local"}},
        }
    }
    (tmp_path / "inv" / "hosts.yml").write_text(yaml.safe_dump(inventory))
    return tmp_path


# --- the state dir: a file, read-only, full ---------------------------------------------


def test_writable_state_dir_creates_it_and_returns_it(tmp_path: Path):
    assert paths.writable_state_dir(tmp_path / "a" / "b") == (tmp_path / "a" / "b").resolve()
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d.write_text("x"), "not a directory"),
        (lambda d: (d / "runs").parent.mkdir() or (d / "runs").write_text(""), "runs is not a"),
        (lambda d: (d / "history.jsonl").mkdir(parents=True), "history.jsonl is a directory"),
    ],
    ids=["a-file", "runs-a-file", "history-a-directory"],
)
def test_writable_state_dir_says_what_is_wrong(
    tmp_path: Path, make: Callable[[Path], Any], problem: str
):
    state = tmp_path / "state"
    make(state)
    with pytest.raises(StateDirError, match=problem) as exc:
        paths.writable_state_dir(state)
    assert exc.value.exit_code == 4
    assert str(exc.value).startswith(f"state dir {state}: ")


def test_a_read_only_or_full_state_dir_is_refused_before_anything_runs(
    request: pytest.FixtureRequest, tmp_path: Path
):
    mount_tmpfs(request, tmp_path / "ro", "size=64k,ro")
    with pytest.raises(StateDirError, match="read-only file system"):
        paths.writable_state_dir(tmp_path / "ro")
    mount_tmpfs(request, tmp_path / "full", "size=64k")
    fill(tmp_path / "full")
    with pytest.raises(StateDirError, match="full"):
        paths.writable_state_dir(tmp_path / "full")
    mount_tmpfs(request, tmp_path / "small", "size=64k")  # room for a probe, not for a run
    with pytest.raises(StateDirError, match=r"full: \d+ KiB free"):
        paths.writable_state_dir(tmp_path / "small")


@pytest.mark.parametrize("command", ["history", "report", "apply", "demo", "unlock"])
def test_every_command_on_a_state_dir_that_is_a_file_ends_with_one_line_and_4(
    capsys: pytest.CaptureFixture[str], sandbox: Path, command: str
):
    state = sandbox / "state"
    state.write_text("")
    argv = {
        "history": ["history"],
        "report": ["report", RUN_ID],
        "apply": ["apply", "-L", "flag", "-i", str(sandbox / "inv"), "--check"],
        "demo": ["demo"],
        "unlock": ["unlock", "-i", str(sandbox / "inv"), "--yes"],
    }[command]
    code, _out, err = run(capsys, "--state-dir", str(state), *argv)
    assert code == 4
    assert one_error_line(err) == f"rollback-ops: error: state dir {state}: not a directory"


def test_a_state_dir_path_with_a_nul_byte_is_an_error_not_a_traceback(capsys):
    code, _out, err = run(capsys, "--state-dir", "a\x00b", "history")
    assert code == 4 and one_error_line(err).startswith("rollback-ops: error: state dir a\\x00b:")


class _FullDisk(types.SimpleNamespace):
    """``os`` as history sees it, on a disk that just filled up."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_appending_to_the_history_is_a_state_dir_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(history, "os", _FullDisk())
    with pytest.raises(StateDirError, match=r"cannot write history.jsonl: full \(no space"):
        history.append(tmp_path, {"event": "started", "run_id": "r"})
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirError, match="not a directory"):
        history.append(tmp_path / "file", {"event": "started", "run_id": "r"})


def test_a_full_disk_at_the_start_of_a_run_stops_it_with_one_line_and_nothing_changed(
    capsys: pytest.CaptureFixture[str], sandbox: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(history, "os", _FullDisk())
    before = (sandbox / "app" / ".env").read_bytes()
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(sandbox / "state"),
        "apply",
        "-L",
        "flag",
        "-i",
        str(sandbox / "inv"),
        "-f",
        "ENABLE_A=false",
        "--yes",
    )
    assert code == 4
    assert "cannot write history.jsonl: full (no space left on device)" in one_error_line(err)
    assert (sandbox / "app" / ".env").read_bytes() == before


def test_an_os_error_on_a_state_dir_file_anywhere_is_reported_as_such(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    state = tmp_path / "state"

    def boom(args: Any) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(state / "locks" / "x"))

    monkeypatch.setitem(cli.COMMANDS, "levels", boom)
    code, _out, err = run(capsys, "--state-dir", str(state), "levels")
    assert code == 4
    assert one_error_line(err) == (
        f"rollback-ops: error: state dir {state}: locks/x: permission denied"
    )


# --- history: damaged lines, --last ------------------------------------------------------


def write_history(state: Path, *lines: bytes) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "history.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


GOOD = json.dumps({"event": "started", "run_id": "r1", "operator": "ana", "level": "flag"})
DAMAGED = {
    b"[]": "not a JSON object but list []",
    b"3": "not a JSON object but int 3",
    b'"x"': "not a JSON object but str 'x'",
    b'{"event": "started", "run_id": "r\xff\xfe"}': "not UTF-8 at byte 34",
    b'{"event": "started", "run_id": 7}': "run_id: not a non-empty string but 7",
    b'{"event": "finished", "run_id": "r1", "duration": "3s"}': "duration: not a number",
    b'{"event": "started", "run_id": "r2", "hosts": 3}': "hosts: not a list of strings",
    b'{"event": "started", "run_id": "r3", "environment": "prod"}': "environment: not a list",
    b'{"event": "started", "run_id": "r4", "check": "no"}': "check: not true or false",
    b'{"event": "started", "run_id": "r5", "reason": ["a"]}': "reason: not a string",
    b'{"event": "exploded", "run_id": "r6"}': "event: not started or finished",
    b'{"event": "finished", "run_': "not JSON",
    b"[" * 100_000: "nested too deeply",
}


def test_history_skips_each_damaged_line_with_one_warning_and_shows_the_rest(tmp_path: Path):
    write_history(tmp_path, GOOD.encode(), *DAMAGED, b"", GOOD.replace("r1", "r9").encode())
    warnings: list[str] = []
    rows = history.read(tmp_path, warnings)
    assert [r.run_id for r in rows] == ["r1", "r9"]
    assert rows[0].operator == "ana" and rows[0].level == "flag"
    assert len(warnings) == len(DAMAGED)
    for n, (warning, why) in enumerate(zip(warnings, DAMAGED.values(), strict=True), 2):
        assert warning.startswith(f"history.jsonl line {n}: skipped ("), warning
        assert why in warning, (warning, why)
        assert len(warning) < 200
    assert history.read(tmp_path) == rows  # warnings are optional; nothing is printed


def test_the_history_command_prints_the_warnings_and_the_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    line = {"event": "started", "run_id": "r1", "reason": "a\nb\x1b[2J" + "x" * 500}
    write_history(tmp_path, b"[]", json.dumps(line).encode(), b"\xff")
    code, out, err = run(capsys, "--state-dir", str(tmp_path), "history")
    assert code == 0
    assert err.splitlines() == [
        "rollback-ops: warning: history.jsonl line 1: skipped (not a JSON object but list [])",
        "rollback-ops: warning: history.jsonl line 3: skipped (not UTF-8 at byte 1)",
    ]
    # the header, then the run's line and its details line
    assert "r1" in out and "\x1b" not in out and len(out.splitlines()) == 3
    assert "a\\nb\\x1b[2J" in out and max(len(x) for x in out.splitlines()) < 400


@pytest.mark.parametrize("last", ["-1", "0", "-5000"])
def test_history_last_must_be_positive(capsys: pytest.CaptureFixture[str], tmp_path, last):
    code, out, err = run(capsys, "--state-dir", str(tmp_path), "history", "--last", last)
    assert code == 2 and out == ""
    assert one_error_line(err) == (
        f"rollback-ops: error: --last {last}: must be 1 or more (the last N runs)"
    )


# --- report and receipts ------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id", ["r" * 300, "../../etc/passwd", "a/b", "..", ".x", "r\x00", "r\n", "\x1b[2J", ""]
)
def test_a_bad_run_id_is_refused_before_it_becomes_a_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, run_id: str
):
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), "report", run_id)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("rollback-ops: error: no receipt for run ")
    assert "not a run id" in line and len(line) < 250 and "\x1b" not in line


MINIMAL = {"run_id": RUN_ID, "level": "flag", "result": "ok", "hosts": {}}


def put_receipt(state: Path, content: str | bytes) -> Path:
    run_dir = state / "runs" / RUN_ID
    run_dir.mkdir(parents=True)
    path = run_dir / "receipt.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{}", "run_id: missing; level: missing; result: missing (and 1 more)"),
        ("[]", "not a JSON object but list []"),
        ("no", "is not valid JSON: Expecting value"),
        (b"\xff", "is not valid JSON"),
        ("[" * 100_000, "is not valid JSON: nested too deeply"),
        (
            json.dumps({"run_id": 1, "level": [], "result": "ok", "hosts": []}),
            "run_id: not a string but int 1; level: not a string but list []; "
            "hosts: not an object but list []",
        ),
        (
            json.dumps(
                {"run_id": RUN_ID, "level": "flag", "result": "ok", "hosts": {"h": {"steps": [3]}}}
            ),
            "hosts.h.steps[0]: not an object but int 3",
        ),
        (
            json.dumps({**MINIMAL, "duration": "1"}),
            "duration: not a number but str '1'",
        ),
    ],
    ids=["empty", "list", "not-json", "not-utf8", "deep", "types", "step", "duration"],
)
def test_a_damaged_receipt_is_one_line_naming_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | bytes, problem: str
):
    path = put_receipt(tmp_path, content)
    with pytest.raises(ConfigError, match="receipt"):
        receipts.load(tmp_path, RUN_ID)
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), "report", RUN_ID)
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"rollback-ops: error: receipt {path}")
    assert problem in line, line


@pytest.mark.parametrize("command", [["history"], ["report", RUN_ID]])
def test_history_is_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
):
    (tmp_path / "history.jsonl").mkdir()
    put_receipt(tmp_path, json.dumps(MINIMAL))
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), *command)
    assert code == 4
    assert one_error_line(err) == (
        f"rollback-ops: error: state dir {tmp_path}: history.jsonl is a directory, not a file"
    )


def test_a_receipt_with_only_the_required_keys_still_renders(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    put_receipt(tmp_path, json.dumps(MINIMAL))
    code, out, _err = run(capsys, "--state-dir", str(tmp_path), "report", RUN_ID)
    assert code == 0 and out.startswith("# Rollback Log")


# --- output to a closed pipe, interrupts, internal errors, argparse ------------------------


def test_output_to_a_closed_pipe_ends_quietly_with_141():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollback_ops", "levels"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader went away (`| head -1` after its line)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


def test_a_broken_pipe_in_process_is_141_and_silent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert cli.main(["levels"]) == 141
    assert capsys.readouterr().err == ""


def test_an_interrupt_outside_a_run_is_130(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "levels", interrupted)
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), "levels")
    assert code == 130
    assert err == "rollback-ops: interrupted; nothing was changed\n"


@pytest.mark.parametrize("state_is_a_file", [False, True])
def test_a_bug_is_one_line_and_its_traceback_goes_to_a_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_is_a_file: bool,
):
    def buggy(args: Any) -> int:
        raise ValueError("x" * 100_000 + "\nsecond line")

    state = tmp_path / "state"
    if state_is_a_file:
        state.write_text("")
    monkeypatch.setitem(cli.COMMANDS, "levels", buggy)
    code, _out, err = run(capsys, "--state-dir", str(state), "levels")
    assert code == 4
    line = one_error_line(err)
    assert line.startswith("rollback-ops: internal error: ValueError: xxx")
    assert "second line" not in line and len(line) < 600
    saved = Path(line.rsplit("details: ", 1)[1].rstrip(")"))
    assert saved.is_file() and oct(saved.stat().st_mode)[-3:] == "600"
    assert (saved.parent == state / "crashes") is not state_is_a_file
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and "in buggy" in text
    saved.unlink()


def test_usage_errors_echo_values_cut_and_on_one_line(capsys: pytest.CaptureFixture[str]):
    code, _out, err = run(capsys, "plan", "-i", "x", "--level", "y" * 10_000)
    assert code == 2
    (line,) = [x for x in err.splitlines() if ": error: " in x]
    assert line.startswith("rollback-ops plan: error: argument --level/-L: invalid choice: 'yyy")
    assert len(line) <= 330
    code, _out, err = run(capsys, "levels", "--bogus", "a\nb\x1b[2J")
    assert code == 2
    assert err.splitlines()[-1] == (
        "rollback-ops: error: unrecognized arguments: --bogus a\\nb\\x1b[2J"
    )


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]):
    code, out, _err = run(capsys, "--help")
    assert code == 0 and out.startswith("usage: rollback-ops")


# --- text.short -----------------------------------------------------------------------------


def test_short_is_bounded_for_an_alias_bomb_huge_and_recursive_values():
    bomb = yaml.safe_load(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
            for i in range(8)
        )
    )
    started = time.monotonic()
    assert len(short(bomb)) <= 80
    assert len(short(bomb["i"], 300)) <= 300
    assert time.monotonic() - started < 1
    loop: list[Any] = []
    loop.append(loop)
    assert short(loop) == "[[[[...]]]]"
    assert short("a\nb") == "'a\\nb'"
    assert len(short("x" * 10**7)) == 80
    assert short(10**5000) == "<int>"  # too many digits for str(): named, not raised


def test_short_never_calls_the_repr_of_an_unknown_object():
    class Secret:
        def __repr__(self) -> str:
            raise AssertionError("repr called")

    class Tagged(str):
        pass

    assert short(Secret()) == "<Secret>"
    tagged = short(Tagged("v" * 10**6), 20)  # a str subclass (ansible-core's) is cut too
    assert tagged.startswith("'vvv") and "..." in tagged and len(tagged) <= 20
    assert short({"k": Secret()}) == "{'k': <Secret>}"


def test_one_line_escapes_control_characters_and_cuts():
    assert one_line("a\nb\tc\x00\x1b[2J") == "a\\nb\\tc\\x00\\x1b[2J"
    assert one_line("x" * 1000, 10) == "xxxxxxx..."
    assert one_line("ok") == "ok"
