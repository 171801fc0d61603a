"""Levels, flag parsing and the checks made before any host is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_ops import api, history, operations
from rollback_ops.exceptions import ConfigError
from tests.conftest import FIXTURES

GOOD = str(FIXTURES / "inventories" / "good")


def test_parse_flags():
    assert operations.parse_flags(["A=false", "B=x=y", "C="]) == {"A": "false", "B": "x=y", "C": ""}
    for bad in (["A"], ["=x"], ["1A=x"], ["É=x"], ["A=1", "A=2"], ["A B=x"]):
        with pytest.raises(ConfigError):
            operations.parse_flags(bad)


def test_unknown_levels_are_refused_naming_the_levels():
    with pytest.raises(
        ConfigError,
        match=(
            "unknown level 'nope'; choose one of flag, emergency, config, code, data, schema, full"
        ),
    ):
        operations.get("nope")


def test_flag_without_flags_turns_the_master_switch_off(state_dir: Path):
    plans = api.plan(api.prepare("flag", GOOD, state_dir=state_dir))
    assert any("set SHOP_NEW_CHECKOUT=false" in s for s in plans[0].changes)


def test_unknown_flag_is_refused_naming_it_and_the_hosts(state_dir: Path):
    with pytest.raises(ConfigError, match=r"web1, web2: unknown flag SHOP_FAST_PTH"):
        api.prepare(
            "flag", GOOD, operations.Request(flags={"SHOP_FAST_PTH": "false"}), state_dir=state_dir
        )
    prep = api.prepare(
        "flag",
        GOOD,
        operations.Request(flags={"SHOP_FAST_PTH": "x"}, allow_new_flags=True),
        state_dir=state_dir,
    )
    assert prep.request.allow_new_flags


def test_limit_selects_hosts_and_refuses_a_pattern_matching_none(state_dir: Path):
    assert api.prepare("emergency", GOOD, limit="web2", state_dir=state_dir).hosts == ["web2"]
    assert api.prepare("emergency", GOOD, limit="web*", state_dir=state_dir).hosts == [
        "web1",
        "web2",
    ]
    with pytest.raises(ConfigError, match="matches no host"):
        api.prepare("emergency", GOOD, limit="db*", state_dir=state_dir)


def test_plan_lists_the_steps_in_order(state_dir: Path):
    steps = api.plan(api.prepare("emergency", GOOD, limit="web1", state_dir=state_dir))[0].changes
    kinds = [s.split()[0] for s in steps]
    assert kinds[:4] == ["preflight", "copy", "set", "restart"]
    assert "set APP_MODE=research in /srv/shop/.env (atomic write, other bytes kept)" in steps
    assert steps[-1].startswith("verify no new lines matching /ERROR/")


def test_a_host_that_reported_nothing_is_a_failure_not_a_success(monkeypatch, state_dir: Path):
    from rollback_ops import runner
    from rollback_ops.authorization import Authorization
    from rollback_ops.results import HostResult

    def fake_run(
        spec: runner.PlaybookRun, sink: object = None, **kw: object
    ) -> runner.RunnerOutcome:
        return runner.RunnerOutcome("failed", 2, {"web1": HostResult("web1", status="changed")})

    monkeypatch.setattr(runner, "run_playbook", fake_run)
    prep = api.prepare("emergency", GOOD, limit="web1,web2", state_dir=state_dir)
    auth = Authorization(operator="ana", break_glass=True, reason="P0: checkout down")
    result = api.execute(prep, state_dir=state_dir, auth=auth)
    assert result.hosts["web2"].status == "failed"
    assert "no result from this host" in result.hosts["web2"].message
    assert not result.ok
    (row,) = history.read(state_dir)
    assert (row.operator, row.break_glass, row.result) == ("ana", True, "failed")


def test_a_run_that_could_not_start_is_recorded_as_an_error(monkeypatch, state_dir: Path):
    from rollback_ops import runner
    from rollback_ops.authorization import Authorization
    from rollback_ops.exceptions import RunnerError

    def broken(spec: runner.PlaybookRun, sink: object = None, **kw: object) -> runner.RunnerOutcome:
        raise RunnerError("ansible-playbook not found")

    monkeypatch.setattr(runner, "run_playbook", broken)
    prep = api.prepare("emergency", GOOD, limit="web1", state_dir=state_dir)
    with pytest.raises(RunnerError):
        api.execute(
            prep,
            state_dir=state_dir,
            auth=Authorization(operator="ana", break_glass=True, reason="P0: checkout down"),
        )
    (row,) = history.read(state_dir)
    assert row.result == "error"
