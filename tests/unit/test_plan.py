"""plan.steps: the plan read from the real playbooks with ansible-core, contacting no host."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import events, inventory, paths, plan
from rollback_ops.exceptions import ConfigError
from tests.conftest import FIXTURES, ROOT

PLAN = FIXTURES / "plan"
NAMED = PLAN / "playbooks" / "named.yml"
REQUEST = {"run_id": "20250101T000000Z-1", "operator": "ops"}


def request(level: str, **fields: Any) -> dict[str, Any]:
    """The extra vars of a run of the level: one rollback_request, as rollback-ops sends it
    (keys a run leaves out take the playbook's defaults, playbooks/vars/request.yml)."""
    return {"rollback_request": {**REQUEST, "level": level, **fields}}


def labels(level: str, inv: inventory.Inventory, host: str, **extravars: Any) -> list[str]:
    found = plan.steps(paths.playbook(level), inv, host, request(level, **extravars))
    return [s.label for s in found]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> inventory.Inventory:
    return inventory.load(str(PLAN / "full"), tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> inventory.Inventory:
    return inventory.load(str(PLAN / "bare"), tmp_path_factory.mktemp("state"))


VERIFY = [
    "healthcheck: Check the units are active",
    "healthcheck: Require the units to be active",
    "healthcheck: Call the health endpoint",
    "healthcheck: Require the expected health fields",
    "healthcheck: Require the running process to report the new values",
    "healthcheck: Say which values the running app does not report",
    "healthcheck: Scan the log for new errors",
    "healthcheck: Require no new error lines in the log",
]
RESTART = [
    "appservice: Restart, start or stop the units",
    "appservice: Say why the units were not touched",
]
RELEASE = "preflight: Release this run's lock on the host"
# every playbook starts with playbooks/tasks/start.yml: the request checked, then the guard
START = [
    "Check the request is for this playbook",
    "preflight: Refuse a run production's guard does not allow",
    "app: Validate the app's description and fill in the schema's defaults",
]


def test_flag_plan_is_the_playbook_in_order(full: inventory.Inventory) -> None:
    assert labels("flag", full, "web1") == [
        *START,
        "preflight: Check the host can take the rollback",
        "envfile: Set values in the env file",
        *RESTART,
        *VERIFY,
        RELEASE,
    ]


def test_steps_carry_action_file_and_run_time_conditions(full: inventory.Inventory) -> None:
    found = {s.label: s for s in plan.steps(paths.playbook("flag"), full, "web1", request("flag"))}
    envfile = found["envfile: Set values in the env file"]
    assert envfile.action == "rollback_ops.rollback.envfile"
    assert envfile.file == "roles/envfile/tasks/apply.yml"
    assert envfile.condition is None
    # decided by a registered result: kept, as written
    assert found["healthcheck: Require the units to be active"].condition == (
        "__healthcheck_units is not skipped"
    )
    # the run id is fixed by the play's first task (made when none is given): left to the run
    assert found[RELEASE].condition == "preflight_run_id | length > 0"
    # the same names the live display shows
    for step in found.values():
        assert events.step_name({"task": step.name, "role": step.role}) == step.label


def test_code_plan_is_the_playbook_in_order(full: inventory.Inventory) -> None:
    assert labels("code", full, "web2") == [
        *START,
        "coderevert: Check the code can be reverted",
        "backup: Compare the target release's schema with the live databases",
        "containers: Check the Docker engine, build contexts and compose services",
        "preflight: Check the host can take the rollback",
        "Require every host to pass the preflight",
        "Say why nothing is rolled back",
        "maintenance: Create the maintenance flag file",
        *RESTART,
        "containers: Stop the compose services",
        "coderevert: Record the current code, then revert it",
        "coderevert: Reinstall the dependencies",
        "containers: Rebuild the stale images",
        "containers: Recreate the compose services and watch them settle",
        *RESTART,
        *VERIFY,
        "maintenance: Remove the maintenance flag file",
        RELEASE,
    ]
    steps = plan.steps(paths.playbook("code"), full, "web2", request("code"))
    revert = next(s for s in steps if s.name == "Record the current code, then revert it")
    assert revert.condition == "rollback_code_needed"  # set by the preflight's set_fact


def test_full_plan_restores_the_databases_between_revert_and_start(
    full: inventory.Inventory,
) -> None:
    found = labels("full", full, "web3")
    assert found[: len(START) + 1] == [*START, "backup: Check the backup set can be restored"]
    assert "backup: Compare the target release's schema with the live databases" not in found
    order = [
        "containers: Stop the compose services",
        "backup: Make a forensic set of the live databases",
        "coderevert: Record the current code, then revert it",
        "backup: Restore the databases, roll the migrations back, check integrity and data loss",
        "Say why the databases were not restored",
        "containers: Rebuild the stale images",
    ]
    assert [found.index(step) for step in order] == sorted(found.index(step) for step in order)
    assert found[-1] == RELEASE


def test_config_plan_loads_the_included_cache_tasks(full: inventory.Inventory) -> None:
    found = plan.steps(paths.playbook("config"), full, "web1", request("config"))
    names = [s.label for s in found]
    assert names[: len(START) + 4] == [
        *START,
        "backup: Check the config files can be restored from a backup set",
        "preflight: Check the host can take the rollback",
        "Require every host to pass the preflight",
        "backup: Keep the current config files and restore the set's",
    ]
    flush = next(s for s in found if s.name == "Flush the Redis database")
    assert flush.file == "playbooks/tasks/clear_caches.yml"
    assert flush.condition == "__config_needed | bool"  # the include_tasks' own `when`
    assert "Run the app's cache command" not in names  # its loop is empty for this app
    assert names[-1] == RELEASE


def test_conditions_false_from_inventory_data_remove_steps(bare: inventory.Inventory) -> None:
    found = labels("flag", bare, "lone")
    # no units: nothing to restart, no unit check; no health URL: the reason is said instead
    assert not set(RESTART) & set(found)
    assert "healthcheck: Check the units are active" not in found
    assert "healthcheck: Call the health endpoint" not in found
    assert "healthcheck: Scan the log for new errors" not in found
    assert "healthcheck: Say why there is no health check" in found
    # no caches, no docker, no code config
    assert "Flush the Redis database" not in labels("config", bare, "lone")
    assert not [s for s in labels("code", bare, "lone") if s.startswith("containers:")]


def test_extra_vars_decide_conditions(full: inventory.Inventory) -> None:
    assert not [s for s in labels("flag", full, "web1", verify=False) if "health" in s]
    # no request at all (a plain ansible-playbook run): the playbook's defaults, and the lock
    # is still taken and released (the run id is made at the start)
    bare_run = [s.label for s in plan.steps(paths.playbook("flag"), full, "web1", {})]
    assert bare_run[: len(START)] == START and RELEASE in bare_run


def test_check_mode_says_why_the_app_is_not_verified(full: inventory.Inventory) -> None:
    found = plan.steps(paths.playbook("code"), full, "web1", request("code"), check_mode=True)
    names = [s.label for s in found]
    assert "Say why the app was not verified" in names
    assert "healthcheck: Call the health endpoint" not in names
    assert "Say why the app was not verified" not in labels("code", full, "web1")


def test_names_show_known_values_and_keep_run_time_ones(
    full: inventory.Inventory, bare: inventory.Inventory
) -> None:
    found = plan.steps(NAMED, full, "web1", {"request": {"run_id": "r-7", "reason": ""}})
    assert [s.name for s in found] == [
        "Call http://127.0.0.254:8080 for shop",
        "Report status {{ named_response.status }} of web1",
        "Left out where the app has no units",
    ]  # "Use the request" is left out: its reason is empty
    assert found[1].condition == "named_response.status == 200"
    assert found[0].file.endswith("tests/fixtures/plan/playbooks/named.yml")
    assert "Left out where the app has no units" not in [
        s.name for s in plan.steps(NAMED, bare, "lone", {"request": {"run_id": "", "reason": ""}})
    ]


def test_extra_vars_are_data_never_templated(full: inventory.Inventory, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    typed = "{{ lookup('pipe', 'touch " + str(marker) + "') }}"
    found = plan.steps(NAMED, full, "web1", {"request": {"run_id": typed, "reason": typed}})
    use = next(s for s in found if s.name.startswith("Use the request"))
    assert use.name == f"Use the request {typed}"  # shown as typed
    assert use.condition is None  # its length is known: the text as typed is not empty
    # through the playbooks' own variables (preflight_run_id templates rollback_run_id)
    level = plan.steps(paths.playbook("flag"), full, "web1", {"rollback_run_id": typed})
    assert level[-1].label == RELEASE
    assert not marker.exists()


def test_no_host_is_contacted(tmp_path: Path) -> None:
    """Hosts on 127.0.0.254 whose SSH port is a listening socket: nothing may connect."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.254", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    source = tmp_path / "inv"
    shutil.copytree(PLAN / "full", source)
    hosts = (source / "hosts.yml").read_text().replace("ansible_port: 1", f"ansible_port: {port}")
    (source / "hosts.yml").write_text(hosts)
    inv = inventory.load(str(source), tmp_path / "state")
    try:
        for level in ("flag", "code", "config", "full"):
            for host in inv.hosts:
                assert plan.steps(paths.playbook(level), inv, host, request(level))
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_bad_host_or_playbook_is_a_one_line_error(
    full: inventory.Inventory, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"host .nowhere. is not in inventory"):
        plan.steps(paths.playbook("flag"), full, "nowhere", {})
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks:\n    - name: x\n      no.such.module: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yml") as caught:
        plan.steps(broken, full, "web1", {})
    assert "\n" not in str(caught.value)


class _AnyTag(yaml.SafeLoader):
    """YAML with Ansible's tags (!unsafe, !vault) read as plain values."""


_AnyTag.add_multi_constructor("!", lambda loader, suffix, node: None)
TASK_FILES = sorted(
    [*(ROOT / "playbooks").rglob("*.yml"), *(ROOT / "roles").glob("*/tasks/*.yml")],
    key=str,
)
SECTIONS = ("block", "rescue", "always")


def _unnamed(tasks: Any, where: str) -> list[str]:
    missing = []
    for index, task in enumerate(tasks or []):
        if not isinstance(task, dict):
            continue
        if not str(task.get("name") or "").strip():
            missing.append(f"{where}[{index}]")
        for section in SECTIONS:
            missing += _unnamed(task.get(section), f"{where}[{index}].{section}")
    return missing


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_task_has_a_name(path: Path) -> None:
    data = yaml.load(path.read_text(), Loader=_AnyTag)
    if path.parent.name == "playbooks":  # plays: their tasks, handlers, pre/post tasks
        missing = []
        for number, play in enumerate(data or []):
            for key in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                missing += _unnamed(play.get(key), f"play {number} {key}")
    elif path.parent.name == "vars":
        return
    else:
        missing = _unnamed(data, "tasks")
    assert not missing, f"{path.relative_to(ROOT)}: tasks without a name: {missing}"
