"""The typed public API: plan, apply and verify a rollback level against an inventory.

Library code never prints and never exits: progress goes to an :class:`Observer`,
results come back as :class:`RunResult`, problems are :mod:`rollback_ops.exceptions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rollback_ops import (
    appspec,
    authorization,
    history,
    inventory,
    notify,
    operations,
    paths,
    receipts,
    retention,
    runner,
)
from rollback_ops.appspec import AppSpec, mask
from rollback_ops.authorization import Authorization, current_operator
from rollback_ops.events import is_hidden, step_id
from rollback_ops.exceptions import ConfigError, Refused, RollbackOpsError
from rollback_ops.inventory import Inventory
from rollback_ops.lock import HostsLock, describe, holder_record, liveness
from rollback_ops.notify import Notifier, NotifyConfig
from rollback_ops.operations import Operation, Request
from rollback_ops.results import INTERRUPTED, HostResult, RunResult, StepEvent


class Observer(Protocol):
    """Follows a run. Optional methods, used when present: ``notice(text)`` (something to
    say now, e.g. an interruption) and ``task_started(host, step)`` (a task began on a host;
    a live display shows it running)."""

    def started(self, run_id: str, level: str, hosts: list[str], check: bool) -> None: ...

    def step(self, event: StepEvent) -> None: ...


SECRET_FLAGS_ENV = "ROLLBACK_OPS_SECRET_FLAGS"  # noqa: S105 - a variable name; read by playbooks/flag.yml


@dataclass
class Prepared:
    inventory: Inventory
    apps: dict[str, AppSpec]
    hosts: list[str]
    operation: Operation
    request: Request
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    options: runner.AnsibleOptions = field(default_factory=runner.AnsibleOptions)

    @property
    def environments(self) -> list[str]:
        """The targeted hosts' rollback_environment values, as Ansible resolves them."""
        return sorted(
            {str(self.inventory.hosts[h].vars.get("rollback_environment", "")) for h in self.hosts}
        )

    @property
    def production(self) -> bool:
        """Whether any targeted host is production."""
        return "production" in self.environments

    def is_secret(self, key: str) -> bool:
        """Whether a key is secret for any app this run targets (its value is masked)."""
        return any(self.apps[h].is_secret(key) for h in self.hosts)

    def masked_request(self) -> dict[str, Any]:
        """The request for receipts and history: secret flag values as their mask."""
        request = asdict(self.request)
        request["flags"] = {
            k: mask(v) if self.is_secret(k) else v for k, v in self.request.flags.items()
        }
        return request


@dataclass
class HostPlan:
    host: str
    address: str
    app: str
    steps: list[str]  # the playbook's own tasks for this host, in order (rollback_ops.plan)
    changes: list[str] = field(default_factory=list)  # what they will set, resolved here
    step_ids: list[str] = field(default_factory=list)  # each step's stable id (events.step_id)


def prepare(
    operation: str | Operation,
    inventory_sources: str | Sequence[str],
    request: Request | None = None,
    *,
    limit: str | None = None,
    app: str | None = None,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
) -> Prepared:
    """Load and validate everything a run needs; raise before any host is touched.

    ``operation`` names the command (a level, ``verify``, ``unlock``, ``backup-create`` ...,
    see :data:`rollback_ops.operations.OPERATIONS`); ``request`` holds what was asked (its
    ``level`` is set from the operation); ``inventory_sources`` one inventory or several, as
    ``-i`` takes them; ``app`` keeps only the hosts of that app; ``options`` are Ansible's own.
    """
    op = operations.get(operation) if isinstance(operation, str) else operation
    request = dataclasses.replace(request or Request(), level=op.name, **op.fixed)
    options = options or runner.AnsibleOptions()
    inv = inventory.load(inventory_sources, paths.state_dir(state_dir), options)
    apps = appspec.parse_inventory(inv)
    hosts = inv.select(limit)
    if app is not None:
        hosts = [h for h in hosts if apps[h].name == app]
        if not hosts:
            names = sorted({a.name for a in apps.values()})
            raise ConfigError(
                f"no host of inventory {inv.name} runs app {app!r} ({', '.join(names)})"
            )
    bad = operations.request_problems(request)
    if bad:
        raise ConfigError("; ".join(bad))
    if request.procedure:
        apps = {h: appspec.for_procedure(apps[h], request.procedure) for h in hosts} | {
            h: a for h, a in apps.items() if h not in hosts
        }
    by_problem: dict[str, list[str]] = {}
    for h in hosts:
        for problem in op.check(apps[h], request):
            by_problem.setdefault(problem, []).append(h)
    if by_problem:
        lines = [f"{', '.join(hs)}: {problem}" for problem, hs in by_problem.items()]
        raise ConfigError(
            f"cannot run level {op.name} on inventory {inv.name}:\n  " + "\n  ".join(lines)
        )
    return Prepared(inv, apps, hosts, op, request, notify.config_from(inv), options)


def _hook_secret_problems(operation: Operation, app: AppSpec) -> list[str]:
    """The secret env values of the level's hooks (environment_from) must be in this
    controller's environment."""
    if not operation.is_level:
        return []
    return [
        f"hook {hook.name} of app {app.name}: its secret variable {var} is not set in this "
        "environment"
        for hook in app.hooks
        if not hook.levels or operation.name in hook.levels
        for var in hook.secret_vars
        if not os.environ.get(var)
    ]


def _password_problems(operation: Operation, app: AppSpec) -> list[str]:
    """Database passwords named by password_env must be in this controller's environment."""
    if not operation.needs_db_passwords:
        return []
    return [
        f"database {db.name} of app {app.name}: its password variable {db.password_env} is not "
        "set in this environment"
        for db in app.databases
        if db.password_env and not os.environ.get(db.password_env)
    ]


def prepare_resume(
    run_id: str,
    *,
    inventory_sources: str | Sequence[str] | None = None,
    verify: bool = True,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
) -> Prepared:
    """A run that continues RUN_ID on the hosts where it did not finish.

    The level, inventory and options come from RUN_ID's receipt, and each host's code target
    is pinned to the one RUN_ID resolved, so "the previous release" cannot move in between.
    Steps RUN_ID completed are idempotent: they find their work done and change nothing.
    """
    state = paths.state_dir(state_dir)
    receipts.check_run_id(run_id)
    if not (state / "runs" / run_id / "receipt.json").exists():
        row = next((r for r in history.read(state) if r.run_id == run_id), None)
        if row is not None and row.result == "unfinished":
            raise ConfigError(
                f"run {run_id} left no receipt (it was killed mid-run; history: unfinished): "
                f"run `rollback-ops apply --level {row.level} -i {row.inventory} ...` again "
                "with its options; the steps it completed find their work done"
            )
    receipt, _ = receipts.load(state, run_id)
    level = str(receipt.get("level", ""))
    resumable = [n for n, op in operations.OPERATIONS.items() if op.resumable]
    if level not in resumable:
        raise ConfigError(f"run {run_id} is level {level!r}; only {', '.join(resumable)} resume")
    if receipt.get("check"):
        raise ConfigError(f"run {run_id} was a check-mode run: it changed nothing to resume")
    if receipt.get("result") == "ok":
        raise ConfigError(f"run {run_id} finished on every host; nothing to resume")
    inventory_path = same_inventory(receipt, inventory_sources, state, "resume")
    hosts = receipt.get("hosts") or {}
    unfinished = sorted(h for h, r in hosts.items() if r.get("status") not in ("ok", "changed"))
    request = receipt.get("request") or {}
    targets = {
        h: str(sha)
        for h in unfinished
        if (sha := ((hosts[h].get("code") or {}).get("target") or {}).get("sha"))
    }
    return prepare(
        level,
        inventory_path,
        Request(
            verify=verify,
            # "to_ref": receipts written before the request took the playbooks' names
            to=str(request.get("to", request.get("to_ref", ""))),
            backup_stamp=str(request.get("backup_stamp", "")),
            procedure=str(request.get("procedure", "")),
            backup_id=str(request.get("backup_id", "")),
            backup_from=str(request.get("backup_from", "set")),
            backup_files={str(k): str(v) for k, v in (request.get("backup_files") or {}).items()},
            force=bool(request.get("force", False)),
            targets=targets,
            resumes=run_id,
            # an approved run resumes under its approval: every host checks it again, and
            # lets the run that used it (RUN_ID) use it once more
            approval={
                k: str(v)
                for k, v in (request.get("approval") or {}).items()
                if k in ("run", "hash") and v
            }
            if isinstance(request.get("approval"), dict)
            else {},
        ),
        limit=",".join(unfinished) or None,
        state_dir=state_dir,
        options=options,
    )


def same_inventory(
    receipt: dict[str, Any],
    inventory_sources: str | Sequence[str] | None,
    state: Path,
    verb: str,
) -> str:
    """The inventory a receipt's run used; ConfigError if ``inventory_sources`` (given to
    confirm it) names another one."""
    inventory_path = str(receipt.get("inventory_path", ""))
    if inventory_sources:
        first = inventory_sources if isinstance(inventory_sources, str) else inventory_sources[0]
        given = inventory.resolve(first, state)[1]
        if given.resolve() != Path(inventory_path).resolve():
            raise ConfigError(
                f"run {receipt.get('run_id')} ran against {inventory_path}, not {given}; "
                f"leave --inventory out to {verb} it"
            )
    return inventory_path


def plan(prep: Prepared, *, check: bool = False) -> list[HostPlan]:
    """The ordered steps per host of a prepared run; contacts no host.

    The steps are the playbook's own tasks, read by ansible-core with the host's variables
    and the extra variables the run will send (rollback_ops.plan), so the plan cannot drift
    from the playbook; ``changes`` is the operation's account of the values it will set.
    """
    from rollback_ops import plan as playbook_plan

    extravars = {
        "rollback_request": operations.rollback_request(
            prep.request,
            run_id="(plan)",
            authorization={"operator": "(plan)"},
            controller={"controller": "(plan)", "pid": 0, "pid_start": ""},
            authorized_environments=prep.environments,
            # secret values never shown: the plan only needs to know they are set
            public_flags={
                k: mask(v) if prep.is_secret(k) else v for k, v in prep.request.flags.items()
            },
        )
    }
    playbook = paths.playbook(prep.operation.playbook)
    plans = []
    for h in prep.hosts:
        steps = playbook_plan.steps(playbook, prep.inventory, h, extravars, check_mode=check)
        plans.append(
            HostPlan(
                host=h,
                address=prep.inventory.hosts[h].address,
                app=prep.apps[h].name,
                steps=[
                    step.label + (f" (if {step.condition})" if step.condition else "")
                    for step in steps
                ],
                changes=prep.operation.plan(h, prep.apps[h], prep.request),
                step_ids=[step_id(s.role, s.name, s.action, s.file) for s in steps],
            )
        )
    return plans


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def execute(
    prep: Prepared,
    *,
    check: bool = False,
    diff: bool = False,
    state_dir: Path | None = None,
    observer: Observer | None = None,
    auth: Authorization | None = None,
) -> RunResult:
    """Run a prepared level and return its result; the receipt is saved in the run dir.

    Production's guard is checked first; a run that changes hosts holds this controller's lock
    on each host it targets; every run is recorded in the audit history before it starts and
    after it ends. A first SIGINT/SIGTERM stops the run between two steps (the host locks are
    released), a second at once; either way the result says ``interrupted`` and which hosts
    changed, and the receipt is written.
    """
    auth = auth or Authorization(operator=current_operator())
    op = prep.operation
    missing = sorted(
        {
            p
            for h in prep.hosts
            for p in _password_problems(op, prep.apps[h]) + _hook_secret_problems(op, prep.apps[h])
        }
    )
    if missing:
        raise ConfigError("cannot start: " + "; ".join(missing))
    changes = not check and op.guarded  # guarded, locked, notified
    locked = not check and (op.guarded or op.changes_hosts)
    authorization.check(auth, level=op.name, production=prep.production, check_mode=not changes)
    if auth.approval_run != str(prep.request.approval.get("run", "")) and op.guarded:
        # the hosts check the approval the run carries: it must be the one authorized
        raise Refused(
            f"the run carries approval {prep.request.approval.get('run') or '(none)'} but was "
            f"authorized by {auth.approval_run or '(none)'}"
        )
    run_id = new_run_id()
    state = paths.writable_state_dir(state_dir)  # before any host is touched
    kept_reason = ""
    if prep.request.resumes and not auth.reason:  # a resume keeps the reason of what it resumes
        auth = dataclasses.replace(auth, reason=history.reason_of(state, prep.request.resumes))
        kept_reason = prep.request.resumes if auth.reason else ""
    run_dir = state / "runs" / run_id
    lock = HostsLock(state, {h: prep.inventory.hosts[h].address for h in prep.hosts})
    if locked:
        lock.acquire(run_id, auth.operator)
    try:
        run_dir.mkdir(parents=True, mode=0o700)
        meta = {
            "run_id": run_id,
            **auth.as_dict(),
            "level": prep.operation.name,
            "apps": sorted({prep.apps[h].name for h in prep.hosts}),
            "inventory": prep.inventory.name,
            "inventory_path": str(prep.inventory.path),
            "environment": prep.environments,
            "hosts": prep.hosts,
            **({"procedure": prep.request.procedure} if prep.request.procedure else {}),
            **history.link("resume", prep.request.resumes),
            **history.link("undo", prep.request.undoes),
            **({"reason_from": kept_reason} if kept_reason else {}),
        }
        history.append(
            state,
            {"event": "started", **meta, "check": check, "receipt": str(run_dir / "receipt.json")},
        )
        notifier = Notifier(prep.notify, state)
        alert = {
            **meta,
            "strategy": notify.strategy(prep.operation.name),
            "environment": ", ".join(meta["environment"]),
        }
        # the start alert goes out while the rollback runs: a slow mail server must not
        # delay time-to-rollback
        started = threading.Thread(target=notifier.send, args=("start", {**alert, "result": None}))
        if changes:
            started.start()
        interruption = runner.Interruption(
            run_dir / "stop", notice=getattr(observer, "notice", None)
        )
        try:
            with interruption:
                result = _run(
                    prep,
                    run_id,
                    run_dir,
                    check=check,
                    diff=diff,
                    observer=observer,
                    auth=auth,
                    interruption=interruption,
                    # each host's preflight refuses an environment the guard did not see
                    # (defense in depth): the guard authorized exactly these
                    authorized=prep.environments,
                )
        except RollbackOpsError as exc:
            if changes:
                started.join()
                notifier.send("failure", {**alert, "result": None})
            with contextlib.suppress(OSError, RollbackOpsError):  # the error at hand comes first
                history.append(
                    state,
                    {
                        "event": "finished",
                        "run_id": run_id,
                        "result": "error",
                        "error": str(exc)[:500],
                    },
                )
            raise
        if changes:
            started.join()
            notifier.send("success" if result.ok else "failure", {**alert, "result": result})
        result.notifications = [asdict(d) for d in notifier.deliveries]
        if lock.stale_previous:
            result.warnings.append(lock.stale_previous)
        _explain_held_locks(result)
        # the hosts have changed by now: a state dir that fails (full, read-only) must not
        # hide that; what cannot be recorded is said in the result instead
        try:
            history.append(
                state,
                {
                    "event": "finished",
                    "run_id": run_id,
                    "result": result.outcome,
                    "duration": round(result.duration, 3),
                    **({"changed_hosts": result.changed_hosts} if result.changed_hosts else {}),
                    **({"locks_left": result.locks_left} if result.locks_left else {}),
                },
            )
        except (OSError, RollbackOpsError) as exc:
            result.warnings.append(f"the history could not record this run's end: {exc}")
    finally:
        lock.release()
    result.receipt_error = receipts.save(result.receipt(), run_dir / "receipt.json")
    # old run dirs go (rollback_ops.retention: never an unfinished run, one that left locks,
    # or the newest on a host); a state dir or setting that fails must not fail the run
    with contextlib.suppress(OSError, RollbackOpsError):
        retention.after_run(state, run_id)
    return result


def _explain_held_locks(result: RunResult) -> None:
    """A host refused because its lock is held: say whether the holder lives, and what to do."""
    for host in result.hosts.values():
        holder = host.lock_holder
        if not holder:
            continue
        state = liveness(holder)
        run = holder.get("run_id", "?")
        if state == "live":
            host.notes.append(f"the lock's holder, {describe(holder)}, is running now: wait for it")
        elif state in ("dead", "expired"):
            why = "dead" if state == "dead" else "older than the lock's maximum age"
            host.notes.append(
                f"the lock's holder, {describe(holder)}, is {why}: "
                f"clear it with rollback-ops unlock -i {result.inventory_path} --run {run}"
            )
        else:
            host.notes.append(
                f"the lock's holder, {describe(holder)}, ran from another controller and may "
                f"still run; if you know it is dead: rollback-ops unlock -i "
                f"{result.inventory_path} --run {run} --force"
            )


def _run(
    prep: Prepared,
    run_id: str,
    run_dir: Path,
    *,
    check: bool,
    diff: bool,
    observer: Observer | None,
    auth: Authorization,
    interruption: runner.Interruption,
    authorized: list[str],
) -> RunResult:
    if observer:
        observer.started(run_id, prep.operation.name, prep.hosts, check)
    started_wall, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    secret_flags = {k: v for k, v in prep.request.flags.items() if prep.is_secret(k)}
    holder = holder_record(run_id, auth.operator)
    outcome = runner.run_playbook(
        runner.PlaybookRun(
            playbook=paths.playbook(prep.operation.playbook),
            inventory=prep.inventory.sources,
            run_dir=run_dir,
            extravars={
                "rollback_request": operations.rollback_request(
                    prep.request,
                    run_id=run_id,
                    authorization=auth.as_dict(),
                    controller=holder,
                    authorized_environments=authorized,
                    public_flags={
                        k: v for k, v in prep.request.flags.items() if k not in secret_flags
                    },
                )
            },
            check=check,
            diff=diff,
            limit=",".join(prep.hosts),
            options=prep.options,
        ),
        sink=observer.step if observer else None,
        on_start=getattr(observer, "task_started", None),  # optional: a live display's
        interruption=interruption,
        # secret flag values reach the playbook through its environment: never argv or files
        secret_env={SECRET_FLAGS_ENV: json.dumps(secret_flags)} if secret_flags else None,
    )
    hosts = {h: outcome.hosts.get(h) or _silent(h) for h in prep.hosts}
    if interruption.signum:
        _mark_interrupted(hosts, outcome, hard=interruption.hard)
    result = RunResult(
        run_id=run_id,
        level=prep.operation.name,
        inventory=prep.inventory.name,
        inventory_path=str(prep.inventory.path),
        check=check,
        hosts=hosts,
        started=started_wall,
        duration=time.monotonic() - t0,
        rc=outcome.rc,
        run_dir=str(run_dir),
        authorization=auth.as_dict(),
        apps={h: prep.apps[h].name for h in prep.hosts},
        request=prep.masked_request(),
        resumes=prep.request.resumes,
        undoes=prep.request.undoes,
        interrupted=interruption.name,
        hard_stop=interruption.hard,
    )
    return result


def _mark_interrupted(
    hosts: dict[str, HostResult], outcome: runner.RunnerOutcome, hard: bool
) -> None:
    """Which hosts an interruption stopped before they finished."""
    for name, host in hosts.items():
        stopped = INTERRUPTED in host.message or (
            host.status in ("ok", "changed")
            and (hard or not outcome.finished or name in outcome.failures)
        )
        if stopped:
            host.status = "interrupted"
            if INTERRUPTED not in host.message:
                done = [st.step for st in host.steps if not is_hidden(st.action)]
                host.failed_step = host.failed_step or "(stopped)"
                host.message = (
                    "stopped at once (second signal)" if hard else "stopped between two steps"
                ) + (f"; its last step done: {done[-1]}" if done else "; no step done")


def _silent(host: str) -> HostResult:
    """A host Ansible never reported on: the run stopped before reaching it."""
    return HostResult(
        host,
        status="failed",
        failed_step="(none)",
        message="no result from this host: the run stopped before reaching it",
    )


def apply(
    operation: str | Operation,
    inventory_sources: str | Sequence[str],
    request: Request | None = None,
    *,
    limit: str | None = None,
    app: str | None = None,
    check: bool = False,
    diff: bool = False,
    state_dir: Path | None = None,
    observer: Observer | None = None,
    auth: Authorization | None = None,
    options: runner.AnsibleOptions | None = None,
) -> RunResult:
    """Run an operation (a level, a backup command ...) against an inventory: :func:`prepare`
    then :func:`execute`. ``request`` carries everything the command line can ask for."""
    prep = prepare(
        operation,
        inventory_sources,
        request,
        limit=limit,
        app=app,
        state_dir=state_dir,
        options=options,
    )
    return execute(prep, check=check, diff=diff, state_dir=state_dir, observer=observer, auth=auth)


def unlock(
    inventory_sources: str | Sequence[str],
    *,
    run_id: str = "",
    force: bool = False,
    limit: str | None = None,
    state_dir: Path | None = None,
    observer: Observer | None = None,
    auth: Authorization | None = None,
    options: runner.AnsibleOptions | None = None,
) -> RunResult:
    """Clear the host locks dead runs left (only RUN_ID's with ``run_id``).

    The locks are read first (the ``unlock-inspect`` operation); each holder is judged on this
    controller (:func:`liveness`): a live run's lock is never cleared, another controller's
    young lock only with ``force``. Then only the locks so named are cleared, each by its run
    id. Refused (naming the holder) when nothing may be cleared.
    """
    seen = execute(
        prepare(
            "unlock-inspect", inventory_sources, limit=limit, state_dir=state_dir, options=options
        ),
        state_dir=state_dir,
    )
    runs: dict[str, str] = {}
    kept: list[str] = []
    for name, host in sorted(seen.hosts.items()):
        holder = host.lock_holder
        if host.status not in ("ok", "changed"):
            kept.append(f"{name}: could not read its lock ({host.message})")
        elif not holder or (run_id and holder.get("run_id") != run_id):
            continue
        elif (state := liveness(holder)) == "live":
            kept.append(f"{name}: held by {describe(holder)}, which is running now")
        elif state == "unknown" and not force:
            kept.append(
                f"{name}: held by {describe(holder)}, from another controller, younger than "
                "the lock's maximum age: it may still run (--force if you know it is dead)"
            )
        else:
            runs[name] = str(holder.get("run_id", ""))
    if not runs:
        found = (
            "; ".join(kept)
            if kept
            else "no host holds a lock" + (f" of run {run_id}" if run_id else "")
        )
        if kept:
            raise Refused(f"nothing cleared: {found}")
        raise Refused(f"nothing to clear: {found}")
    prep = prepare(
        "unlock",
        inventory_sources,
        Request(unlock_run=run_id, force=force, unlock_runs=runs),
        limit=",".join(sorted(runs)),
        state_dir=state_dir,
        options=options,
    )
    result = execute(prep, state_dir=state_dir, observer=observer, auth=auth)
    result.warnings += [f"kept: {k}" for k in kept]
    return result


def verify(
    inventory_sources: str | Sequence[str],
    *,
    limit: str | None = None,
    state_dir: Path | None = None,
    observer: Observer | None = None,
    options: runner.AnsibleOptions | None = None,
) -> RunResult:
    """Run only the checks (units, health, log) against an inventory; changes nothing."""
    prep = prepare("verify", inventory_sources, limit=limit, state_dir=state_dir, options=options)
    return execute(prep, check=False, state_dir=state_dir, observer=observer)
