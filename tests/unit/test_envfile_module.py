"""The env-file module (plugins/modules/envfile.py), run as Ansible runs it (own
process, JSON arguments, plugins/module_utils on ansible.module_utils' path) on real files.

The parser and editor themselves are tested in test_envfile_utils.py."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from tests.conftest import run_module
from tests.fingerprint import changes, fingerprint
from tests.unit.conftest import fill

MODULE = "plugins/modules/envfile.py"
SECRET_OLD = "old-Rbo-Secret-4711"
SECRET_NEW = "new-Rbo-Secret-0815"


def run(path: Path, check: bool = False, **args: object) -> dict:
    return run_module(MODULE, {"path": str(path), "_ansible_diff": True, **args}, check)


def masked(value: str) -> str:
    return f"<secret sha256:{hashlib.sha256(value.encode()).hexdigest()[:8]}>"


def backups(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".backup." in p.name)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".rollback-ops."))


# ----------------------------------------------------------------------------- guarantees


def test_set_backup_mode_owner_check_mode_and_second_run(tmp_path: Path):
    env = tmp_path / ".env"
    text = b"# c\r\nexport A='1' # keep\r\nB=2"
    env.write_bytes(text)
    env.chmod(0o640)
    if os.geteuid() == 0:
        os.chown(env, 1234, 5678)
    checked = run(env, check=True, values={"A": "9"})
    assert checked["changed"] is True
    assert checked["backup_file"] == ""
    assert env.read_bytes() == text
    assert backups(tmp_path) == []
    result = run(env, values={"A": "9"})
    assert result["changed"] is True, result
    assert result["before"] == {"A": "1"}
    assert result["after"] == {"A": "9"}
    assert result["changed_keys"] == ["A"]
    assert result["diff"]["before"] == "2: export A='1' # keep\n"
    assert result["diff"]["after"] == "2: export A='9' # keep\n"
    assert env.read_bytes() == b"# c\r\nexport A='9' # keep\r\nB=2"
    [copy] = backups(tmp_path)
    assert str(copy) == result["backup_file"]
    assert copy.read_bytes() == text
    for path in (env, copy):
        st = path.stat()
        assert st.st_mode & 0o777 == 0o640
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert leftovers(tmp_path) == []
    again = run(env, values={"A": "9"})
    assert again["changed"] is False
    assert again["backup_file"] == ""
    assert len(backups(tmp_path)) == 1


def test_missing_file_and_missing_key_fail_without_change(tmp_path: Path):
    result = run(tmp_path / "nope", values={"A": "1"})
    assert result["failed"] is True
    assert result["msg"] == f"env file not found: {tmp_path / 'nope'}"
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    result = run(env, values={"TYPO": "1"})
    assert result["msg"] == f"{env}: keys not present in the file: TYPO"
    assert env.read_text() == "A=1\n"


# ----------------------------------------------------------------------------- D4


def test_vertical_tab_and_form_feed_do_not_end_lines(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_bytes(b"FOO=tr\x0bue\nBAR=true\x0cOTHER=1\nZ=1\n")
    result = run(env, values={"FOO": "false", "BAR": "false"})
    assert result["changed"] is True, result
    assert env.read_bytes() == b"FOO=false\nBAR=false\nZ=1\n"
    assert result["diff"]["before"] == "1: FOO=tr\x0bue\n2: BAR=true\x0cOTHER=1\n"
    assert result["diff"]["after"] == "1: FOO=false\n2: BAR=false\n"


def test_control_characters_in_values_are_refused_naming_the_key(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("FOO=true\n")
    result = run(env, values={"FOO": "a\x0bb"})
    assert result["failed"] is True
    assert "the value for FOO holds the control character U+000B" in result["msg"]
    assert env.read_text() == "FOO=true\n"
    assert backups(tmp_path) == []


def test_a_key_inside_a_multiline_value_is_not_touched(tmp_path: Path):
    env = tmp_path / ".env"
    text = 'CERT="-----BEGIN-----\nB=x\n-----END-----"\nB=1\n'
    env.write_text(text)
    result = run(env, values={"B": "2"})
    assert result["changed"] is True, result
    assert env.read_text() == text.replace("B=1", "B=2")
    assert result["diff"]["before"] == "4: B=1\n"
    refused = run(env, values={"CERT": "x"})
    assert "CERT has a multi-line quoted value (lines 1-3)" in refused["msg"]
    env.write_text('CERT="-----BEGIN-----\nB=x\n-----END-----"\n')
    absent = run(env, values={"B": "2"})
    assert absent["msg"] == f"{env}: keys not present in the file: B"


def test_a_bom_before_the_first_key_is_kept(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_bytes(b"\xef\xbb\xbfA=1\nB=2\n")
    result = run(env, values={"A": "0"})
    assert result["changed"] is True, result
    assert result["before"] == {"A": "1"}
    assert env.read_bytes() == b"\xef\xbb\xbfA=0\nB=2\n"


# ----------------------------------------------------------------------------- D5


def test_a_symlink_is_kept_and_its_target_edited(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "app.env"
    target.write_text("A=1\n")
    target.chmod(0o600)
    app = tmp_path / "app"
    app.mkdir()
    link = app / ".env"
    link.symlink_to("../shared/app.env")
    result = run(link, values={"A": "2"})
    assert result["changed"] is True, result
    assert link.is_symlink()
    assert os.readlink(link) == "../shared/app.env"
    assert target.read_text() == "A=2\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert result["target"] == str(target)
    [copy] = backups(app)
    assert copy.read_text() == "A=1\n"
    assert not copy.is_symlink()
    assert copy.stat().st_mode & 0o777 == 0o600
    assert backups(shared) == []
    assert leftovers(shared) == []
    assert run(link, values={"A": "2"})["changed"] is False


def test_a_hard_linked_file_is_refused_before_any_change(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    os.link(env, tmp_path / "other-name")
    result = run(env, values={"A": "2"})
    assert result["failed"] is True
    assert f"env file {env} has 2 hard links; rollback-ops will not break them" in result["msg"]
    assert env.read_text() == "A=1\n"
    assert backups(tmp_path) == []
    assert os.stat(env).st_nlink == 2


# ----------------------------------------------------------------------------- D6


def test_too_little_room_for_copy_and_temp_file_is_refused_before_writing(tmpfs):
    # A 6.2 MiB file with 5.8 MiB free: the backup copy used to be cut short by ENOSPC and
    # left behind. Now the room for the copy, the temp file and the margin is checked first.
    small = tmpfs("12m")
    env = small / ".env"
    text = "A=1\n" + "#" * 6_500_000 + "\n"
    env.write_text(text)
    result = run(env, values={"A": "2"})
    assert result.get("failed") is True, result
    assert f"MiB free beside {env}" in result["msg"]
    assert "need 22.4 MiB: backup copy 6.2 MiB + temp file 6.2 MiB + margin 10 MiB" in result["msg"]
    assert sorted(p.name for p in small.iterdir()) == [".env"]
    assert env.read_text() == text


def test_a_failure_while_writing_leaves_no_partial_copy_or_temp_file(tmp_path: Path, tmpfs):
    # The target's filesystem has bytes to spare but no inode left: the space check passes,
    # the temp file cannot be created (ENOSPC) after the backup copy was made beside the link.
    small = tmpfs("16m", inodes=16)
    target = small / "app.env"
    target.write_text("A=1\n")
    for n in range(64):
        try:
            (small / f"filler{n}").touch()
        except OSError:
            break
    link = tmp_path / ".env"
    link.symlink_to(target)
    result = run(link, values={"A": "2"})
    assert result["failed"] is True, result
    assert f"could not write the temp file for {link}" in result["msg"]
    assert "No space left on device" in result["msg"]
    assert backups(tmp_path) == []
    assert leftovers(small) == []
    assert target.read_text() == "A=1\n"
    assert link.is_symlink()


# ----------------------------------------------------------------------------- D12


def test_secret_values_are_masked_everywhere(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text(f"PARTNER_API_KEY={SECRET_OLD}\nFLAG=on\n")
    args = {"values": {"FLAG": "off"}, "secret_values": {"PARTNER_API_KEY": SECRET_NEW}}
    result = run(env, **args)
    assert result["changed"] is True, result
    assert env.read_text() == f"PARTNER_API_KEY={SECRET_NEW}\nFLAG=off\n"
    out = json.dumps(result)
    assert SECRET_OLD not in out
    assert SECRET_NEW not in out
    assert result["before"] == {"FLAG": "on", "PARTNER_API_KEY": masked(SECRET_OLD)}
    assert result["after"] == {"FLAG": "off", "PARTNER_API_KEY": masked(SECRET_NEW)}
    assert result["secret_keys"] == ["PARTNER_API_KEY"]
    assert result["diff"]["before"] == f"1: PARTNER_API_KEY={masked(SECRET_OLD)}\n2: FLAG=on\n"
    assert result["diff"]["after"] == f"1: PARTNER_API_KEY={masked(SECRET_NEW)}\n2: FLAG=off\n"
    assert run(env, **args)["changed"] is False


def test_a_secret_key_given_in_values_is_masked_too(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text(f"DB_PASSWORD={SECRET_OLD}\nDATABASE_URL=postgres://u:{SECRET_OLD}@h/db\n")
    result = run(
        env,
        values={"DB_PASSWORD": SECRET_NEW, "DATABASE_URL": f"postgres://u:{SECRET_NEW}@h/db"},
        secret_keys=["*PASSWORD*", "DATABASE_URL"],
    )
    assert result["changed"] is True, result
    out = json.dumps(result)
    assert SECRET_OLD not in out
    assert SECRET_NEW not in out
    assert result["after"]["DB_PASSWORD"] == masked(SECRET_NEW)
    assert result["invocation"]["module_args"]["values"]["DB_PASSWORD"] == masked(SECRET_NEW)


def test_a_key_in_both_values_and_secret_values_is_refused(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("API_KEY=x\n")
    result = run(env, values={"API_KEY": "a"}, secret_values={"API_KEY": SECRET_NEW})
    assert result["failed"] is True
    assert "API_KEY given in both values and secret_values" in result["msg"]
    assert SECRET_NEW not in json.dumps(result)
    assert env.read_text() == "API_KEY=x\n"


# ----------------------------------------------------------------------------- main(): issue 15


def test_check_mode_writes_nothing_anywhere_under_the_directory(tmp_path: Path):
    # Names, bytes, modes, owners, mtimes and inodes of everything around the file: no
    # copy, no temp file made and removed again (the directory's mtime would move).
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "app.env"
    target.write_text(f"PARTNER_API_KEY={SECRET_OLD}\nFLAG=on\n")
    (tmp_path / ".env").symlink_to(target)
    before = fingerprint(tmp_path)
    args = {"values": {"FLAG": "off"}, "secret_values": {"PARTNER_API_KEY": SECRET_NEW}}
    result = run(tmp_path / ".env", check=True, **args)
    assert result["changed"] is True and sorted(result["changed_keys"]) == [
        "FLAG",
        "PARTNER_API_KEY",
    ]
    assert result["backup_file"] == ""
    assert changes(before, fingerprint(tmp_path)) == []


def test_the_change_is_a_rename_over_the_file_after_a_copy_of_its_old_bytes(tmp_path: Path):
    env = tmp_path / ".env"
    old = f"# app\nDB_PASSWORD={SECRET_OLD}\nFLAG=on\n".encode()
    env.write_bytes(old)
    inode = env.stat().st_ino
    result = run(env, values={"FLAG": "off"}, secret_values={"DB_PASSWORD": SECRET_NEW})
    assert result["changed"] is True, result
    copy = Path(result["backup_file"])
    assert copy.parent == tmp_path and copy.name.startswith(".env.backup.")
    assert copy.read_bytes() == old  # the old bytes, kept beside the file
    assert env.read_bytes() == f"# app\nDB_PASSWORD={SECRET_NEW}\nFLAG=off\n".encode()
    # replaced by a rename: a new inode under the name, the old one now only the copy's bytes
    assert env.stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env", copy.name]
    assert SECRET_OLD not in copy.name and SECRET_NEW not in copy.name


def test_a_full_disk_in_the_middle_of_the_write_leaves_the_old_file(tmpfs):
    # The space check counts bytes; the filesystem hands out whole pages. A 4097-byte file
    # needs two pages for its copy and two for its temp file, 8194 bytes by the check: with
    # three pages free the check passes, the copy is written and the temp file's second page
    # fails with ENOSPC. The file must stay as it was, with no partial copy or temp file.
    small = tmpfs("64k")
    env = small / ".env"
    old = b"A=1\n" + b"#" * 4092 + b"\n"
    env.write_bytes(old)
    page = fill(small, pages_free=3)
    assert os.statvfs(small).f_bavail * page == 3 * page
    before = fingerprint(small)
    result = run(env, values={"A": "2"}, min_free_mb=0)
    assert result.get("failed") is True, result
    assert f"could not write the temp file for {env}" in result["msg"], result["msg"]
    assert "No space left on device" in result["msg"]
    assert env.read_bytes() == old
    # nothing changed but the directory's mtime (a copy and a temp file made and removed)
    assert [name for name, *_ in changes(before, fingerprint(small))] in ([], ["."])
    assert backups(small) == [] and leftovers(small) == []


def test_a_secret_value_is_masked_even_where_another_key_holds_it(tmp_path: Path):
    # Ansible masks every occurrence of a no_log option's values in the module's output: a
    # secret that also stands under a plain key (copied there by hand) stays hidden in the
    # diff and in before. This holds only while secret_values is no_log.
    env = tmp_path / ".env"
    env.write_text(f"PARTNER_API_KEY=old\nNOTE={SECRET_NEW}\n")
    result = run(env, values={"NOTE": "x"}, secret_values={"PARTNER_API_KEY": SECRET_NEW})
    assert result["changed"] is True, result
    assert SECRET_NEW not in json.dumps(result)
    assert result["diff"]["before"].startswith("1: PARTNER_API_KEY=<secret sha256:")
    assert "2: NOTE=********" in result["diff"]["before"]


# ----------------------------------------------------------------------------- what it reports


def test_duplicates_are_warned_and_the_diff_is_headed_with_the_path(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\nB=2\nA=1\n")
    result = run(env, values={"A": "0"})
    assert result["changed"] is True
    assert f"{env}: A is assigned more than once; every assignment was set" in str(
        result["warnings"]
    )
    header = f"{env} (changed lines only)"
    assert result["diff"] == {
        "before_header": header,
        "after_header": header,
        "before": "1: A=1\n3: A=1\n",
        "after": "1: A=0\n3: A=0\n",
    }
    assert env.read_text() == "A=0\nB=2\nA=0\n"


def test_a_diff_only_in_diff_mode_and_only_for_a_change(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    quiet = run_module(MODULE, {"path": str(env), "values": {"A": "2"}}, True)
    assert quiet["changed"] is True and "diff" not in quiet
    same = run(env, values={"A": "1"})
    assert same["changed"] is False and "diff" not in same
    assert env.read_text() == "A=1\n"


def test_a_failure_reports_nothing_changed(tmp_path: Path):
    missing = run(tmp_path / "absent.env", values={"A": "1"})
    assert missing["failed"] is True and missing["changed"] is False
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    unknown = run(env, values={"NOPE": "1"})
    assert unknown["failed"] is True and unknown["changed"] is False
    assert unknown["msg"] == f"{env}: keys not present in the file: NOPE"
    both = run(env, values={"A": "1"}, secret_values={"A": "Rbo-distinct-7f3"})
    assert both["msg"] == f"{env}: A given in both values and secret_values"
    assert both["changed"] is False
    no_path = run_module(MODULE, {"values": {"A": "1"}})
    assert no_path["failed"] is True and "path" in no_path["msg"]
    assert env.read_text() == "A=1\n"
