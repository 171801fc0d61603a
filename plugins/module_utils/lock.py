# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""The host's rollback lock: one rollback at a time on a host.

Shared host-side code of the preflight module (which takes the lock) and the unlock module
(which reads, releases or clears it). Python 3.6+ standard library only.

The lock is a JSON file (``DEFAULT_LOCK_PATH``) holding the record of the run that holds it:
``run_id``, ``operator``, ``controller``, ``pid`` and ``pid_start`` (the rollback-ops process
on the controller, so the controller can tell a live holder from a dead one), ``since`` (UTC,
ISO 8601) and ``epoch`` (unix time). On the host, a lock older than the preflight's
``lock_max_age`` was left by a dead run (``is_live``).

- ``read_lock``, ``lock_record``, ``describe``, ``lock_age``, ``is_live``: the record.
- ``take_lock``: create the lock atomically, failing when another run made it first.
- ``acquire``: take it for a run, renew the run's own, or take over a dead run's.
- ``release``: remove it when a run holds it, or clear whoever's lock it is.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import json
import os
import tempfile
import time

DEFAULT_LOCK_PATH = "/var/lib/rollback-ops/rollback.lock"


def read_lock(path):
    """The lock's record, or {} when there is none or it cannot be read as a JSON object."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_record(run_id, operator="", controller="", pid=0, pid_start=""):
    """The record a run writes in the lock, stamped now."""
    return dict(
        run_id=run_id,
        operator=operator,
        controller=controller,
        pid=pid,
        pid_start=pid_start,
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        epoch=time.time(),
    )


def describe(held):
    """The holder in words: run, operator, controller, pid, since."""
    return "run %s of %s from %s (pid %s) since %s" % (
        held.get("run_id"),
        held.get("operator"),
        held.get("controller"),
        held.get("pid", "?"),
        held.get("since"),
    )


def lock_age(held):
    """Seconds since the lock was taken (infinite when its epoch is missing or unreadable)."""
    try:
        return time.time() - float(held["epoch"])
    except (KeyError, TypeError, ValueError):
        return float("inf")


def is_live(held, max_age_minutes):
    """Whether held is a lock of a run still taken as alive (younger than max_age_minutes)."""
    return bool(held) and lock_age(held) < max_age_minutes * 60


def _write_temp(directory, record):
    """A temp file in directory holding record as JSON, flushed to disk; returns its path."""
    fd, tmp = tempfile.mkstemp(prefix=".lock.", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def take_lock(path, record):
    """Create the lock atomically: a link that fails when the file exists (no read-then-write
    race between two runs). Returns (taken, held): held is the lock in the way."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    tmp = _write_temp(directory, record)
    try:
        try:
            os.link(tmp, path)
            return True, {}
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        return False, read_lock(path)
    finally:
        os.unlink(tmp)


def write_lock(path, record):
    """Replace the lock with record atomically (a run renewing its own lock)."""
    os.rename(_write_temp(os.path.dirname(path), record), path)


@contextlib.contextmanager
def takeover_guard(path):
    """Hold an flock beside the lock while a dead run's lock is judged and moved aside.

    Reading a lock, finding it dead and moving it aside must be one step: otherwise a run
    that read the dead record could move away the lock another run took a moment later,
    and both would hold the host. Taking a free lock needs no guard (a link cannot
    overwrite); only the takeover is serialized. The guard file stays (empty).
    """
    fd = os.open(path + ".takeover", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def acquire(path, record, max_age_minutes, attempts=3):
    """Take the lock for record's run. Returns (problem, holder, taken_over).

    The run's own lock (a resumed step) is renewed in place. A live lock of another run is a
    problem naming it (holder: its record). A dead run's lock (older than max_age_minutes) or
    an unreadable one is moved aside under ``takeover_guard``, only if it is still the lock
    judged dead, and the take retried; taken_over is the record replaced.
    """
    run_id = record["run_id"]
    taken_over = {}
    for _attempt in range(attempts):
        taken, held = take_lock(path, record)
        if taken:
            return "", {}, taken_over
        if held.get("run_id") == run_id:
            write_lock(path, record)
            return "", {}, taken_over
        if is_live(held, max_age_minutes):
            return "host locked by %s; one rollback at a time" % describe(held), held, taken_over
        with takeover_guard(path):
            if read_lock(path) != held:
                continue  # taken, released or replaced since it was read: judge it again
            stale = "%s.stale.%s" % (path, run_id)
            try:
                os.rename(path, stale)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            else:
                os.unlink(stale)
                taken_over = held
    return "could not take the host lock %s (it keeps changing)" % path, {}, taken_over


def release(path, run_id="", clear=False, clear_run_id="", check_mode=False):
    """Remove the lock at path when run_id holds it, or (clear) whoever holds it, or only
    clear_run_id. Returns (removed, held, changed): the record removed, the one left in place,
    and whether that was a change (clearing is; releasing one's own lock is bookkeeping)."""
    held = read_lock(path) if os.path.exists(path) else {}
    if not held:
        return {}, {}, False
    if clear:
        wanted = not clear_run_id or held.get("run_id") == clear_run_id
    else:
        wanted = bool(run_id) and held.get("run_id") == run_id
    if not wanted:
        return {}, held, False
    if not check_mode:
        os.unlink(path)
    return held, {}, clear
