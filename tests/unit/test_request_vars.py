"""The playbooks' request: one extra variable, rollback_request, with a default for every key
in playbooks/vars/request.yml; and production's guard as the playbooks apply it, run with a
plain ansible-playbook against local hosts and compared with rollback_ops.authorization."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops.authorization import Authorization, check
from rollback_ops.exceptions import Refused
from tests.conftest import COLLECTIONS, ROOT

PLAYBOOKS = ROOT / "playbooks"
# the contract rollback-ops sends (issue 10 part 4): every key, and the type of its value
CONTRACT: dict[str, type | tuple[type, ...]] = {
    "level": str,
    "run_id": str,
    "operator": str,
    "approved_by": str,
    "reason": str,
    "break_glass": bool,
    "confirmed_by_typing": bool,
    "flags": dict,
    "allow_new_flags": bool,
    "verify": bool,
    "to": str,
    "backup_stamp": str,
    "procedure": str,
    "force": bool,
    "targets": dict,
    "backup_id": str,
    "backup_from": str,
    "backup_files": dict,
    "backup_kind": str,
    "restore_test": bool,
    "schedule_at": str,
    "keep": type(None),
    "max_age_days": type(None),
    "max_age_seconds": type(None),
    "unlock_runs": dict,
    "unlock_inspect": bool,
    "loss_run": str,
    "loss_format": str,
    "loss_out": str,
    "loss_sets": dict,
    "undo": dict,
    "controller": dict,
    "authorized_environments": type(None),
    "approval": dict,
    "resumes": str,
}
OLD_NAMES = re.compile(
    r"\brollback_(level|flags|run_id|operator|controller|controller_pid|controller_pid_start"
    r"|authorized_environments|allow_new_flags|verify|code_to|code_targets|backup_stamp|force"
    r"|backup_id|backup_kind|restore_test|keep|max_age_days|schedule_at|unlock_runs"
    r"|unlock_inspect)\b"
)


def defaults() -> dict[str, Any]:
    return yaml.safe_load((PLAYBOOKS / "vars" / "request.yml").read_text())["__request_defaults"]


def test_every_contract_key_has_a_default_of_its_type_and_nothing_else():
    found = defaults()
    assert set(found) == set(CONTRACT)
    for key, kind in CONTRACT.items():
        assert isinstance(found[key], kind), key
    assert found["controller"] == {"name": "", "pid": 0, "pid_start": ""}


def test_every_playbook_loads_the_request_and_starts_with_the_guard():
    for playbook in sorted(PLAYBOOKS.glob("*.yml")):
        (play,) = yaml.safe_load(playbook.read_text())
        assert play["vars_files"][0] == "vars/request.yml", playbook.name
        assert play["vars"]["__rollback_kind"], playbook.name
        starts = [t.get("ansible.builtin.import_tasks") for t in play["tasks"]]
        assert "tasks/start.yml" in starts, playbook.name


def test_each_playbooks_levels_and_kind_are_its_operations():
    """The guard policy is stated twice, for the two ways the playbooks run: in the
    operation classes (rollback-ops) and in each playbook (plain ansible-playbook, AWX).
    Here they must agree: every operation's name is one of its playbook's levels, and the
    kind is what the class says (guarded: rollback; changes hosts: locked; else readonly)."""
    from rollback_ops import operations

    seen: set[str] = set()
    for name, op in operations.OPERATIONS.items():
        if name == "resume":  # runs the resumed run's own playbook
            continue
        (play,) = yaml.safe_load((PLAYBOOKS / f"{op.playbook}.yml").read_text())
        assert name in play["vars"]["__rollback_levels"], name
        kind = play["vars"]["__rollback_kind"]
        if "{{" in kind:  # unlock: guarded unless it only reads the locks
            assert name in ("unlock", "unlock-inspect"), name
            continue
        expected = "rollback" if op.guarded else "locked" if op.changes_hosts else "readonly"
        assert kind == expected, (name, kind)
        seen.add(op.playbook)
    assert {p.stem for p in PLAYBOOKS.glob("*.yml")} - seen <= {"unlock"}


def test_no_playbook_or_role_reads_the_old_request_variables():
    files = [*ROOT.glob("playbooks/**/*.yml"), *ROOT.glob("roles/**/*.yml")]
    files += list(ROOT.glob("roles/*/README.md"))
    offenders = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in files
        for m in OLD_NAMES.finditer(p.read_text())
    ]
    assert offenders == []


PROBE = """
- name: Probe the request and the guard
  hosts: all
  gather_facts: false
  vars_files: [{request}]
  vars:
    __rollback_levels: [{level}]
    __rollback_kind: rollback
  tasks:
    - name: Start as every playbook does
      ansible.builtin.import_tasks: {start}
    - name: Show the request
      ansible.builtin.debug:
        msg: "REQUEST {{{{ __request | combine(__run) | to_json }}}}"
"""


def plain_run(
    tmp_path: Path,
    request: dict[str, Any],
    *,
    level: str = "flag",
    check_mode: bool = False,
    environments: tuple[str, ...] = ("staging", "production"),
    operator: str | None = "ana",
) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "probe.yml"
    playbook.write_text(
        PROBE.format(
            request=PLAYBOOKS / "vars" / "request.yml",
            start=PLAYBOOKS / "tasks" / "start.yml",
            level=level,
        )
    )
    hosts = {f"h{i}": {"rollback_environment": e} for i, e in enumerate(environments)}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {
                        "ansible_connection": "local",
                        "ansible_python_interpreter": sys.executable,
                    },
                    "hosts": hosts,
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ROLLBACK_OPS_"))}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    if operator is not None:
        env["ROLLBACK_OPS_OPERATOR"] = operator
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(inventory),
        str(playbook),
    ]
    argv += ["-e", json.dumps({"rollback_request": request})] + (["--check"] if check_mode else [])
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False
    )


def shown_requests(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [
        json.loads(m) for m in re.findall(r'"REQUEST (\{.*\})"', proc.stdout.replace('\\"', '"'))
    ]


def test_a_plain_run_gets_one_run_id_operator_and_controller_on_every_host(tmp_path: Path):
    proc = plain_run(tmp_path, {"break_glass": True, "reason": "P0", "flags": {"A": "false"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    requests = shown_requests(proc)
    assert len(requests) == 2 and requests[0] == requests[1]
    request = requests[0]
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", request["run_id"])
    assert request["operator"] == "ana" and request["controller"]["name"]
    assert request["flags"] == {"A": "false"} and request["level"] == "flag"
    assert {
        k: v
        for k, v in request.items()
        if k not in ("run_id", "operator", "controller", "break_glass", "reason", "flags")
    } == {
        k: v
        for k, v in defaults().items()
        if k not in ("run_id", "operator", "controller", "break_glass", "reason", "flags")
    } | {"level": "flag"}


def test_a_request_for_another_level_is_refused(tmp_path: Path):
    proc = plain_run(tmp_path, {"level": "flag", "approved_by": "bob"}, level="code")
    assert proc.returncode != 0
    assert "rollback_request.level is flag, but this playbook runs code" in proc.stdout


CASES = [
    # (request, level, check mode, operator)
    ({}, "flag", False, "ana"),
    ({}, "flag", True, "ana"),
    # a name passed or a confirmation typed proves nothing: neither approves
    ({"approved_by": "bob"}, "code", False, "ana"),
    ({"approved_by": "  ANA "}, "flag", False, "ana"),
    ({"approved_by": "A  na"}, "flag", True, "a na"),
    ({"confirmed_by_typing": True}, "full", False, "ana"),
    ({"approved_by": "bob", "confirmed_by_typing": True}, "emergency", False, "ana"),
    ({"break_glass": True, "reason": "P0"}, "emergency", False, "ana"),
    ({"break_glass": True, "reason": "dead run"}, "unlock", False, "ana"),
    ({"break_glass": True, "reason": " "}, "flag", False, "ana"),
    ({"break_glass": True, "reason": "P0"}, "code", False, "ana"),
    ({"break_glass": True, "reason": "P0"}, "flag", False, " "),
]


@pytest.mark.parametrize(("request_", "level", "check_mode", "operator"), CASES)
def test_the_playbooks_guard_decides_as_rollback_ops_does(
    tmp_path: Path, request_: dict[str, Any], level: str, check_mode: bool, operator: str
):
    auth = Authorization(
        operator=operator.strip(),
        approved_by=request_.get("approved_by", ""),
        break_glass=request_.get("break_glass", False),
        reason=request_.get("reason", ""),
        confirmed_by_typing=request_.get("confirmed_by_typing", False),
    )
    try:
        check(auth, level=level, production=True, check_mode=check_mode)
        allowed = True
    except Refused:
        allowed = False
    proc = plain_run(tmp_path, request_, level=level, check_mode=check_mode, operator=operator)
    assert (proc.returncode == 0) is allowed, proc.stdout
    if not allowed:
        assert "refused: " in proc.stdout
        assert "REQUEST" not in proc.stdout  # nothing ran after the guard


def test_production_refusal_names_what_to_pass_and_the_hosts(tmp_path: Path):
    proc = plain_run(tmp_path, {}, environments=("staging", "production", "production"))
    assert proc.returncode != 0
    assert "production hosts (h1, h2)" in proc.stdout
    assert "rollback-ops approve RUN_ID" in proc.stdout
    assert "rollback-ops apply --run RUN_ID" in proc.stdout


def test_an_approval_run_passes_the_guard_only_to_be_checked_by_every_host(tmp_path: Path):
    """A plain run naming an approval gets past the play's guard, then each host checks it
    itself: with no request of that run on the host, it is refused before anything else."""
    approval = {"run": "20240101T000000Z-abcdef", "hash": "0" * 64}
    proc = plain_run(tmp_path, {"approval": approval, "approved_by": "bob"})
    assert proc.returncode != 0
    assert "Check and use the approval of this run on every host" in proc.stdout
    assert "refused: " in proc.stdout and "20240101T000000Z-abcdef" in proc.stdout
    assert "REQUEST" not in proc.stdout  # any_errors_fatal: no host went on


def test_staging_needs_no_approval(tmp_path: Path):
    assert plain_run(tmp_path, {}, environments=("staging", "lab")).returncode == 0
