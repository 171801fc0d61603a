"""The code module (plugins/modules/code.py), run as Ansible runs it, on
real git repositories and files in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_module
from tests.fingerprint import changes, fingerprint

MODULE = "plugins/modules/code.py"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Releases 1.9.0 (good) and 1.10.0 (bad, adds a module), main deployed at 1.10.0."""
    repo = tmp_path / "app"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.py").write_text("VERSION = '1.9.0'\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Release 1.9.0")
    git(repo, "tag", "release-1.9.0")
    (repo / "app.py").write_text("VERSION = '1.10.0'\n")
    (repo / "errors.py").write_text("raise TimeoutError\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Release 1.10.0")
    git(repo, "tag", "release-1.10.0")
    return repo


def code(path: Path, **kw: object) -> dict:
    check_mode = bool(kw.pop("check_mode", False))
    args = {"path": str(path), "method": "git", "release_tags": "release-*", **kw}
    args.setdefault("snapshot_dir", str(path.parent / "snapshots"))
    return run_module(MODULE, args, check_mode=check_mode)


def test_previous_release_is_the_second_newest_tag_in_version_order(repo: Path):
    result = code(repo)
    assert not result.get("failed"), result
    assert result["needed"] and not result["changed"]
    # 1.10.0 sorts after 1.9.0 as a version, before it as text
    assert result["target"]["ref"] == "release-1.9.0"
    assert result["target"]["sha"] == git(repo, "rev-parse", "release-1.9.0")
    assert "Release 1.10.0" in result["reasons"][0]


def test_checkout_records_head_then_detaches_on_the_target_and_is_idempotent(repo: Path):
    bad = git(repo, "rev-parse", "HEAD")
    result = code(repo, state="reverted", run_id="r1")
    assert result["changed"], result
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "release-1.9.0")
    assert (repo / "app.py").read_text() == "VERSION = '1.9.0'\n"
    assert not (repo / "errors.py").exists()
    assert git(repo, "rev-parse", "refs/rollback-ops/r1") == bad
    assert result["snapshot"] == {
        "kind": "git-ref",
        "path": str(repo),
        "ref": "refs/rollback-ops/r1",
        "head": bad,
        "branch": "main",
    }
    assert result["backup_file"] == f"{repo}#refs/rollback-ops/r1"
    again = code(repo, state="reverted", run_id="r2")
    assert not again["changed"] and not again["needed"], again
    assert "refs/rollback-ops/r2" not in git(repo, "for-each-ref")


def test_revert_mode_keeps_history_with_one_commit_of_the_targets_tree(repo: Path):
    bad = git(repo, "rev-parse", "HEAD")
    result = code(repo, state="reverted", run_id="r1", git_mode="revert", operator="ana")
    assert result["changed"], result
    assert git(repo, "rev-parse", "HEAD^") == bad  # on top of the bad release
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"  # branch moved, not detached
    assert git(repo, "rev-parse", "HEAD^{tree}") == git(repo, "rev-parse", "release-1.9.0^{tree}")
    message = git(repo, "log", "-1", "--format=%B")
    assert "Roll back to release-1.9.0" in message and "Release 1.10.0" in message
    assert "operator ana" in message
    assert not code(repo, state="reverted", run_id="r2", git_mode="revert")["changed"]


def test_check_mode_changes_nothing(repo: Path):
    head = git(repo, "rev-parse", "HEAD")
    result = code(repo, state="reverted", run_id="r1", check_mode=True)
    assert result["changed"] and "release-1.9.0" in result["diff"]["after"]
    assert git(repo, "rev-parse", "HEAD") == head
    assert "refs/rollback-ops" not in git(repo, "for-each-ref")


def test_uncommitted_changes_refuse_unless_forced_and_then_are_kept(repo: Path):
    (repo / "app.py").write_text("VERSION = 'hotfix'\n")
    refused = code(repo, state="reverted", run_id="r1")
    assert refused["failed"] and "uncommitted changes" in refused["msg"]
    assert (repo / "app.py").read_text() == "VERSION = 'hotfix'\n"
    forced = code(repo, state="reverted", run_id="r1", force=True)
    assert forced["changed"], forced
    assert (repo / "app.py").read_text() == "VERSION = '1.9.0'\n"
    kept = git(repo, "show", "refs/rollback-ops/r1-worktree:app.py")
    assert kept == "VERSION = 'hotfix'"


def test_unknown_ref_and_missing_previous_release_are_named(repo: Path, tmp_path: Path):
    result = code(repo, ref="release-0.1")
    assert result["failed"] and "git ref 'release-0.1' not found" in result["msg"]
    result = code(repo, release_tags="v*")
    assert result["failed"] and "no previous release: 0 tag(s) match 'v*'" in result["msg"]
    result = code(tmp_path)
    assert result["failed"] and "is not a git work tree" in result["msg"]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Seed 004: a worker file with two backups, and modules the bad release added."""
    base = tmp_path / "svc"
    (base / "workers").mkdir(parents=True)
    (base / "errors").mkdir()
    (base / "errors" / "handlers.py").write_text("bad\n")
    (base / "config").mkdir()
    (base / "config" / "timeouts.py").write_text("T = 1\n")
    worker = base / "workers" / "agent_orchestrator.py"
    worker.write_text("phase 1 (bad)\n")
    worker.chmod(0o750)
    (base / "workers" / "agent_orchestrator.py.backup.20250119_090000").write_text("older\n")
    (base / "workers" / "agent_orchestrator.py.backup.20250120_140000").write_text("good\n")
    return base


def files(base: Path, **kw: object) -> dict:
    args = {
        "path": str(base),
        "method": "files",
        "restore": ["workers/agent_orchestrator.py"],
        "remove": ["errors", "config/timeouts.py"],
        "snapshot_dir": str(base.parent / "snapshots"),
        "app": "enrichment",
        **kw,
    }
    check_mode = bool(args.pop("check_mode", False))
    return run_module(MODULE, args, check_mode=check_mode)


def test_files_restore_the_newest_backup_remove_added_paths_and_tar_what_was_there(tree: Path):
    worker = tree / "workers" / "agent_orchestrator.py"
    result = files(tree, state="reverted", run_id="r1")
    assert result["changed"], result
    assert worker.read_text() == "good\n"
    assert worker.stat().st_mode & 0o777 == 0o750  # the current file's mode is kept
    assert not (tree / "errors").exists() and not (tree / "config" / "timeouts.py").exists()
    snapshot = Path(result["backup_file"])
    assert snapshot.name == "enrichment-r1.tar.gz"
    assert snapshot.stat().st_mode & 0o777 == 0o600
    with tarfile.open(snapshot) as tar:
        names = set(tar.getnames())
        assert {
            "workers/agent_orchestrator.py",
            "errors/handlers.py",
            "config/timeouts.py",
        } <= names
        extracted = tar.extractfile("workers/agent_orchestrator.py")
        assert extracted is not None and extracted.read() == b"phase 1 (bad)\n"
    again = files(tree, state="reverted", run_id="r2")
    assert not again["changed"] and not again["needed"], again
    assert not (tree.parent / "snapshots" / "enrichment-r2.tar.gz").exists()


def test_files_backup_stamp_chooses_and_a_missing_backup_fails_before_any_change(tree: Path):
    worker = tree / "workers" / "agent_orchestrator.py"
    chosen = files(tree, state="reverted", run_id="r1", backup_stamp="20250119_090000")
    assert chosen["changed"] and worker.read_text() == "older\n"
    (tree / "extra.py").write_text("x\n")
    missing = files(
        tree, state="reverted", run_id="r2", restore=["workers/agent_orchestrator.py", "extra.py"]
    )
    assert missing["failed"]
    assert (
        f"no backup file found for {tree}/extra.py (checked {tree}/extra.py.backup.*)"
        in missing["msg"]
    )
    assert worker.read_text() == "older\n"  # nothing changed


def test_files_check_mode_and_paths_outside_the_tree(tree: Path):
    before = sorted(p.name for p in tree.rglob("*"))
    result = files(tree, state="reverted", run_id="r1", check_mode=True)
    assert result["changed"] and "remove" in result["diff"]["after"]
    assert sorted(p.name for p in tree.rglob("*")) == before
    assert not (tree.parent / "snapshots").exists()
    escaped = files(tree, restore=["../etc/passwd"], remove=["/etc"])
    assert escaped["failed"]
    assert (
        "'../etc/passwd' must be relative" in escaped["msg"]
        and "'/etc' must be relative" in escaped["msg"]
    )


def test_files_a_symlinked_file_keeps_its_link_and_its_target_gets_the_backup(tree: Path):
    # A deployment that symlinks the worker to a shared release directory: the link stays, the
    # target gets the backup's bytes (renaming over the link would leave the target, which the
    # service really runs, on the bad code while the run says OK).
    worker = tree / "workers" / "agent_orchestrator.py"
    shared = tree.parent / "shared"
    shared.mkdir()
    real = shared / "agent_orchestrator.py"
    worker.rename(real)
    worker.symlink_to(real)
    checked = files(tree, run_id="r1")
    assert checked["needed"] and not checked.get("failed"), checked
    result = files(tree, state="reverted", run_id="r1")
    assert result["changed"], result
    assert worker.is_symlink() and os.readlink(worker) == str(real)
    assert real.read_text() == "good\n"
    assert real.stat().st_mode & 0o777 == 0o750
    assert sorted(p.name for p in shared.iterdir()) == ["agent_orchestrator.py"]
    with tarfile.open(result["backup_file"]) as tar:  # the bytes replaced, not the link
        extracted = tar.extractfile("workers/agent_orchestrator.py")
        assert extracted is not None and extracted.read() == b"phase 1 (bad)\n"
    again = files(tree, state="reverted", run_id="r2")
    assert not again["changed"] and not again["needed"], again


def test_files_a_hard_linked_file_is_refused_in_the_check_before_any_change(tree: Path):
    worker = tree / "workers" / "agent_orchestrator.py"
    os.link(worker, tree.parent / "deployed-copy.py")
    before = sorted(str(p) for p in tree.rglob("*"))
    for state in ("checked", "reverted"):
        result = files(tree, state=state, run_id="r1")
        assert result["failed"], result
        assert (
            f"code file {worker} has 2 hard links; rollback-ops will not break them apart"
            in result["msg"]
        )
    assert worker.read_text() == "phase 1 (bad)\n" and worker.stat().st_nlink == 2
    assert sorted(str(p) for p in tree.rglob("*")) == before  # nothing removed either
    assert not (tree.parent / "snapshots").exists()


def test_files_a_missing_file_is_recreated_with_its_backups_mode(tree: Path):
    worker = tree / "workers" / "agent_orchestrator.py"
    worker.unlink()
    backup = tree / "workers" / "agent_orchestrator.py.backup.20250120_140000"
    backup.chmod(0o640)
    result = files(tree, state="reverted", run_id="r1", remove=[])
    assert result["changed"], result
    assert worker.read_text() == "good\n"
    assert worker.stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- main(): issue 15


def test_git_check_mode_leaves_the_whole_repository_as_it_was(repo: Path, tmp_path: Path):
    # files, .git (refs, index, objects) and the snapshot directory alike
    (repo / "app.py").write_text("VERSION = 'hotfix'\n")  # forced: the stash would be made
    before = fingerprint(tmp_path)
    for git_mode in ("checkout", "revert"):
        result = code(
            repo, state="reverted", run_id="r1", git_mode=git_mode, force=True, check_mode=True
        )
        assert result["changed"] and not result.get("failed"), result
    assert changes(before, fingerprint(tmp_path)) == []


def test_files_check_mode_leaves_the_whole_tree_as_it_was(tree: Path, tmp_path: Path):
    before = fingerprint(tmp_path)
    result = files(tree, state="reverted", run_id="r1", check_mode=True)
    assert result["changed"] and not result.get("failed"), result
    assert changes(before, fingerprint(tmp_path)) == []


def test_files_the_old_bytes_are_in_the_tarball_before_a_rename_over_the_file(tree: Path):
    worker = tree / "workers" / "agent_orchestrator.py"
    inode = worker.stat().st_ino
    result = files(tree, state="reverted", run_id="r1", remove=[])
    assert result["changed"], result
    with tarfile.open(result["backup_file"]) as tar:
        extracted = tar.extractfile("workers/agent_orchestrator.py")
        assert extracted is not None and extracted.read() == b"phase 1 (bad)\n"
    assert worker.read_text() == "good\n" and worker.stat().st_ino != inode  # renamed over
    assert sorted(p.name for p in worker.parent.iterdir()) == [
        "agent_orchestrator.py",
        "agent_orchestrator.py.backup.20250119_090000",
        "agent_orchestrator.py.backup.20250120_140000",
    ]
    assert sorted(p.name for p in Path(result["backup_file"]).parent.iterdir()) == [
        "enrichment-r1.tar.gz"
    ]


def test_files_a_full_disk_during_the_restore_leaves_the_file_and_names_the_tarball(
    tmp_path: Path, tmpfs
):
    # No inode left beside the file for its temp file: the restore fails naming the file and
    # the tarball of the code before; the file and the paths to remove are as they were.
    small = tmpfs("1m", inodes=8)
    worker = small / "worker.py"
    worker.write_text("bad\n")
    (small / "worker.py.backup.20250120_140000").write_text("good\n")
    (small / "added.py").write_text("new\n")
    for n in range(64):
        try:
            (small / f"filler{n}").touch()
        except OSError:
            break
    before = fingerprint(small)
    result = files(
        small,
        state="reverted",
        run_id="r1",
        restore=["worker.py"],
        remove=["added.py"],
        snapshot_dir=str(tmp_path / "snapshots"),
        min_free_mb=0,
    )
    assert result.get("failed") is True, result
    assert f"could not write the temp file for {worker}" in result["msg"], result["msg"]
    assert (
        f"the code before is in {tmp_path / 'snapshots' / 'enrichment-r1.tar.gz'}" in result["msg"]
    )
    assert changes(before, fingerprint(small)) == []
