"""Inputs refused before any change, and what a receipt may show (security issue 3, 7, 12, 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_ops import api, appspec, inventory, operations
from rollback_ops.authorization import Authorization, check, current_operator
from rollback_ops.exceptions import ConfigError, Refused
from rollback_ops.results import HostResult, RunResult, StepEvent
from tests.conftest import FIXTURES

GOOD = str(FIXTURES / "inventories" / "good")


# 3: a name given on the controller never approves; the requester never approves their own
@pytest.mark.parametrize("name", ["bob", " ", "ANA", "bob, carol"])
def test_a_name_alone_never_approves_production(name: str):
    with pytest.raises(Refused, match="needs an approved request"):
        check(
            Authorization("ana", approved_by=name), level="flag", production=True, check_mode=False
        )


@pytest.mark.parametrize("approvers", ["ana", "bob, ana", "ana,bob"])
def test_the_requester_among_the_approvers_is_refused(approvers: str):
    auth = Authorization("ana", approved_by=approvers, approval_run="R1", requester="ana")
    with pytest.raises(Refused, match="ana cannot approve their own request"):
        check(auth, level="flag", production=True, check_mode=False)
    with pytest.raises(Refused, match="cannot approve their own request"):
        check(auth, level="flag", production=False, check_mode=True)


def test_a_blank_operator_from_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", "  ")
    with pytest.raises(Refused, match="ROLLBACK_OPS_OPERATOR is blank"):
        current_operator()
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", " ana ")
    assert current_operator() == "ana"


# 13: flags are taken as typed
@pytest.mark.parametrize(
    "item",
    [" FOO=x", "FOO =x", "FOO\n=x", "\nFOO=x", "FOO\t=x", "=x", "FOO", "1FOO=x", "FÖO=x"],
)
def test_a_malformed_flag_key_is_refused_not_trimmed(item: str):
    with pytest.raises(ConfigError, match="--flag"):
        operations.parse_flags([item])


@pytest.mark.parametrize(
    "value",
    ["a\nb", "a\rb", "a\x00b", "tr\x0bue", "true\x0cOTHER=1", "a\x1cb", "a\x85b", "a\u2028b"],
)
def test_a_value_that_is_not_one_env_line_is_refused(value: str):
    with pytest.raises(ConfigError, match="control character"):
        operations.parse_flags([f"FOO={value}"])


def test_a_value_is_taken_byte_for_byte():
    flags = operations.parse_flags(["A= spaced ", "B=tab\there", "C=", "D={{ 7*7 }}", "E=a=b"])
    assert flags == {"A": " spaced ", "B": "tab\there", "C": "", "D": "{{ 7*7 }}", "E": "a=b"}


# 7: types of values written to env files
def write_inventory(tmp_path: Path, app_yaml: str) -> str:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars:\n    rollback_environment: staging\n    rollback_app:\n"
        "      name: shop\n      env_file: /srv/shop/.env\n      master_switch: SHOP_ON\n"
        + app_yaml
        + "  hosts:\n    web1:\n"
    )
    return str(tmp_path)


@pytest.mark.parametrize(
    ("app_yaml", "where"),
    [
        ("      master_switch_off: ~\n", "rollback_app.master_switch_off: has no value"),
        ("      master_switch_off: [a]\n", "rollback_app.master_switch_off: must be a string"),
        ("      emergency: {APP_MODE: }\n", "rollback_app.emergency.APP_MODE: has no value"),
        ("      emergency: {APP_MODE: {a: 1}}\n", "rollback_app.emergency.APP_MODE: must be"),
        ("      emergency: {APP_MODE: [x]}\n", "rollback_app.emergency.APP_MODE: must be"),
        (
            '      emergency: {APP_MODE: "a\\vb"}\n',
            "rollback_app.emergency.APP_MODE: holds the control",
        ),
        (
            "      maintenance: {env: {MAINT: ~}}\n",
            "rollback_app.maintenance.env.MAINT: has no value",
        ),
    ],
)
def test_null_and_non_scalar_values_are_refused_naming_file_and_key(
    tmp_path: Path, app_yaml: str, where: str
):
    inv = inventory.load(write_inventory(tmp_path, app_yaml), tmp_path / "state")
    with pytest.raises(ConfigError) as err:
        appspec.parse_inventory(inv)
    assert f"{tmp_path / 'hosts.yml'}: {where}" in str(err.value)


def test_booleans_and_numbers_are_written_as_people_write_them(tmp_path: Path):
    inv = inventory.load(
        write_inventory(tmp_path, "      master_switch_off: false\n      emergency: {N: 3}\n"),
        tmp_path / "state",
    )
    app = appspec.parse_inventory(inv)["web1"]
    assert (app.master_switch_off, app.emergency) == ("false", {"N": "3"})


# 12: secret flags are masked in the request, the plan and the receipt
def test_secret_flags_are_masked_in_plan_and_receipt(state_dir: Path):
    prep = api.prepare(
        "flag",
        GOOD,
        operations.Request(
            flags={"API_KEY": "s3cr3t-value", "SHOP_FAST_PATH": "false"}, allow_new_flags=True
        ),
        state_dir=state_dir,
    )
    masked = appspec.mask("s3cr3t-value")
    assert masked.startswith("<secret sha256:") and "s3cr3t" not in masked
    assert prep.masked_request()["flags"] == {"API_KEY": masked, "SHOP_FAST_PATH": "false"}
    steps = "\n".join(api.plan(prep)[0].changes)
    assert f"API_KEY={masked}" in steps and "s3cr3t" not in steps
    assert prep.request.flags["API_KEY"] == "s3cr3t-value"  # what the host gets, unmasked


# 13: verify with nothing to check
def test_verify_with_nothing_to_check_is_refused_unless_the_app_opts_out(tmp_path: Path):
    bare = "      units: []\n      health: {}\n      log: {}\n"
    with pytest.raises(ConfigError, match="nothing to verify: app shop"):
        api.prepare("verify", write_inventory(tmp_path, bare), state_dir=tmp_path / "s")
    api.prepare(
        "verify", write_inventory(tmp_path, bare + "      verify: none\n"), state_dir=tmp_path / "s"
    )


# outcomes and exit codes
def result(**hosts: HostResult) -> RunResult:
    return RunResult("r", "flag", "inv", "/inv", False, hosts, "", 1.0, 2, "/runs/r")


def test_a_preflight_refusal_exits_3_and_a_failure_after_a_change_exits_1():
    refused = HostResult(
        "web1", status="failed", failed_step="preflight: Check the host can take the rollback"
    )
    ok = HostResult("web2")
    assert result(web1=refused, web2=ok).exit_status == 3
    assert result(web1=refused, web2=ok).outcome == "refused"
    changed = HostResult(
        "web2", status="changed", steps=[StepEvent("web2", "envfile: Set", "changed")]
    )
    assert result(web1=refused, web2=changed).exit_status == 1
    late = HostResult("web1", status="failed", failed_step="healthcheck: Check the app answers")
    late.steps.append(StepEvent("web1", "envfile: Set", "changed"))
    assert result(web1=late).exit_status == 1


def test_an_interrupted_run_exits_128_plus_the_signal_and_names_what_is_left():
    host = HostResult("web1", status="interrupted", lock="held")
    host.steps.append(StepEvent("web1", "envfile: Set", "changed"))
    res = result(web1=host, web2=HostResult("web2", lock="released"))
    res.interrupted = "SIGINT"
    assert (res.exit_status, res.outcome, res.ok) == (130, "interrupted", False)
    res.interrupted = "SIGTERM"
    assert res.exit_status == 143
    receipt = res.receipt()
    assert receipt["result"] == "interrupted"
    assert receipt["changed_hosts"] == ["web1"] and receipt["locks_left"] == ["web1"]


# siblings of 1: values that become git arguments or host paths
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("to", "--upload-pack=touch /tmp/x"),
        ("to", "-p"),
        ("to", "v1..v2"),
        ("to", "HEAD:secrets.txt"),
        ("to", "a b"),
        ("backup_stamp", "../../../../etc/shadow"),
        ("backup_stamp", "x/y"),
        ("backup_id", ".."),
        ("backup_id", "../other-app/set"),
    ],
)
def test_refs_stamps_and_set_ids_that_read_as_options_or_paths_are_refused(option: str, value: str):
    problems = operations.request_problems(operations.Request(level="code", **{option: value}))
    assert problems and "--" in problems[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("to", "v1.4.0"),
        ("to", "HEAD~1"),
        ("to", "release/1.4"),
        ("to", "a1b2c3d"),
        ("backup_stamp", "20260101T000000Z"),
        ("backup_id", "20260101T000000Z-predeploy"),
    ],
)
def test_ordinary_refs_stamps_and_set_ids_pass(option: str, value: str):
    assert operations.request_problems(operations.Request(level="code", **{option: value})) == []


def test_the_recap_of_a_refused_run_reverts_no_code_and_says_refused():
    """Defect 13: a run refused at preflight said "code reverted" for the hosts whose check
    had passed."""
    from rollback_ops.progress import recap

    code = {"needed": True, "current": {"head": "b" * 40}, "target": {"ref": "v1", "sha": "a" * 40}}
    checked = HostResult("web1", code=dict(code))
    refused = HostResult("web2", status="failed", failed_step="preflight: Check the host")
    res = result(web1=checked, web2=refused)
    res.level = "code"
    text = recap(res)
    assert "code reverted" not in text and "REFUSED (nothing was changed)" in text
    checked.steps.append(StepEvent("web1", "coderevert: Revert", "changed"))
    res.hosts["web2"] = HostResult("web2")
    assert "code reverted:" in recap(res)
