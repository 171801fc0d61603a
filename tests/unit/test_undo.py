"""`rollback-ops undo RUN_ID` in the fast tier: real flag runs on the demo sandbox (Ansible's
local connection, no Docker) undone byte for byte; the refusals, each before any host is
touched; the request built from a code run's receipt; the production guard of the undone
level; and the host-side pieces undo relies on (envfile's remove, preflight's env_expect,
the code module's exact mode) run as Ansible runs them.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_ops import api, demo, history, undo
from rollback_ops.exceptions import ConfigError
from rollback_ops.operations import Request
from rollback_ops.results import RunResult
from tests.conftest import load_module, run_module
from tests.fingerprint import changes, fingerprint
from tests.unit.test_code_module import git
from tests.unit.test_code_module import repo as repo

SHIPPED = demo.FILES / "env.production"  # the demo's env file as the sandbox starts
ENVUTILS = load_module("plugins/module_utils/envfile.py")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    demo.create_sandbox(state)
    return state


def env_file(state: Path) -> Path:
    return state / "demo/srv/analyticbot/.env.production"


def flag(state: Path, allow_new: bool = False, **flags: str) -> RunResult:
    result = api.apply(
        "flag", "local", Request(flags=flags, allow_new_flags=allow_new), state_dir=state
    )
    assert result.ok, result.receipt()
    return result


def run_undo(state: Path, run_id: str, check: bool = False, force: bool = False) -> RunResult:
    prep = undo.prepare_undo(run_id, force=force, state_dir=state)
    return api.execute(prep, check=check, state_dir=state)


def cli(state: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollback_ops", "--state-dir", str(state), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def copies(state: Path) -> list[Path]:
    return sorted(env_file(state).parent.glob(".env.production.backup.*"))


def test_undo_of_the_demos_flag_run_checks_first_then_restores_the_exact_bytes(state: Path):
    run = cli(state, "demo", "--json")
    assert run.returncode == 0, run.stderr
    run_id = json.loads(run.stdout)["run_id"]
    after = env_file(state).read_bytes()
    assert after != SHIPPED.read_bytes()

    check = cli(state, "undo", run_id, "--check", "--diff", "--yes", "--json")
    assert check.returncode == 0, check.stderr
    receipt = json.loads(check.stdout)
    assert receipt["check"] is True and receipt["changed"] == 1
    assert "+8: ENABLE_ADVANCED_RECOMMENDATIONS=true" in check.stderr  # the diff
    assert env_file(state).read_bytes() == after and len(copies(state)) == 1  # nothing written
    assert undo.undone_by(state, run_id) == ""  # a check-mode undo undoes nothing

    done = cli(state, "undo", run_id, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout)
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()  # every byte as before the run
    assert (receipt["level"], receipt["undoes"], receipt["result"]) == ("flag", run_id, "ok")
    (change,) = receipt["hosts"]["localhost"]["flags"]
    assert change == {
        "key": "ENABLE_ADVANCED_RECOMMENDATIONS",
        "before": "false",
        "after": "true",
        "changed": True,
    }
    (copy,) = receipt["hosts"]["localhost"]["backups"]
    assert Path(copy).read_bytes() == after  # the undo copied the file before changing it
    row = next(r for r in history.read(state) if r.run_id == receipt["run_id"])
    assert (row.level, row.result) == ("flag", "ok")
    started = [json.loads(line) for line in (state / "history.jsonl").read_text().splitlines()]
    assert any(e.get("undoes") == run_id for e in started if e["event"] == "started")

    again = cli(state, "undo", run_id, "--yes")
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"rollback-ops: error: run {run_id} was already undone by run {receipt['run_id']} "
        f"(`rollback-ops undo {receipt['run_id']}` puts its changes back)"
    ]
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()


def test_a_key_the_run_added_is_removed_and_its_undo_is_not_redone(state: Path):
    run = flag(state, allow_new=True, ENABLE_NEW_RANKING="on")
    assert b"ENABLE_NEW_RANKING=on\n" in env_file(state).read_bytes()
    done = run_undo(state, run.run_id)
    assert done.ok and done.changed == 1, done.receipt()
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()
    assert done.request["undo"]["localhost"]["env_remove"] == ["ENABLE_NEW_RANKING"]
    with pytest.raises(ConfigError, match=f"removed ENABLE_NEW_RANKING .*run {run.run_id}'s"):
        undo.prepare_undo(done.run_id, state_dir=state)


def test_a_later_change_is_refused_at_preflight_unless_forced(state: Path):
    first = flag(state, ENABLE_TIME_WEIGHTING="false")
    flag(state, ENABLE_TIME_WEIGHTING="partial")
    between = env_file(state).read_bytes()

    refused = run_undo(state, first.run_id)
    assert refused.refused and refused.exit_status == 3
    host = refused.hosts["localhost"]
    assert "ENABLE_TIME_WEIGHTING is 'partial', not 'false' or 'true'" in host.message
    assert "undo --force" in host.message
    assert env_file(state).read_bytes() == between  # nothing changed

    forced = run_undo(state, first.run_id, force=True)
    assert forced.ok and forced.changed == 1
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()


def test_an_emergency_run_is_undone_under_its_own_level(state: Path):
    run = api.apply("emergency", "local", state_dir=state)
    assert run.ok and b"APP_MODE=research" in env_file(state).read_bytes()
    prep = undo.prepare_undo(run.run_id, state_dir=state)
    assert prep.operation.name == "emergency"  # its guard: break-glass allowed, as the level
    assert prep.request.undo["localhost"]["env"] == {"APP_MODE": "production"}
    done = api.execute(prep, state_dir=state)
    assert done.ok and done.receipt()["level"] == "emergency"
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()


def test_an_undo_of_an_undo_redoes_and_the_run_may_then_be_undone_again(state: Path):
    first = flag(state, ENABLE_CONTENT_TYPE_ANALYSIS="false")
    changed = env_file(state).read_bytes()
    undone = run_undo(state, first.run_id)
    assert env_file(state).read_bytes() == SHIPPED.read_bytes()
    redone = run_undo(state, undone.run_id)
    assert redone.ok and redone.receipt()["undoes"] == undone.run_id
    assert env_file(state).read_bytes() == changed
    assert undo.undone_by(state, first.run_id) == ""  # its undo was undone
    again = run_undo(state, first.run_id)
    assert again.ok and env_file(state).read_bytes() == SHIPPED.read_bytes()


# --------------------------------------------------------------------------- refusals


def write_receipt(state: Path, run_id: str, **fields: Any) -> str:
    receipt = {
        "run_id": run_id,
        "level": "flag",
        "result": "ok",
        "check": False,
        "inventory": "local",
        "inventory_path": str(state / "demo" / "inventory.yml"),
        "hosts": {},
        **fields,
    }
    (state / "runs" / run_id).mkdir(parents=True)
    (state / "runs" / run_id / "receipt.json").write_text(json.dumps(receipt))
    return run_id


def host(**fields: Any) -> dict[str, Any]:
    return {"status": "changed", "steps": [], "flags": [], "backups": [], **fields}


def change(key: str, before: str | None, after: str, changed: bool = True) -> dict[str, Any]:
    return {"key": key, "before": before, "after": after, "changed": changed}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"check": True}, "was a check-mode run: it changed nothing to undo"),
        (
            {"hosts": {"localhost": host(flags=[change("ENABLE_X", "true", "true", False)])}},
            "changed nothing to undo on any host",
        ),
        ({"level": "verify"}, "is 'verify', not a rollback undo puts back"),
        (
            {
                "level": "full",
                "hosts": {
                    "web1": host(
                        data={"forensic_set_id": "20250101T000000Z-forensic"},
                        code={"current": {"head": "a" * 40}},
                    )
                },
            },
            "forensic sets (web1: 20250101T000000Z-forensic); `rollback-ops plan --level full "
            f"-i local --backup-id 20250101T000000Z-forensic --to {'a' * 40}`",
        ),
        (
            {"level": "config", "hosts": {"web1": host(backups=["/etc/a.yml.backup.1"])}},
            "records no config_files for web1 (a run of an older rollback-ops): restore the "
            "files by hand from the copies it made: /etc/a.yml.backup.1",
        ),
        (
            {
                "level": "config",
                "hosts": {
                    "web1": host(
                        data={"config_files": [{"path": "/etc/a.yml", "copy": "/tmp/a.yml"}]}
                    )
                },
            },
            "the receipt's web1 config_files entry '/etc/a.yml' is not one undo can use",
        ),
        (
            {
                "hosts": {
                    "localhost": host(
                        flags=[change("API_TOKEN", "<secret sha256:1a2b3c4d>", "x")],
                        backups=["/srv/.env.backup.1", "/srv/.env.backup.2"],
                    )
                }
            },
            "changed the secret API_TOKEN on localhost and recorded copies /srv/.env.backup.1, "
            "/srv/.env.backup.2 of the env file: undo needs exactly one to read the values "
            "back from; restore the file by hand",
        ),
        (
            {
                "level": "code",
                "hosts": {
                    "web1": host(
                        code={"snapshot": {"kind": "tarball", "path": "/t.tgz", "base": "/app"}}
                    )
                },
            },
            "restored backup files on web1: undo puts back git runs only; the files as they "
            "were are in /t.tgz (tar -xzf it in /app)",
        ),
    ],
)
def test_runs_undo_cannot_put_back_are_refused_saying_why(
    state: Path, fields: dict[str, Any], message: str
):
    run_id = write_receipt(state, "20250102T030405Z-a1b2c3", **fields)
    with pytest.raises(ConfigError) as exc:
        undo.prepare_undo(run_id, state_dir=state)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_an_unknown_run_and_another_inventory_are_refused_in_one_line(state: Path):
    unknown = cli(state, "undo", "20250102T030405Z-ffffff", "--yes")
    assert unknown.returncode == 2
    (line,) = unknown.stderr.strip().splitlines()
    assert line.startswith("rollback-ops: error: no receipt for run '20250102T030405Z-ffffff'")
    run_id = write_receipt(
        state,
        "20250102T030405Z-a1b2c3",
        hosts={"localhost": host(flags=[change("ENABLE_X", "true", "false")])},
    )
    other = state / "other.yml"
    other.write_text("all: {hosts: {h: {}}}\n")
    wrong = cli(state, "undo", run_id, "-i", str(other), "--yes")
    assert wrong.returncode == 2
    assert "leave --inventory out to undo it" in wrong.stderr


# ---------------------------------------------------------------- config: the request


@pytest.fixture
def config_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "config-inv.yml"
    files = ["/etc/app/a.yml", "/etc/app/new.yml"]
    app = {"name": "app", "config": {"files": files}, "backup": {"files": files}}
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"rollback_environment": "staging", "rollback_app": app},
                    "hosts": {"web1": {"ansible_host": "127.0.0.1"}, "web2": {}},
                }
            }
        )
    )
    return path


def test_the_config_request_pins_each_file_to_the_copy_the_run_made(
    state: Path, config_inventory: Path
):
    copy = "/etc/app/a.yml.backup.20250102T030405Z"
    files = [
        {"path": "/etc/app/a.yml", "copy": copy, "copy_sha256": "1" * 64, "sha256": "2" * 64},
        {"path": "/etc/app/new.yml", "copy": "", "copy_sha256": "", "sha256": "3" * 64},
    ]
    run_id = write_receipt(
        state,
        "20250102T030405Z-c0f100",
        level="config",
        inventory_path=str(config_inventory),
        hosts={"web1": host(data={"config_files": files}), "web2": host(status="ok")},
    )
    prep = undo.prepare_undo(run_id, state_dir=state)
    assert prep.operation.name == "config" and prep.hosts == ["web1"]
    assert prep.request.undo == {
        "web1": {
            "config": [
                {
                    "path": "/etc/app/a.yml",
                    "copy": copy,
                    "copy_sha256": "1" * 64,
                    "expect_sha256": "2" * 64,
                },
                {
                    "path": "/etc/app/new.yml",
                    "copy": "",
                    "copy_sha256": "",
                    "expect_sha256": "3" * 64,
                },
            ]
        }
    }
    (plan,) = api.plan(prep)
    assert any(f"/etc/app/a.yml from {copy}" in c for c in plan.changes), plan.changes
    assert not any("backup set" in c for c in plan.changes)
    forced = undo.prepare_undo(run_id, force=True, state_dir=state)
    assert all("expect_sha256" not in e for e in forced.request.undo["web1"]["config"])


# ------------------------------------------------------------------ code: the request


@pytest.fixture
def code_inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yml"
    app = {"name": "app", "code": {"path": "/srv/app", "git": {"mode": "revert"}}}
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"rollback_environment": "production", "rollback_app": app},
                    "hosts": {
                        "web1": {"ansible_host": "127.0.0.1"},
                        "web2": {"ansible_host": "127.0.0.2"},
                    },
                }
            }
        )
    )
    return path


def code_receipt(state: Path, inventory: Path) -> str:
    bad, revert = "b" * 40, "c" * 40
    snapshot = {"kind": "git-ref", "ref": "refs/rollback-ops/r", "head": bad, "branch": "main"}
    return write_receipt(
        state,
        "20250102T030405Z-c0de00",
        level="code",
        inventory_path=str(inventory),
        request={"allow_new_flags": False},
        hosts={
            "web1": host(code={"snapshot": snapshot, "head_after": revert}),
            "web2": host(status="ok", code={"current": {"head": bad}, "needed": False}),
        },
    )


def test_the_code_request_pins_the_recorded_head_and_branch_on_the_hosts_it_changed(
    state: Path, code_inventory: Path
):
    run_id = code_receipt(state, code_inventory)
    prep = undo.prepare_undo(run_id, state_dir=state)
    assert prep.operation.name == "code" and prep.hosts == ["web1"]
    assert prep.request.targets == {"web1": "b" * 40}
    assert prep.request.undo == {
        "web1": {"head": "b" * 40, "branch": "main", "expect_head": ["c" * 40, "b" * 40]}
    }
    assert prep.request.undoes == run_id and not prep.request.force
    (plan,) = api.plan(prep)
    assert any("put HEAD back on the target on branch main" in c for c in plan.changes)
    forced = undo.prepare_undo(run_id, force=True, state_dir=state)
    assert "expect_head" not in forced.request.undo["web1"] and forced.request.force


def test_the_undo_runs_under_the_guard_of_the_level_it_undoes(state: Path, code_inventory: Path):
    run_id = code_receipt(state, code_inventory)
    alone = cli(state, "undo", run_id, "--yes")
    assert alone.returncode == 3
    assert "this inventory is production: a change needs an approved request" in alone.stderr
    glass = cli(state, "undo", run_id, "--break-glass", "--reason", "p0", "--yes")
    assert glass.returncode == 3
    assert "--break-glass covers the " in glass.stderr and "only, not code" in glass.stderr


def test_undo_help_has_examples():
    out = subprocess.run(
        [sys.executable, "-m", "rollback_ops", "undo", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "examples:\n  rollback-ops undo 20250102T030405Z-a1b2c3 --check --diff" in out


# ------------------------------------------------------- the host side, as Ansible runs it


def test_remove_drops_every_assignment_of_a_key_and_keeps_every_other_byte():
    text = "# c\r\nA=1\r\nexport B='x'\r\nA=2\r\nC=3"
    new, before, removed = ENVUTILS.remove(text, ["A", "D"])
    assert new == "# c\r\nexport B='x'\r\nC=3"
    assert before == {"A": "2", "D": None} and removed == ["A"]
    with pytest.raises(ENVUTILS.EnvFileError, match="multi-line"):
        ENVUTILS.remove('M="a\nb"\n', ["M"])


def test_envfile_remove_with_values_and_check_mode(tmp_path: Path):
    path = tmp_path / ".env"
    path.write_bytes(b"A=1\nB=2\nNEW=on\n")
    args = {"path": str(path), "values": {"A": "0"}, "remove": ["NEW"]}
    check = run_module("plugins/modules/envfile.py", args, check_mode=True)
    assert check["changed"] and check["removed_keys"] == ["NEW"]
    assert path.read_bytes() == b"A=1\nB=2\nNEW=on\n"
    done = run_module("plugins/modules/envfile.py", args)
    assert done["changed"] and done["before"] == {"A": "1", "NEW": "on"}
    assert path.read_bytes() == b"A=0\nB=2\n"
    assert not run_module("plugins/modules/envfile.py", args)["changed"]
    both = run_module("plugins/modules/envfile.py", {**args, "remove": ["A"]})
    assert both["failed"] and "A given both to set and to remove" in both["msg"]


def test_preflight_env_expect_names_a_key_changed_since(tmp_path: Path):
    path = tmp_path / ".env"
    path.write_text("A=partial\nB=1\nAPI_KEY=new\n")
    ok = run_module(
        "plugins/modules/preflight.py",
        {"env_file": str(path), "env_expect": {"A": ["partial", "true"], "C": [None]}},
    )
    assert not ok.get("failed"), ok
    bad = run_module(
        "plugins/modules/preflight.py",
        {"env_file": str(path), "env_expect": {"A": ["false", "true"], "API_KEY": ["old"]}},
    )
    assert bad["failed"]
    assert f"{path}: A is 'partial', not 'false' or 'true'" in bad["msg"]
    assert "API_KEY is another value" in bad["msg"] and "new" not in bad["msg"]


def test_code_exact_puts_back_the_recorded_head_on_its_branch(repo: Path):
    mod = "plugins/modules/code.py"
    base = {"path": str(repo), "method": "git", "snapshot_dir": str(repo.parent / "s")}
    bad = git(repo, "rev-parse", "HEAD")
    revert = {**base, "ref": "release-1.9.0", "git_mode": "revert", "state": "reverted"}
    rollback = run_module(mod, {**revert, "run_id": "r1"})
    assert rollback["changed"], rollback
    after = git(repo, "rev-parse", "HEAD")
    undo_args = {**base, "ref": bad, "git_mode": "revert", "exact": True, "branch": "main"}
    moved = run_module(mod, {**undo_args, "expect_head": ["f" * 40], "state": "reverted"})
    assert moved["failed"] and f"HEAD of {repo} is {after[:12]}, not ffffffffffff" in moved["msg"]
    undo_args = {**undo_args, "expect_head": [after, bad], "state": "reverted"}
    done = run_module(mod, {**undo_args, "run_id": "r2"})
    assert done["changed"], done
    assert git(repo, "rev-parse", "HEAD") == bad  # the exact commit, not a new one
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert (repo / "app.py").read_text() == "VERSION = '1.10.0'\n"
    assert git(repo, "rev-parse", "refs/rollback-ops/r2") == after  # the undo is recorded too
    again = run_module(mod, undo_args)
    assert not again["changed"] and not again["needed"], again


# ------------------------------------------------ config: the module's undo, on real files

RESTORE = "plugins/modules/configrestore.py"
BACKUPSET = load_module("plugins/module_utils/backupset")
GOOD = b"model: v1\nAPI_KEY=kept-secret-good-7f3\n"
BAD = b"model: v2\nAPI_KEY=kept-secret-bad-9c1\n"


@pytest.fixture
def config_run(tmp_path: Path) -> dict[str, Any]:
    """A config run on real files: a.yml (bad, 0600) put back from a set (good, 0640), and
    new.yml (missing on the host, in the set) created; the module's config_files as the
    receipt keeps them."""
    etc = tmp_path / "etc"
    etc.mkdir()
    a, new = etc / "a.yml", etc / "new.yml"
    a.write_bytes(GOOD)
    a.chmod(0o640)
    new.write_bytes(b"new: 1\n")
    root = tmp_path / "backups"
    assert BACKUPSET.create_set(str(root), "shop", "predeploy", [], [str(a), str(new)])
    a.write_bytes(BAD)
    a.chmod(0o600)
    new.unlink()
    before = fingerprint(etc)
    args = {"root": str(root), "app": "shop", "files": [str(a), str(new)], "state": "restored"}
    run = run_module(RESTORE, args)
    assert run["changed"], run
    return {"etc": etc, "a": a, "new": new, "args": args, "before": before, "run": run}


def undo_args(config_run: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """The module's undo option as undo.py builds it from the run's config_files."""
    entries = [
        {k: f[k] for k in ("path", "copy", "copy_sha256")}
        | ({} if force else {"expect_sha256": f["sha256"]})
        for f in config_run["run"]["config_files"]
    ]
    return {**config_run["args"], "root": "/nonexistent", "undo": entries}


def test_configrestore_records_what_undo_needs(config_run: dict[str, Any]):
    a, new = config_run["a"], config_run["new"]
    (made,) = config_run["run"]["backup_files"]
    assert Path(made).read_bytes() == BAD and Path(made).name.startswith("a.yml.backup.")
    by_path = {f["path"]: f for f in config_run["run"]["config_files"]}
    assert by_path[str(a)]["copy"] == made
    assert by_path[str(a)]["copy_sha256"] == sha(BAD)
    assert by_path[str(a)]["sha256"] == sha(GOOD)
    assert by_path[str(new)] == {
        "path": str(new),
        "copy": "",
        "copy_sha256": "",
        "sha256": sha(b"new: 1\n"),
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_config_undo_checks_first_then_puts_back_each_files_bytes_mode_and_owner(
    config_run: dict[str, Any],
):
    etc, a, new = config_run["etc"], config_run["a"], config_run["new"]
    args = undo_args(config_run)
    after_run = fingerprint(etc)
    check = run_module(RESTORE, {**args, "state": "checked"})
    assert check["needed"] and sorted(check["differs"]) == sorted([str(a), str(new)])
    dry = run_module(RESTORE, args, check_mode=True)
    assert dry["changed"] and changes(after_run, fingerprint(etc)) == []
    (diff,) = [d for d in dry["diff"] if d["before_header"] == str(a)]
    assert "kept-secret" not in json.dumps(dry["diff"]) and "<secret sha256:" in diff["after"]
    done = run_module(RESTORE, args)
    assert done["changed"], done
    assert a.read_bytes() == BAD and (a.stat().st_mode & 0o7777) == 0o600
    assert not new.exists()
    # nothing lost: what the run wrote is in the copies the undo made (its receipt's)
    kept = {Path(f["path"]).name: Path(f["copy"]) for f in done["config_files"]}
    assert kept["a.yml"].read_bytes() == GOOD and kept["new.yml"].read_bytes() == b"new: 1\n"
    # the files are back as before the run (kind, mode, owner, size, sha256; a new inode
    # and mtime: an atomic replace); only copies were added beside them
    before, now = config_run["before"], fingerprint(etc)
    same = (0, 1, 2, 3, 4, 7)
    assert {n: [e[i] for i in same] for n, e in before.items() if n != "."} == {
        n: [e[i] for i in same] for n, e in now.items() if n in before and n != "."
    }
    assert all(".backup." in n for n in set(now) - set(before))
    again = run_module(RESTORE, args)
    assert not again["changed"] and not again["needed"], again


def test_config_undo_refuses_a_file_changed_since_and_a_copy_not_the_runs(
    config_run: dict[str, Any],
):
    a = config_run["a"]
    args = undo_args(config_run)
    a.write_bytes(b"model: v3\n")  # a later change
    later = run_module(RESTORE, args)
    assert later["failed"] and f"{a} changed since the run" in later["msg"], later
    assert "undo --force overwrites it" in later["msg"]
    assert a.read_bytes() == b"model: v3\n"
    forced = run_module(RESTORE, undo_args(config_run, force=True))
    assert forced["changed"] and a.read_bytes() == BAD
    copy = Path(next(f["copy"] for f in config_run["run"]["config_files"] if f["copy"]))
    copy.write_bytes(b"tampered\n")
    tampered = run_module(RESTORE, undo_args(config_run, force=True))
    assert (
        tampered["failed"]
        and f"the copy {copy} of {a} is not the one the run made" in (tampered["msg"])
    )
    elsewhere = undo_args(config_run)
    elsewhere["undo"][0]["copy"] = "/tmp/a.yml.backup.1"
    wrong = run_module(RESTORE, elsewhere)
    assert wrong["failed"] and "is not a copy of" in wrong["msg"]


# ------------------------------------------- a secret key, read back from the run's copy

ORIGINAL_SECRET, NEW_SECRET = "orig-secret-8b2f61", "undo-secret-5e7a1c"


def with_secret(state: Path) -> bytes:
    """The sandbox's env file with a secret key (PARTNER_API_KEY: the *_KEY pattern)."""
    env_file(state).write_bytes(
        SHIPPED.read_bytes() + f"PARTNER_API_KEY={ORIGINAL_SECRET}\n".encode()
    )
    return env_file(state).read_bytes()


def test_a_secret_key_is_put_back_from_the_runs_copy_and_never_shown(state: Path):
    original = with_secret(state)
    first = flag(state, allow_new=True, PARTNER_API_KEY=NEW_SECRET)
    (change_,) = [f for f in first.receipt()["hosts"]["localhost"]["flags"] if f["changed"]]
    assert change_["before"].startswith("<secret sha256:")  # masked: not from the receipt
    (copy,) = first.receipt()["hosts"]["localhost"]["backups"]
    prep = undo.prepare_undo(first.run_id, state_dir=state)
    entry = prep.request.undo["localhost"]
    assert entry["env_from"]["path"] == copy and entry["env_from"]["keys"] == ["PARTNER_API_KEY"]
    assert len(entry["env_from"]["sha256"]) == 64  # the copy as the run made it
    assert ORIGINAL_SECRET not in json.dumps(entry)
    done = api.execute(prep, state_dir=state)
    assert done.ok, done.receipt()
    assert env_file(state).read_bytes() == original  # every byte, the secret included
    run_dir = state / "runs" / done.run_id
    for path in run_dir.rglob("*"):  # receipt, events, artifacts: no secret value
        if path.is_file():
            text = path.read_text(errors="replace")
            assert ORIGINAL_SECRET not in text and NEW_SECRET not in text, path


def test_a_secret_key_whose_copy_is_not_the_runs_is_refused_naming_it(state: Path):
    with_secret(state)
    first = flag(state, allow_new=True, PARTNER_API_KEY=NEW_SECRET)
    (copy,) = first.receipt()["hosts"]["localhost"]["backups"]
    Path(copy).write_text(Path(copy).read_text().replace(ORIGINAL_SECRET, "other"))
    tampered = run_undo_failed(state, first.run_id)
    assert f"its copy {copy} is not the one the run made" in tampered
    Path(copy).unlink()
    assert f"its copy {copy} is gone" in run_undo_failed(state, first.run_id)
    assert NEW_SECRET in env_file(state).read_text()  # nothing was changed


def run_undo_failed(state: Path, run_id: str) -> str:
    result = run_undo(state, run_id)
    assert not result.ok
    return json.dumps(result.receipt())


def test_envfile_values_from_reads_keys_from_a_copy_beside_the_file(tmp_path: Path):
    path = tmp_path / ".env"
    copy = tmp_path / ".env.backup.20250102T030405Z"
    copy.write_bytes(b"API_KEY=from-copy-3d9e\nA=1\n")
    path.write_bytes(b"API_KEY=now-4c1b\nA=2\n")
    args = {"path": str(path), "values_from": {"path": str(copy), "keys": ["API_KEY"]}}
    done = run_module("plugins/modules/envfile.py", args)
    assert done["changed"] and path.read_bytes() == b"API_KEY=from-copy-3d9e\nA=2\n"
    assert "from-copy-3d9e" not in json.dumps(done) and "now-4c1b" not in json.dumps(done)
    assert len(done["backup_sha256"]) == 64
    missing = run_module(
        "plugins/modules/envfile.py",
        {"path": str(path), "values_from": {"path": str(copy), "keys": ["B"]}},
    )
    assert missing["failed"] and f"its copy {copy} assigns no B" in missing["msg"]
    elsewhere = tmp_path / "x.backup.1"
    elsewhere.write_bytes(b"API_KEY=x\n")
    wrong = run_module(
        "plugins/modules/envfile.py",
        {"path": str(path), "values_from": {"path": str(elsewhere), "keys": ["API_KEY"]}},
    )
    assert wrong["failed"] and "is not a copy of it" in wrong["msg"]
