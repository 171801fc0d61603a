"""Production approvals one person cannot fake: ``request``, ``approve``, ``apply --run``.

An approval is not a name typed on a controller: it is a record on each target host, in a
root-owned sticky drop directory (/var/spool/rollback-ops, mode 1777), written by the
approver's own SSH login without privilege escalation. The **file owner** is the identity,
which nobody but root can forge (plugins/module_utils/approvals.py). The flow:

1. ``request``: the requester's controller computes the run's plan and its hash
   (:func:`plan_hash`: level, request, hosts and addresses, the plan's steps and changes)
   and writes the pending run on every target host, as the requester's login.
2. ``approve RUN_ID``: another listed approver's controller reads the request from the
   hosts, recomputes the plan from its own inventory with the request's options (refused
   when it differs: the approver approves what they see), shows it, and writes an approval
   on every host as the approver's login; each host refuses its requester, root and logins
   not in ``rollback_approvers``.
3. ``apply --run RUN_ID``: the controller reads the request and its approvals from the
   hosts, recomputes the plan hash from the current inventory (refused when the plan changed
   since it was approved) and runs it; each host checks the approval again before any host
   is changed and marks it used (one approval, one run).

What it proves and what it does not: README, "Approvals".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rollback_ops import api, appspec, runner
from rollback_ops.authorization import Authorization, current_operator
from rollback_ops.exceptions import ConfigError, Refused
from rollback_ops.inventory import Inventory
from rollback_ops.operations import Operation, Request
from rollback_ops.results import RunResult

# the request fields each host compares with the approved request (tasks/start.yml sends
# the same keys); secret flags never reach the hosts' records, so they cannot be approved
HOST_FIELDS = ("level", "flags", "allow_new_flags", "verify", "to", "backup_stamp", "force",
               "backup_id")  # fmt: skip
DEFAULT_MAX_AGE = 24


@dataclass(frozen=True)
class Policy:
    """The inventory's ``rollback_approvers`` and ``rollback_approval_max_age``."""

    approvers: tuple[str, ...] = ()
    max_age_hours: int = DEFAULT_MAX_AGE


def policy(inv: Inventory, hosts: Sequence[str]) -> Policy:
    """The approval policy of these hosts, validated against the app schema; it must be the
    same on every host (one team approves one run)."""
    values: dict[str, Any] = {}
    for variable, default in (("rollback_approvers", []), ("rollback_approval_max_age", 24)):
        seen = {json.dumps(inv.hosts[h].vars.get(variable, default)) for h in hosts}
        if len(seen) > 1:
            raise ConfigError(
                f"inventory {inv.name}: {variable} differs between the hosts of this run; "
                "set it once for all"
            )
        host = inv.hosts[hosts[0]]
        value, problems = appspec.validator.validate(variable, host.vars.get(variable, default))
        if problems or value is None:
            where = host.origin(variable)
            raise ConfigError(
                f"inventory {inv.name}: {variable} is not valid:\n  "
                + "\n  ".join(f"{where}: {path}: {message}" for path, message in problems)
            )
        values[variable] = value
    return Policy(tuple(values["rollback_approvers"]), int(values["rollback_approval_max_age"]))


def host_fields(request: Request) -> dict[str, Any]:
    """What each host compares with the approved request (the keys of HOST_FIELDS)."""
    return {name: getattr(request, name) for name in HOST_FIELDS}


def plan_document(prep: api.Prepared) -> dict[str, Any]:
    """Everything the hash binds: the level, the request (secret values masked), each host
    with the address Ansible connects to and its environment, and the plan per host (the
    playbook's steps as ansible-core reads them with the host's variables, and the values
    it will set). Not the inventory's path: two controllers' checkouts differ there."""
    inv = prep.inventory
    request = prep.masked_request()
    bound = {name: request[name] for name in HOST_FIELDS}
    return {
        "level": prep.operation.name,
        "request": bound,
        "hosts": {
            h: {
                "address": inv.hosts[h].address,
                "environment": str(inv.hosts[h].vars.get("rollback_environment", "")),
                "app": prep.apps[h].name,
            }
            for h in prep.hosts
        },
        "plan": {p.host: {"steps": p.steps, "changes": p.changes} for p in api.plan(prep)},
    }


def plan_hash(prep: api.Prepared) -> str:
    """The sha256 of :func:`plan_document`, canonical JSON."""
    text = json.dumps(plan_document(prep), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _no_secret_flags(prep: api.Prepared) -> None:
    secret = sorted(k for k in prep.request.flags if prep.is_secret(k))
    if secret:
        raise Refused(
            f"{', '.join(secret)}: a secret flag cannot go through an approval (its value "
            "would have to be written on the hosts for the approver to see); use "
            "--break-glass --reason on the flag level"
        )


def request(
    prep: api.Prepared,
    *,
    reason: str = "",
    state_dir: Path | None = None,
    observer: api.Observer | None = None,
) -> tuple[RunResult, str]:
    """Record prep (a production run not yet allowed) as a pending request on its hosts,
    as this controller's SSH login. Returns the run of the approval playbook (its run id
    is the request's) and the plan hash."""
    _no_secret_flags(prep)
    policy(prep.inventory, prep.hosts)  # refuse a bad policy before writing anything
    digest = plan_hash(prep)
    record = {
        "level": prep.operation.name,
        "fields": host_fields(prep.request),
        "hosts": {h: prep.inventory.hosts[h].address for h in prep.hosts},
        "changes": {p.host: p.changes for p in api.plan(prep)},
        "inventory": prep.inventory.name,
        "reason": reason,
        "operator": current_operator(),  # what the controller was told: informative only
    }
    run = _approval_run(
        prep,
        {"action": "request", "hash": digest, "record": record},
        reason=reason,
        state_dir=state_dir,
        observer=observer,
    )
    return run, digest


def _approval_run(
    prep: api.Prepared,
    approval: dict[str, Any],
    *,
    reason: str = "",
    state_dir: Path | None,
    observer: api.Observer | None,
    hosts: Sequence[str] | None = None,
) -> RunResult:
    """Run the approval playbook on prep's hosts (or these) with this approval request."""
    name = {"request": "request", "approve": "approve", "read": "approval-read"}
    op_prep = api.prepare(
        name[approval["action"]],
        [str(source) for source in prep.inventory.sources],
        Request(approval=approval),
        limit=",".join(hosts or prep.hosts),
        state_dir=state_dir,
        options=prep.options,
    )
    return api.execute(
        op_prep,
        state_dir=state_dir,
        observer=observer,
        auth=Authorization(operator=current_operator(), reason=reason),
    )


@dataclass
class Pending:
    """A request as the hosts hold it, judged by each host."""

    run: str
    level: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    hash: str = ""
    requester: str = ""
    requested_at: str = ""
    reason: str = ""
    hosts: dict[str, str] = field(default_factory=dict)  # host -> address, as requested
    changes: dict[str, list[str]] = field(default_factory=dict)
    approvers: list[str] = field(default_factory=list)  # logins every host accepts
    rejected: list[str] = field(default_factory=list)  # "host: approval by x: why"
    problems: list[str] = field(default_factory=list)  # "host: why"
    used_by: str = ""
    login: str = ""  # the login the hosts saw read it (this controller's)

    def describe(self) -> list[str]:
        """The request in lines, for a person to read before approving or applying."""
        options = ", ".join(
            f"{k}={json.dumps(v)}" for k, v in self.fields.items() if k != "level" and v
        )
        lines = [
            f"request {self.run}: level {self.level} on {', '.join(self.hosts)}",
            f"  requested by {self.requester} (their login on the hosts) at {self.requested_at}",
            f"  options: {options or '(none)'}",
            f"  reason: {self.reason or '-'}",
            f"  plan hash: {self.hash}",
        ]
        for host, changes in self.changes.items():
            lines += [f"  {host}: {c}" for c in changes]
        lines.append(f"  approved by: {', '.join(self.approvers) or 'nobody yet'}")
        lines += [f"  not counted: {r}" for r in self.rejected]
        if self.used_by:
            lines.append(f"  used by run {self.used_by}")
        return lines


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read(
    run: str,
    inventory_sources: str | Sequence[str],
    *,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
) -> Pending:
    """The request RUN as the inventory's hosts hold it. Trusts nothing read: every host
    named in the request must hold the same request; an approver counts when every one of
    them accepts the approval (the hosts judge the records' owners)."""
    from rollback_ops import receipts

    receipts.check_run_id(run)
    prep = api.prepare("approval-read", inventory_sources, state_dir=state_dir, options=options)
    result = _approval_run(prep, {"action": "read", "run": run}, state_dir=state_dir, observer=None)
    seen: dict[str, dict[str, Any]] = {}
    for name, host in sorted(result.hosts.items()):
        answer = host.data.get("approval")
        if host.status not in ("ok", "changed") or not isinstance(answer, dict):
            seen[name] = {"problems": [host.message or "no answer"]}
        else:
            seen[name] = answer
    holding = {h: a for h, a in seen.items() if isinstance(a.get("request"), dict) and a["request"]}
    if not holding:
        raise Refused(f"no host of inventory {prep.inventory.name} holds request {run}")
    first = next(iter(holding.values()))["request"]
    pending = Pending(
        run=run,
        level=_text(first.get("level")),
        fields=first.get("fields") if isinstance(first.get("fields"), dict) else {},
        hash=_text(first.get("hash")),
        requester=_text(first.get("requester")),
        requested_at=_text(first.get("requested_at")),
        reason=_text(first.get("reason")),
        hosts={str(k): _text(v) for k, v in (first.get("hosts") or {}).items()}
        if isinstance(first.get("hosts"), dict)
        else {},
        changes={
            str(k): [_text(c) for c in v]
            for k, v in (first.get("changes") or {}).items()
            if isinstance(v, list)
        }
        if isinstance(first.get("changes"), dict)
        else {},
    )
    approvers: set[str] | None = None
    for name in pending.hosts or holding:
        answer = seen.get(name)
        if answer is None:
            pending.problems.append(f"{name}: not in this inventory")
            continue
        req = answer.get("request") or {}
        for problem in answer.get("problems") or []:
            pending.problems.append(f"{name}: {problem}")
        if req and (req.get("hash") != pending.hash or req.get("requester") != pending.requester):
            pending.problems.append(f"{name}: holds another request {run} than the other hosts")
        pending.rejected += [f"{name}: {r}" for r in answer.get("rejected") or []]
        found = {a for a in answer.get("approvers") or [] if isinstance(a, str)}
        approvers = found if approvers is None else approvers & found
        used = _text(answer.get("used_by"))
        if used:
            pending.used_by = used
        pending.login = pending.login or _text(answer.get("login"))
    pending.approvers = sorted(approvers or ())
    return pending


def _same_request(
    pending: Pending, inventory_sources: str | Sequence[str], **kwargs: Any
) -> api.Prepared:
    """The run the request describes, prepared from this controller's inventory."""
    from rollback_ops import operations

    fields = dict(pending.fields)
    level = _text(fields.pop("level", pending.level))
    if level not in operations.rollback_levels():
        raise Refused(f"request {pending.run} holds no rollback level ({level!r})")
    known = {k: v for k, v in fields.items() if k in HOST_FIELDS}
    try:
        req = Request(**known)
    except TypeError as exc:
        raise Refused(f"request {pending.run} is not readable: {exc}") from None
    return api.prepare(level, inventory_sources, req, limit=",".join(pending.hosts), **kwargs)


def approve(
    run: str,
    inventory_sources: str | Sequence[str],
    *,
    state_dir: Path | None = None,
    observer: api.Observer | None = None,
    options: runner.AnsibleOptions | None = None,
    confirm: Any = None,
) -> tuple[Pending, RunResult]:
    """Approve RUN as this controller's SSH login, on every host of the request, after
    recomputing its plan here (refused when this inventory gives another plan).
    ``confirm(pending)`` is called before anything is written (raise to stop)."""
    pending = read(run, inventory_sources, state_dir=state_dir, options=options)
    if pending.problems:
        raise Refused(f"request {run} cannot be approved: " + "; ".join(pending.problems))
    if pending.used_by:
        raise Refused(f"request {run} was used already by run {pending.used_by}")
    prep = _same_request(pending, inventory_sources, state_dir=state_dir, options=options)
    allowed = policy(prep.inventory, prep.hosts)
    if pending.login == pending.requester:
        raise Refused(
            f"you connect as {pending.login}, who requested run {run}: another login listed "
            "in rollback_approvers must approve it"
        )
    if pending.login not in allowed.approvers:
        raise Refused(
            f"you connect as {pending.login}, who is not in rollback_approvers "
            f"({', '.join(allowed.approvers) or 'none listed'})"
        )
    digest = plan_hash(prep)
    if digest != pending.hash:
        raise Refused(
            f"your inventory gives another plan than request {run} (hash {digest[:12]}, "
            f"requested {pending.hash[:12]}): approve from the same inventory and playbooks"
        )
    if confirm is not None:
        confirm(pending)
    result = _approval_run(
        prep,
        {"action": "approve", "run": run, "hash": digest},
        state_dir=state_dir,
        observer=observer,
    )
    return pending, result


def prepare_run(
    run: str,
    inventory_sources: str | Sequence[str],
    given: Callable[[Operation], Request] | None = None,
    *,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
) -> tuple[api.Prepared, Authorization, Pending]:
    """``apply --run RUN``: the approved run, prepared from the current inventory, and its
    authorization. Refused when the request has no valid approval, was used, or its plan
    changed since it was approved (the inventory, the playbooks, or ``given``: level
    options typed with --run, which must be the request's)."""
    pending = read(run, inventory_sources, state_dir=state_dir, options=options)
    if pending.problems:
        raise Refused(f"request {run} cannot run: " + "; ".join(pending.problems))
    if pending.used_by:
        raise Refused(
            f"the approval of request {run} was used already (by run {pending.used_by}): "
            "one approval, one run"
        )
    if not pending.approvers:
        why = "; ".join(pending.rejected) or "nobody approved it yet"
        raise Refused(
            f"request {run} has no approval by a listed approver other than "
            f"{pending.requester}: {why}"
        )
    prep = _same_request(pending, inventory_sources, state_dir=state_dir, options=options)
    if given is not None:  # level options typed with --run: they must be the request's
        prep = replace(prep, request=replace(given(prep.operation), level=prep.operation.name))
    digest = plan_hash(prep)
    if digest != pending.hash:
        raise Refused(
            f"the plan changed since request {run} was approved (hash {digest[:12]}, approved "
            f"{pending.hash[:12]}): request and approve it again"
        )
    prep = replace(prep, request=replace(prep.request, approval={"run": run, "hash": digest}))
    auth = Authorization(
        operator=current_operator(),
        approved_by=", ".join(pending.approvers),
        approval_run=run,
        requester=pending.requester,
        reason=pending.reason,
    )
    return prep, auth, pending


def resumed(
    prep: api.Prepared, resumes: str, state_dir: Path | None = None
) -> Authorization | None:
    """``apply --resume RUN_ID`` of an approved run: RUN_ID's authorization as its receipt
    recorded it (the hosts check the approval again, not this), or None."""
    from rollback_ops import paths, receipts

    if not prep.request.approval.get("run"):
        return None
    receipt, _ = receipts.load(paths.state_dir(state_dir), resumes)
    found = receipt.get("authorization")
    recorded: dict[str, Any] = found if isinstance(found, dict) else {}
    return Authorization(
        operator=current_operator(),
        approved_by=_text(recorded.get("approved_by")),
        approval_run=str(prep.request.approval["run"]),
        requester=_text(recorded.get("requester")),
        reason=_text(recorded.get("reason")),
    )
