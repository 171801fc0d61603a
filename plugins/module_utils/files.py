# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style: pyproject.toml
# exempts plugins/ from the rules that need a newer Python)
"""Check, measure and replace files on a host without breaking links or leaving debris.

Shared host-side code of the modules that change or copy files (envfile through
``module_utils/envfile.py``, configrestore, code, containers, and the backup engine), imported
as ``ansible_collections.rollback_ops.rollback.plugins.module_utils.files`` (AnsiballZ ships
it with each module; the scheduled backup job gets a copy beside its package).
Python 3.6+ standard library only.

- ``file_problem``: refuses what an atomic replace would get wrong: a missing file (unless
  it may be created), something that is not a regular file, a file with several hard links.
- ``space_needs`` / ``space_problems`` (one file) and ``writes_space_needs`` /
  ``writes_space_problems`` (several, plus other files the same change writes): room for the
  backup copies beside the paths given, the temp files beside their final targets and a
  margin, per filesystem.
- ``safe_write``: replaces a file's final target atomically (a symlink is kept), keeps a
  backup copy beside the path given, creates a file that does not exist yet, and on any
  failure leaves the file as it was and no partial copy or temp file behind.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import hashlib
import os
import re
import stat
import tempfile
import time

MIB = 1024 * 1024


class FileError(Exception):
    """A file that cannot be replaced, or a failed write; the message names the file."""


def update_digest(digest, path):
    """Feed the bytes of the file at path (symlinks followed) to digest, 1 MiB at a time."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


def sha256(path):
    """The sha256 hex digest of the file at path (symlinks followed)."""
    return update_digest(hashlib.sha256(), path).hexdigest()


def file_problem(path, what="file", missing_ok=False):
    """None, or why path cannot be replaced in place, naming what it is and the path.

    Missing (unless missing_ok and its final directory exists: it will be created), not a
    regular file (after symlinks), or hard-linked (an atomic rename would split the names).
    """
    try:
        st = os.stat(path)
    except OSError:
        if not missing_ok:
            return "%s not found: %s" % (what, path)
        directory = os.path.dirname(os.path.realpath(path))
        if not os.path.isdir(directory):
            return "%s %s cannot be created: directory %s not found" % (what, path, directory)
        return None
    if not stat.S_ISREG(st.st_mode):
        return "%s %s is not a regular file" % (what, path)
    if st.st_nlink > 1:
        target = os.path.realpath(path)
        named = path if target == os.path.abspath(path) else "%s (-> %s)" % (path, target)
        return (
            "%s %s has %d hard links; rollback-ops will not break them apart (its atomic "
            "rename would leave the other names on the old content): remove the other links "
            "or edit it by hand" % (what, named, st.st_nlink)
        )
    return None


def _mib(size):
    return "%.1f MiB" % (size / MIB)


def _existing(directory):
    """directory, or its nearest existing parent (where a file made there would go)."""
    directory = os.path.abspath(directory)
    while not os.path.isdir(directory) and directory != os.path.dirname(directory):
        directory = os.path.dirname(directory)
    return directory


def free_bytes(directory):
    """Bytes free to an unprivileged writer in directory's filesystem (or its nearest parent's)."""
    st = os.statvfs(_existing(directory))
    return st.f_bavail * st.f_frsize


def _needs(writes, margin_mb, extra):
    """[(directory, free, needed, parts, paths)] per filesystem, in the order first met."""
    several = len(writes) > 1
    places = []
    for path, backup_size, temp_size in writes:
        of = " of %s" % path if several else ""
        if backup_size is not None:
            named_dir = os.path.dirname(os.path.abspath(path))
            places.append((named_dir, "backup copy" + of, backup_size, path))
        places.append((os.path.dirname(os.path.realpath(path)), "temp file" + of, temp_size, path))
    by_device = {}
    order = []
    for directory, what, size, path in places:
        directory = _existing(directory)
        device = os.stat(directory).st_dev
        if device not in by_device:
            by_device[device] = [directory, [], []]
            order.append(device)
        by_device[device][1].append((what, size))
        if path not in by_device[device][2]:
            by_device[device][2].append(path)
    for directory, what, size in extra:
        device = os.stat(_existing(directory)).st_dev
        if device in by_device:  # elsewhere, its own check applies
            by_device[device][1].append((what, size))
    out = []
    for device in order:
        directory, parts, paths = by_device[device]
        needed = sum(size for _what, size in parts) + margin_mb * MIB
        out.append((directory, free_bytes(directory), needed, parts, paths))
    return out


def writes_space_needs(writes, margin_mb=0, extra=()):
    """What replacing several files writes, per filesystem: [(directory, free, needed, parts)].

    writes: [(path, backup_size, temp_size)], backup_size None for no backup copy. The backup
    copy goes beside path (the name given, a symlink's own directory), the temp file beside
    its final target; each filesystem also keeps margin_mb free. extra: [(directory, what,
    size)] other files the same change writes (e.g. a snapshot), counted where they share a
    filesystem with the writes. parts: [(what, size)], what naming the path when several.
    All sizes are counted at once (conservative: temp files exist one at a time).
    """
    return [need[:4] for need in _needs(writes, margin_mb, extra)]


def writes_space_problems(writes, margin_mb=0, extra=()):
    """A message, naming the files and the numbers, per filesystem too small for the writes."""
    problems = []
    for directory, free, needed, parts, paths in _needs(writes, margin_mb, extra):
        if free < needed:
            what = " + ".join("%s %s" % (name, _mib(size)) for name, size in parts)
            problems.append(
                "only %s free beside %s (in %s), need %s: %s + margin %d MiB"
                % (_mib(free), ", ".join(paths), directory, _mib(needed), what, margin_mb)
            )
    return problems


def space_needs(path, backup_size, temp_size, margin_mb=0):
    """writes_space_needs for one file: [(directory, free, needed, parts)]."""
    return writes_space_needs([(path, backup_size, temp_size)], margin_mb)


def space_problems(path, backup_size, temp_size, margin_mb=0):
    """writes_space_problems for one file."""
    return writes_space_problems([(path, backup_size, temp_size)], margin_mb)


def backup_path(path):
    """<path>.backup.<UTC stamp>, with a counter when that name is taken."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate = "%s.backup.%s" % (path, stamp)
    n = 1
    while os.path.lexists(candidate):
        candidate = "%s.backup.%s.%d" % (path, stamp, n)
        n += 1
    return candidate


def _stamp_key(backup, stamp):
    """Sort key of a backup copy: its stamp's digits, then its mtime."""
    return (re.sub(r"\D", "", stamp), os.path.getmtime(backup))


def backup_copies(path, follow=True):
    """The backup copies of path that backup_path named, newest first (regular files only;
    with follow=False a symlink named like a copy is not one)."""
    prefix = os.path.basename(path) + ".backup."
    directory = os.path.dirname(path)
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return []
    found = [os.path.join(directory, n) for n in names]
    found = [p for p in found if os.path.isfile(p) and (follow or not os.path.islink(p))]
    found.sort(key=lambda p: _stamp_key(p, os.path.basename(p)[len(prefix) :]), reverse=True)
    return found


def find_backup(path, stamp=""):
    """The backup copy of path that backup_path named: <path>.backup.<stamp> when stamp is
    given (a name beside path, never a path elsewhere), else the newest one; "" when none."""
    if stamp:
        if "/" in stamp or stamp.startswith("."):
            return ""
        candidate = os.path.join(os.path.dirname(path), os.path.basename(path) + ".backup." + stamp)
        return candidate if os.path.isfile(candidate) else ""
    found = backup_copies(path)
    return found[0] if found else ""


def tree_size(paths):
    """Bytes in the regular files at paths, directories counted with all they hold."""
    total = 0
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            for root, _dirs, files in os.walk(path):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        elif os.path.isfile(path):
            total += os.path.getsize(path)
    return total


def _write(fd, data, mode, uid, gid, strict):
    """Write data to fd, give it mode and owner (None: unchanged), fsync, close.

    A chown refused for lack of privilege is skipped unless strict (an owner asked for)."""
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        st = os.fstat(fd)
        if (uid is not None and uid != st.st_uid) or (gid is not None and gid != st.st_gid):
            try:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            except OSError as exc:
                if strict or exc.errno != errno.EPERM:
                    raise
        os.fchmod(fd, mode)
        os.fsync(fd)


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def safe_write(
    path,
    old_data,
    new_data,
    backup=True,
    before_rename=None,
    mode=None,
    uid=None,
    gid=None,
    reference=None,
):
    """Replace path's final target with new_data atomically; return the backup copy's path.

    A symlink is kept: its final target is replaced (temp file in the target's directory,
    fsync, rename over the target). The backup copy ``<path>.backup.<stamp>`` is made beside
    the name given (the link's own directory) and holds old_data (None: the target's current
    bytes) with the target's mode, owner and times. The new content gets mode, uid and gid
    when given (a refused chown then fails), else the target's own. A path that does not
    exist yet is created (a dangling symlink's target; no backup copy, "" returned), with
    mode and owner from the overrides, else from reference (an os.stat_result), else the
    umask's mode and this process's owner. A hard-linked or non-regular target is refused.
    On any failure (ENOSPC included) the partial backup copy and the temp file are removed,
    the file is left as it was, and FileError names the file. before_rename(temp_path) may
    adjust the temp file (e.g. its SELinux context).
    """
    target = os.path.realpath(path)
    try:
        st = os.stat(target)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise FileError("could not read %s: %s; the file is unchanged" % (path, exc)) from exc
        st = None
    if st is not None and (not stat.S_ISREG(st.st_mode) or st.st_nlink > 1):
        raise FileError("%s; the file is unchanged" % file_problem(path))
    like = st if st is not None else reference
    strict = uid is not None or gid is not None
    if mode is None:
        mode = stat.S_IMODE(like.st_mode) if like is not None else 0o666 & ~_umask()
    if uid is None and like is not None:
        uid = like.st_uid
    if gid is None and like is not None:
        gid = like.st_gid
    copy = tmp = None
    step = "the backup copy"
    try:
        if backup and st is not None:
            if old_data is None:
                with open(target, "rb") as handle:
                    old_data = handle.read()
            copy = backup_path(path)
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            _write(fd, old_data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, False)
            os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
        step = "the temp file"
        fd, tmp = tempfile.mkstemp(prefix=".rollback-ops.", dir=os.path.dirname(target))
        _write(fd, new_data, mode, uid, gid, strict)
        if before_rename is not None:
            before_rename(tmp)
        step = "the new content"
        os.rename(tmp, target)
        tmp = None
    except BaseException as exc:
        for leftover in (tmp, copy):
            if leftover is not None:
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
        if not isinstance(exc, (OSError, IOError)):
            raise
        raise FileError(
            "could not write %s for %s: %s; the file is unchanged and no partial backup copy "
            "or temp file was left" % (step, path, exc)
        ) from exc
    for directory in set([os.path.dirname(target)] + ([os.path.dirname(copy)] if copy else [])):
        _fsync_dir(directory)
    return copy or ""
