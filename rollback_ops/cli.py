"""The command line: a thin layer over :mod:`rollback_ops.api` and :mod:`rollback_ops.lab`.

Exit codes: 0 success; 1 the rollback failed on some host (failed or unreachable);
2 bad input (inventory, flag, option); 3 refused or preflight failed; 4 lab or runner
trouble, an unusable state dir, or an internal error (its traceback goes to a file, never to
the terminal); 130 interrupted (Ctrl-C), 143 stopped by SIGTERM; 141 the reader of stdout
went away (``| head``): output stops quietly, as for a program killed by SIGPIPE.
With ``--check --detailed-exitcode`` (apply): 0 nothing would change, 2 changes pending,
1 failed, bad input included (so that 2 means only drift); 3, 4, 130 and 143 as above.

Every JSON output (``--json``, receipts) is a versioned document (:mod:`rollback_ops.jsonout`)
whose JSON Schema ships in ``rollback_ops/schemas``.

Every problem ends as one ``rollback-ops: error: ...`` line on stderr (a multi-problem
input error lists its problems on the lines after), never as a Python traceback.

The commands are built from :mod:`rollback_ops.operations`: each operation's arguments are
declared next to it and fill its request; this module adds the arguments of a command
(inventory, guard, output) and Ansible's own pass-through options.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback_ops import (
    api,
    authorization,
    history,
    jsonout,
    junit,
    operations,
    paths,
    progress,
    receipts,
)
from rollback_ops.authorization import Authorization, current_operator
from rollback_ops.durations import duration
from rollback_ops.exceptions import Refused, RollbackOpsError
from rollback_ops.operations import Argument, Operation, ansible_arguments, ansible_options
from rollback_ops.operations.base import add_arguments, argument, count
from rollback_ops.operations.levels import LEVEL_ARGUMENTS, NO_VERIFY
from rollback_ops.operations.maintenance import Resume
from rollback_ops.progress import PlainProgress, backup_table, recap
from rollback_ops.results import RunResult, detailed_exit_status

INVENTORY_HELP = (
    "a path to an inventory (any Ansible reads; a path that exists wins), or a name found in "
    "./inventories/NAME or $ROLLBACK_OPS_INVENTORIES (prod and production stand for each "
    "other), lab, local, or a shipped example (example:staging, example:production); "
    "repeatable: the sources merge as in ansible-playbook"
)


def _amount(text: str) -> float:
    """A measurement: a finite number >= 0 (nan, inf and negatives mean a typo)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number >= 0")
    return value


def inventory_argument(required: bool = True) -> Argument:
    return argument("--inventory", "-i", action="append", required=required, help=INVENTORY_HELP)


LIMIT = argument(
    "--limit", "-l", help="only these hosts: an Ansible host pattern (web1,web2  web*  web:!web2)"
)
JSON = argument("--json", action="store_true", help="print the JSON receipt on stdout")
JUNIT = argument(
    "--junit",
    type=Path,
    metavar="FILE",
    help="also write the run as a JUnit XML report: a testcase per host and step, failures "
    "with their message (written even when the run fails or is refused)",
)
DETAILED_EXITCODE = argument(
    "--detailed-exitcode",
    action="store_true",
    help="with --check, for CI: exit 0 when nothing would change, 2 when changes are "
    "pending (drift), 1 when it failed or the input is bad (3 refused, 130/143 "
    "interrupted); refused without --check",
)
LEVEL_TARGET = (*LEVEL_ARGUMENTS, inventory_argument(), LIMIT, JSON)
RUN_OPTIONS = (
    argument("--check", action="store_true", help="check mode: change nothing on any host"),
    argument("--diff", action="store_true", help="show the changes to files"),
)
GUARD = (
    argument(
        "--run",
        metavar="RUN_ID",
        help="production: run the request RUN_ID that another listed approver approved "
        "(its level, options and hosts; refused if the plan changed since)",
    ),
    argument(
        "--break-glass",
        action="store_true",
        help="act alone on production in an emergency (flag and emergency levels only; "
        "needs --reason; recorded as break-glass and notified)",
    ),
    argument("--reason", help="why: recorded in the history and the receipt"),
    argument(
        "--yes",
        "-y",
        action="store_true",
        help="do not ask for confirmation (it never stands in for an approval)",
    ),
)
UNLOCK_GUARD = (
    argument(
        "--break-glass",
        action="store_true",
        help="production: clear the lock alone (needs --reason; recorded and notified)",
    ),
    argument("--reason", help="why: recorded in the history"),
    argument("--yes", "-y", action="store_true", help="do not ask for confirmation"),
)


def level_argument(required: bool) -> Argument:
    return argument(
        "--level",
        "-L",
        required=required,
        choices=[*operations.rollback_levels()],
        help="rollback level",
    )


@dataclass(frozen=True)
class Command:
    """One subcommand: its help, handler and arguments (in the order --help shows them)."""

    help: str
    handler: Callable[[argparse.Namespace], int]
    arguments: tuple[Argument, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    actions: dict[str, Command] = field(default_factory=dict)  # `backup ACTION`, `lab ...`
    action_dest: str = ""
    action_metavar: str = ""
    # shown under --help as "examples:", one command line each (tests: every command has one)
    examples: tuple[str, ...] = ()

    def add_to(self, sub: Any, name: str) -> None:
        parser = sub.add_parser(
            name,
            help=self.help,
            description=self.help[:1].upper() + self.help[1:] + ".",
            epilog=(
                "examples:\n" + "\n".join(f"  {e}" for e in self.examples)
                if self.examples
                else None
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(parser, self.arguments)
        parser.set_defaults(**self.defaults)
        if self.actions:
            actions = parser.add_subparsers(
                dest=self.action_dest, required=True, metavar=self.action_metavar
            )
            for action, command in self.actions.items():
                command.add_to(actions, action)


def operation_command(
    op: Operation, handler: Callable[[argparse.Namespace], int], examples: tuple[str, ...] = ()
) -> Command:
    """A command that runs one operation's playbook: its target, its own arguments, and
    Ansible's pass-through options."""
    return Command(
        op.summary,
        handler,
        (inventory_argument(), LIMIT, *op.arguments, JSON, JUNIT, *ansible_arguments()),
        examples=examples or op.examples,
    )


def build_parser() -> argparse.ArgumentParser:
    levels = operations.rollback_levels()
    parser = argparse.ArgumentParser(
        prog="rollback-ops",
        description="Reviewed, repeatable rollbacks driven by Ansible. Levels, smallest first: "
        + "; ".join(f"{n}: {lv.summary}" for n, lv in levels.items())
        + ".",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        help="print rollback-ops' version and those of ansible-core and ansible-runner",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="runs, receipts, lab and demo files (default: $ROLLBACK_OPS_STATE_DIR "
        "or ~/.local/state/rollback-ops)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        command.add_to(sub, name)
    return parser


class _Version(argparse.Action):
    """``--version``: looked up only when asked (the installed distributions' metadata)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(versions())
        parser.exit()


def versions() -> str:
    """``rollback-ops 0.1.0 (ansible-core 2.17.1, ansible-runner 2.4.0)``."""
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"rollback-ops {version('rollback-ops')} (ansible-core {version('ansible-core')}, "
        f"ansible-runner {version('ansible-runner')})"
    )


def _observer(stream: Any) -> PlainProgress:
    return progress.observer(stream)


def _authorize(
    prep: api.Prepared, args: argparse.Namespace, approved: Authorization | None = None
) -> Authorization:
    """Who runs this and what allows it (``approved``: an approved request's authorization,
    from the hosts); asks on a terminal where a person must confirm. On production the
    operator types the inventory's name as well: a confirmation, never an approval."""
    auth = approved or Authorization(
        operator=current_operator(), break_glass=args.break_glass, reason=args.reason or ""
    )
    if approved is not None and args.reason:
        auth = dataclasses.replace(auth, reason=args.reason)
    level = prep.operation.name
    # the break-glass rules hold everywhere, before any prompt
    authorization.check(auth, level=level, production=False, check_mode=True)
    if args.check:
        return auth
    names = ", ".join(prep.hosts)
    if prep.production:
        authorization.check(auth, level=level, production=True, check_mode=False)
        if args.yes:
            return auth
        if not sys.stdin.isatty():
            raise Refused("no terminal to confirm on: add --yes (the approval is still needed)")
        allowed = (
            f"BREAK-GLASS ({auth.reason})"
            if auth.break_glass
            else f"request {auth.approval_run} of {auth.requester}, approved by {auth.approved_by}"
        )
        answer = input(
            f"PRODUCTION: level {level} on {names}, by {auth.operator}, {allowed}.\n"
            f"Type the inventory name ({prep.inventory.name}) to go on: "
        )
        # the inventory's name or any -i value as typed (a directory's trailing / aside)
        typed = {name.rstrip("/") for name in (prep.inventory.name, *(args.inventory or ()))}
        if answer.strip().rstrip("/") not in typed - {""}:
            raise Refused("not confirmed; nothing was changed")
        return dataclasses.replace(auth, confirmed_by_typing=True)
    if args.yes:
        return auth
    if not sys.stdin.isatty():
        raise Refused("no terminal to confirm on: add --yes to apply without asking")
    answer = input(f"Apply level {level} to {names}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise Refused("not confirmed; nothing was changed")
    return auth


def _ci_options(args: argparse.Namespace) -> None:
    """Check --junit's path and --detailed-exitcode's company before any host is touched."""
    if getattr(args, "detailed_exitcode", False) and not args.check:
        raise RollbackOpsError(
            "--detailed-exitcode goes with --check (it says whether changes are pending)"
        )
    if getattr(args, "junit", None):
        junit.check_target(args.junit)


def _finish(result: RunResult, args: argparse.Namespace, observer: PlainProgress) -> int:
    observer.finish()
    print(recap(result), file=sys.stderr)
    if getattr(args, "junit", None):
        try:
            junit.write(junit.report(result), args.junit)
        except OSError as exc:  # the run happened: say so, do not hide its outcome
            problem = f"--junit {args.junit}: not written: {exc.strerror or exc}"
            print(f"rollback-ops: warning: {problem}", file=sys.stderr)
    if args.json or result.receipt_error:
        _print_json(result.receipt())
    if getattr(args, "detailed_exitcode", False):
        return detailed_exit_status(result)
    return result.exit_status


def _print_json(doc: dict[str, Any]) -> None:
    """A JSON document on stdout (a closed pipe ends in main: exit 141, no traceback)."""
    print(json.dumps(doc, indent=2))


def _junit_refused(args: argparse.Namespace, exc: RollbackOpsError) -> None:
    """--junit on a run that did not start: the report still says why (best effort)."""
    path = getattr(args, "junit", None)
    if not path:
        return
    level = getattr(args, "level", None) or getattr(args, "backup_command", None) or args.command
    inventories = list(getattr(args, "inventory", None) or [])
    outcome = "refused" if exc.exit_code == Refused.exit_code else "error"
    report = junit.refused(str(level), inventories, args.command, str(exc), outcome)
    with contextlib.suppress(OSError):
        junit.write(report, path)


def _refuse(problems: list[str]) -> None:
    if problems:
        raise RollbackOpsError("; ".join(problems))


def cmd_apply(args: argparse.Namespace) -> int:
    approved = None
    if args.run:
        prep, approved = _prepare_approved(args)
    elif args.resume:
        _refuse(operations.OPERATIONS["resume"].usage_problems(args))
        prep = api.prepare_resume(
            args.resume,
            inventory_sources=args.inventory,
            verify=args.verify,
            state_dir=args.state_dir,
            options=ansible_options(args),
        )
        from rollback_ops import approvals

        approved = approvals.resumed(prep, args.resume, args.state_dir)
    else:
        missing = [
            o for o, v in (("--level", args.level), ("--inventory", args.inventory)) if not v
        ]
        if missing:
            raise RollbackOpsError(f"apply needs {' and '.join(missing)} (or --resume RUN_ID)")
        prep = _prepare_level(args)
    return _execute(prep, args, approved)


def _execute(
    prep: api.Prepared, args: argparse.Namespace, approved: Authorization | None = None
) -> int:
    """Run a prepared rollback (apply, undo) once the guard allows it; its exit status."""
    _ci_options(args)
    auth = _authorize(prep, args, approved)
    observer = _observer(sys.stderr)
    result = api.execute(
        prep,
        check=args.check,
        diff=args.diff,
        state_dir=args.state_dir,
        observer=observer,
        auth=auth,
    )
    return _finish(result, args, observer)


def cmd_undo(args: argparse.Namespace) -> int:
    from rollback_ops import undo

    prep = undo.prepare_undo(
        args.run_id,
        inventory_sources=args.inventory,
        force=args.force,
        verify=args.verify,
        state_dir=args.state_dir,
        options=ansible_options(args),
    )
    return _execute(prep, args)  # under the guard of the undone run's level


def _prepare_approved(args: argparse.Namespace) -> tuple[api.Prepared, Authorization]:
    """``apply --run RUN_ID``: the approved request, read from the hosts and checked."""
    from rollback_ops import approvals

    receipts.check_run_id(args.run)
    given = [o for o, v in (("--resume", args.resume), ("--limit", args.limit)) if v]
    if args.break_glass:
        given.append("--break-glass")
    if given:
        raise RollbackOpsError(
            f"--run takes the request's hosts and options; leave out {', '.join(given)}"
        )
    if not args.inventory:
        raise RollbackOpsError("apply --run needs --inventory")
    # (--no-verify is given when verify is False: its store_false has no default to compare)
    typed = not args.verify or any(
        arg.given(args) for arg in LEVEL_ARGUMENTS if arg.dest != "verify"
    )
    prep, auth, pending = approvals.prepare_run(
        args.run,
        args.inventory,
        (lambda level: level.request(args)) if typed else None,
        state_dir=args.state_dir,
        options=ansible_options(args),
    )
    if args.level and args.level != prep.operation.name:
        raise Refused(
            f"request {args.run} is level {prep.operation.name}, not {args.level}: "
            "the plan changed since it was approved"
        )
    for line in pending.describe():
        print(line, file=sys.stderr)
    return prep, auth


def cmd_request(args: argparse.Namespace) -> int:
    from rollback_ops import approvals

    prep = _prepare_level(args)
    if not prep.production:
        raise Refused(
            f"inventory {prep.inventory.name} is not production "
            f"({', '.join(prep.environments)}): apply it, no approval is needed"
        )
    observer = _observer(sys.stderr)
    result, digest = approvals.request(
        prep, reason=args.reason or "", state_dir=args.state_dir, observer=observer
    )
    code = _finish(result, args, observer)
    if result.ok:
        inventory = " ".join(f"-i {i}" for i in args.inventory)
        print(
            f"request {result.run_id} (plan hash {digest[:12]}) is pending on "
            f"{', '.join(prep.hosts)}; another login in rollback_approvers approves it with:\n"
            f"  rollback-ops approve {result.run_id} {inventory}\n"
            f"then: rollback-ops apply --run {result.run_id} {inventory}",
            file=sys.stderr,
        )
        if not args.json:
            print(result.run_id)
    return code


def cmd_approve(args: argparse.Namespace) -> int:
    from rollback_ops import approvals

    receipts.check_run_id(args.run_id)

    def confirm(pending: approvals.Pending) -> None:
        for line in pending.describe():
            print(line, file=sys.stderr)
        if args.yes:
            return
        if not sys.stdin.isatty():
            raise Refused("no terminal to confirm on: add --yes to approve without asking")
        if input("Approve this run? [y/N] ").strip().lower() not in ("y", "yes"):
            raise Refused("not approved; nothing was written")

    observer = _observer(sys.stderr)
    _pending, result = approvals.approve(
        args.run_id,
        args.inventory,
        state_dir=args.state_dir,
        observer=observer,
        options=ansible_options(args),
        confirm=confirm,
    )
    return _finish(result, args, observer)


def level_usage_problems(level: Operation, args: argparse.Namespace) -> list[str]:
    """The level arguments given to a level that does not take them, each naming the
    levels that do."""
    owners_of: dict[tuple[str, ...], list[str]] = {}
    for arg in LEVEL_ARGUMENTS:
        if arg.given(args) and arg not in level.arguments:
            owners = tuple(
                n for n, lv in operations.rollback_levels().items() if arg in lv.arguments
            )
            owners_of.setdefault(owners, []).append(arg.display)
    return [
        f"{given[0]} goes with --level {owners[0]}"
        if len(owners) == 1 and len(given) == 1
        else f"{', '.join(given)}: only with --level {' or '.join(owners)}"
        for owners, given in owners_of.items()
    ]


def _prepare_level(args: argparse.Namespace) -> api.Prepared:
    level = operations.get(args.level)
    for arg in LEVEL_ARGUMENTS:  # a malformed value is named before a misplaced one
        if arg.given(args):
            arg.value(args)
    _refuse(level_usage_problems(level, args))
    return api.prepare(
        level,
        args.inventory,
        level.request(args),
        limit=args.limit,
        state_dir=args.state_dir,
        options=ansible_options(args),
    )


def cmd_plan(args: argparse.Namespace) -> int:
    prep = _prepare_level(args)
    plans = api.plan(prep)
    if args.json:
        hosts = [
            {
                "host": p.host,
                "address": p.address,
                "app": p.app,
                "changes": p.changes,
                "steps": [{"id": i, "step": s} for i, s in zip(p.step_ids, p.steps, strict=True)],
            }
            for p in plans
        ]
        body = {"level": args.level, "inventory": prep.inventory.name, "hosts": hosts}
        _print_json(jsonout.document("plan", body))
        return 0
    for p in plans:
        print(f"{p.host} ({p.address}) app {p.app}, level {args.level}:")
        if p.changes:
            print("  what it does:")
            for line in p.changes:
                print(f"    - {line}")
        print("  the playbook's steps, in order:")
        for i, step in enumerate(p.steps, 1):
            print(f"    {i:>2}. {step}")
    print("(plan only: no host was contacted, nothing was changed)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    _ci_options(args)
    observer = _observer(sys.stderr)
    result = api.verify(
        args.inventory,
        limit=args.limit,
        state_dir=args.state_dir,
        observer=observer,
        options=ansible_options(args),
    )
    return _finish(result, args, observer)


def cmd_unlock(args: argparse.Namespace) -> int:
    if args.run:
        receipts.check_run_id(args.run)
    unlock = operations.get("unlock")
    options = ansible_options(args)
    prep = api.prepare(
        unlock,
        args.inventory,
        unlock.request(args),
        limit=args.limit,
        state_dir=args.state_dir,
        options=options,
    )
    auth = _authorize(prep, args)
    observer = _observer(sys.stderr)
    result = api.unlock(
        args.inventory,
        run_id=args.run,
        force=args.force,
        limit=args.limit,
        state_dir=args.state_dir,
        observer=observer,
        auth=auth,
        options=options,
    )
    return _finish(result, args, observer)


def cmd_backup(args: argparse.Namespace) -> int:
    op = operations.get(f"backup-{args.backup_command}")
    _refuse(op.usage_problems(args))
    prep = api.prepare(
        op,
        args.inventory,
        op.request(args),
        limit=args.limit,
        app=args.app,
        state_dir=args.state_dir,
        options=ansible_options(args),
    )
    _ci_options(args)
    # a guarded backup command (prune) is confirmed and approved as a level is
    auth = _authorize(prep, args) if op.guarded else None
    observer = _observer(sys.stderr)
    result = api.execute(
        prep, check=args.check, state_dir=args.state_dir, observer=observer, auth=auth
    )
    code = _finish(result, args, observer)
    print(backup_table(result), file=sys.stderr)
    return code


def cmd_runs(args: argparse.Namespace) -> int:
    from rollback_ops import jsonout, retention

    state = paths.writable_state_dir(args.state_dir)
    keep, age = retention.settings()
    pruned = retention.prune_runs(
        state,
        keep=args.keep if args.keep is not None else keep,
        max_age_seconds=args.max_age if args.max_age is not None else age,
        check=args.check,
    )
    if args.json:
        print(json.dumps(jsonout.document("runs-prune", pruned.as_dict()), indent=2))
    else:
        verb = "would remove" if args.check else "removed"
        for run_id in pruned.removed:
            print(f"{verb} {run_id}")
        print(f"{verb} {len(pruned.removed)} run dir(s) of {state / 'runs'}")
        reasons: dict[str, int] = {}
        for why in pruned.kept.values():
            reasons[why] = reasons.get(why, 0) + 1
        for why, n in reasons.items():
            print(f"kept {n}: {why}")
    for error in pruned.errors:
        print(f"rollback-ops: warning: could not remove {error}", file=sys.stderr)
    return 4 if pruned.errors else 0


def cmd_status(args: argparse.Namespace) -> int:
    from rollback_ops import status

    report = status.status(
        args.inventory, limit=args.limit, state_dir=args.state_dir, options=ansible_options(args)
    )
    print(json.dumps(status.document(report), indent=2) if args.json else status.render(report))
    return report.exit_status


def cmd_levels(args: argparse.Namespace) -> int:
    for name, lv in operations.rollback_levels().items():
        print(f"{name:<10} {lv.summary}\n{'':<10} when: {lv.use_when}")
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    from rollback_ops import completion

    print(completion.script(args.shell, build_parser()), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rollback_ops import demo

    state = paths.state_dir(args.state_dir)
    inventory_path = demo.create_sandbox(state)  # what `--inventory local` names
    print(
        f"demo: sandbox app at {inventory_path.parent}; turning its master switch off "
        "through Ansible's local connection",
        file=sys.stderr,
    )
    observer = _observer(sys.stderr)
    result = api.apply("flag", "local", diff=True, state_dir=state, observer=observer)
    return _finish(result, args, observer)


def cmd_lab(args: argparse.Namespace) -> int:
    from rollback_ops.exceptions import LabError

    # the lab is in a source checkout only (the wheel leaves it out), with the `lab` extra
    try:
        from rollback_ops.lab import Lab
    except ModuleNotFoundError as exc:
        if exc.name == "rollback_ops.lab":
            raise LabError(
                "the test lab is not installed: it ships with the source checkout, not the "
                "wheel (git clone, then pip install -e '.[lab]')"
            ) from None
        if (exc.name or "").partition(".")[0] == "docker":
            raise LabError(
                "the test lab needs the Docker SDK: pip install -e '.[lab]' in the checkout"
            ) from None
        raise

    lab = Lab(paths.state_dir(args.state_dir), name=args.name, first_address=args.first_address)
    if args.lab_command == "up":
        print(
            f"lab {args.name}: bringing up {args.hosts} host(s) (first run builds the image, "
            "about 2 minutes)",
            file=sys.stderr,
        )
        hosts = lab.up(args.hosts, install=args.install)
        for h in hosts:
            print(f"  {h.name:<6} {h.address:<12} {h.state:<8} {h.ssh}", file=sys.stderr)
        print(f"inventory: {lab.inventory_path} (use --inventory lab)", file=sys.stderr)
        return 0
    if args.lab_command == "down":
        print(f"removed {lab.down()} lab host(s)", file=sys.stderr)
        return 0
    hosts = lab.status()
    if args.json:
        body = {"inventory": str(lab.inventory_path), "hosts": [h.as_dict() for h in hosts]}
        _print_json(jsonout.document("lab", body))
    elif not hosts:
        print("no lab hosts (rollback-ops lab up)")
    else:
        for h in hosts:
            print(f"{h.name:<6} {h.address:<12} {h.container:<26} {h.state:<8} {h.ssh}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from rollback_ops import history_view
    from rollback_ops.text import short

    if args.last < 1:
        raise RollbackOpsError(f"--last {short(args.last)}: must be 1 or more (the last N runs)")
    warnings: list[str] = []
    rows = history.read(paths.readable_state_dir(args.state_dir), warnings)
    rows = history_view.select(rows, app=args.app, inventory=args.inventory_name, host=args.host)
    rows = rows[-args.last :]
    for warning in warnings:
        print(f"rollback-ops: warning: {warning}", file=sys.stderr)
    if args.json:
        _print_json(jsonout.document("history", {"runs": [dataclasses.asdict(r) for r in rows]}))
        return 0
    if not rows:
        if args.app or args.inventory_name or args.host:
            print("no recorded run matches --app, --inventory and --host as given")
        else:
            print("no run to show" if warnings else "no runs recorded yet")
        return 0
    print("\n".join(history_view.render(rows, wide=args.wide)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rollback_ops import report

    state = paths.readable_state_dir(args.state_dir)
    print(report.render(state, args.run_id, args.templates), end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rollback_ops import inventory, recommend

    raw, where = None, "spec"
    if args.inventory:
        inv = inventory.load(args.inventory, paths.state_dir(args.state_dir))
        host = next(iter(inv.hosts.values()))
        raw, where = host.vars.get("rollback_thresholds"), host.origin("rollback_thresholds")
    thresholds = recommend.Thresholds.from_vars(raw, where)
    signals = recommend.Signals(
        error_rate=args.error_rate,
        p95_ms=args.p95_ms,
        for_minutes=args.for_minutes,
        users_affected=args.users_affected,
        memory_mb=args.memory_mb,
        data_corruption=args.data_corruption,
        security=args.security,
        service_down=args.service_down,
        code_bug=args.code_bug,
    )
    rec = recommend.recommend(signals, thresholds)
    if args.json:
        _print_json(jsonout.document("recommend", rec.as_dict()))
        return 0
    d = rec.decision
    print(f"level:    {d.level}")
    print(f"urgency:  {d.urgency} ({d.severity})")
    print(f"approval: {d.approval}")
    print(f"because:  {d.rule} [{d.source}]")
    for f in rec.fired:
        if f is not d:
            print(f"also:     {f.severity}: {f.level}, {f.urgency}: {f.rule} [{f.source}]")
    if d.level not in ("none",):
        print(
            f"next:     rollback-ops plan --level {d.level} --inventory {args.inventory or 'INV'}"
        )
    return 0


LAB_HIDDEN = (
    argument("--name", default="lab", help=argparse.SUPPRESS),
    argument("--first-address", default="127.0.0.11", help=argparse.SUPPRESS),
)
RECOMMEND_ARGUMENTS = (
    argument("--error-rate", type=_amount, metavar="PCT", help="percent of requests failing"),
    argument("--p95-ms", type=_amount, metavar="MS", help="p95 response time"),
    argument(
        "--for-minutes",
        type=_amount,
        default=0,
        metavar="N",
        help="how long the symptoms have lasted",
    ),
    argument(
        "--users-affected",
        type=_amount,
        metavar="PCT",
        help="percent of users unable to use core features",
    ),
    argument("--memory-mb", type=_amount, metavar="MB", help="memory used by the app"),
    argument("--data-corruption", action="store_true", help="evidence of data corruption"),
    argument("--security", action="store_true", help="a security vulnerability"),
    argument("--service-down", action="store_true", help="the health check fails"),
    argument("--code-bug", action="store_true", help="a code bug needs reverting"),
    argument("--inventory", "-i", help="read rollback_thresholds from this inventory"),
    argument("--json", action="store_true", help="print the recommendation as JSON"),
)


def backup_command(op: operations.backup.Backup) -> Command:
    """`backup ACTION`; a guarded one (prune) takes check mode and the guard's options."""
    command = operation_command(op, cmd_backup)
    if not op.guarded:
        return dataclasses.replace(command, examples=op.examples, defaults={"check": False})
    return dataclasses.replace(
        command,
        arguments=(*command.arguments, RUN_OPTIONS[0], *UNLOCK_GUARD),
        defaults={"break_glass": False},
        examples=op.examples,
    )


def _operation(name: str) -> Operation:
    return operations.OPERATIONS[name]


SUBCOMMANDS: dict[str, Command] = {
    "apply": Command(
        "run a rollback level against an inventory",
        cmd_apply,
        (
            level_argument(required=False),
            *LEVEL_ARGUMENTS,
            inventory_argument(required=False),
            LIMIT,
            JSON,
            JUNIT,
            *Resume.arguments,
            *RUN_OPTIONS,
            DETAILED_EXITCODE,
            *GUARD,
            *ansible_arguments(short_forks=False),  # -f is --flag here
        ),
        examples=(
            "rollback-ops apply --level flag -i staging --flag NEW_CHECKOUT=false",
            "rollback-ops apply --level code -i staging --to v1.4.2 --check --diff",
            "rollback-ops apply --level emergency -i production --break-glass --reason 'data leak'",
            "rollback-ops apply --level code -i staging --check --detailed-exitcode "
            "--junit code.xml",
            "rollback-ops apply --resume 20260101T120000Z-a1b2c3",
        ),
    ),
    "request": Command(
        "record a production run on its hosts for another person to approve",
        cmd_request,
        (
            level_argument(required=True),
            *LEVEL_TARGET,
            argument("--reason", help="why: shown to the approver, recorded"),
            *ansible_arguments(short_forks=False),  # -f is --flag here
        ),
        examples=(
            "rollback-ops request --level code -i prod --to release-1.4 --reason 'INC-42'",
            "rollback-ops request --level flag -i prod --flag ENABLE_TIME_WEIGHTING=false",
        ),
    ),
    "approve": Command(
        "approve another person's pending production run, as your own SSH login",
        cmd_approve,
        (
            argument("run_id", metavar="RUN_ID", help="the request's run id"),
            inventory_argument(),
            argument("--yes", "-y", action="store_true", help="do not ask for confirmation"),
            JSON,
            *ansible_arguments(),
        ),
        examples=("rollback-ops approve 20240501T101500Z-1a2b3c -i prod",),
    ),
    "plan": Command(
        "print the ordered steps per host; contacts no host",
        cmd_plan,
        (level_argument(required=True), *LEVEL_TARGET),
        examples=(
            "rollback-ops plan --level code -i staging",
            "rollback-ops plan --level flag -i prod --flag ENABLE_TIME_WEIGHTING=false --json",
        ),
    ),
    "verify": operation_command(
        _operation("verify"),
        cmd_verify,
        examples=("rollback-ops verify -i staging --junit verify.xml",),
    ),
    "unlock": dataclasses.replace(
        operation_command(_operation("unlock"), cmd_unlock),
        arguments=(
            inventory_argument(),
            LIMIT,
            *_operation("unlock").arguments,
            *UNLOCK_GUARD,
            JSON,
            *ansible_arguments(),
        ),
        defaults={"check": False, "break_glass": False},
        examples=_operation("unlock").examples,
    ),
    "levels": Command(
        "list the rollback levels, smallest first, and when to choose each",
        cmd_levels,
        examples=("rollback-ops levels",),
    ),
    "status": Command(
        _operation("status").summary,
        cmd_status,
        (
            inventory_argument(),
            LIMIT,
            argument(
                "--json",
                action="store_true",
                help="print the status as JSON (kind status, with a drift list)",
            ),
            *ansible_arguments(),
        ),
        examples=(
            "rollback-ops status -i prod",
            "rollback-ops status -i staging --limit 'web*' --json",
        ),
    ),
    "undo": Command(
        "put back what a flag, emergency, code or config run changed, from its receipt, under "
        "the guard of its level (config: each file from the copy the run made; full runs: "
        "refused, saying where the data as it was is)",
        cmd_undo,
        (
            argument("run_id", metavar="RUN_ID", help="the run to undo (see `history`)"),
            argument(
                "--inventory",
                "-i",
                action="append",
                help="confirm the inventory: refused unless it is the run's own",
            ),
            *RUN_OPTIONS,
            DETAILED_EXITCODE,
            argument(
                "--force",
                action="store_true",
                help="undo even where a later change moved a key, HEAD or a config file since "
                "the run (it is overwritten, a config file after a copy); code: despite "
                "uncommitted changes (recorded first)",
            ),
            NO_VERIFY,
            JSON,
            JUNIT,
            *GUARD,
            *ansible_arguments(),
        ),
        examples=(
            "rollback-ops undo 20250102T030405Z-a1b2c3 --check --diff",
            "rollback-ops undo 20250102T030405Z-a1b2c3 -i staging --yes",
            "rollback-ops undo 20250102T030405Z-a1b2c3 -i prod --break-glass --reason 'INC-42'",
        ),
    ),
    "report": Command(
        "render a run's rollback log (what was done, by whom, what it changed) as Markdown",
        cmd_report,
        (
            argument("run_id", metavar="RUN_ID", help="the run id (see `history`)"),
            argument(
                "--templates",
                type=Path,
                metavar="DIR",
                help="a directory whose report.md.j2 overrides the built-in template",
            ),
        ),
        examples=(
            "rollback-ops report 20250102T030405Z-a1b2c3",
            "rollback-ops report 20250102T030405Z-a1b2c3 > INC-42-rollback.md",
            "rollback-ops report 20250102T030405Z-a1b2c3 --templates ./templates",
        ),
    ),
    "recommend": Command(
        "which level, how urgently, approved by whom, from the symptoms (the team's "
        "rollback triggers and decision matrix)",
        cmd_recommend,
        RECOMMEND_ARGUMENTS,
        examples=(
            "rollback-ops recommend --error-rate 12 --for-minutes 10 -i prod",
            "rollback-ops recommend --data-corruption --json",
        ),
    ),
    "backup": Command(
        "backup sets of the apps' databases, env and config files, and code ref",
        cmd_backup,
        actions={
            op.action: backup_command(op)
            for op in operations.OPERATIONS.values()
            if isinstance(op, operations.backup.Backup)
        },
        action_dest="backup_command",
        action_metavar="ACTION",
        examples=(
            "rollback-ops backup create -i prod --kind predeploy",
            "rollback-ops backup verify -i prod --max-age 26h",
        ),
    ),
    "runs": Command(
        "the run directories in the state dir (receipts, artifacts)",
        cmd_runs,
        actions={
            "prune": Command(
                "remove old run directories: beyond the newest N and older than the maximum "
                "age, never an unfinished run, one that left host locks, or a host's newest",
                cmd_runs,
                (
                    argument(
                        "--keep",
                        type=count,
                        metavar="N",
                        help="keep the newest N runs (default: $ROLLBACK_OPS_KEEP_RUNS or 100)",
                    ),
                    argument(
                        "--max-age",
                        type=duration,
                        metavar="DURATION",
                        help="keep the runs younger than this (90m, 26h, 2d; default: "
                        "$ROLLBACK_OPS_KEEP_RUNS_FOR or 90d)",
                    ),
                    argument(
                        "--check", action="store_true", help="list what would go; remove nothing"
                    ),
                    argument("--json", action="store_true", help="print the outcome as JSON"),
                ),
                examples=(
                    "rollback-ops runs prune --check",
                    "rollback-ops runs prune --keep 20 --max-age 30d --json",
                ),
            )
        },
        action_dest="runs_command",
        action_metavar="RUNS_COMMAND",
        examples=("rollback-ops runs prune --keep 20 --max-age 30d",),
    ),
    "history": Command(
        "the audit history of runs: who ran what, where, why, and how it ended",
        cmd_history,
        (
            argument("--json", action="store_true", help="print the entries as JSON"),
            argument("--last", type=int, default=20, metavar="N", help="the last N runs"),
            argument("--app", metavar="NAME", help="only the runs that targeted this app"),
            argument(
                "--inventory",
                "-i",
                dest="inventory_name",
                metavar="NAME",
                help="only the runs against this inventory (its name or path)",
            ),
            argument("--host", metavar="NAME", help="only the runs that targeted this host"),
            argument(
                "--wide",
                action="store_true",
                help="every field on one line per run (the default view fits 100 columns)",
            ),
        ),
        examples=(
            "rollback-ops history",
            "rollback-ops history --app analyticbot -i production --last 5",
            "rollback-ops history --host web2 --wide",
            "rollback-ops history --json",
        ),
    ),
    "demo": Command(
        "roll back a sandbox app on this machine (no Docker, local connection)",
        cmd_demo,
        (JSON,),
        examples=("rollback-ops demo", "rollback-ops --state-dir /tmp/try demo --json"),
    ),
    "completion": Command(
        "print a shell completion script (bash, zsh or fish)",
        cmd_completion,
        (argument("shell", choices=["bash", "zsh", "fish"], help="the shell"),),
        examples=(
            'eval "$(rollback-ops completion bash)"   # in ~/.bashrc',
            "rollback-ops completion zsh > ~/.zfunc/_rollback-ops",
            "rollback-ops completion fish > ~/.config/fish/completions/rollback-ops.fish",
        ),
    ),
    "lab": Command(
        "real test hosts: containers with systemd and sshd (source checkout only)",
        cmd_lab,
        actions={
            "up": Command(
                "start N hosts and write the `lab` inventory",
                cmd_lab,
                (
                    argument("--hosts", type=int, default=3, help="how many hosts (default 3)"),
                    argument(
                        "--install",
                        action="store_true",
                        help="install docker.io and debootstrap with apt-get when missing (root)",
                    ),
                    *LAB_HIDDEN,
                ),
                examples=("rollback-ops lab up", "rollback-ops lab up --hosts 2 --install"),
            ),
            "down": Command(
                "remove the lab hosts", cmd_lab, LAB_HIDDEN, examples=("rollback-ops lab down",)
            ),
            "status": Command(
                "list the lab hosts",
                cmd_lab,
                (argument("--json", action="store_true", help="print them as JSON"), *LAB_HIDDEN),
                examples=("rollback-ops lab status", "rollback-ops lab status --json"),
            ),
        },
        action_dest="lab_command",
        action_metavar="LAB_COMMAND",
        examples=(
            "rollback-ops lab up && rollback-ops apply --level flag -i lab --yes",
            "rollback-ops lab down",
        ),
    ),
}

# what runs each command (tests replace one to simulate a bug)
COMMANDS = {name: command.handler for name, command in SUBCOMMANDS.items()}


# the commands that write runs, receipts, history or locks: the state dir is checked first
WRITES_STATE = (
    "apply",
    "undo",
    "unlock",
    "backup",
    "verify",
    "demo",
    "runs",
    "status",
    "request",
    "approve",
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; every problem, expected or not, ends as a
    short message on stderr and an exit code (see the module docstring), never a traceback."""
    parsed = _parse(argv)
    if isinstance(parsed, int):
        given = sys.argv[1:] if argv is None else argv
        return 1 if parsed == 2 and "--detailed-exitcode" in given else parsed
    args = parsed
    try:
        if args.command in WRITES_STATE:
            paths.writable_state_dir(args.state_dir)
        try:
            code = COMMANDS[args.command](args)
        finally:  # a live display still drawn goes before any message below
            progress.stop_displays()
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except RollbackOpsError as exc:
        _error(str(exc))
        _junit_refused(args, exc)
        # with --detailed-exitcode, 2 means changes pending: bad input is a failure there
        if exc.exit_code == 2 and getattr(args, "detailed_exitcode", False):
            return 1
        return exc.exit_code
    except KeyboardInterrupt:
        print("rollback-ops: interrupted; nothing was changed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except OSError as exc:
        state_error = _state_dir_error(exc, args)
        if state_error is None:
            return _internal_error(exc, args)
        _error(str(state_error))
        return state_error.exit_code
    except Exception as exc:  # the last resort: a bug, reported without a traceback
        return _internal_error(exc, args)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or argparse's exit code after its usage and a one-line error
    (echoed values cut and their control characters escaped)."""
    import contextlib
    import io

    from rollback_ops.text import one_line

    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out):
            return build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        text = out.getvalue()
        at = text.find(": error: ")
        if at >= 0:
            message = text[at + len(": error: ") :].rstrip("\n")
            text = f"{text[:at]}: error: {one_line(message, 300)}\n"
        sys.stderr.write(text)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BrokenPipeError:  # --help | head -1
        _quiet_stdout()
        return 141


def _error(message: str) -> None:
    """``rollback-ops: error: MESSAGE``: each line bounded and without control characters;
    at most 40 lines (a multi-problem input error lists one problem a line)."""
    from rollback_ops.text import one_line

    lines = message[:40_000].splitlines() or [""]
    shown = [one_line(line, 1000) for line in lines[:40]]
    if len(lines) > 40:
        shown.append(f"  ... and {len(lines) - 40} more lines")
    print("rollback-ops: error: " + "\n".join(shown), file=sys.stderr)


def _quiet_stdout() -> None:
    """After a BrokenPipeError: point stdout at /dev/null so that Python's own flush at exit
    does not fail again (the Python documentation's recipe for SIGPIPE)."""
    import os

    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file descriptor (tests capture it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def _state_dir_error(exc: OSError, args: argparse.Namespace) -> RollbackOpsError | None:
    try:
        return paths.state_dir_error(exc, paths.state_dir(args.state_dir))
    except RollbackOpsError:
        return None


def _internal_error(exc: BaseException, args: argparse.Namespace) -> int:
    """A bug: one line on stderr naming the exception and where its traceback was saved
    (the state dir's ``crashes/``, else the temp dir), exit 4."""
    from rollback_ops.text import one_line

    try:
        message = one_line(str(exc), 200)
    except Exception:  # a broken __str__
        message = "(no message)"
    saved = _save_traceback(exc, args)
    print(
        f"rollback-ops: internal error: {type(exc).__name__}: {message} "
        f"(please report; details: {saved or 'the traceback could not be saved'})",
        file=sys.stderr,
    )
    return 4


def _save_traceback(exc: BaseException, args: argparse.Namespace) -> str:
    import os
    import platform
    import tempfile
    import time
    import traceback
    from importlib import metadata

    try:
        version = metadata.version("rollback-ops")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    text = (
        f"rollback-ops {version}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, command {args.command}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    name = f"traceback-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    for where in (lambda: paths.state_dir(args.state_dir) / "crashes", tempfile.gettempdir):
        saved: Path | None = None
        try:
            folder = Path(where())
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(text)
            saved = folder / name
        except Exception:  # the state dir may be what is broken: try the next place
            saved = None
        if saved is not None:
            return str(saved)
    return ""
