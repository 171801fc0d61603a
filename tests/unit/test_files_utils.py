"""The shared file operations (plugins/module_utils/files.py): refusals, space checks
and the safe write, on real files (a real tmpfs for a full disk)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import load_module
from tests.requirements import need

files = load_module("plugins/module_utils/files.py")


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ----------------------------------------------------------------------------- checks


def test_file_problem_names_what_and_the_path(tmp_path: Path):
    conf = tmp_path / "app.yml"
    conf.write_text("a: 1\n")
    assert files.file_problem(str(conf)) is None
    assert files.file_problem(str(tmp_path / "nope"), "config file") == (
        f"config file not found: {tmp_path}/nope"
    )
    assert files.file_problem(str(tmp_path), "code file") == (
        f"code file {tmp_path} is not a regular file"
    )
    link = tmp_path / "link.yml"
    link.symlink_to(conf)
    assert files.file_problem(str(link)) is None
    os.link(conf, tmp_path / "other")
    assert files.file_problem(str(conf), "config file") == (
        f"config file {conf} has 2 hard links; rollback-ops will not break them apart (its "
        "atomic rename would leave the other names on the old content): remove the other "
        "links or edit it by hand"
    )
    # through a symlink, both names are given
    assert f"file {link} (-> {conf}) has 2 hard links" in files.file_problem(str(link))


def test_a_missing_file_may_be_created_where_its_directory_exists(tmp_path: Path):
    assert files.file_problem(str(tmp_path / "new.yml"), missing_ok=True) is None
    dangling = tmp_path / "dangling.yml"
    dangling.symlink_to(tmp_path / "shared" / "app.yml")
    assert files.file_problem(str(dangling), "config file", missing_ok=True) == (
        f"config file {dangling} cannot be created: directory {tmp_path}/shared not found"
    )
    (tmp_path / "shared").mkdir()
    assert files.file_problem(str(dangling), missing_ok=True) is None


def test_sha256_follows_symlinks(tmp_path: Path):
    data = b"x" * (3 << 20)  # more than one read block
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "l").symlink_to("f")
    assert files.sha256(str(tmp_path / "l")) == hashlib.sha256(data).hexdigest()


def test_update_digest_feeds_a_digest_that_hashes_more(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"y" * (2 << 20))
    digest = hashlib.sha256(b"header\n")
    assert files.update_digest(digest, str(tmp_path / "f")) is digest
    assert digest.hexdigest() == hashlib.sha256(b"header\n" + b"y" * (2 << 20)).hexdigest()


def test_find_backup_finds_the_newest_copy_or_the_one_stamped(tmp_path: Path):
    conf = tmp_path / "app.yml"
    assert files.find_backup(str(conf)) == ""
    for stamp in ("20250101T000000Z", "20250301T000000Z", "20250201T000000Z"):
        (tmp_path / f"app.yml.backup.{stamp}").write_text(stamp)
    (tmp_path / "app.yml.backup.20990101T000000Z").mkdir()  # not a file: never a backup
    (tmp_path / "other.yml.backup.20260101T000000Z").write_text("x")
    assert files.find_backup(str(conf)) == f"{conf}.backup.20250301T000000Z"
    assert files.find_backup(str(conf), "20250101T000000Z") == f"{conf}.backup.20250101T000000Z"
    assert files.find_backup(str(conf), "20240101T000000Z") == ""
    # a stamp names a copy beside the file, never a path elsewhere
    assert files.find_backup(str(conf), "../../etc/passwd") == ""
    assert files.find_backup(str(tmp_path / "missing-dir" / "x")) == ""
    # the counter backup_path adds when a name is taken sorts after the stamp it extends
    (tmp_path / "app.yml.backup.20250301T000000Z.1").write_text("later")
    assert files.find_backup(str(conf)) == f"{conf}.backup.20250301T000000Z.1"


def test_tree_size_counts_files_and_directories_but_not_links(tmp_path: Path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"a" * 10)
    (tmp_path / "d" / "sub" / "b").write_bytes(b"b" * 5)
    (tmp_path / "f").write_bytes(b"f" * 7)
    (tmp_path / "link").symlink_to(tmp_path / "d")
    paths = [str(tmp_path / n) for n in ("d", "f", "missing")]
    assert files.tree_size(paths) == 22
    assert files.tree_size([str(tmp_path / "link")]) == 0


def test_backup_path_counts_up_when_the_name_is_taken(tmp_path: Path):
    conf = tmp_path / "app.yml"
    first = files.backup_path(str(conf))
    assert first.startswith(f"{conf}.backup.") and first.endswith("Z")
    Path(first).symlink_to("nowhere")  # taken, even by a dangling link
    second = files.backup_path(str(conf))
    assert second == f"{first}.1" or second[: len(first)] != first  # unless the second ticked
    assert not os.path.lexists(second)


def test_space_needs_count_the_copy_beside_the_link_and_the_temp_file_beside_the_target(
    tmp_path: Path,
):
    conf = tmp_path / "app.yml"
    conf.write_text("a: 1\n")
    [(directory, free, needed, parts)] = files.space_needs(str(conf), 100, 120, 1)
    assert directory == str(tmp_path)
    assert needed == 220 + files.MIB
    assert parts == [("backup copy", 100), ("temp file", 120)]
    assert free == files.free_bytes(str(tmp_path)) > 0
    assert files.space_problems(str(conf), 100, 120, 0) == []
    # a directory not made yet is measured on its nearest existing parent
    assert files.free_bytes(str(tmp_path / "not" / "yet")) > 0


def test_several_writes_and_a_snapshot_on_one_small_filesystem_are_summed(tmpfs):
    small = tmpfs("1m")
    one, two = small / "one.yml", small / "two.yml"
    one.write_bytes(b"1" * 200_000)
    two.write_bytes(b"2" * 200_000)
    writes = [(str(one), 200_000, 200_000), (str(two), None, 200_000)]
    elsewhere = [("/", "snapshot", 1 << 40)]  # another filesystem: its own check applies
    [(_directory, _free, needed, parts)] = files.writes_space_needs(writes, 0, elsewhere)
    assert needed == 600_000
    assert parts == [
        (f"backup copy of {one}", 200_000),
        (f"temp file of {one}", 200_000),
        (f"temp file of {two}", 200_000),
    ]
    [problem] = files.writes_space_problems(writes, 0, [(str(small), "snapshot", 200_000)])
    assert problem.startswith("only 0.")
    assert f"MiB free beside {one}, {two} (in {small}), need 0.8 MiB: " in problem
    assert problem.endswith(f"temp file of {two} 0.2 MiB + snapshot 0.2 MiB + margin 0 MiB")


# ----------------------------------------------------------------------------- safe_write


def test_a_symlink_is_kept_its_target_edited_and_the_copy_made_beside_the_link(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "app.yml"
    target.write_bytes(b"a: 1\n")
    target.chmod(0o640)
    os.utime(target, ns=(1_000_000_000, 2_000_000_000))
    if os.geteuid() == 0:
        os.chown(target, 1234, 5678)
    app = tmp_path / "app"
    app.mkdir()
    link = app / "app.yml"
    link.symlink_to("../shared/app.yml")
    inode = target.stat().st_ino
    copy = Path(files.safe_write(str(link), None, b"a: 2\n"))
    assert link.is_symlink() and os.readlink(link) == "../shared/app.yml"
    assert target.read_bytes() == b"a: 2\n"
    assert target.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert copy.parent == app and copy.name.startswith("app.yml.backup.")
    assert not copy.is_symlink() and copy.read_bytes() == b"a: 1\n"  # the target's bytes
    assert copy.stat().st_mtime_ns == 2_000_000_000
    for path in (target, copy):
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert names(shared) == ["app.yml"]  # no temp file left


def test_mode_and_owner_overrides_apply_to_the_new_content_not_the_copy(tmp_path: Path):
    need(os.geteuid() == 0, "setting another owner needs root")
    conf = tmp_path / "app.yml"
    conf.write_bytes(b"a: 1\n")
    conf.chmod(0o600)
    copy = Path(files.safe_write(str(conf), b"a: 1\n", b"a: 2\n", mode=0o640, uid=42, gid=43))
    st = conf.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 42, 43)
    st = copy.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)


def test_a_missing_file_is_created_from_a_reference_or_the_overrides(tmp_path: Path):
    reference = tmp_path / "app.yml.backup.1"
    reference.write_bytes(b"old\n")
    reference.chmod(0o751)
    made = tmp_path / "app.yml"
    assert files.safe_write(str(made), None, b"old\n", reference=reference.stat()) == ""
    assert made.read_bytes() == b"old\n"
    assert stat.S_IMODE(made.stat().st_mode) == 0o751
    assert names(tmp_path) == ["app.yml", "app.yml.backup.1"]  # no copy of nothing
    # a dangling symlink: its target is created and the link kept
    (tmp_path / "shared").mkdir()
    link = tmp_path / "link.yml"
    link.symlink_to("shared/real.yml")
    assert files.safe_write(str(link), None, b"new\n", mode=0o604) == ""
    assert link.is_symlink() and (tmp_path / "shared" / "real.yml").read_bytes() == b"new\n"
    assert stat.S_IMODE((tmp_path / "shared" / "real.yml").stat().st_mode) == 0o604


def test_a_hard_linked_file_is_refused_and_left_alone(tmp_path: Path):
    conf = tmp_path / "app.yml"
    conf.write_bytes(b"a: 1\n")
    os.link(conf, tmp_path / "other")
    with pytest.raises(files.FileError, match=f"file {conf} has 2 hard links"):
        files.safe_write(str(conf), None, b"a: 2\n")
    assert conf.read_bytes() == (tmp_path / "other").read_bytes() == b"a: 1\n"
    assert conf.stat().st_nlink == 2
    assert names(tmp_path) == ["app.yml", "other"]


def test_a_failing_hook_removes_the_copy_and_the_temp_file(tmp_path: Path):
    conf = tmp_path / "app.yml"
    conf.write_bytes(b"a: 1\n")

    def refuse(tmp: str) -> None:
        assert Path(tmp).read_bytes() == b"a: 2\n"
        raise PermissionError(13, "context refused", tmp)

    with pytest.raises(files.FileError, match=f"could not write the temp file for {conf}"):
        files.safe_write(str(conf), None, b"a: 2\n", before_rename=refuse)
    assert names(tmp_path) == ["app.yml"]
    assert conf.read_bytes() == b"a: 1\n"


def test_a_full_disk_while_copying_leaves_no_partial_copy(tmpfs):
    # The copy itself does not fit (safe_write does not check the space: the modules do).
    small = tmpfs("1m")
    conf = small / "app.yml"
    old = b"a: 1\n" + b"#" * 600_000 + b"\n"
    conf.write_bytes(old)
    with pytest.raises(files.FileError) as info:
        files.safe_write(str(conf), None, old.replace(b"a: 1", b"a: 2"))
    assert f"could not write the backup copy for {conf}" in str(info.value)
    assert "No space left on device" in str(info.value)
    assert "the file is unchanged and no partial backup copy or temp file was left" in str(
        info.value
    )
    assert names(small) == ["app.yml"]
    assert conf.read_bytes() == old


def test_a_full_disk_for_the_temp_file_removes_the_copy_made_beside_the_link(tmp_path: Path, tmpfs):
    small = tmpfs("1m")
    target = small / "app.yml"
    old = b"a: 1\n" + b"#" * 600_000 + b"\n"
    target.write_bytes(old)
    link = tmp_path / "app.yml"
    link.symlink_to(target)
    with pytest.raises(files.FileError, match="could not write the temp file"):
        files.safe_write(str(link), old, old.replace(b"a: 1", b"a: 2"))
    assert [p for p in names(tmp_path) if p.startswith("app.yml")] == ["app.yml"]
    assert names(small) == ["app.yml"]
    assert target.read_bytes() == old and link.is_symlink()
