"""The config restore module (plugins/modules/configrestore.py), run by Ansible
itself (`ansible localhost -m`, so AnsiballZ ships the backupset package and files.py
from plugins/module_utils), on real backup sets and files in a temp directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COLLECTIONS, ROOT, load_module, run_module
from tests.fingerprint import changes, fingerprint
from tests.unit.conftest import fill

rbs = load_module("plugins/module_utils/backupset")
RESTORE = "plugins/modules/configrestore.py"
GOOD = b"recommendation_model: v1\ncache_ttl: 300\n"
BAD = b"recommendation_model: v2-experimental\ncache_ttl: 300\n"


def configrestore(root: Path, paths: list[Path], check_mode: bool = False, **kw: object) -> dict:
    """One module call through `ansible localhost -m`; its result."""
    args = {"root": str(root), "app": "shop", "files": [str(p) for p in paths], **kw}
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_STDOUT_CALLBACK": "minimal",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }
    argv = [
        str(Path(sys.executable).parent / "ansible"),
        "localhost",
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-m",
        "rollback_ops.rollback.configrestore",
        "-a",
        json.dumps(args),
    ] + (["--check"] if check_mode else [])
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    status, arrow, out = proc.stdout.partition(" => ")
    assert arrow, proc.stdout + proc.stderr
    # the callback shows the outcome beside the host ("localhost | FAILED!"), not in the JSON
    return {**json.loads(out), "failed": status.endswith("FAILED!")}


@pytest.fixture
def deployed(tmp_path: Path) -> dict:
    """settings.yml reached through a symlink into a shared directory (mode 0640, owner
    1234:5678 as root), in a verified set; then a bad config deployed with another mode."""
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "settings.yml"
    target.write_bytes(GOOD)
    target.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(target, 1234, 5678)
    etc = tmp_path / "etc"
    etc.mkdir()
    link = etc / "settings.yml"
    link.symlink_to("../shared/settings.yml")
    plain = etc / "plain.yml"
    plain.write_bytes(b"plain: 1\n")
    root = tmp_path / "backups"
    manifest = rbs.create_set(str(root), "shop", "predeploy", [], [str(link), str(plain)])
    assert manifest["verification"]["ok"], manifest
    target.write_bytes(BAD)
    target.chmod(0o600)
    plain.write_bytes(b"plain: 2\n")
    return {"root": root, "link": link, "target": target, "plain": plain, "etc": etc}


def copies(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".backup." in p.name)


def test_a_symlinked_config_keeps_its_link_and_its_target_gets_the_sets_copy(deployed: dict):
    root, link, target, etc = (
        deployed["root"],
        deployed["link"],
        deployed["target"],
        deployed["etc"],
    )
    checked = configrestore(root, [link], check_mode=True, state="restored")
    assert checked["changed"] and checked["differs"] == [str(link)], checked
    assert target.read_bytes() == BAD and copies(etc) == []

    result = configrestore(root, [link], state="restored")
    assert result["changed"], result
    assert link.is_symlink() and os.readlink(link) == "../shared/settings.yml"
    assert target.read_bytes() == GOOD
    st = target.stat()
    assert st.st_mode & 0o7777 == 0o640  # as the manifest recorded
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    [copy] = copies(etc)  # beside the link, with the replaced target's bytes and mode
    assert result["backup_files"] == [str(copy)]
    assert copy.name.startswith("settings.yml.backup.") and not copy.is_symlink()
    assert copy.read_bytes() == BAD and copy.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings.yml"]

    again = configrestore(root, [link], state="restored")
    assert not again["changed"] and not again["needed"], again
    assert len(copies(etc)) == 1


def test_a_hard_linked_config_is_refused_in_the_check_before_any_change(deployed: dict):
    root, plain, etc = deployed["root"], deployed["plain"], deployed["etc"]
    os.link(plain, etc.parent / "plain-elsewhere.yml")
    paths = [deployed["link"], plain]
    for state in ("checked", "restored"):
        result = configrestore(root, paths, state=state)
        assert result["failed"], result
        assert (
            f"config: config file {plain} has 2 hard links; rollback-ops will not break them "
            "apart" in result["msg"]
        )
    # nothing changed, not even the other file of the list
    assert deployed["target"].read_bytes() == BAD
    assert plain.read_bytes() == b"plain: 2\n" and plain.stat().st_nlink == 2
    assert copies(etc) == []


def test_too_little_room_is_refused_in_the_check_naming_the_file(deployed: dict):
    root, link = deployed["root"], deployed["link"]
    result = configrestore(root, [link], state="restored", min_free_mb=1 << 40)
    assert result["failed"], result
    assert f"free beside {link} (in {deployed['etc']})" in result["msg"]
    assert "backup copy 0.0 MiB" in result["msg"] and "temp file 0.0 MiB" in result["msg"]
    assert deployed["target"].read_bytes() == BAD and copies(deployed["etc"]) == []


def test_a_removed_config_is_created_with_the_recorded_mode(deployed: dict):
    plain = deployed["plain"]
    mode = plain.stat().st_mode & 0o777
    plain.unlink()
    result = configrestore(deployed["root"], [plain], state="restored")
    assert result["changed"] and result["backup_files"] == [], result
    assert plain.read_bytes() == b"plain: 1\n" and plain.stat().st_mode & 0o777 == mode


# ----------------------------------------------------------------------------- main(): issue 15
# run as Ansible runs a module (tests/conftest.run_module), on sets made by the same engine

SECRET_OLD = "old-Rbo-Config-4711"
SECRET_NEW = "new-Rbo-Config-0815"


def restore_args(root: Path, paths: list[Path], **kw: object) -> dict:
    return {"root": str(root), "app": "shop", "files": [str(p) for p in paths], **kw}


def saved(tmp_path: Path, files: dict[str, bytes], deployed: dict[str, bytes]) -> dict:
    """The files written and put in a verified set, then the deployed bytes written over them."""
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = etc / name
        paths[name].write_bytes(data)
        paths[name].chmod(0o640)
    root = tmp_path / "backups"
    manifest = rbs.create_set(str(root), "shop", "predeploy", [], [str(p) for p in paths.values()])
    assert manifest["verification"]["ok"], manifest
    for name, data in deployed.items():
        paths[name].write_bytes(data)
    return {"root": root, "etc": etc, **paths}


def test_check_mode_of_a_restore_writes_nothing_in_the_tree(tmp_path: Path):
    made = saved(tmp_path, {"settings.yml": GOOD}, {"settings.yml": BAD})
    before = fingerprint(tmp_path)  # the live files and the backup sets alike
    args = restore_args(made["root"], [made["settings.yml"]], state="restored")
    result = run_module(RESTORE, args, check_mode=True)
    assert result["changed"] and result["differs"] == [str(made["settings.yml"])], result
    assert "backup_files" not in result
    assert changes(before, fingerprint(tmp_path)) == []


def test_a_restore_copies_the_old_bytes_then_renames_the_sets_copy_over_the_file(tmp_path: Path):
    made = saved(tmp_path, {"settings.yml": GOOD}, {"settings.yml": BAD})
    live = made["settings.yml"]
    inode = live.stat().st_ino
    result = run_module(RESTORE, restore_args(made["root"], [live], state="restored"))
    assert result["changed"], result
    [copy] = copies(made["etc"])
    assert result["backup_files"] == [str(copy)]
    assert copy.read_bytes() == BAD  # what was live before the restore
    assert live.read_bytes() == GOOD and live.stat().st_ino != inode  # a rename, not in place
    assert sorted(p.name for p in made["etc"].iterdir()) == sorted([live.name, copy.name])


def test_a_full_disk_in_the_middle_of_a_restore_leaves_the_file(tmp_path: Path, tmpfs):
    # As for the env file: three pages free pass the byte count of a 4097-byte copy and temp
    # file (8194 bytes), the copy takes two, the temp file's second page fails (ENOSPC).
    small = tmpfs("64k")
    live = small / "settings.yml"
    good, bad = b"a: 1\n" + b"#" * 4092, b"a: 2\n" + b"#" * 4092
    live.write_bytes(good)
    root = tmp_path / "backups"
    manifest = rbs.create_set(str(root), "shop", "predeploy", [], [str(live)])
    assert manifest["verification"]["ok"], manifest
    live.write_bytes(bad)
    fill(small, pages_free=3)
    before = fingerprint(small)
    result = run_module(RESTORE, restore_args(root, [live], state="restored", min_free_mb=0))
    assert result.get("failed") is True, result
    assert f"could not write the temp file for {live}" in result["msg"], result["msg"]
    assert live.read_bytes() == bad
    # nothing changed but the directory's mtime (a copy and a temp file made and removed)
    assert [name for name, *_ in changes(before, fingerprint(small))] in ([], ["."])


def test_a_restored_secret_is_never_in_the_result(tmp_path: Path):
    # The diff holds the changed lines only, and of a secret key only a hash of its value.
    made = saved(
        tmp_path,
        {".env": f"FLAG=on\nDB_PASSWORD={SECRET_OLD}\n".encode(), "app.yml": b"api_token: a\n"},
        {".env": f"FLAG=off\nDB_PASSWORD={SECRET_NEW}\n".encode(), "app.yml": b"api_token: b\n"},
    )
    args = restore_args(made["root"], [made[".env"], made["app.yml"]], state="restored")
    for check_mode in (True, False):
        result = run_module(RESTORE, {**args, "_ansible_diff": True}, check_mode=check_mode)
        assert result["changed"], result
        out = json.dumps(result)
        assert SECRET_OLD not in out and SECRET_NEW not in out, result["diff"]
        [env_diff, yml_diff] = result["diff"]
        assert env_diff["before"].startswith("1: FLAG=off\n2: DB_PASSWORD=<secret sha256:")
        assert env_diff["after"].startswith("1: FLAG=on\n2: DB_PASSWORD=<secret sha256:")
        assert yml_diff["before"].startswith("1: api_token: <secret sha256:")
    for copy in copies(made["etc"]):
        assert SECRET_OLD not in copy.name and SECRET_NEW not in copy.name
    assert made[".env"].read_bytes() == f"FLAG=on\nDB_PASSWORD={SECRET_OLD}\n".encode()
