"""Ansible's own options passed through (runner.AnsibleOptions), and the team's ansible.cfg:
real ansible-runner runs of small playbooks on localhost (local connection)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollback_ops import runner
from rollback_ops.exceptions import ConfigError
from tests.conftest import ROOT

SHOW = """- hosts: all
  gather_facts: false
  tasks:
    - name: Record what this play runs with
      ansible.builtin.copy:
        dest: "{out}"
        mode: "0600"
        content: "{{{{ {{'forks': ansible_forks, 'verbosity': ansible_verbosity,
          'user': ansible_user | default(''), 'pipelining': lookup('ansible.builtin.config',
          'ANSIBLE_PIPELINING')}} | to_json }}}}"
"""


def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    return path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"user": "{{ lookup('pipe', 'id') }}"}, "--user: .* contains a template marker"),
        ({"private_key": "/k{%x%}"}, "--private-key: .* template marker"),
        ({"ssh_common_args": "-o X={#"}, "--ssh-common-args: .* template marker"),
        ({"vault_ids": ("dev@{{x}}",)}, "--vault-id: .* template marker"),
        ({"vault_password_files": (" ",)}, "--vault-password-file: a blank value"),
        ({"user": ""}, "--user: a blank value"),
        ({"forks": 0}, "--forks 0: must be between 1 and 500"),
        ({"verbosity": 7}, "-v: at most 6"),
    ],
)
def test_values_ansible_would_template_or_cannot_use_are_refused(
    options: dict[str, object], message: str
):
    """ansible-playbook templates -u itself (-u '{{ lookup(...) }}' runs the lookup): a value
    a person typed is refused with the option's name rather than templated."""
    with pytest.raises(ConfigError, match=message):
        runner.AnsibleOptions(**options)  # type: ignore[arg-type]


def test_the_options_reach_ansible_playbook_with_ansibles_meaning(tmp_path: Path):
    options = runner.AnsibleOptions(
        user="deploy",
        private_key="/keys/id",
        ssh_common_args="-o ProxyJump=bastion",
        verbosity=2,
        forks=3,
        vault_ids=("dev@/v/dev",),
        vault_password_files=("/v/pass",),
    )
    assert runner.option_args(options) == [
        "--user", "deploy", "--private-key", "/keys/id",
        "--ssh-common-args", "-o ProxyJump=bastion",
        "--vault-id", "dev@/v/dev", "--vault-password-file", "/v/pass",
    ]  # fmt: skip
    playbook = tmp_path / "show.yml"
    playbook.write_text(SHOW.format(out=tmp_path / "seen.json"))
    run_dir = tmp_path / "run"
    options = runner.AnsibleOptions(user="deploy", verbosity=2, forks=3)
    outcome = runner.run_playbook(
        runner.PlaybookRun(playbook, inventory(tmp_path), run_dir, options=options)
    )
    assert outcome.rc == 0, outcome.stdout_tail
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["forks"] == 3 and seen["verbosity"] == 2
    command = json.loads((run_dir / "artifacts" / "ansible" / "command").read_text())["command"]
    assert command[command.index("--user") + 1] == "deploy"
    assert "-vv" in command


def test_the_teams_ansible_cfg_is_used_and_only_gaps_are_filled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The ansible.cfg Ansible would find from the operator's directory is the one the
    playbook runs with; rollback-ops fills pipelining/forks only where it says nothing."""
    team = tmp_path / "team"
    team.mkdir()
    (team / "ansible.cfg").write_text("[defaults]\nforks = 7\n\n[connection]\npipelining = False\n")
    script = (
        "import json, os; from rollback_ops import runner; "
        "env = runner.ansible_env(__import__('pathlib').Path(os.environ['RUN_DIR'])); "
        "print(json.dumps(env))"
    )
    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ANSIBLE_")}
    base["PYTHONPATH"] = str(ROOT)

    def env_from(cwd: Path) -> dict[str, str]:
        run_dir = tmp_path / f"run-{cwd.name}"
        proc = subprocess.run(
            [sys.executable, "-c", script],
            cwd=cwd,
            env={**base, "RUN_DIR": str(run_dir)},
            capture_output=True,
            text=True,
            check=True,
        )
        return dict(json.loads(proc.stdout))

    env = env_from(team)
    assert env["ANSIBLE_CONFIG"] == str((team / "ansible.cfg").resolve())
    assert "ANSIBLE_FORKS" not in env and "ANSIBLE_PIPELINING" not in env  # the team's
    assert env["ANSIBLE_STRATEGY"] == "rollback_ops.rollback.rollback_linear"
    first = Path(env["ANSIBLE_COLLECTIONS_PATH"].split(":")[0])
    assert (first / "ansible_collections/rollback_ops/rollback/galaxy.yml").exists()
    # no ansible.cfg anywhere Ansible looks: Ansible's defaults, gaps filled by rollback-ops
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    base["HOME"] = str(tmp_path)
    env = env_from(elsewhere)
    if not Path("/etc/ansible/ansible.cfg").exists():
        assert "ANSIBLE_CONFIG" not in env
    assert env["ANSIBLE_FORKS"] == "20" and env["ANSIBLE_PIPELINING"] == "True"


def test_ask_vault_pass_answers_ansible_playbooks_own_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """--ask-vault-pass: the password typed once on the controller answers
    ansible-playbook's own prompt (ansible-runner's expect), never argv or a file."""
    password = "typed-vault-pass"
    monkeypatch.setattr(runner, "_VAULT_PASSWORD", [password])  # as if typed at the prompt
    pw_file = tmp_path / "pw"
    pw_file.write_text(password)
    vaulted = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"), "encrypt_string",
            "--vault-password-file", str(pw_file), "the-secret", "--name", "secret",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    pw_file.unlink()
    (tmp_path / "vars.yml").write_text(vaulted)
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  vars_files: [vars.yml]\n  tasks:\n"
        "    - name: Write the decrypted value\n      ansible.builtin.copy:\n"
        f"        dest: {tmp_path / 'out'}\n        content: '{{{{ secret }}}}'\n"
        "        mode: '0600'\n"
    )
    run_dir = tmp_path / "run"
    outcome = runner.run_playbook(
        runner.PlaybookRun(
            playbook,
            inventory(tmp_path),
            run_dir,
            options=runner.AnsibleOptions(ask_vault_pass=True),
        )
    )
    assert outcome.rc == 0, outcome.stdout_tail
    assert (tmp_path / "out").read_text() == "the-secret"
    command = json.loads((run_dir / "artifacts" / "ansible" / "command").read_text())["command"]
    assert "--ask-vault-pass" in command and password not in " ".join(command)
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and password in p.read_text("latin-1")]
    assert not leaked
