"""Who runs a rollback and who allowed it: the production guard (seed 003 "Rollback
Authorization": staging is self-service, production needs a team lead's or on-call approval;
in a P0/P1 the on-call engineer may act first on the smallest levels and notify after).

On production an approval is a record on the hosts (rollback_ops.approvals): the request's
and each approval's identity is the SSH login that wrote it, as the hosts see it. Nothing
typed on the controller (a name, the inventory's name, ``--yes``) approves anything; the
hosts check the approval themselves at the start of the run.
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

HOW_TO_APPROVE = (
    "rollback-ops request --level LEVEL -i INV [options], then another login listed in "
    "rollback_approvers runs rollback-ops approve RUN_ID -i INV, then rollback-ops apply "
    "--run RUN_ID -i INV"
)


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
    """Who runs a run and what allows it on production.

    ``approval_run`` is the approved request the run executes (``apply --run``); the hosts
    check it. ``requester`` and ``approved_by`` are the logins the hosts saw write the
    request and its approvals (comma-separated), recorded for the history and the receipt,
    never typed. ``confirmed_by_typing``: the operator also typed the inventory's name.
    """

    operator: str
    approved_by: str = ""
    break_glass: bool = False
    reason: str = ""
    confirmed_by_typing: bool = False
    approval_run: str = ""
    requester: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(auth: Authorization, *, level: str, production: bool, check_mode: bool) -> None:
    """Refuse a run that production's guard does not allow; say why.

    The same answer travels to the playbooks in ``rollback_request`` (operator, reason,
    break_glass, approval), whose start checks it again, and each host checks the approval.
    """
    if auth.break_glass:
        if level not in BREAK_GLASS_LEVELS:
            raise Refused(
                f"--break-glass covers the {', '.join(BREAK_GLASS_LEVELS)} levels only, "
                f"not {level}: get an approval ({HOW_TO_APPROVE})"
            )
        if not auth.reason.strip():
            raise Refused("--break-glass needs --reason TEXT (it is recorded and notified)")
    if not identity(auth.operator):
        raise Refused("the operator's name is blank: set ROLLBACK_OPS_OPERATOR to who you are")
    approvers = [a.strip() for a in auth.approved_by.split(",") if a.strip()]
    if auth.requester and auth.requester in approvers:
        raise Refused(f"{auth.requester} cannot approve their own request: ask someone else")
    if not production or check_mode:
        return
    if auth.break_glass or (auth.approval_run.strip() and approvers):
        return
    if auth.approval_run.strip():
        raise Refused(f"request {auth.approval_run} has no approval: {HOW_TO_APPROVE}")
    raise Refused(
        f"this inventory is production: a change needs an approved request ({HOW_TO_APPROVE}), "
        f"or --break-glass --reason TEXT on the {', '.join(BREAK_GLASS_LEVELS)} levels; "
        "typing the inventory's name or --yes does not approve"
    )
