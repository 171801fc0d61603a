"""Production approvals by a second identity, on real hosts: each person connects with their
own SSH login and key (alice requests, bob approves, alice applies), the hosts judge every
record by its file owner; a self-approval is refused by the controller and by the host
itself, a changed plan and a reused approval are refused, and a refusal changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rollback_ops import history
from tests.conftest import COLLECTIONS
from tests.integration.conftest import CliRun, LabHosts

PEOPLE = ("alice", "bob", "carol")
SPOOL = "/var/spool/rollback-ops"
FLAG = "ENABLE_TIME_WEIGHTING"


@dataclass
class Person:
    login: str
    key: Path
    project: Path  # the person's project dir: its ansible.cfg becomes root for the changes


@pytest.fixture(scope="module")
def people(lab_session: LabHosts, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Person]:
    """Personal logins on every lab host, each with its own key and sudo (for the level's
    changes, which the team's ansible.cfg makes with become); created over root's SSH."""
    base = tmp_path_factory.mktemp("people")
    found = {}
    for login in PEOPLE:
        key = base / f"{login}_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", login, "-f", str(key)],
            check=True,
        )
        public = key.with_suffix(".pub").read_text().strip()
        for host in lab_session.names:
            lab_session.sh(
                host,
                f"id -u {login} >/dev/null 2>&1 || useradd -m -s /bin/sh {login}; "
                f"install -d -m 0700 -o {login} -g {login} /home/{login}/.ssh && "
                f"echo '{public}' > /home/{login}/.ssh/authorized_keys && "
                f"chown {login}: /home/{login}/.ssh/authorized_keys && "
                f"chmod 0600 /home/{login}/.ssh/authorized_keys && "
                f"echo '{login} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/rollback-ops-{login} && "
                f"chmod 0440 /etc/sudoers.d/rollback-ops-{login}",
            )
        project = base / f"{login}-project"
        project.mkdir()
        (project / "ansible.cfg").write_text("[privilege_escalation]\nbecome = True\n")
        found[login] = Person(login, key, project)
    return found


@pytest.fixture
def production(lab: LabHosts, tmp_path: Path) -> Iterator[str]:
    """The lab inventory as production, with approvers, and no connection user of its own
    (each person connects as themselves with -u and --private-key)."""
    data = yaml.safe_load(Path(lab.inventory).read_text())
    for key in ("ansible_user", "ansible_ssh_private_key_file"):
        data["all"]["vars"].pop(key)
    data["all"]["vars"].update(
        rollback_environment="production", rollback_approvers=["bob", "carol"]
    )
    path = tmp_path / "production.yml"
    path.write_text(yaml.safe_dump(data))
    yield str(path)


def as_person(lab: LabHosts, person: Person, *argv: str) -> CliRun:
    """rollback-ops run by PERSON: their login and key, from their project directory."""
    return lab.cli(
        *argv,
        "-u",
        person.login,
        "--private-key",
        str(person.key),
        cwd=person.project,
        ROLLBACK_OPS_OPERATOR=person.login,
    )


def owner(lab: LabHosts, host: str, pattern: str) -> list[str]:
    out = lab.sh(host, f"stat -c %U {SPOOL}/{pattern} 2>/dev/null || true")
    return sorted(out.split())


def test_a_second_login_approves_and_the_run_records_both(
    lab: LabHosts, people: dict[str, Person], production: str
):
    alice, bob = people["alice"], people["bob"]
    flag = f"{FLAG}=false"

    asked = as_person(
        lab, alice, "request", "--level", "flag", "-i", production, "--flag", flag,
        "--reason", "INC-7 weighting bug",
    )  # fmt: skip
    assert asked.code == 0, asked.stderr
    run = asked.stdout.strip().splitlines()[-1]
    assert f"rollback-ops approve {run}" in asked.stderr
    for host in lab.names:  # the request's identity is its file owner: alice's login
        assert owner(lab, host, f"{run}.request") == ["alice"]
        assert lab.sh(host, f"stat -c %a:%U {SPOOL}").strip() == "1777:root"

    before = lab.fingerprint()
    early = as_person(lab, alice, "apply", "--run", run, "-i", production, "--yes")
    assert early.code == 3 and "nobody approved it yet" in early.stderr, early.stderr
    lab.assert_unchanged(before)

    approved = as_person(lab, bob, "approve", run, "-i", production, "--yes")
    assert approved.code == 0, approved.stderr
    assert "requested by alice" in approved.stderr and flag.split("=")[0] in approved.stderr
    for host in lab.names:
        assert owner(lab, host, f"{run}.approval.*") == ["bob"]

    applied = as_person(lab, alice, "apply", "--run", run, "-i", production, "--yes", "--json")
    assert applied.code == 0, applied.stderr
    assert all(lab.health(h)["config"][FLAG] is False for h in lab.names)  # as the app sees it
    auth = applied.receipt["authorization"]
    assert (auth["operator"], auth["requester"], auth["approved_by"]) == ("alice", "alice", "bob")
    assert auth["approval_run"] == run and auth["reason"] == "INC-7 weighting bug"
    assert applied.receipt["request"]["flags"] == {FLAG: "false"}
    row = next(r for r in history.read(lab.state_dir) if r.run_id == applied.receipt["run_id"])
    assert (row.operator, row.approved_by, row.result) == ("alice", "bob", "ok")
    for host in lab.names:  # used, by this run, as root: alice cannot remove it without sudo
        used = json.loads(lab.sh(host, f"cat {SPOOL}/{run}.used"))
        assert used["used_by"] == applied.receipt["run_id"]

    # one approval, one run: the same approval again is refused, nothing changes
    lab.reset()
    before = lab.fingerprint()
    again = as_person(lab, alice, "apply", "--run", run, "-i", production, "--yes")
    assert again.code == 3 and "used already" in again.stderr, again.stderr
    lab.assert_unchanged(before)


def test_a_self_approval_is_refused_by_the_controller_and_by_the_host(
    lab: LabHosts, people: dict[str, Person], production: str, tmp_path: Path
):
    alice, carol = people["alice"], people["carol"]
    asked = as_person(lab, carol, "request", "--level", "emergency", "-i", production)
    assert asked.code == 0, asked.stderr
    run = asked.stdout.strip().splitlines()[-1]
    before = lab.fingerprint()

    # carol is a listed approver, but she requested it
    mine = as_person(lab, carol, "approve", run, "-i", production, "--yes")
    assert mine.code == 3 and "who requested run" in mine.stderr, mine.stderr
    # alice is not listed
    unlisted = as_person(lab, alice, "approve", run, "-i", production, "--yes")
    assert unlisted.code == 3 and "not in rollback_approvers" in unlisted.stderr

    # past the controller: the approval module called as carol's login, directly, with
    # carol added to the approvers it is given; each host refuses its requester itself
    pending = json.loads(lab.sh("web1", f"cat {SPOOL}/{run}.request"))
    direct = ansible_module(
        production,
        carol,
        {"state": "approve", "run": run, "hash": pending["hash"], "approvers": ["carol", "bob"]},
    )
    assert direct.returncode != 0
    refusal = f"carol requested run {run} and cannot approve it"
    for host in lab.names:
        (line,) = [x for x in direct.stdout.splitlines() if x.startswith(f"{host} | ")]
        assert "FAILED" in line and refusal in line, direct.stdout
    for host in lab.names:
        assert owner(lab, host, f"{run}.approval.*") == []

    # a root-owned record proves nobody: root "approving" (the lab's own root login) is
    # refused by every host too
    as_root = subprocess.run(
        [*ansible_argv(lab.inventory), "-m", "rollback_ops.rollback.approval", "-a",
         json.dumps({"state": "approve", "run": run, "hash": pending["hash"],
                     "approvers": ["bob", "root"]})],
        capture_output=True, text=True, env=ansible_env(), timeout=120, check=False,
    )  # fmt: skip
    assert as_root.returncode != 0 and "as root" in as_root.stdout, as_root.stdout

    applied = as_person(lab, carol, "apply", "--run", run, "-i", production, "--yes")
    assert applied.code == 3, applied.stderr
    lab.assert_unchanged(before)


def test_a_plan_changed_after_the_approval_is_refused(
    lab: LabHosts, people: dict[str, Person], production: str
):
    alice, bob = people["alice"], people["bob"]
    asked = as_person(
        lab, alice, "request", "--level", "flag", "-i", production, "--flag", f"{FLAG}=false"
    )
    assert asked.code == 0, asked.stderr
    run = asked.stdout.strip().splitlines()[-1]
    assert as_person(lab, bob, "approve", run, "-i", production, "--yes").code == 0
    before = lab.fingerprint()

    other_value = as_person(
        lab, alice, "apply", "--run", run, "-i", production, "--yes", "--flag", f"{FLAG}=true"
    )
    assert other_value.code == 3 and "the plan changed" in other_value.stderr
    # the inventory changed since the approval: the app's units (the plan's restart step)
    data = yaml.safe_load(Path(production).read_text())
    data["all"]["vars"]["rollback_app"]["units"] = []
    changed = Path(production).with_name("changed.yml")
    changed.write_text(yaml.safe_dump(data))
    moved = as_person(lab, alice, "apply", "--run", run, "-i", str(changed), "--yes")
    assert moved.code == 3 and "the plan changed" in moved.stderr, moved.stderr
    lab.assert_unchanged(before)
    # past the controller: a plain run claiming the approval with another value is refused
    # by every host before any change (the request's fields are on the hosts)
    pending = json.loads(lab.sh("web1", f"cat {SPOOL}/{run}.request"))
    plain = ansible_playbook_run(
        production,
        alice,
        {"flags": {FLAG: "true"}, "approval": {"run": run, "hash": pending["hash"]}},
    )
    assert plain.returncode != 0
    assert "differ from the approved request" in plain.stdout, plain.stdout
    lab.assert_unchanged(before)


def ansible_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ROLLBACK_OPS_"))}
    return env | {"ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1"}


def ansible_argv(inventory: str) -> list[str]:
    return [str(Path(sys.executable).parent / "ansible"), "all", "-i", inventory, "-o"]


def ansible_module(inventory: str, person: Person, args: dict) -> subprocess.CompletedProcess[str]:
    """The approval module run ad hoc as PERSON (no rollback-ops, no become)."""
    argv = [*ansible_argv(inventory), "-u", person.login, "--private-key", str(person.key)]
    argv += ["-m", "rollback_ops.rollback.approval", "-a", json.dumps(args)]
    return subprocess.run(
        argv, capture_output=True, text=True, env=ansible_env(), timeout=120, check=False
    )


def ansible_playbook_run(
    inventory: str, person: Person, request: dict
) -> subprocess.CompletedProcess[str]:
    """flag.yml run with a plain ansible-playbook as PERSON (with become, as their project)."""
    root = Path(__file__).resolve().parents[2]
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, "-b"]
    argv += ["-u", person.login, "--private-key", str(person.key)]
    argv += [str(root / "playbooks" / "flag.yml"), "-e", json.dumps({"rollback_request": request})]
    env = ansible_env() | {"ROLLBACK_OPS_OPERATOR": person.login}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
