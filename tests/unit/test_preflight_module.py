"""The preflight module's env-file checks (plugins/modules/preflight.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import load_module, run_module
from tests.fingerprint import changes, fingerprint

preflight = load_module("plugins/modules/preflight.py")
envfile = load_module("plugins/module_utils/envfile.py")


def params(**kw: object) -> dict:
    base = {
        "env_file": "",
        "env_keys": [],
        "declared_keys": [],
        "allow_new_keys": False,
        "min_free_mb": 0,
    }
    base.update(kw)
    return base


def test_every_problem_is_reported_at_once(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("export A=1\nB=2\n")
    problems: list[str] = []
    result: dict = {}
    preflight.check_env(
        params(env_file=str(env), env_keys=["A", "TYPO", "C"], declared_keys=["A", "C"]),
        problems,
        result,
    )
    assert problems[0].startswith("TYPO not declared")
    assert "keys not present in the file: TYPO, C" in problems[1]
    assert result["free_mb"] > 0


def test_missing_file_and_disk_space(tmp_path: Path):
    problems: list[str] = []
    preflight.check_env(params(env_file=str(tmp_path / "nope")), problems, {})
    assert problems == [f"env file not found: {tmp_path / 'nope'}"]
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    problems = []
    preflight.check_env(params(env_file=str(env), env_keys=["A"], min_free_mb=10**9), problems, {})
    assert "MiB free" in problems[0]


def check(**kw: object) -> tuple[list[str], dict]:
    problems: list[str] = []
    result: dict = {}
    preflight.check_env(params(**kw), problems, result)
    return problems, result


def test_free_space_is_checked_for_the_copy_and_the_temp_file(tmpfs):
    # a 0.4 MiB file on a 1 MiB filesystem: the fixed margin alone (0 here) passed before
    small = tmpfs("1m")
    env = small / ".env"
    env.write_text("A=1\n" + "#" * 400_000 + "\n")
    problems, result = check(env_file=str(env), env_keys=["A"])
    assert len(problems) == 1, problems
    assert f"MiB free beside {env}" in problems[0]
    assert "need 0.8 MiB: backup copy 0.4 MiB + temp file 0.4 MiB + margin 0 MiB" in problems[0]
    assert result["free_mb"] == 0
    assert result["needed_mb"] == 1


def test_margin_is_added_to_twice_the_file_size(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    problems, result = check(env_file=str(env), env_keys=["A"], min_free_mb=3)
    assert problems == []
    assert result["needed_mb"] == 4  # 3 MiB margin + 8 bytes, rounded up


def test_hard_links_are_reported(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    os.link(env, tmp_path / "other-name")
    problems, _result = check(env_file=str(env), env_keys=["A"])
    assert problems == [
        f"env file {env} has 2 hard links; rollback-ops will not break them apart (its "
        "atomic rename would leave the other names on the old content): remove the other "
        "links or edit it by hand"
    ]


def test_a_symlink_is_followed(tmp_path: Path):
    target = tmp_path / "real.env"
    target.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(target)
    assert check(env_file=str(link), env_keys=["A"])[0] == []


def test_keys_are_read_by_the_editors_parser(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_bytes(
        b"\xef\xbb\xbfFIRST=1\nVT=a\x0bINNER_VT=1\nM='x\nINNER_Q=1\ny'\nC=a \\\nINNER_C=1\n"
    )
    assert envfile.keys_in(envfile.decode(env.read_bytes())) == {"FIRST", "VT", "M", "C"}
    problems, _result = check(env_file=str(env), env_keys=["FIRST", "INNER_VT", "INNER_Q", "M"])
    assert problems == [
        f"{env}: keys not present in the file: INNER_VT, INNER_Q",
        f"{env}: M has a multi-line quoted value (lines 3-5); rollback-ops rewrites one-line "
        "values only: edit it by hand",
    ]


def test_the_module_runs_with_the_shared_parser_and_prints_no_value(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("API_KEY=hunter2-Rbo-secret\nFLAG=on\n")
    result = run_module(
        "plugins/modules/preflight.py",
        {"env_file": str(env), "env_keys": ["FLAG", "NOPE"], "run_id": "", "min_free_mb": 0},
        check_mode=True,
    )
    assert result["failed"] is True
    assert result["problems"] == [f"{env}: keys not present in the file: NOPE"]
    assert "hunter2" not in str(result)


PREFLIGHT = "plugins/modules/preflight.py"


def test_a_host_outside_the_authorized_environments_refuses_and_takes_no_lock(tmp_path: Path):
    """Defense in depth (security issue 2): the host's own rollback_environment, as Ansible
    resolved it there, must be one the controller's guard authorized."""
    lock = tmp_path / "rollback.lock"
    args = {"lock_path": str(lock), "run_id": "r1", "environment": "production"}
    refused = run_module(PREFLIGHT, {**args, "authorized_environments": ["staging"]})
    assert refused.get("failed") and "'production' as Ansible resolves it here" in refused["msg"]
    assert not lock.exists()
    allowed = run_module(PREFLIGHT, {**args, "authorized_environments": ["production"]})
    assert not allowed.get("failed") and lock.exists()
    assert allowed["lock"]["run_id"] == "r1"


def test_two_preflights_at_once_one_takes_the_lock(tmp_path: Path):
    """The lock is created atomically (a link that fails when the file exists): of two runs
    racing for a host, exactly one holds it and the other is refused naming it."""
    import concurrent.futures

    lock = tmp_path / "rollback.lock"

    def take(run_id: str) -> dict:
        return run_module(PREFLIGHT, {"lock_path": str(lock), "run_id": run_id})

    for attempt in range(5):
        lock.unlink(missing_ok=True)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(take, [f"a{attempt}", f"b{attempt}"]))
        winners = [r for r in results if not r.get("failed")]
        losers = [r for r in results if r.get("failed")]
        assert len(winners) == 1 and len(losers) == 1, results
        held = json.loads(lock.read_text())
        assert held["run_id"] == winners[0]["lock"]["run_id"]
        assert f"host locked by run {held['run_id']}" in losers[0]["msg"]
        assert losers[0]["lock_holder"]["run_id"] == held["run_id"]


def test_four_preflights_taking_over_one_dead_lock_at_once_one_wins(tmp_path: Path):
    """A dead run's lock is moved aside (one rename succeeds) and taken by a link: of four
    runs racing to take it over, exactly one holds the host and the others name it."""
    import concurrent.futures
    import time

    lock = tmp_path / "rollback.lock"

    def take(run_id: str) -> dict:
        return run_module(PREFLIGHT, {"lock_path": str(lock), "run_id": run_id})

    for attempt in range(3):
        dead = {
            "run_id": "dead",
            "operator": "ana",
            "since": "then",
            "epoch": time.time() - 5 * 3600,
        }
        lock.write_text(json.dumps(dead))
        runs = [f"r{attempt}-{n}" for n in range(4)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(take, runs))
        winners = [r for r in results if not r.get("failed")]
        losers = [r for r in results if r.get("failed")]
        assert len(winners) == 1 and len(losers) == 3, results
        held = json.loads(lock.read_text())
        assert held["run_id"] == winners[0]["lock"]["run_id"] != "dead"
        for loser in losers:
            assert f"host locked by run {held['run_id']}" in loser["msg"], loser
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "rollback.lock",
            "rollback.lock.takeover",
        ]


# ----------------------------------------------------------------------------- main(): issue 15


def env_and_lock(tmp_path: Path) -> tuple[Path, Path]:
    env = tmp_path / "app" / ".env"
    env.parent.mkdir()
    env.write_text(f"DB_PASSWORD={SECRET}\nFLAG=on\n")
    return env, tmp_path / "state" / "rollback.lock"


SECRET = "hunter2-Rbo-preflight"


def test_check_mode_takes_no_lock_and_writes_nothing(tmp_path: Path):
    env, lock = env_and_lock(tmp_path)
    lock.parent.mkdir()
    before = fingerprint(tmp_path)
    args = {"env_file": str(env), "env_keys": ["FLAG"], "lock_path": str(lock), "run_id": "r1"}
    result = run_module(PREFLIGHT, {**args, "min_free_mb": 0}, check_mode=True)
    assert not result.get("failed") and result["lock"] == {}, result
    assert changes(before, fingerprint(tmp_path)) == []


def test_the_lock_is_made_whole_and_renewed_by_rename_and_no_value_is_returned(tmp_path: Path):
    env, lock = env_and_lock(tmp_path)
    args = {
        "env_file": str(env),
        "env_keys": ["FLAG", "DB_PASSWORD"],
        "lock_path": str(lock),
        "run_id": "r1",
        "operator": "ana",
        "min_free_mb": 0,
    }
    before = fingerprint(env.parent)
    taken = run_module(PREFLIGHT, args)
    assert not taken.get("failed"), taken
    assert SECRET not in json.dumps(taken)
    assert changes(before, fingerprint(env.parent)) == []  # the env file is only read
    assert sorted(p.name for p in lock.parent.iterdir()) == ["rollback.lock"]  # no temp file
    assert json.loads(lock.read_text()) == taken["lock"]
    inode = lock.stat().st_ino
    renewed = run_module(PREFLIGHT, args)  # a resumed step of the same run
    assert not renewed.get("failed"), renewed
    assert lock.stat().st_ino != inode  # replaced by a rename, never rewritten in place
    assert json.loads(lock.read_text()) == renewed["lock"]
    assert sorted(p.name for p in lock.parent.iterdir()) == ["rollback.lock"]


def test_a_full_disk_at_the_lock_fails_naming_it_and_leaves_nothing(tmpfs):
    # No inode left for the lock's temp file: a one-line problem naming the lock, not a
    # traceback, and no lock (whole or partial) left behind.
    small = tmpfs("1m", inodes=8)
    for n in range(64):
        try:
            (small / f"filler{n}").touch()
        except OSError:
            break
    lock = small / "rollback.lock"
    before = fingerprint(small)
    result = run_module(PREFLIGHT, {"lock_path": str(lock), "run_id": "r1"})
    assert result.get("failed") is True, result
    assert f"could not take the host lock {lock}" in result["msg"], result
    assert "No space left on device" in result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert result["lock"] == {}
    assert changes(before, fingerprint(small)) == []
