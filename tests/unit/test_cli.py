"""The CLI: parsing, exit codes and messages for user mistakes (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_ops import cli
from tests import tripwires
from tests.conftest import FIXTURES

GOOD = str(FIXTURES / "inventories" / "good")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_level_is_required_and_checked(capsys, tmp_path: Path):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["plan", "--inventory", "staging"])
    assert exc.value.code == 2
    # apply takes them from the receipt with --resume, so it checks them itself
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), "apply", "--inventory", "staging")
    assert code == 2 and "apply needs --level (or --resume RUN_ID)" in err
    code, _out, err = run(
        capsys, "--state-dir", str(tmp_path), "apply", "--resume", "R1", "-L", "code", "--to", "v1"
    )
    assert code == 2 and "leave out --level, --to" in err
    code, _out, err = run(capsys, "--state-dir", str(tmp_path), "apply", "--resume", "R1")
    assert code == 2 and "no receipt for run 'R1'" in err
    code, _out, err = run(
        capsys, "--state-dir", str(tmp_path), "plan", "-L", "flag", "-i", GOOD, "--to", "v1"
    )
    assert code == 2 and "--to: only with --level code or full" in err
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["apply", "--level", "nope", "--inventory", "staging"])


def test_flags_accumulate(capsys):
    args = cli.build_parser().parse_args(
        ["apply", "-L", "flag", "-i", "lab", "-f", "A=1", "--flag", "B=2", "--check", "--diff"]
    )
    assert args.flag == ["A=1", "B=2"]
    assert args.check and args.diff and args.verify


def test_bad_inventory_gives_a_message_and_exit_2(capsys, tmp_path: Path):
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "plan",
        "--level",
        "flag",
        "--inventory",
        str(FIXTURES / "inventories" / "bad_app"),
    )
    assert code == 2
    assert "rollback_app.heath: unknown key" in err
    assert "Traceback" not in err


def test_malformed_flag_gives_a_message_and_exit_2(capsys, tmp_path: Path):
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "apply",
        "--level",
        "flag",
        "--inventory",
        GOOD,
        "--flag",
        "NOEQUALS",
        "--yes",
    )
    assert code == 2
    assert "expected KEY=VALUE" in err


def test_apply_without_a_terminal_needs_yes(capsys, tmp_path: Path, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "apply",
        "--level",
        "emergency",
        "--inventory",
        GOOD,
        "--limit",
        "web1",
    )
    assert code == 3
    assert "--yes" in err


def test_production_is_refused_without_a_terminal_even_with_yes(
    capsys, tmp_path: Path, monkeypatch
):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "apply",
        "--level",
        "emergency",
        "--inventory",
        "production",
        "--yes",
    )
    assert code == 3
    assert "production" in err and "--yes does not approve" in err
    assert "rollback-ops request" in err  # says how to get an approval


def test_plan_prints_steps_and_contacts_nobody(capsys, tmp_path: Path, monkeypatch):
    tripped: list[str] = []

    def trip(what: str) -> None:
        tripped.append(what)
        pytest.fail(f"plan tried to reach out: {what}")

    # ansible-runner, the runner adapter, any new process (ssh, ansible-playbook) and any
    # connection fail the test: the plan is read from the playbook on this machine only
    tripwires.install(trip, monkeypatch.setattr)
    code, out, _err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "plan",
        "--level",
        "flag",
        "--inventory",
        GOOD,
        "--flag",
        "SHOP_FAST_PATH=false",
    )
    monkeypatch.undo()
    assert tripped == []  # also when something caught the failure on its way up
    assert code == 0
    assert "web1 (127.0.0.1) app shop, level flag:" in out
    assert "set SHOP_FAST_PATH=false in /srv/shop/.env" in out


def test_report_of_an_unknown_run_is_a_clear_error(capsys, tmp_path: Path):
    state = tmp_path / "state"
    for run_id in ("no-such-run", "20250101T000000Z-abcdef"):
        code, out, err = run(capsys, "--state-dir", str(state), "report", run_id)
        assert (code, out) == (2, "")
        assert err == f"rollback-ops: error: no receipt for run '{run_id}' in {state}/runs\n"


def test_flag_only_goes_with_the_flag_level(capsys, tmp_path: Path):
    code, _out, err = run(
        capsys,
        "--state-dir",
        str(tmp_path),
        "apply",
        "--level",
        "emergency",
        "--inventory",
        GOOD,
        "--flag",
        "A=1",
        "--yes",
    )
    assert code == 2
    assert "--flag goes with --level flag" in err
