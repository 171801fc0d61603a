"""The operations: one class per command, its checks, its request, the CLI built from it, and
the one extra variable (rollback_request) a playbook gets."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import api, appspec, cli, demo, inventory, operations, paths
from rollback_ops.exceptions import ConfigError
from rollback_ops.operations import OPERATIONS, REQUEST_KEYS, Request
from rollback_ops.operations.levels import LEVEL_ARGUMENTS
from rollback_ops.runner import AnsibleOptions
from tests.conftest import FIXTURES

GOOD = str(FIXTURES / "inventories" / "good")
CONTRACT = {
    "level",
    "run_id",
    "operator",
    "approved_by",
    "reason",
    "break_glass",
    "confirmed_by_typing",
    "flags",
    "allow_new_flags",
    "verify",
    "to",
    "backup_stamp",
    "procedure",
    "force",
    "targets",
    "backup_id",
    "backup_from",
    "backup_files",
    "backup_kind",
    "restore_test",
    "schedule_at",
    "keep",
    "max_age_days",
    "max_age_seconds",
    "unlock_runs",
    "unlock_inspect",
    "loss_run",
    "loss_format",
    "loss_out",
    "loss_sets",
    "undo",
    "controller",
    "authorized_environments",
    "approval",
    "resumes",
}
RUNNABLE = [op for op in OPERATIONS.values() if op.playbook]


def parse(*argv: str) -> argparse.Namespace:
    return cli.build_parser().parse_args(list(argv))


def subparser(*path: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for name in path:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return parser


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def test_every_command_is_a_registered_class_with_its_playbook_and_policy():
    names = set(OPERATIONS)
    assert {"flag", "emergency", "config", "code", "full", "verify", "unlock"} <= names
    assert {"unlock-inspect", "resume"} <= names
    assert {
        f"backup-{a}" for a in ("create", "list", "verify", "prune", "schedule", "import")
    } <= names
    assert list(operations.rollback_levels()) == [
        "flag",
        "emergency",
        "config",
        "code",
        "data",
        "schema",
        "full",
    ]
    for op in RUNNABLE:
        assert paths.playbook(op.playbook).is_file(), op.name
        assert op.summary and "\n" not in op.summary
    assert [n for n, op in OPERATIONS.items() if op.break_glass] == [
        "backup-prune",
        "flag",
        "emergency",
        "unlock",
    ]
    assert [n for n, op in OPERATIONS.items() if op.resumable] == ["code", "data", "full"]
    assert {n for n, op in OPERATIONS.items() if op.needs_db_passwords} == {
        "data",
        "schema",
        "full",
        "backup-create",
        "backup-import",
        "backup-verify",
        "backup-schedule",
        "backup-export-loss",
    }
    guarded = {n for n, op in OPERATIONS.items() if op.guarded}
    # backup prune removes sets: production needs an approval for it, as for a level
    assert guarded == {
        "flag",
        "emergency",
        "config",
        "code",
        "data",
        "schema",
        "full",
        "unlock",
        "backup-prune",
    }
    readonly = {n for n, op in OPERATIONS.items() if op.playbook and not op.changes_hosts}
    assert readonly == {
        "verify",
        "unlock-inspect",
        "backup-list",
        "backup-verify",
        "backup-export-loss",  # a scratch database it drops; the files go to the controller
        "status",
        # they write approval records as the person's own login, never app state
        "request",
        "approve",
        "approval-read",
    }
    with pytest.raises(ConfigError, match="unknown level 'resume'"):
        operations.get("resume")  # no playbook of its own: api.prepare_resume


def test_adding_a_level_is_adding_a_class():
    class Tiny(operations.levels.Level):
        name = "tiny-test-level"
        playbook = "flag"
        summary = "a level for this test"

    try:
        assert operations.get("tiny-test-level") is OPERATIONS["tiny-test-level"]
        assert "tiny-test-level" in operations.rollback_levels()
    finally:
        del OPERATIONS["tiny-test-level"]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, appspec.AppSpec]:
    inv = inventory.load(GOOD, tmp_path_factory.mktemp("state"))
    return appspec.parse_inventory(inv)


def test_checks_against_an_app(apps: dict[str, appspec.AppSpec]):
    app = apps["web1"]
    flag, config = operations.get("flag"), operations.get("config")
    assert flag.check(app, Request()) == []
    (problem,) = flag.check(app, Request(flags={"NOPE": "1"}))
    assert problem.startswith(f"unknown flag NOPE for app {app.name}")
    assert flag.check(app, Request(flags={"NOPE": "1"}, allow_new_flags=True)) == []
    normalized, problems = appspec.validator.validate_app({"name": "bare"})
    assert not problems
    bare = appspec.build(normalized)
    assert flag.check(bare, Request()) == [
        "app bare has no rollback_app.env_file",
        "no --flag given and app bare has no master_switch to turn off",
    ]
    assert config.check(bare, Request()) == [
        "app bare has no rollback_app.config.files, config.rows nor backup.crontabs to restore"
    ]
    assert operations.get("emergency").check(bare, Request())[-1] == (
        "app bare has no rollback_app.emergency setting"
    )
    assert operations.get("code").check(app, Request(to="v1"))  # files app, or no code at all
    assert operations.get("verify").check(app, Request()) == []
    assert operations.get("backup-list").check(bare, Request()) == []


def test_each_operation_builds_its_request_from_its_own_arguments():
    args = parse("apply", "-L", "code", "-i", "x", "--to", "v1", "--force", "--no-verify")
    assert operations.get("code").request(args) == Request(
        level="code", to="v1", force=True, verify=False
    )
    args = parse("plan", "-L", "flag", "-i", "x", "-f", "A=1", "--allow-new-flag")
    assert operations.get("flag").request(args) == Request(
        level="flag", flags={"A": "1"}, allow_new_flags=True
    )
    args = parse("plan", "-L", "full", "-i", "x", "--backup-id", "S1")
    assert operations.get("full").request(args).backup_id == "S1"
    args = parse("backup", "prune", "-i", "x", "--keep", "3", "--max-age", "9")
    request = operations.get("backup-prune").request(args)
    assert (request.keep, request.max_age_days) == (3, 9)
    args = parse("backup", "create", "-i", "x", "--restore-test")
    request = operations.get("backup-create").request(args)
    assert (request.backup_kind, request.restore_test) == ("predeploy", True)
    args = parse("backup", "schedule", "-i", "x", "--at", "daily", "--keep", "2")
    request = operations.get("backup-schedule").request(args)
    assert (request.schedule_at, request.keep) == ("daily", 2)
    args = parse("unlock", "-i", "x", "--run", "R1", "--force")
    request = operations.get("unlock").request(args)
    assert (request.unlock_run, request.force) == ("R1", True)
    assert operations.get("unlock-inspect").request(args).unlock_inspect


def test_a_level_argument_on_another_level_names_the_levels_that_take_it():
    def problems(*argv: str) -> list[str]:
        args = parse("plan", "-i", "x", *argv)
        return cli.level_usage_problems(operations.get(args.level), args)

    assert problems("-L", "flag", "--to", "v1") == ["--to: only with --level code or full"]
    assert problems("-L", "emergency", "-f", "A=1") == ["--flag goes with --level flag"]
    assert problems("-L", "code", "--backup-id", "S") == [
        "--backup-id: only with --level config or data or full"
    ]
    assert problems("-L", "code", "--from", "external") == [
        "--from: only with --level data or full"
    ]
    assert problems("-L", "flag", "--to", "v", "--force") == [
        "--to, --force: only with --level code or full"
    ]
    assert problems("-L", "config", "--no-verify", "--backup-id", "S") == []


def test_resume_refuses_the_options_it_takes_from_the_receipt():
    resume = OPERATIONS["resume"]
    args = parse("apply", "--resume", "R1", "--backup-id", "S", "-l", "web1", "--no-verify")
    assert resume.usage_problems(args) == [
        "--resume takes the run's own options; leave out --limit, --backup-id"
    ]
    assert resume.usage_problems(parse("apply", "--resume", "R1", "--no-verify")) == []


def test_the_cli_is_built_from_the_operations():
    for op in operations.rollback_levels().values():
        for command in ("apply", "plan"):
            parser = subparser(command)
            assert op.name in next(a for a in parser._actions if a.dest == "level").choices
            for arg in op.arguments:
                assert set(arg.names) <= options_of(parser), (command, op.name, arg.names)
    for op in RUNNABLE:
        if op.is_level or op.name == "unlock-inspect" or op.playbook == "approval":
            continue  # driven by their own commands (unlock; request, approve, apply --run)
        path = ("backup", op.name.removeprefix("backup-")) if "backup-" in op.name else (op.name,)
        parser = subparser(*path)
        assert parser.description == op.summary[:1].upper() + op.summary[1:] + "."  # as a sentence
        assert {"--inventory", "--limit", "--json"} <= options_of(parser)
        positionals = {a.dest for a in parser._actions if not a.option_strings}
        for arg in op.arguments:
            assert set(arg.names) <= options_of(parser) | positionals, (path, arg.names)
    backup = subparser("backup")
    (actions,) = [a for a in backup._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(actions.choices) == {
        n.removeprefix("backup-") for n in OPERATIONS if n.startswith("backup-")
    }
    assert {a.names[0] for a in LEVEL_ARGUMENTS} <= options_of(subparser("apply"))


PASS_THROUGH = [
    "-u",
    "deploy",
    "--private-key",
    "/keys/id",
    "-vvv",
    "--ssh-common-args",
    "-o ProxyJump=bastion",
    "--vault-id",
    "prod@/v/prod",
    "--vault-id",
    "dev@prompt",
    "--vault-password-file",
    "/v/a",
    "--vault-password-file",
    "/v/b",
    "--ask-vault-pass",
]
EXPECTED = AnsibleOptions(
    user="deploy",
    private_key="/keys/id",
    verbosity=3,
    ssh_common_args="-o ProxyJump=bastion",
    forks=5,
    vault_ids=("prod@/v/prod", "dev@prompt"),
    vault_password_files=("/v/a", "/v/b"),
    ask_vault_pass=True,
)


@pytest.mark.parametrize(
    "command",
    [
        ["verify", "-i", "x", "-f", "5"],
        ["unlock", "-i", "x", "--forks", "5"],
        ["backup", "list", "-i", "x", "-f", "5"],
        ["backup", "schedule", "-i", "x", "--at", "daily", "-f", "5"],
        ["apply", "-L", "flag", "-i", "x", "--forks", "5", "-f", "A=1"],
    ],
)
def test_ansibles_own_options_pass_through_with_ansibles_names(command: list[str]):
    args = parse(*command, *PASS_THROUGH)
    assert operations.ansible_options(args) == EXPECTED
    if command[0] == "apply":  # -f stays --flag there
        assert args.flag == ["A=1"]
    assert operations.ansible_options(parse("verify", "-i", "x")) == AnsibleOptions()


def test_inventory_is_repeatable_as_for_ansible_playbook(state_dir: Path):
    assert parse("plan", "-L", "flag", "-i", "a", "-i", "b").inventory == ["a", "b"]
    assert parse("backup", "list", "--inventory", "a").inventory == ["a"]
    # every source is read (a missing one is an error naming it), as ansible-playbook reads them
    with pytest.raises(ConfigError, match="nope"):
        api.prepare("flag", ["nope", GOOD], state_dir=state_dir)
    prep = api.prepare("flag", [GOOD, GOOD], state_dir=state_dir)
    assert prep.hosts == ["web1", "web2"] and len(prep.inventory.sources) == 2


def test_the_api_takes_everything_the_cli_does(state_dir: Path):
    for function in (api.prepare, api.apply):
        params = inspect.signature(function).parameters
        assert {"request", "limit", "app", "state_dir", "options"} <= set(params)
    for function in (api.verify, api.unlock, api.prepare_resume):
        assert "options" in inspect.signature(function).parameters
    prep = api.prepare(
        "backup-verify",
        GOOD,
        Request(backup_id="S1", restore_test=True),
        app="shop",
        options=AnsibleOptions(forks=3),
        state_dir=state_dir,
    )
    assert (prep.request.level, prep.request.backup_id, prep.options.forks) == (
        "backup-verify",
        "S1",
        3,
    )
    prep = api.prepare(OPERATIONS["unlock-inspect"], GOOD, state_dir=state_dir)
    assert prep.request.unlock_inspect and prep.operation.playbook == "unlock"


def test_rollback_request_has_exactly_the_contract_keys_and_types():
    mapping = operations.rollback_request(
        Request(level="code", to="v1", keep=3, resumes="R0", unlock_run="R9"),
        run_id="R1",
        authorization={"operator": "ana", "approved_by": "ben", "reason": "fire"},
        controller={"controller": "ctl", "pid": 42, "pid_start": "99"},
        authorized_environments=["staging"],
        public_flags={},
    )
    assert set(mapping) == CONTRACT == set(REQUEST_KEYS)
    for key, value in mapping.items():
        assert isinstance(value, REQUEST_KEYS[key]), key
    assert mapping["controller"] == {"name": "ctl", "pid": 42, "pid_start": "99"}
    assert (mapping["to"], mapping["keep"], mapping["max_age_days"]) == ("v1", 3, None)


def test_a_run_sends_one_extra_variable_and_keeps_secret_flags_out_of_it(tmp_path: Path):
    """A real run on the demo sandbox (local connection): whatever the playbook makes of it,
    the extra-vars file ansible-runner got holds rollback_request alone."""
    state = tmp_path / "state"
    demo.create_sandbox(state)
    result = api.apply(
        "flag",
        "local",
        Request(
            flags={"STRIPE_API_KEY": "s3cr3t", "ENABLE_TIME_WEIGHTING": "false"},
            allow_new_flags=True,
        ),
        check=True,
        state_dir=state,
    )
    text = (Path(result.run_dir) / "extravars.yml").read_text()
    assert text.startswith("--- !unsafe\n") and "s3cr3t" not in text
    sent: dict[str, Any] = yaml.load(text.replace("!unsafe", ""), Loader=yaml.SafeLoader)
    assert list(sent) == ["rollback_request"]
    request = sent["rollback_request"]
    assert set(request) == CONTRACT
    assert request["level"] == "flag" and request["run_id"] == result.run_id
    assert request["flags"] == {"ENABLE_TIME_WEIGHTING": "false"}
    assert "s3cr3t" not in str(result.receipt())
