"""The code module's other sources (plugins/modules/code.py): git with paths (seed 001 phases
4-6), removing what the release added, and archive directories (seed 001 phase 11), run as
Ansible runs it on real git repositories and files in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_module

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
    """Release 1.0 (good) and 1.1 (bad: changes three files, adds core/dedup/), at 1.1."""
    repo = tmp_path / "app"
    (repo / "scripts" / "core").mkdir(parents=True)
    (repo / "core").mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "scripts" / "core" / "scoring.py").write_text("good scoring\n")
    (repo / "scripts" / "pipeline.py").write_text("good pipeline\n")
    (repo / "core" / "fetch.py").write_text("good fetch\n")
    (repo / "README").write_text("good readme\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Release 1.0")
    git(repo, "tag", "release-1.0")
    (repo / "scripts" / "core" / "scoring.py").write_text("bad scoring\n")
    (repo / "scripts" / "pipeline.py").write_text("bad pipeline\n")
    (repo / "core" / "fetch.py").write_text("bad fetch\n")
    (repo / "README").write_text("new readme\n")
    (repo / "core" / "dedup").mkdir()
    (repo / "core" / "dedup" / "__init__.py").write_text("added\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Release 1.1")
    git(repo, "tag", "release-1.1")
    return repo


def code(path: Path, **kw: object) -> dict:
    check_mode = bool(kw.pop("check_mode", False))
    args = {"path": str(path), "method": "git", "release_tags": "release-*", **kw}
    args.setdefault("snapshot_dir", str(path.parent / "snapshots"))
    return run_module(MODULE, args, check_mode=check_mode)


def test_git_paths_restore_only_those_paths_and_remove_what_the_release_added(repo: Path):
    head = git(repo, "rev-parse", "HEAD")
    (repo / "core" / "local.txt").write_text("untracked, kept\n")
    paths = ["scripts/core/scoring.py", "core"]
    checked = code(repo, paths=paths, remove_added=True, check_mode=True, state="reverted")
    assert checked["changed"] and not checked.get("failed"), checked
    assert (repo / "core" / "dedup" / "__init__.py").exists()  # check mode changed nothing
    assert f"remove {repo}/core/dedup/__init__.py" in checked["diff"]["after"]

    result = code(repo, paths=paths, remove_added=True, state="reverted", run_id="r1")
    assert result["changed"], result
    assert (repo / "scripts" / "core" / "scoring.py").read_text() == "good scoring\n"
    assert (repo / "core" / "fetch.py").read_text() == "good fetch\n"
    assert not (repo / "core" / "dedup").exists()  # the file and its emptied directory
    assert (repo / "core" / "local.txt").exists()  # untracked: not the release's
    assert (repo / "scripts" / "pipeline.py").read_text() == "bad pipeline\n"  # not listed
    assert (repo / "README").read_text() == "new readme\n"
    assert git(repo, "rev-parse", "HEAD") == head  # HEAD stays; the index follows
    assert git(repo, "diff", "--cached", "--name-status", "release-1.0", "--", *paths) == ""
    snapshot = result["snapshot"]
    assert snapshot["kind"] == "tarball" and snapshot["source"] == "git-paths"
    assert snapshot["head"] == head
    with tarfile.open(snapshot["path"]) as tar:
        names = set(tar.getnames())
        assert {"scripts/core/scoring.py", "core/fetch.py", "core/dedup/__init__.py"} <= names
        got = tar.extractfile("core/fetch.py")
        assert got is not None and got.read() == b"bad fetch\n"
    assert oct(os.stat(snapshot["path"]).st_mode & 0o777) == "0o600"

    again = code(repo, paths=paths, remove_added=True, state="reverted", run_id="r2")
    assert not again["changed"] and not again["needed"], again


def test_git_paths_refuse_a_local_change_unless_forced(repo: Path):
    (repo / "core" / "fetch.py").write_text("hotfix\n")
    refused = code(repo, paths=["core"], state="reverted", run_id="r1")
    assert refused["failed"] and "uncommitted changes that would be lost" in refused["msg"]
    assert (repo / "core" / "fetch.py").read_text() == "hotfix\n"
    # a local change outside the paths is not in the way
    (repo / "core" / "fetch.py").write_text("bad fetch\n")
    (repo / "README").write_text("local edit\n")
    done = code(repo, paths=["core"], state="reverted", run_id="r2")
    assert done["changed"], done
    assert (repo / "README").read_text() == "local edit\n"


def test_git_explicit_remove_and_a_path_the_ref_lacks(repo: Path):
    missing = code(repo, paths=["nowhere"], state="checked")
    assert missing["failed"] and "nowhere is not in release-1.0" in missing["msg"]
    escape = code(repo, paths=["../x"], state="checked")
    assert escape["failed"] and "must be relative" in escape["msg"]
    result = code(repo, remove=["core/dedup"], state="reverted", run_id="r1")
    assert result["changed"], result
    assert not (repo / "core" / "dedup").exists()
    assert "core/dedup/__init__.py" not in git(repo, "ls-files")
    assert (repo / "core" / "fetch.py").read_text() == "bad fetch\n"
    assert not code(repo, remove=["core/dedup"], state="reverted", run_id="r2")["changed"]


@pytest.fixture
def archived(tmp_path: Path) -> Path:
    """Seed 001 phase 11: two archives of the monoliths, the live ones changed since."""
    app = tmp_path / "app"
    core = app / "scripts" / "core"
    core.mkdir(parents=True)
    for stamp, text in (("20260110", "older"), ("20260120", "newest")):
        archive = app / "scripts" / "archive" / f"monoliths_{stamp}"
        archive.mkdir(parents=True)
        (archive / "scoring.py").write_text(f"{text} scoring\n")
        (archive / "trust.py").write_text(f"{text} trust\n")
        (archive / "notes.txt").write_text("not a script\n")
    (core / "scoring.py").write_text("unified scoring\n")
    (core / "scoring.py").chmod(0o750)
    return app


def test_archive_restores_the_newest_directory_by_its_stamp(archived: Path):
    args = dict(
        method="archive",
        archive_dir="scripts/archive/monoliths_*",
        archive_files="*.py",
        archive_to="scripts/core",
    )
    core = archived / "scripts" / "core"
    checked = code(archived, state="reverted", check_mode=True, **args)
    newest = f"{archived}/scripts/archive/monoliths_20260120"
    assert checked["changed"] and checked["target"]["archive"] == newest, checked
    assert f"archive {newest}" in checked["diff"]["after"]
    assert (core / "scoring.py").read_text() == "unified scoring\n"
    result = code(archived, state="reverted", run_id="r1", **args)
    assert result["changed"], result
    assert (core / "scoring.py").read_text() == "newest scoring\n"
    assert (core / "trust.py").read_text() == "newest trust\n"
    assert not (core / "notes.txt").exists()
    assert oct((core / "scoring.py").stat().st_mode & 0o777) == "0o750"  # mode kept
    with tarfile.open(result["snapshot"]["path"]) as tar:
        got = tar.extractfile("scripts/core/scoring.py")
        assert got is not None and got.read() == b"unified scoring\n"
    assert not code(archived, state="reverted", run_id="r2", **args)["changed"]
    older = code(archived, state="reverted", run_id="r3", backup_stamp="20260110", **args)
    assert older["target"]["archive"].endswith("monoliths_20260110"), older
    assert (core / "scoring.py").read_text() == "older scoring\n"
    none = code(archived, state="checked", **{**args, "archive_dir": "scripts/archive/x_*"})
    assert none["failed"] and "no archive directory scripts/archive/x_*" in none["msg"]
