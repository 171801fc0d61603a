# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""Production approvals as the hosts see them: records whose file owner is the identity.

Shared host-side code of the ``approval`` module (which writes the records) and the
``approval_info`` module (which reads and judges them). Python 3.6+ standard library only.

The records live in one drop directory per host (``DEFAULT_DIRECTORY``), owned by root,
world-writable with the sticky bit (mode 1777, like /tmp): every login may create a file
there, nobody but its owner (or root) may remove or rename it, and nobody but root may give
a file another owner. So **the owner of a record is the SSH login that wrote it**, whatever
the record says inside; that owner is the identity judged here, never a name in the record.

- ``<run>.request``: a pending run (level, request, plan hash, time), written by the
  requester's login;
- ``<run>.approval.<random>``: an approval of that run's hash, written by an approver's
  login (a random name: nobody can take an approver's file name first);
- ``<run>.used``: the run that consumed the approval (one approval, one run), created
  exclusively.

Nothing read here is trusted: a record is a regular file with one link, at most
``MAX_RECORD`` bytes of JSON object, opened without following symlinks; a record owned by
root proves nobody (everyone with sudo can write as root), nor one whose content names
another run or hash. Root on the host can forge any of this: see the README's threat model.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import json
import os
import pwd
import re
import stat
import time

DEFAULT_DIRECTORY = "/var/spool/rollback-ops"
MAX_RECORD = 64 * 1024
RUN_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,63}\Z")
HASH = re.compile(r"^[0-9a-f]{64}\Z")
REQUEST_SUFFIX = ".request"
APPROVAL_INFIX = ".approval."
USED_SUFFIX = ".used"


class RecordError(Exception):
    """A record that cannot be written or read as one; the message names it."""


def login_of(uid):
    """The login name of uid on this host (``uid N`` when it has none)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


def directory_problem(directory):
    """None, or why directory cannot hold records whose owner proves who wrote them."""
    try:
        st = os.lstat(directory)
    except OSError:
        return "the approvals directory %s does not exist (a request creates it)" % directory
    if not stat.S_ISDIR(st.st_mode):
        return "the approvals directory %s is not a directory" % directory
    if st.st_uid != 0:
        return "the approvals directory %s is owned by %s, not root: its records prove nothing" % (
            directory,
            login_of(st.st_uid),
        )
    if stat.S_IMODE(st.st_mode) & 0o1002 != 0o1002:
        return (
            "the approvals directory %s must be mode 1777 (sticky, writable by every login): "
            "it is %04o" % (directory, stat.S_IMODE(st.st_mode))
        )
    return None


def check_run_id(run_id):
    if not RUN_ID.match(run_id or ""):
        raise RecordError("%r is not a run id" % (run_id,))


def write_record(directory, name, record):
    """Create directory/name holding record as JSON, mode 0644, owned by this process's
    user; fails (RecordError) when it exists. Returns its path."""
    path = os.path.join(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise RecordError("%s exists already" % path) from None
        raise RecordError("cannot create %s: %s" % (path, exc.strerror)) from None
    try:
        os.fchmod(fd, 0o644)  # whatever the umask: every login reads the records
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return path


def read_record(path):
    """(record, owner uid, mtime) of the record at path; RecordError when it is not one."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise RecordError("%s does not exist" % path) from None
        raise RecordError("cannot open %s: %s" % (path, exc.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RecordError("%s is not a regular file" % path)
        if st.st_nlink != 1:
            raise RecordError("%s has %d links" % (path, st.st_nlink))
        if st.st_size > MAX_RECORD:
            raise RecordError("%s is larger than %d bytes" % (path, MAX_RECORD))
        data = os.read(fd, MAX_RECORD + 1)
    finally:
        os.close(fd)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RecordError("%s is not JSON" % path) from None
    if not isinstance(record, dict):
        raise RecordError("%s is not a JSON object" % path)
    return record, st.st_uid, st.st_mtime


def new_approval_name(run_id):
    return "%s%s%s" % (run_id, APPROVAL_INFIX, binascii.hexlify(os.urandom(8)).decode())


def _text(record, key):
    value = record.get(key)
    return value if isinstance(value, str) else ""


def _number(record, key):
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def judge_request(directory, run_id, max_age_seconds, now=None):
    """The pending request of run_id: (request dict, problems).

    The request dict holds the record as read plus ``requester`` (the owner's login) and
    ``requester_uid``; problems says why it cannot be approved or applied."""
    now = time.time() if now is None else now
    problem = directory_problem(directory)
    if problem:
        return {}, ["no usable request %s on this host: %s" % (run_id, problem)]
    path = os.path.join(directory, run_id + REQUEST_SUFFIX)
    try:
        record, uid, mtime = read_record(path)
    except RecordError as exc:
        return {}, ["no usable request %s on this host (%s)" % (run_id, exc)]
    request = dict(record, requester=login_of(uid), requester_uid=uid)
    problems = []
    if uid == 0:
        problems.append(
            "request %s was written by root: root proves nobody's identity (request it with "
            "your personal login)" % run_id
        )
    if _text(record, "run_id") != run_id:
        problems.append("request %s names another run inside" % run_id)
    if not HASH.match(_text(record, "hash")):
        problems.append("request %s holds no plan hash" % run_id)
    written = _number(record, "requested_epoch")
    oldest = mtime if written is None else min(written, mtime)
    if now - oldest > max_age_seconds:
        problems.append(
            "request %s is older than %d hours: request again" % (run_id, max_age_seconds // 3600)
        )
    return request, problems


def judge_approvals(directory, run_id, request, approvers, max_age_seconds, now=None):
    """The approvals of run_id's request: (approver logins, rejected), each rejected one
    with why. An approval counts when its owner is a listed approver, is not root, is not
    the requester, it names this run and the request's hash, and it is younger than
    max_age_seconds."""
    now = time.time() if now is None else now
    prefix = run_id + APPROVAL_INFIX
    approved, rejected = [], []
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(prefix))
    except OSError:
        names = []
    for name in names:
        try:
            record, uid, mtime = read_record(os.path.join(directory, name))
        except RecordError as exc:
            rejected.append(str(exc))
            continue
        who = login_of(uid)
        why = ""
        if uid == 0:
            why = "written by root, which proves nobody's identity"
        elif uid == request.get("requester_uid"):
            why = "%s requested this run and cannot approve it" % who
        elif who not in approvers:
            why = "%s is not in rollback_approvers" % who
        elif _text(record, "run_id") != run_id:
            why = "it names another run"
        elif _text(record, "hash") != _text(request, "hash"):
            why = "it approves another plan"
        elif now - mtime > max_age_seconds:
            why = "older than %d hours" % (max_age_seconds // 3600)
        if why:
            rejected.append("approval by %s: %s" % (who, why))
        elif who not in approved:
            approved.append(who)
    return approved, rejected


def used_by(directory, run_id):
    """The run that consumed run_id's approval ("" when none did; "?" when unreadable)."""
    path = os.path.join(directory, run_id + USED_SUFFIX)
    if not os.path.lexists(path):
        return ""
    try:
        record, _uid, _mtime = read_record(path)
    except RecordError:
        return "?"
    return _text(record, "used_by") or "?"


def mark_used(directory, run_id, by_run):
    """Record that by_run consumed run_id's approval; RecordError when another did first."""
    write_record(
        directory,
        run_id + USED_SUFFIX,
        dict(run_id=run_id, used_by=by_run, epoch=time.time(), at=stamp()),
    )


def stamp(epoch=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def request_mismatches(recorded, running):
    """The keys of running (the request this run was started with) whose value differs
    from the approved request's."""
    recorded = recorded if isinstance(recorded, dict) else {}
    return sorted(k for k, v in running.items() if recorded.get(k) != v)
