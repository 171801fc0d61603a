"""Who runs a rollback and who allowed it: the production guard (seed 003 "Rollback
Authorization": staging is self-service, production needs a team lead's or on-call approval;
in a P0/P1 the on-call engineer may act first on the smallest levels and notify after).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import asdict, dataclass
from typing import Any

from rollback_ops.exceptions import Refused
from rollback_ops.operations import OPERATIONS

# the levels --break-glass may run on production without an approval (Operation.break_glass)
BREAK_GLASS_LEVELS = tuple(name for name, op in OPERATIONS.items() if op.break_glass)


def current_operator() -> str:
    """Who runs rollback-ops: $ROLLBACK_OPS_OPERATOR, else the sudo user, else the login."""
    for name in ("ROLLBACK_OPS_OPERATOR", "SUDO_USER"):
        if name in os.environ:
            value = os.environ[name]
            if not identity(value):
                raise Refused(f"${name} is blank: it must name who runs the rollback")
            return value.strip()
    return getpass.getuser()


def identity(name: str) -> str:
    """A person's name as compared by the guard: blanks folded, case-insensitive."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Authorization:
    operator: str
    approved_by: str = ""
    break_glass: bool = False
    reason: str = ""
    confirmed_by_typing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(auth: Authorization, *, level: str, production: bool, check_mode: bool) -> None:
    """Refuse a run that production's guard does not allow; say why.

    The same answer travels to the playbooks in ``rollback_request`` (operator, approved_by,
    reason, break_glass, confirmed_by_typing), whose preflight checks it again.
    """
    if auth.break_glass:
        if level not in BREAK_GLASS_LEVELS:
            raise Refused(
                f"--break-glass covers the {' and '.join(BREAK_GLASS_LEVELS)} levels only, "
                f"not {level}: get an approval (--approved-by NAME)"
            )
        if not auth.reason.strip():
            raise Refused("--break-glass needs --reason TEXT (it is recorded and notified)")
    if not identity(auth.operator):
        raise Refused("the operator's name is blank: set ROLLBACK_OPS_OPERATOR to who you are")
    if auth.approved_by and not identity(auth.approved_by):
        raise Refused("--approved-by is blank: name the person who approved this rollback")
    if auth.approved_by and identity(auth.approved_by) == identity(auth.operator):
        raise Refused(f"{auth.operator} cannot approve their own rollback: ask someone else")
    if not production or check_mode:
        return
    if auth.break_glass or identity(auth.approved_by) or auth.confirmed_by_typing:
        return
    raise Refused(
        "this inventory is production: a change needs --approved-by NAME (someone other than "
        f"{auth.operator}), or confirmation by typing the inventory's name on a terminal, or "
        "--break-glass --reason TEXT on the flag and emergency levels; --yes does not bypass this"
    )
