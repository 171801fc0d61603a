"""rollback-ops inside Ansible, on the lab hosts: inventories, vault and configuration as
ansible-core reads them, and the collection used from a team's own playbook.

- an INI inventory with group_vars, and ``--limit 'group:!host'`` with Ansible's meaning;
- a whole-file vault ``group_vars`` opened with ``--vault-password-file``;
- ``-i ./prod`` in a team's directory wins over the example shipped with rollback-ops;
- a ``ProxyJump`` through one lab host to another, configured only in the team's
  ``ansible.cfg`` (the target's name resolves only on the jump host);
- a foreign playbook, outside the repository, using two modules and one role of the built
  and installed collection by their fully qualified names.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import ENV_FILE, LabHosts

pytestmark = pytest.mark.lab

FLAG = "ENABLE_TIME_WEIGHTING"


def lab_vars(lab: LabHosts) -> dict[str, Any]:
    data = yaml.safe_load(Path(lab.inventory).read_text())
    return dict(data["all"]["vars"])


def host_vars(lab: LabHosts, name: str) -> dict[str, Any]:
    data = yaml.safe_load(Path(lab.inventory).read_text())
    return dict(data["all"]["hosts"][name])


def flag_value(lab: LabHosts, host: str) -> str:
    for line in lab.read(host).splitlines():
        if line.startswith(f"{FLAG}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{FLAG} not in {host}'s env file")


def ini_inventory(lab: LabHosts, directory: Path) -> Path:
    """The lab as a team would write it in INI: hosts in a group, variables in group_vars."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[web]"]
    for name in lab.names:
        lines.append(
            f"{name} ansible_host={lab.address(name)} "
            f"lab_worker_tag={host_vars(lab, name).get('lab_worker_tag', '')}"
        )
    (directory / "hosts.ini").write_text("\n".join(lines) + "\n")
    (directory / "group_vars").mkdir(exist_ok=True)
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(lab_vars(lab)))
    return directory / "hosts.ini"


def test_an_ini_inventory_and_a_limit_pattern_with_ansibles_meaning(lab: LabHosts, tmp_path: Path):
    inventory = ini_inventory(lab, tmp_path / "team")
    run = lab.cli(
        "apply", "--level", "flag", "--flag", f"{FLAG}=false",
        "-i", str(inventory), "--limit", "web:!web2", "--yes", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert sorted(run.receipt["hosts"]) == ["web1", "web3"]
    assert flag_value(lab, "web1") == "false" and flag_value(lab, "web3") == "false"
    assert flag_value(lab, "web2") == "true"  # excluded by the pattern: untouched


def test_a_whole_file_vault_group_vars_with_a_vault_password_file(lab: LabHosts, tmp_path: Path):
    """rollback_environment and rollback_app live only in an encrypted file: the guard and
    the validation read them decrypted, as the playbook will."""
    team = tmp_path / "team"
    inventory = ini_inventory(lab, team)
    secrets = team / "group_vars" / "all.yml"
    password = tmp_path / "vault-pass"
    password.write_text("lab-vault-password\n")
    password.chmod(0o600)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-vault"),
            "encrypt",
            "--vault-password-file",
            str(password),
            str(secrets),
        ],
        check=True,
        capture_output=True,
    )
    assert secrets.read_text().startswith("$ANSIBLE_VAULT")
    # without the password the inventory cannot be read: refused before any host is touched
    refused = lab.cli(
        "apply", "--level", "flag", "--flag", f"{FLAG}=false", "-i", str(inventory),
        "--limit", "web1", "--yes",
    )  # fmt: skip
    assert refused.code == 2, refused.stderr
    assert "vault" in refused.stderr.lower() and "Traceback" not in refused.stderr
    assert flag_value(lab, "web1") == "true"
    run = lab.cli(
        "apply", "--level", "flag", "--flag", f"{FLAG}=false", "-i", str(inventory),
        "--limit", "web1", "--vault-password-file", str(password), "--yes", "--json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    assert run.receipt["hosts"]["web1"]["status"] == "changed"
    assert flag_value(lab, "web1") == "false"
    assert "lab-vault-password" not in run.stdout + run.stderr


def test_a_path_given_to_i_wins_over_the_shipped_example(lab: LabHosts, tmp_path: Path):
    """`-i prod` in a team's directory holding ./prod is that inventory: the lab's hosts,
    not the example's prod-api-*.example.internal."""
    team = tmp_path / "team"
    ini_inventory(lab, team / "prod")
    run = lab.cli("plan", "--level", "flag", "--flag", f"{FLAG}=false", "-i", "prod", cwd=team)
    assert run.code == 0, run.stderr
    assert "web1" in run.stdout and "example.internal" not in run.stdout
    # a name the project does not have is an error, never the example
    missing = lab.cli("plan", "--level", "flag", "-i", "prod", cwd=tmp_path)
    assert missing.code == 2 and "no such file or directory" in missing.stderr


def test_proxyjump_from_the_teams_ansible_cfg(lab: LabHosts, tmp_path: Path):
    """web2 is reachable only through web1: its name resolves on web1 alone, and the jump is
    configured in the team's ansible.cfg (ssh_args -F their ssh_config), nowhere else."""
    alias = "web2-behind-web1"
    with pytest.raises(OSError):
        socket.getaddrinfo(alias, 22)  # the controller cannot reach it directly
    lab.sh(
        "web1", f"grep -q {alias} /etc/hosts || echo '{lab.address('web2')} {alias}' >> /etc/hosts"
    )
    key = lab.lab.key_path
    team = tmp_path / "team"
    team.mkdir()
    ssh_config = team / "ssh_config"
    ssh_config.write_text(
        f"Host jump-web1\n  HostName {lab.address('web1')}\n  User root\n  IdentityFile {key}\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        f"Host {alias}\n  ProxyJump jump-web1\n"
    )
    (team / "ansible.cfg").write_text(
        "[defaults]\nforks = 5\n\n[ssh_connection]\n"
        f"ssh_args = -F {ssh_config} -o ControlMaster=auto -o ControlPersist=30s\n"
    )
    app = lab_vars(lab)
    app["rollback_app"] = {
        **app["rollback_app"],
        "health": {
            **app["rollback_app"]["health"],
            "url": f"http://{lab.address('web2')}:10300/health",
        },
    }
    inventory = team / "inventories" / "behind"
    inventory.mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": app,
                    "hosts": {"web2": {**host_vars(lab, "web2"), "ansible_host": alias}},
                }
            }
        )
    )
    try:
        run = lab.cli(
            "apply", "--level", "flag", "--flag", f"{FLAG}=false",
            "-i", "behind", "--yes", "--json", cwd=team,
        )  # fmt: skip
        assert run.code == 0, run.stderr
        assert run.receipt["hosts"]["web2"]["status"] == "changed"
        assert flag_value(lab, "web2") == "false"
    finally:
        # /etc/hosts is a bind mount: rewritten in place, not renamed over
        lab.sh("web1", f"grep -v {alias} /etc/hosts > /tmp/hosts; cat /tmp/hosts > /etc/hosts")


def test_a_foreign_playbook_uses_the_built_collection(lab: LabHosts, tmp_path: Path):
    """ansible-galaxy builds the tarball from the repository; a team installs it and calls
    two modules and one role by FQCN from its own playbook, with plain ansible-playbook."""
    bin_dir = Path(sys.executable).parent
    built = subprocess.run(
        [str(bin_dir / "ansible-galaxy"), "collection", "build", str(ROOT),
         "--output-path", str(tmp_path / "dist")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = (tmp_path / "dist").glob("rollback_ops-rollback-*.tar.gz")
    collections = tmp_path / "collections"
    installed = subprocess.run(
        [str(bin_dir / "ansible-galaxy"), "collection", "install", str(tarball),
         "-p", str(collections)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    content = collections / "ansible_collections" / "rollback_ops" / "rollback"
    assert (content / "plugins" / "modules" / "envfile.py").exists()
    assert not (content / "tests").exists() and not (content / "rollback_ops").exists()

    team = tmp_path / "team"
    team.mkdir()
    vars_ = lab_vars(lab)
    inventory = team / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump({"all": {"vars": vars_, "hosts": {"web3": host_vars(lab, "web3")}}})
    )
    (team / "site.yml").write_text(
        f"""---
- name: Our own rollback, with the rollback_ops.rollback collection
  hosts: web3
  gather_facts: false
  tasks:
    - name: Turn the flag off
      rollback_ops.rollback.envfile:
        path: {ENV_FILE}
        values:
          {FLAG}: "false"
      register: env_change
    - name: Restart the app if the file changed
      ansible.builtin.import_role:
        name: rollback_ops.rollback.appservice
      vars:
        appservice_units: [analyticbot-api]
        appservice_needed: "{{{{ env_change is changed }}}}"
    - name: No error in the log
      rollback_ops.rollback.logscan_info:
        path: /var/log/analyticbot/production.log
        pattern: Traceback
      register: scan
    - name: Keep what the modules said
      delegate_to: localhost
      ansible.builtin.copy:
        dest: "{tmp_path / "out.json"}"
        mode: "0600"
        content: "{{{{ {{'env': env_change, 'scan': scan}} | to_json }}}}"
"""
    )
    before = lab.unit_since("web3")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")},
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(team / "site.yml")],
        capture_output=True,
        text=True,
        cwd=team,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["env"]["changed"] and FLAG in out["env"]["changed_keys"]
    assert flag_value(lab, "web3") == "false"
    assert lab.unit_since("web3") > before  # the role restarted it
    assert out["scan"]["count"] == 0 and not out["scan"]["changed"], out["scan"]
