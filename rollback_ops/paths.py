"""Where things live: the packaged Ansible content and the operator's state directory."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


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


def inventories_dir() -> Path:
    return ansible_root() / "inventories"


def state_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: runs, receipts, lab and demo files.

    Precedence: explicit override, ``$ROLLBACK_OPS_STATE_DIR``,
    ``$XDG_STATE_HOME/rollback-ops``, ``~/.local/state/rollback-ops``.
    """
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("ROLLBACK_OPS_STATE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "rollback-ops").resolve()
