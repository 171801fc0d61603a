# -*- coding: utf-8 -*-
# Config rows (rollback_app.config.rows): configuration the app keeps in its database, moved
# with its own commands (seed 002 strategy 2: manage.py dumpdata / loaddata). A dump's whole
# stdout goes to a file (in a backup set: rows/NAME, checksummed in its manifest); a load
# gets a private copy of the file its user can read, its path put where {file} is (literally,
# one pass, no shell). Runs through hooks.run (argv, as a user, in a directory, with an
# environment and a timeout). Used by the backup and configrows modules.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import pwd
import re
import shutil
import tempfile

from ansible_collections.rollback_ops.rollback.plugins.module_utils.hooks import run

FILE = re.compile(r"\{file\}")


class RowsError(Exception):
    """A dump or load failed: the message, one line, names the rows and the command."""


def _last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


def _spec(row, argv):
    return dict(
        command=[str(a) for a in argv],
        user=row.get("user") or "",
        chdir=row.get("chdir") or "",
        timeout=row.get("timeout") or 300,
        expect_rc=[0],
    )


def _env(row):
    return dict((str(k), str(v)) for k, v in (row.get("environment") or {}).items())


def _fail(row, what, argv, result):
    why = _last_line(result.get("stderr_tail")) or _last_line(result.get("stdout_tail"))
    raise RowsError(
        "config rows %s: %s %s %s%s"
        % (row.get("name"), what, argv[0], result["error"], (": " + why) if why else "")
    )


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dump(row, path):
    """Run ROW's dump, its stdout written to PATH (created 0600, removed on failure)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            result = run(_spec(row, row["dump"]), _env(row), stdout_file=handle)
            handle.flush()
            os.fsync(handle.fileno())
        if result.get("error"):
            _fail(row, "dump:", row["dump"], result)
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise


def load(row, source):
    """Run ROW's load with a private copy of SOURCE its user can read (removed after)."""
    user = row.get("user") or ""
    tmp = tempfile.mkdtemp(prefix="rollback-ops-rows-")
    try:
        copy = os.path.join(tmp, row["name"])
        shutil.copyfile(source, copy)
        os.chmod(copy, 0o600)
        if user:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise RowsError(
                    "config rows %s: user %s does not exist" % (row["name"], user)
                ) from None
            os.chown(tmp, entry.pw_uid, entry.pw_gid)
            os.chown(copy, entry.pw_uid, entry.pw_gid)
        argv = [FILE.sub(lambda m: copy, str(a)) for a in row["load"]]
        result = run(_spec(row, argv), _env(row))
        if result.get("error"):
            _fail(row, "load:", argv, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
