"""`rollback-ops status`: the status_info module run as Ansible runs it on a real app directory
(env file, git work tree, lock, backup set), the drift between hosts of one app, and the
command end to end on local hosts (Ansible's local connection, no Docker)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rollback_ops import cli, demo, jsonout
from rollback_ops.history import HistoryRow
from rollback_ops.status import DRIFT_EXIT, HostStatus, age, drift, last_runs
from tests.conftest import load_module, run_module
from tests.fingerprint import changes, fingerprint

MODULE = "plugins/modules/status_info.py"
SECRET = "sk-status-3e9f1c-not-for-eyes"  # distinctive: found nowhere it should not be
lock_utils = load_module("plugins/module_utils/lock.py")
backupset = load_module("plugins/module_utils/backupset")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def app(tmp_path: Path) -> dict[str, Path]:
    """An app directory: an env file with a secret, a git work tree with two releases (an
    annotated and a light tag) checked out on the first, a held lock, a verified set."""
    env = tmp_path / "srv" / ".env.production"
    env.parent.mkdir()
    env.write_text(f'# flags\nexport FLAG_A=true\nFLAG_B="off"\nPARTNER_API_KEY={SECRET}\n')
    code = tmp_path / "code"
    code.mkdir()
    git(code, "init", "-q")
    git(code, "config", "user.email", "t@example.invalid")
    git(code, "config", "user.name", "t")
    (code / "app.py").write_text("v = 1\n")
    git(code, "add", "app.py")
    git(code, "commit", "-qm", "one")
    git(code, "tag", "-a", "release-1.0", "-m", "first")
    (code / "app.py").write_text("v = 2\n")
    git(code, "commit", "-qam", "two")
    git(code, "tag", "release-1.1")
    git(code, "checkout", "-q", "release-1.0")
    lock = tmp_path / "lock" / "rollback.lock"
    lock.parent.mkdir()
    taken, _ = lock_utils.take_lock(
        str(lock), lock_utils.lock_record("20250101T000000Z-abcdef", "ana", "ops1", 4242, "x")
    )
    assert taken
    root = tmp_path / "backups"
    backupset.create_set(str(root), "shop", "manual", [], [str(env)])
    return {"env": env, "code": code, "lock": lock, "root": root, "base": tmp_path}


def status_args(app: dict[str, Path], **over: Any) -> dict[str, Any]:
    return {
        "app": "shop",
        "env_file": str(app["env"]),
        "keys": ["FLAG_A", "FLAG_B", "PARTNER_API_KEY", "NOT_THERE"],
        "code_path": str(app["code"]),
        "release_tags": "release-*",
        "lock_path": str(app["lock"]),
        "root": str(app["root"]),
        "maintenance_file": str(app["base"] / "MAINTENANCE"),
        **over,
    }


@pytest.mark.parametrize("check_mode", [False, True])
def test_the_module_reads_where_the_host_stands_and_changes_nothing(app, check_mode):
    before = fingerprint(app["base"])
    result = run_module(MODULE, status_args(app), check_mode=check_mode)
    assert changes(before, fingerprint(app["base"])) == []
    assert result["changed"] is False and not result.get("failed"), result
    status = result["status"]
    assert status["problems"] == []
    flags = status["flags"]
    assert flags["FLAG_A"] == "true" and flags["FLAG_B"] == "off" and flags["NOT_THERE"] is None
    assert flags["PARTNER_API_KEY"].startswith("<secret sha256:")
    assert SECRET not in json.dumps(result)  # never returned, in no field
    head = git(app["code"], "rev-parse", "HEAD")
    assert status["code"] == {
        "method": "git",
        "sha": head,
        "branch": "",
        "describe": "release-1.0",
        "release": "release-1.0",  # an annotated tag's commit's tree is HEAD's
        "dirty": False,
    }
    assert status["lock"]["run_id"] == "20250101T000000Z-abcdef"
    assert status["lock"]["operator"] == "ana" and 0 <= status["lock"]["age_seconds"] < 600
    assert status["backup"]["kind"] == "manual" and 0 <= status["backup"]["age_seconds"] < 600
    assert status["backup"]["set_id"].endswith("-manual") and status["backup_sets"] == 1
    assert status["maintenance"] is False
    assert status["images"] == {} and status["containers"] == {}


def test_the_module_follows_the_code_and_maintenance_as_they_change(app):
    git(app["code"], "checkout", "-q", "release-1.1")  # a light tag
    (app["code"] / "app.py").write_text("v = 3\n")  # uncommitted
    (app["base"] / "MAINTENANCE").write_text("on\n")
    app["lock"].unlink()
    status = run_module(MODULE, status_args(app))["status"]
    assert status["code"]["release"] == "release-1.1" and status["code"]["dirty"] is True
    assert status["maintenance"] is True and status["lock"] == {}
    git(app["code"], "commit", "-qam", "three")  # a commit no release tag holds
    status = run_module(MODULE, status_args(app, secret_keys=["FLAG_*"]))["status"]
    assert status["code"]["release"] == "" and status["code"]["describe"].startswith(
        "release-1.1-1-"
    )
    assert status["flags"]["FLAG_A"].startswith("<secret sha256:")  # the app's own patterns


def test_the_module_reports_what_it_cannot_read_without_failing(tmp_path: Path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "worker.py").write_text("x\n")
    env = tmp_path / ".env"
    env.write_text("MAINT=yes\n")
    result = run_module(
        MODULE,
        {
            "app": "shop",
            "env_file": str(tmp_path / "missing.env"),
            "keys": ["FLAG_A"],
            "code_path": str(files),
            "code_method": "files",
            "code_files": ["worker.py", "gone.py"],
            "lock_path": str(tmp_path / "no.lock"),
            "root": str(tmp_path / "no-backups"),
        },
    )
    status = result["status"]
    assert not result.get("failed")
    assert status["problems"] == [
        f"env file {tmp_path}/missing.env cannot be read: No such file or directory"
    ]
    assert status["flags"] == {}  # nothing to compare, rather than every key absent
    assert status["code"]["files"]["gone.py"] is None
    assert len(status["code"]["files"]["worker.py"]) == 64
    assert status["backup"] == {} and status["backup_sets"] == 0 and status["maintenance"] is None
    env_maint = run_module(
        MODULE,
        {
            "app": "shop",
            "env_file": str(env),
            "maintenance_env": {"MAINT": "yes"},
            "root": str(tmp_path / "no-backups"),
            "lock_path": str(tmp_path / "no.lock"),
        },
    )["status"]
    assert env_maint["maintenance"] is True


# ----------------------------------------------------------------------------- drift


def host(name: str, app: str = "shop", **over: Any) -> HostStatus:
    base: dict[str, Any] = {
        "flags": {"FLAG_A": "true", "FLAG_B": "off"},
        "code": {"method": "git", "sha": "a" * 40, "release": "1.4.0", "dirty": False},
        "maintenance": False,
    }
    return HostStatus(name, f"10.0.0.{len(name)}", app, "staging", **{**base, **over})


def test_drift_names_the_field_the_majority_and_the_odd_one_out():
    hosts = [host("web1"), host("web2", flags={"FLAG_A": "false", "FLAG_B": "off"}), host("web3")]
    (d,) = drift(hosts)
    assert (d.app, d.field, d.majority, d.odd_hosts) == ("shop", "flag FLAG_A", "true", ["web2"])
    assert d.values == {"web1": "true", "web2": "false", "web3": "true"}


def test_drift_on_a_tie_marks_every_host_and_compares_within_one_app_only():
    hosts = [
        host("web1", code={"method": "git", "sha": "b" * 40, "release": "", "dirty": True}),
        host("web2"),
        host("db1", app="other", maintenance=True),  # alone in its app: nothing to compare
    ]
    found = {d.field: d for d in drift(hosts)}
    assert set(found) == {"code", "release"}
    assert found["code"].majority is None and found["code"].odd_hosts == ["web1", "web2"]
    assert found["code"].values["web1"] == "bbbbbbbbbbbb +uncommitted"


def test_drift_leaves_out_unread_hosts_and_fields_only_one_host_reports():
    hosts = [
        host("web1", images={"worker:web1": "sha256:" + "1" * 64}),
        host("web2", images={"worker:web2": "sha256:" + "2" * 64}),
        host("web3", result="unreachable", flags={}),
        host("web4", flags={"FLAG_A": "true", "FLAG_B": None}),  # the file lacks FLAG_B
    ]
    (d,) = drift(hosts)
    assert d.field == "flag FLAG_B" and d.odd_hosts == ["web4"] and d.values["web4"] == "(absent)"


def test_a_service_running_another_image_than_its_tag_differs():
    image = "sha256:" + "1" * 64
    running = {"status": "running", "restarting": False, "image": image}
    hosts = [
        host("web1", images={"w:1": image}, containers={"worker": [running]}),
        host("web2", images={"w:1": image}, containers={"worker": [running]}),
        host("web3", images={"w:1": image}, containers={"worker": [{**running, "image": "old"}]}),
    ]
    (d,) = drift(hosts)
    assert d.field == "service worker" and d.values["web3"] == "running (not its tag's image)"


def test_last_runs_are_the_newest_of_this_inventory_without_status_runs():
    rows = [
        HistoryRow(
            "r1",
            started="2025-01-01T00:00:00Z",
            level="flag",
            inventory="prod",
            hosts=["web1", "web2"],
            result="ok",
        ),
        HistoryRow("r2", level="code", inventory="staging", hosts=["web1"], result="failed"),
        HistoryRow("r3", level="verify", inventory="prod", hosts=["web2"], result="ok"),
        HistoryRow("r4", level="status", inventory="prod", hosts=["web1", "web2"], result="ok"),
    ]
    found = last_runs(rows, "prod", ["web1", "web2", "web3"])
    assert {h: r.run_id for h, r in found.items()} == {"web1": "r1", "web2": "r3"}


def test_ages_read_at_a_glance():
    assert [age(s) for s in (None, 5, 61, 7200, 3 * 86400)] == ["?", "5s", "1m", "2h", "3d"]


# ----------------------------------------------------------------------------- the command


def local_hosts(tmp_path: Path, names: list[str], **extra_hosts: dict[str, Any]) -> Path:
    """An inventory of local hosts, each with its own copy of the demo app (env file, lock,
    backup root), every host in sync; a secret flag beside the demo's."""
    app = demo.app_vars()
    app["flags"] = [*app["flags"], "PARTNER_API_KEY"]
    app["units"] = []
    hosts: dict[str, Any] = {}
    for name in names:
        base = tmp_path / "hosts" / name
        base.mkdir(parents=True)
        env = base / ".env.production"
        shutil.copyfile(demo.FILES / "env.production", env)
        with env.open("a") as handle:
            handle.write(f"PARTNER_API_KEY={SECRET}\n")
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "preflight_lock_path": str(base / "rollback.lock"),
            "rollback_app": {
                **app,
                "env_file": str(env),
                "backup": {"root": str(base / "backups")},
                "log": {},
            },
        }
    hosts.update(extra_hosts)
    inventory = {"all": {"vars": {"rollback_environment": "local"}, "hosts": hosts}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_of_hosts_in_sync_then_one_drifted(tmp_path: Path, capsys):
    state = tmp_path / "state"
    inventory = local_hosts(tmp_path, ["alpha", "beta", "gamma"])
    hosts = tmp_path / "hosts"
    code, out, err = run_cli(capsys, "--state-dir", str(state), "status", "-i", str(inventory))
    assert code == 0, out + err
    assert "in sync: the hosts of each app agree" in out
    # by hand on beta: one flag changed, a lock held; a verified backup set on alpha
    env = hosts / "beta" / ".env.production"
    env.write_text(
        env.read_text().replace("ENABLE_TIME_WEIGHTING=true", "ENABLE_TIME_WEIGHTING=false")
    )
    lock_utils.take_lock(
        str(hosts / "beta" / "rollback.lock"),
        lock_utils.lock_record("20250101T000000Z-0b0b0b", "bob", "ops2", 1, ""),
    )
    backupset.create_set(
        str(hosts / "alpha" / "backups"), "analyticbot", "predeploy", [], [str(env)]
    )
    before = fingerprint(hosts)
    code, out, err = run_cli(capsys, "--state-dir", str(state), "status", "-i", str(inventory))
    assert changes(before, fingerprint(hosts)) == []  # status changed nothing
    assert code == DRIFT_EXIT, out + err
    row = next(line.split() for line in out.splitlines() if "flag ENABLE_TIME_WEIGHTING" in line)
    assert row == ["flag", "ENABLE_TIME_WEIGHTING", "true", "!", "false", "true"]  # side by side
    assert "app analyticbot, flag ENABLE_TIME_WEIGHTING: true on alpha, gamma; false on beta" in out
    lock_row = next(line for line in out.splitlines() if line.strip().startswith("lock "))
    assert "run 20250101T000000Z-0b0b0b of bob" in lock_row and lock_row.count("free") == 2
    assert "-predeploy" in next(
        line for line in out.splitlines() if line.strip().startswith("backup ")
    )
    assert SECRET not in out + err

    code, out, _ = run_cli(
        capsys, "--state-dir", str(state), "status", "-i", str(inventory), "--json"
    )
    assert code == DRIFT_EXIT
    doc = json.loads(out)
    jsonschema.validate(doc, jsonout.schema("status"), cls=jsonschema.Draft202012Validator)
    assert doc["kind"] == "status" and doc["exit_status"] == DRIFT_EXIT and not doc["in_sync"]
    assert doc["drift"] == [
        {
            "app": "analyticbot",
            "field": "flag ENABLE_TIME_WEIGHTING",
            "values": {"alpha": "true", "beta": "false", "gamma": "true"},
            "majority": "true",
            "odd_hosts": ["beta"],
        }
    ]
    beta = doc["hosts"]["beta"]
    assert beta["lock"]["operator"] == "bob" and beta["flags"]["PARTNER_API_KEY"].startswith(
        "<secret"
    )
    assert doc["hosts"]["alpha"]["backup"]["kind"] == "predeploy"
    assert doc["hosts"]["alpha"]["last_run"] is None  # status runs are not "last runs"
    # the secret is nowhere on the controller either: receipts, artifacts, history
    for path in state.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_host_that_cannot_be_read_exits_1_and_says_why(tmp_path: Path, capsys):
    inventory = local_hosts(
        tmp_path,
        ["alpha"],
        # nothing listens on port 1 of this machine's loopback
        nowhere={
            "ansible_host": "127.0.0.1",
            "ansible_port": 1,
            "ansible_connection": "ssh",
            "rollback_app": {"name": "analyticbot"},
        },
    )
    state = tmp_path / "state"
    code, out, err = run_cli(
        capsys, "--state-dir", str(state), "status", "-i", str(inventory), "--json"
    )
    assert code == 1, out + err
    doc = json.loads(out)
    jsonschema.validate(doc, jsonout.schema("status"), cls=jsonschema.Draft202012Validator)
    assert doc["unreadable"] == ["nowhere"] and doc["hosts"]["nowhere"]["result"] == "unreachable"
    assert doc["hosts"]["nowhere"]["message"]
    code, out, _ = run_cli(capsys, "--state-dir", str(state), "status", "-i", str(inventory))
    assert (
        code == 1 and "nowhere: unreachable: " in out and "could not read nowhere (exit 1)" in out
    )


def test_status_of_the_demo_shows_its_last_run(tmp_path: Path, capsys):
    state = tmp_path / "state"
    assert run_cli(capsys, "--state-dir", str(state), "demo")[0] == 0
    code, out, _ = run_cli(capsys, "--state-dir", str(state), "status", "-i", "local", "--json")
    assert code == 0
    doc = json.loads(out)
    jsonschema.validate(doc, jsonout.schema("status"), cls=jsonschema.Draft202012Validator)
    local = doc["hosts"]["localhost"]
    assert local["flags"]["ENABLE_ADVANCED_RECOMMENDATIONS"] == "false"  # the demo turned it off
    assert local["last_run"]["level"] == "flag" and local["last_run"]["result"] == "ok"
    assert local["lock"] == {} and local["maintenance"] is None


def test_status_help_has_examples_and_bad_input_is_one_line(tmp_path: Path, capsys):
    code, out, _ = run_cli(capsys, "status", "--help")
    assert code == 0 and "examples:\n  rollback-ops status -i prod\n" in out
    code, _, err = run_cli(
        capsys, "--state-dir", str(tmp_path), "status", "-i", str(tmp_path / "nope")
    )
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_the_compose_project_is_named_as_compose_names_it(tmp_path: Path):
    compose = load_module("plugins/module_utils/compose.py")
    project = tmp_path / "My Worker.v2"
    project.mkdir()
    assert compose.project_name(str(project), environ={}) == "myworkerv2"
    (project / ".env").write_text("# compose reads this\nCOMPOSE_PROJECT_NAME=Shop-Web1_worker\n")
    assert compose.project_name(str(project), environ={}) == "shop-web1_worker"
    assert compose.project_name(str(project), {"COMPOSE_PROJECT_NAME": "other"}) == "other"


def test_the_table_keeps_each_kind_of_field_together_and_marks_the_odd_one_out():
    from rollback_ops.status import StatusReport, render

    hosts = {
        "web1": host("web1", images={"w:web1": "sha256:" + "1" * 64}),
        "web2": host("web2", images={"w:web2": "sha256:" + "2" * 64}, maintenance=True),
        "web3": host("web3", images={"w:web3": "sha256:" + "3" * 64}),
    }
    report = StatusReport(
        "20250101T000000Z-abcdef", "prod", "/x", hosts, drift(list(hosts.values()))
    )
    lines = render(report).splitlines()
    images = [i for i, line in enumerate(lines) if line.startswith("  image w:web")]
    assert images == list(range(images[0], images[0] + 3))  # one block
    assert next(i for i, line in enumerate(lines) if line.startswith("  maintenance")) > images[-1]
    (row,) = [line.split() for line in lines if line.startswith("  maintenance")]
    assert row == ["maintenance", "off", "!", "on", "off"]
    assert report.exit_status == DRIFT_EXIT and lines[-1].startswith("DRIFT: ")


def test_a_host_read_in_part_exits_1_not_in_sync():
    from rollback_ops.status import StatusReport, render

    hosts = {"web1": host("web1"), "web2": host("web2", problems=["env file x cannot be read"])}
    report = StatusReport("20250101T000000Z-abcdef", "prod", "/x", hosts, [])
    assert report.incomplete == ["web2"] and report.exit_status == 1
    text = render(report)
    assert "web2: could not read: env file x cannot be read" in text
    assert text.endswith("could not read part of web2 (exit 1)")
