"""`apply --check --detailed-exitcode`: 0 nothing would change, 2 changes pending, 1 failed
(terraform plan's meaning), from real check-mode runs of the flag level on the demo's
sandbox through the CLI; refused (3) keeps its code; without --check it is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollback_ops.results import (
    CHANGES_PENDING,
    FAILED,
    NO_CHANGES,
    RunResult,
    detailed_exit_status,
)
from tests.unit.ci_sandbox import UNHEALTHY, run, sandbox, unhealthy_app, unhealthy_endpoint

CHECK = ("apply", "--level", "flag", "-i", "local", "--check", "--detailed-exitcode", "--json")


def env_file(state: Path) -> Path:
    return state / "demo" / "srv" / "analyticbot" / ".env.production"


def test_changes_pending_then_none_after_the_flag_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    sandbox(tmp_path)
    before = env_file(tmp_path).read_bytes()
    code, out, err = run(capsys, tmp_path, *CHECK)
    assert code == CHANGES_PENDING == 2, err
    receipt = json.loads(out)
    assert receipt["check"] is True and receipt["changed"] > 0
    assert receipt["exit_status"] == 0  # the run itself went well: the receipt says so
    assert env_file(tmp_path).read_bytes() == before  # check mode changed no byte
    # the change made for real, the same check finds nothing pending
    code, out, err = run(capsys, tmp_path, "apply", "--level", "flag", "-i", "local", "--yes")
    assert code == 0, err
    assert "ENABLE_ADVANCED_RECOMMENDATIONS=false" in env_file(tmp_path).read_text()
    code, out, err = run(capsys, tmp_path, *CHECK)
    assert code == NO_CHANGES == 0, err
    assert json.loads(out)["changed"] == 0
    # without the flag, the same pending check exits 0 as before
    sandbox(tmp_path)
    code, _, err = run(capsys, tmp_path, "apply", "--level", "flag", "-i", "local", "--check")
    assert code == 0, err


def test_a_failed_check_exits_1_with_the_failure_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    with unhealthy_endpoint() as url:
        sandbox(tmp_path, **unhealthy_app(url))
        code, out, err = run(capsys, tmp_path, *CHECK)
    assert code == FAILED == 1, err
    receipt = json.loads(out)
    host = receipt["hosts"]["localhost"]
    assert receipt["result"] == "failed" and host["status"] == "failed"
    assert host["failed_step"] == "healthcheck: Call the health endpoint"
    assert "503" in host["message"]
    assert UNHEALTHY["status"] != "ok"


def test_a_check_refused_at_preflight_keeps_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    sandbox(tmp_path)
    env_file(tmp_path).unlink()  # the host's preflight refuses: nothing to set values in
    code, out, err = run(capsys, tmp_path, *CHECK)
    assert code == 3, err
    receipt = json.loads(out)
    assert receipt["result"] == "refused"
    assert receipt["hosts"]["localhost"]["failed_step"].startswith("preflight: ")


def test_without_check_it_is_refused_before_any_host_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    sandbox(tmp_path)
    before = env_file(tmp_path).read_bytes()
    code, out, err = run(
        capsys, tmp_path, "apply", "--level", "flag", "-i", "local", "--yes", "--detailed-exitcode"
    )
    assert code == 1 and out == ""  # bad input: never 2, which means changes pending
    assert err.strip() == (
        "rollback-ops: error: --detailed-exitcode goes with --check "
        "(it says whether changes are pending)"
    )
    assert env_file(tmp_path).read_bytes() == before
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "bad",
    [("--flag", "ENABLE_NOT_DECLARED=false"), ("--level", "nope"), ("--limit", "nohost")],
    ids=["unknown flag", "usage error", "limit matches nothing"],
)
def test_bad_input_is_1_not_2_which_means_drift(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: tuple[str, str]
):
    sandbox(tmp_path)
    code, out, err = run(capsys, tmp_path, *CHECK, *bad)
    assert code == 1 and out == ""
    assert err.count(": error: ") == 1 and bad[1].partition("=")[0] in err
    assert not (tmp_path / "runs").exists()
    # the same input without --detailed-exitcode is 2, as always
    plain = [a for a in CHECK if a != "--detailed-exitcode"]
    assert run(capsys, tmp_path, *plain, *bad)[0] == 2


@pytest.mark.parametrize(("interrupted", "expected"), [("SIGINT", 130), ("SIGTERM", 143), ("", 2)])
def test_interrupted_keeps_its_code(interrupted: str, expected: int):
    from rollback_ops.results import HostResult, StepEvent

    host = HostResult("web1", "changed", [StepEvent("web1", "envfile: Set", "changed")])
    result = RunResult(
        "r1",
        "flag",
        "staging",
        "/inv",
        True,
        {"web1": host},
        "",
        1.0,
        0,
        "/runs/r1",
        interrupted=interrupted,
    )
    assert detailed_exit_status(result) == expected
