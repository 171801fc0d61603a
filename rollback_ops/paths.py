"""Where things live: the packaged Ansible content and the operator's state directory."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from rollback_ops.exceptions import StateDirError

_PACKAGE = Path(__file__).resolve().parent
COLLECTION = "rollback_ops.rollback"  # galaxy.yml's namespace and name: the content root


def ansible_root() -> Path:
    """The directory holding playbooks/, roles/ and inventories/.

    In an installed wheel it is ``rollback_ops/_ansible``; in a source checkout
    (editable install, tests) it is the repository root.
    """
    packaged = _PACKAGE / "_ansible"
    if (packaged / "playbooks").is_dir():
        return packaged
    return _PACKAGE.parent


def playbook(name: str) -> Path:
    return ansible_root() / "playbooks" / f"{name}.yml"


def roles_dir() -> Path:
    return ansible_root() / "roles"


def plugins_dir() -> Path:
    return ansible_root() / "plugins"


def inventories_dir() -> Path:
    return ansible_root() / "inventories"


def state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: runs, receipts, lab and demo files.

    Precedence: explicit override, ``$ROLLBACK_OPS_STATE_DIR``,
    ``$XDG_STATE_HOME/rollback-ops``, ``~/.local/state/rollback-ops``.
    """
    given = override or os.environ.get("ROLLBACK_OPS_STATE_DIR")
    try:
        if given:
            return Path(given).expanduser().resolve()
        xdg = os.environ.get("XDG_STATE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
        return (base / "rollback-ops").resolve()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:  # NUL byte, loop, no home
        raise StateDirError(given or "(default)", f"not a usable path: {exc}") from None


# a run writes its receipt, ansible-runner's artifacts and the history: well under this
MIN_FREE_BYTES = 1 << 20


def readable_state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The state directory, for commands that only read it (history, report).

    It need not exist (nothing was recorded yet); if it does, it must be a readable directory.
    :class:`StateDirError` (exit 4) otherwise.
    """
    path = state_dir(override)
    try:
        if path.exists() and not path.is_dir():
            raise StateDirError(path, "not a directory")
        if path.exists() and not os.access(path, os.R_OK | os.X_OK):
            raise StateDirError(path, "not readable (permission denied)")
    except OSError as exc:
        raise StateDirError(path, os_problem(exc)) from None
    return path


def writable_state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The state directory, created if needed and proven usable for a run: a directory, its
    ``runs``/``locks`` directories and ``history.jsonl`` file of the right kind, a probe file
    written, fsync'd and removed, at least :data:`MIN_FREE_BYTES` free.

    Call it before any host is touched; :class:`StateDirError` (exit 4) says what is wrong
    (not a directory, read-only file system, permission denied, full).
    """
    path = state_dir(override)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateDirError(path, "not a directory") from None
    except OSError as exc:
        raise StateDirError(path, f"cannot create it: {os_problem(exc)}") from None
    probe = path / f".probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        if not path.is_dir():
            raise StateDirError(path, "not a directory")
        for name in ("runs", "locks"):
            if (path / name).exists() and not (path / name).is_dir():
                raise StateDirError(path, f"{name} is not a directory")
        if (path / "history.jsonl").is_dir():
            raise StateDirError(path, "history.jsonl is a directory, not a file")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
        stat = os.statvfs(path)
    except OSError as exc:
        raise StateDirError(path, f"not writable: {os_problem(exc)}") from None
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE_BYTES:
        raise StateDirError(
            path, f"full: {free // 1024} KiB free, a run needs {MIN_FREE_BYTES // 1024} KiB"
        )
    return path


_OS_PROBLEMS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "full (no space left on device)",
    errno.EDQUOT: "full (disk quota exceeded)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (immutable?)",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.ENAMETOOLONG: "path too long",
}


def os_problem(exc: OSError) -> str:
    """What an OSError means for a file of the state dir, in a few words."""
    if exc.errno in _OS_PROBLEMS:
        return _OS_PROBLEMS[exc.errno]
    return (exc.strerror or type(exc).__name__).lower()


def state_dir_error(exc: OSError, state: Path) -> StateDirError | None:
    """``exc`` as a :class:`StateDirError` when it is about a file under ``state``, else None
    (a last line of defence for writes that do not check first)."""
    for name in (exc.filename, exc.filename2):
        if not isinstance(name, str | bytes | os.PathLike):
            continue
        try:
            where = Path(os.fsdecode(name)).absolute()
        except ValueError:
            continue
        if where == state or state in where.parents:
            what = "" if where == state else f"{where.relative_to(state)}: "
            return StateDirError(state, what + os_problem(exc))
    return None
