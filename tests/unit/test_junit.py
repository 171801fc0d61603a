"""`--junit FILE`: real runs on the demo's sandbox, read back with a JUnit parser
(junitparser, as CI systems read these files): a testcase per host and step, the failing
ones failed with their message, skipped ones skipped, the stable step id beside the name;
written too when the run is refused at preflight or before it starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Properties, Skipped, TestCase, TestSuite

from rollback_ops import junit
from rollback_ops.events import is_hidden
from rollback_ops.results import HostResult, RunResult, StepEvent
from tests.unit.ci_sandbox import run, sandbox, unhealthy_app, unhealthy_endpoint

FLAG = ("apply", "--level", "flag", "-i", "local")


def read(path: Path) -> TestSuite:
    """The report's one suite, as a JUnit parser reads it."""
    xml = JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert isinstance(suite, TestSuite)
    return suite


def props(element: TestCase | TestSuite) -> dict[str, str]:
    found = element.child(Properties)
    return {p.name: p.value for p in found} if found is not None else {}


def cases(suite: TestSuite) -> dict[tuple[str, str], TestCase]:
    return {(c.classname, c.name): c for c in suite}


def test_a_failed_run_fails_the_failed_step_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    report = tmp_path / "flag.xml"
    with unhealthy_endpoint() as url:
        sandbox(tmp_path / "state", **unhealthy_app(url))
        code, out, err = run(
            capsys, tmp_path / "state", *FLAG, "--yes", "--diff", "--json", "--junit", str(report)
        )
    assert code == 1, err
    receipt = json.loads(out)
    suite = read(report)
    assert suite.name == "flag on local"
    assert props(suite) == {
        "run_id": receipt["run_id"],
        "level": "flag",
        "inventory": "local",
        "check": "false",
        "result": "failed",
    }
    by_name = cases(suite)
    failed = by_name[("localhost", "healthcheck: Call the health endpoint")]
    (result,) = failed.result
    assert isinstance(result, Failure)
    host = receipt["hosts"]["localhost"]
    assert result.message == host["message"] and "503" in result.message
    assert props(failed) == {"step_id": "healthcheck.call-the-health-endpoint", "status": "failed"}
    # the failed step fails, then the role's rescue that re-fails naming it; nothing else
    failures = [c for c in suite if not c.is_passed and not c.is_skipped]
    assert [c.name for c in failures] == [failed.name, "healthcheck: Report the failed check"]
    (refail,) = failures[1].result
    assert "Call the health endpoint" in refail.message and "503" in refail.message
    # the change before it passed, with its diff
    changed = by_name[("localhost", "envfile: Set values in the env file")]
    assert changed.is_passed and props(changed)["status"] == "changed"
    assert "+8: ENABLE_ADVANCED_RECOMMENDATIONS=false" in (changed.system_out or "")
    # one testcase per shown step of the receipt, in order, each with its id
    shown = [s for s in host["steps"] if not is_hidden(s["action"]) or s["status"] == "failed"]
    assert [(c.name, props(c)["step_id"]) for c in suite] == [(s["step"], s["id"]) for s in shown]
    skipped = [s for s in shown if s["status"] == "skipped"]
    assert skipped and suite.skipped == len(skipped)
    assert (suite.tests, suite.failures, suite.errors) == (len(shown), 2, 0)
    for case, step in zip(suite, shown, strict=True):
        assert case.time == pytest.approx(step["duration"], abs=0.001)
        if step["status"] == "skipped" and step["message"]:
            (why,) = case.result
            assert isinstance(why, Skipped) and why.message == step["message"]


def test_a_check_refused_at_preflight_fails_the_preflight_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    report = tmp_path / "check.xml"
    state = tmp_path / "state"
    sandbox(state)
    (state / "demo" / "srv" / "analyticbot" / ".env.production").unlink()
    code, _, err = run(capsys, state, *FLAG, "--check", "--junit", str(report))
    assert code == 3, err
    suite = read(report)
    assert props(suite)["result"] == "refused" and props(suite)["check"] == "true"
    (failed,) = [c for c in suite if not c.is_passed and not c.is_skipped]
    assert (failed.classname, failed.name) == (
        "localhost",
        "preflight: Check the host can take the rollback",
    )
    (result,) = failed.result
    assert isinstance(result, Failure) and ".env.production" in result.message


def test_a_run_refused_before_it_starts_still_writes_a_failed_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    report = tmp_path / "bad.xml"
    state = tmp_path / "state"
    sandbox(state)
    code, _, err = run(
        capsys, state, *FLAG, "--check", "--flag", "ENABLE_NOPE=1", "--junit", str(report)
    )
    assert code == 2
    suite = read(report)
    assert suite.name == "flag on local" and (suite.tests, suite.failures) == (1, 1)
    assert props(suite)["result"] == "error"  # bad input: not a guard's refusal
    (case,) = list(suite)
    (result,) = case.result
    assert isinstance(result, Failure)
    assert "unknown flag ENABLE_NOPE" in result.message
    assert result.message in err  # the same words as on the terminal


def test_verify_writes_a_passing_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    report = tmp_path / "verify.xml"
    sandbox(tmp_path / "state")
    code, _, err = run(capsys, tmp_path / "state", "verify", "-i", "local", "--junit", str(report))
    assert code == 0, err
    suite = read(report)
    assert suite.name == "verify on local" and suite.tests > 0
    assert suite.failures == 0 and suite.errors == 0
    assert all(props(c)["step_id"] for c in suite)


def test_a_report_path_that_cannot_be_written_is_said_before_any_host_is_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    sandbox(state)
    target = tmp_path / "no-such-dir" / "r.xml"
    code, out, err = run(capsys, state, *FLAG, "--check", "--junit", str(target))
    assert code == 2 and out == ""
    assert err == (
        f"rollback-ops: error: --junit {target}: the directory {target.parent} does not exist\n"
    )
    assert not (state / "runs").exists()
    code, _, err = run(capsys, state, *FLAG, "--check", "--junit", str(tmp_path))
    assert code == 2 and "is a directory; give a file name" in err


def test_what_xml_cannot_hold_is_replaced_and_unreachable_is_an_error(tmp_path: Path):
    """Messages come from the hosts: an ANSI escape or a NUL must not break the file."""
    web1 = HostResult(
        "web1",
        "failed",
        [StepEvent("web1", "envfile: Set", "failed", 0.5, "bad \x1b[31mred\x00", "", "x", "e.s")],
        failed_step="envfile: Set",
        message="bad",
    )
    web2 = HostResult(
        "web2",
        "unreachable",
        [StepEvent("web2", "preflight: Check", "unreachable", 0.1, "ssh: refused", id="p.c")],
    )
    web3 = HostResult("web3", "interrupted", failed_step="(stopped)", message="stopped")
    result = RunResult(
        "r1",
        "flag",
        "staging",
        "/inv",
        False,
        {"web1": web1, "web2": web2, "web3": web3},
        "2025-01-02T03:04:05Z",
        1.5,
        2,
        "/runs/r1",
    )
    path = tmp_path / "r.xml"
    junit.write(junit.report(result), path)
    suite = read(path)
    by_name = cases(suite)
    (bad,) = by_name[("web1", "envfile: Set")].result
    assert isinstance(bad, Failure) and bad.message == "bad \ufffd[31mred\ufffd"
    (unreachable,) = by_name[("web2", "preflight: Check")].result
    assert isinstance(unreachable, Error) and unreachable.message == "ssh: refused"
    (stopped,) = by_name[("web3", "(stopped)")].result
    assert isinstance(stopped, Failure) and stopped.message == "stopped"
    assert (suite.tests, suite.failures, suite.errors) == (3, 2, 1)
    assert not list(tmp_path.glob(".r.xml.*"))  # no temp file left


def test_production_refused_by_the_guard_still_writes_a_refused_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state = tmp_path / "state"
    inventory = sandbox(state)
    inventory.write_text(
        inventory.read_text().replace(
            "rollback_environment: local", "rollback_environment: production"
        )
    )
    report = tmp_path / "prod.xml"
    code, _, err = run(capsys, state, *FLAG, "--junit", str(report))
    assert code == 3, err
    suite = read(report)
    assert props(suite)["result"] == "refused"
    (case,) = list(suite)
    (result,) = case.result
    assert isinstance(result, Failure) and result.type == "refused"
    assert result.message in err and "production" in result.message
    assert not (state / "runs").exists()  # refused before any run
