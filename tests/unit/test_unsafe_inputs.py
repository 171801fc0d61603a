"""What a person types reaches the hosts literally: never a template (security issue, defect 1).

Real ansible-playbook runs through ansible-runner on this machine's local connection (the
demo's sandbox app): a value carrying a lookup that would create a file must leave no file,
and be written byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollback_ops import cli, demo, operations, runner

MARKER_CMD = "touch {marker}"


def payload(marker: Path) -> str:
    return "{{ lookup('pipe', '" + MARKER_CMD.format(marker=marker) + "') }}{{ 7*7 }}"


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    state = tmp_path / "state"
    inventory = demo.create_sandbox(state)
    return state, inventory


def env_value(state: Path, key: str) -> str:
    env = state / "demo" / "srv" / "analyticbot" / ".env.production"
    for line in env.read_text().splitlines():
        if line.startswith(key + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{key} not in {env}")


def apply_flag(state: Path, *options: str) -> int:
    """`rollback-ops apply --level flag` on the sandbox (`-i local`), with these options."""
    return cli.main(
        ["--state-dir", str(state), "apply", "--level", "flag", "-i", "local", *options]
    )


def test_a_flag_value_a_reason_and_an_operator_are_never_templated(
    sandbox: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
):
    state, _inventory = sandbox
    marker = tmp_path / "pwned"
    value = payload(marker)
    monkeypatch.setenv("ROLLBACK_OPS_OPERATOR", "ana" + payload(tmp_path / "pwned-operator"))
    code = apply_flag(
        state,
        "--flag",
        f"ENABLE_TIME_WEIGHTING={value}",
        "--reason",
        payload(tmp_path / "pwned-reason"),
        "--yes",
        "--json",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not list(tmp_path.glob("pwned*"))
    # written byte for byte (quoted as the value needs, the quotes are not part of it)
    assert env_value(state, "ENABLE_TIME_WEIGHTING") == f'"{value}"'
    receipt = json.loads(out)
    (change,) = receipt["hosts"]["localhost"]["flags"]
    assert change["after"] == value
    assert receipt["authorization"]["reason"].endswith("{{ 7*7 }}")


def test_check_mode_takes_the_same_path(
    sandbox: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    state, _inventory = sandbox
    value = payload(tmp_path / "pwned")
    code = apply_flag(
        state, "--flag", f"ENABLE_TIME_WEIGHTING={value}", "--check", "--diff", "--json"
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert not list(tmp_path.glob("pwned*"))
    (change,) = json.loads(out)["hosts"]["localhost"]["flags"]
    assert change["after"] == value and change["before"] == "true"
    assert env_value(state, "ENABLE_TIME_WEIGHTING") == "true"


def test_every_request_field_reaches_the_playbook_literally(tmp_path: Path):
    """--to, --backup-id, --backup-stamp, the unlock run id, the schedule: one mechanism
    (an extra-vars file marked !unsafe) carries them all; YAML look-alikes stay strings."""
    marker = tmp_path / "pwned"
    value = payload(marker)
    request = operations.Request(
        level="code",
        to=value,
        backup_stamp=value,
        backup_id=value,
        unlock_runs={"localhost": value},
        schedule_at=value,
        targets={"localhost": value},
    )
    extravars = {
        "rollback_request": operations.rollback_request(
            request,
            run_id="r",
            authorization={"operator": "yes", "reason": value},
            controller={"controller": "c", "pid": 1, "pid_start": "1"},
            authorized_environments=["staging"],
            public_flags={"A": "false", "B": "3", "C": "null", "D": value},
        )
    }
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n"
        "        dest: " + str(tmp_path / "seen.json") + "\n"
        "        content: \"{{ {'to': r.to, 'stamp': r.backup_stamp,"
        " 'set': r.backup_id, 'unlock': r.unlock_runs,"
        " 'at': r.schedule_at, 'targets': r.targets,"
        " 'flags': r.flags, 'operator': r.operator,"
        " 'reason': r.reason} | to_json }}\"\n"
        '      vars:\n        r: "{{ rollback_request }}"\n'
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {__import__('sys').executable}\n"
    )
    run_dir = tmp_path / "run"
    outcome = runner.run_playbook(
        runner.PlaybookRun(playbook, inventory, run_dir, extravars=extravars)
    )
    assert outcome.rc == 0, outcome.stdout_tail
    assert not marker.exists()
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen == {
        "to": value,
        "stamp": value,
        "set": value,
        "unlock": {"localhost": value},
        "at": value,
        "targets": {"localhost": value},
        "flags": {"A": "false", "B": "3", "C": "null", "D": value},
        "operator": "yes",
        "reason": value,
    }
    # the values are in a private file, not on the playbook's command line
    assert oct((run_dir / "extravars.yml").stat().st_mode)[-3:] == "600"
    command = json.loads((run_dir / "artifacts" / "ansible" / "command").read_text())
    assert not any("7*7" in part for part in command["command"])


def test_a_secret_flag_reaches_the_file_and_nothing_else(
    sandbox: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    """Defect 12: a secret value is written to the env file and appears nowhere else: not in
    the diff, the recap, the receipt, ansible-runner's events or artifacts, the history."""
    state, _inventory = sandbox
    secret = "s3cr3t-" + "9f8e7d6c5b4a"
    options = ["--flag", f"STRIPE_API_KEY={secret}", "--allow-new-flag", "--diff", "--yes"]
    assert apply_flag(state, *options, "--json") == 0
    out, err = capsys.readouterr()
    assert env_value(state, "STRIPE_API_KEY") == secret
    assert secret not in out + err
    assert "<secret sha256:" in out and "<secret sha256:" in err
    for path in state.rglob("*"):
        if path.is_file() and path.name != ".env.production":
            assert secret.encode() not in path.read_bytes(), path
    for run in (state / "runs").iterdir():
        assert oct(run.stat().st_mode)[-3:] == "700"
        assert oct((run / "receipt.json").stat().st_mode)[-3:] == "600"
