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

from tests.conftest import COLLECTIONS, ROOT, load_module

rbs = load_module("plugins/module_utils/backupset")
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
