"""The command line: a thin layer over :mod:`rollback_ops.api` and :mod:`rollback_ops.lab`.

Exit codes: 0 success; 1 the rollback failed on some host (failed or unreachable);
2 bad input (inventory, flag, option); 3 refused or preflight failed; 4 lab or runner
trouble, an unusable state dir, or an internal error (its traceback goes to a file, never to
the terminal); 130 interrupted (Ctrl-C); 141 the reader of stdout went away (``| head``):
output stops quietly, as for a program killed by SIGPIPE.

Every problem ends as one ``rollback-ops: error: ...`` line on stderr (a multi-problem
input error lists its problems on the lines after), never as a Python traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollback_ops import api, authorization, history, levels, paths, progress, receipts
from rollback_ops.authorization import Authorization, current_operator
from rollback_ops.exceptions import Refused, RollbackOpsError
from rollback_ops.progress import LiveProgress, PlainProgress, backup_table, recap
from rollback_ops.results import RunResult

INVENTORY_HELP = (
    "a path to an inventory (any Ansible reads; a path that exists wins), or a name: "
    "staging, prod|production (./inventories/NAME, else the bundled examples), lab, local"
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


def _count(text: str) -> int:
    """A count of sets or days: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-ops",
        description="Reviewed, repeatable rollbacks driven by Ansible. Levels, smallest first: "
        + "; ".join(f"{n}: {lv.summary}" for n, lv in levels.LEVELS.items())
        + ".",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="runs, receipts, lab and demo files (default: $ROLLBACK_OPS_STATE_DIR "
        "or ~/.local/state/rollback-ops)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def target(p: argparse.ArgumentParser, with_level: bool = True, required: bool = True) -> None:
        if with_level:
            p.add_argument(
                "--level", "-L", required=required, choices=[*levels.LEVELS], help="rollback level"
            )
            p.add_argument(
                "--flag",
                "-f",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="flag level: set this flag (repeatable); without it the master "
                "switch is turned off",
            )
            p.add_argument(
                "--allow-new-flag",
                action="store_true",
                help="accept a flag the app does not declare (adds it if missing)",
            )
            p.add_argument(
                "--no-verify",
                dest="verify",
                action="store_false",
                help="skip the checks after the change (health, units, log)",
            )
            p.add_argument(
                "--to",
                metavar="REF",
                default="",
                help="code level, git: the commit, tag or branch to go back to "
                "(default: the previous release, the second newest release tag)",
            )
            p.add_argument(
                "--backup-stamp",
                metavar="STAMP",
                default="",
                help="code level, backup files: restore <file>.backup.STAMP "
                "(default: each file's newest backup)",
            )
            p.add_argument(
                "--backup-id",
                metavar="SET_ID",
                default="",
                help="full and config levels: the backup set to restore (default: the newest "
                "verified pre-deployment set; config: the newest verified set holding the files; "
                "see `backup list`)",
            )
            p.add_argument(
                "--force",
                action="store_true",
                help="code level: revert even with uncommitted changes to tracked files "
                "(they are recorded first)",
            )
        p.add_argument("--inventory", "-i", required=required, help=INVENTORY_HELP)
        p.add_argument(
            "--limit",
            "-l",
            help="only these hosts: an Ansible host pattern (web1,web2  web*  web:!web2)",
        )
        p.add_argument("--json", action="store_true", help="print the JSON receipt on stdout")

    p_apply = sub.add_parser("apply", help="run a rollback level against an inventory")
    target(p_apply, required=False)
    p_apply.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue RUN_ID (code level) on the hosts where it did not finish, with its "
        "level, inventory, options and targets; the steps it completed change nothing",
    )
    p_apply.add_argument(
        "--check", action="store_true", help="check mode: change nothing on any host"
    )
    p_apply.add_argument("--diff", action="store_true", help="show the changes to files")
    p_apply.add_argument(
        "--approved-by",
        metavar="NAME",
        help="who approved this rollback (not yourself); lets production run without the prompt",
    )
    p_apply.add_argument(
        "--break-glass",
        action="store_true",
        help="act alone on production in an emergency (flag and emergency levels only; "
        "needs --reason; recorded as break-glass)",
    )
    p_apply.add_argument("--reason", help="why: recorded in the history and the receipt")
    p_apply.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="do not ask for confirmation (not enough for production)",
    )

    p_plan = sub.add_parser("plan", help="print the ordered steps per host; contacts no host")
    target(p_plan)

    p_verify = sub.add_parser("verify", help="run only the checks (units, health, log)")
    target(p_verify, with_level=False)

    p_unlock = sub.add_parser(
        "unlock", help="clear the host locks a dead run left (see the refusal's message)"
    )
    p_unlock.add_argument("--inventory", "-i", required=True, help=INVENTORY_HELP)
    p_unlock.add_argument("--limit", "-l", help="only these hosts: an Ansible host pattern")
    p_unlock.add_argument(
        "--run",
        default="",
        metavar="RUN_ID",
        help="clear only this run's locks (default: every dead run's)",
    )
    p_unlock.add_argument(
        "--force",
        action="store_true",
        help="also clear a lock another controller's run took less than its maximum age ago "
        "(a run still running on this controller is never cleared)",
    )
    p_unlock.add_argument("--approved-by", metavar="NAME", help="as for apply (production)")
    p_unlock.add_argument("--reason", help="why: recorded in the history")
    p_unlock.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p_unlock.add_argument("--json", action="store_true", help="print the JSON receipt on stdout")
    p_unlock.set_defaults(check=False, break_glass=False)

    sub.add_parser("levels", help="list the levels and the seeds they come from")

    p_report = sub.add_parser("report", help="render a run's Rollback Log (seed 002) as Markdown")
    p_report.add_argument("run_id", metavar="RUN_ID", help="the run id (see `history`)")
    p_report.add_argument(
        "--templates",
        type=Path,
        metavar="DIR",
        help="a directory whose report.md.j2 overrides the built-in template",
    )

    p_rec = sub.add_parser(
        "recommend", help="which level, how urgently, approved by whom (the seeds' matrices)"
    )
    p_rec.add_argument(
        "--error-rate", type=_amount, metavar="PCT", help="percent of requests failing"
    )
    p_rec.add_argument("--p95-ms", type=_amount, metavar="MS", help="p95 response time")
    p_rec.add_argument(
        "--for-minutes",
        type=_amount,
        default=0,
        metavar="N",
        help="how long the symptoms have lasted",
    )
    p_rec.add_argument(
        "--users-affected",
        type=_amount,
        metavar="PCT",
        help="percent of users unable to use core features",
    )
    p_rec.add_argument("--memory-mb", type=_amount, metavar="MB", help="memory used by the app")
    p_rec.add_argument("--data-corruption", action="store_true", help="evidence of data corruption")
    p_rec.add_argument("--security", action="store_true", help="a security vulnerability")
    p_rec.add_argument("--service-down", action="store_true", help="the health check fails")
    p_rec.add_argument("--code-bug", action="store_true", help="a code bug needs reverting")
    p_rec.add_argument("--inventory", "-i", help="read rollback_thresholds from this inventory")
    p_rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")

    p_backup = sub.add_parser(
        "backup", help="backup sets of the apps' databases, env and config files, and code ref"
    )
    backup_sub = p_backup.add_subparsers(dest="backup_command", required=True, metavar="ACTION")

    def backup_target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inventory", "-i", required=True, help=INVENTORY_HELP)
        p.add_argument(
            "--limit",
            "-l",
            help="only these hosts: an Ansible host pattern (web1,web2  web*  web:!web2)",
        )
        p.add_argument("--app", help="only the hosts of this app (rollback_app.name)")
        p.add_argument("--json", action="store_true", help="print the JSON receipt on stdout")

    p_bcreate = backup_sub.add_parser(
        "create", help="take a backup set on each host and verify it right away"
    )
    backup_target(p_bcreate)
    p_bcreate.add_argument(
        "--kind",
        choices=["predeploy", "manual"],
        default="predeploy",
        help="predeploy (default; what the full level restores) or manual",
    )
    p_bcreate.add_argument(
        "--restore-test",
        action="store_true",
        help="also restore into a throwaway database and compare every table",
    )
    p_blist = backup_sub.add_parser("list", help="the backup sets per host, newest first")
    backup_target(p_blist)
    p_bverify = backup_sub.add_parser("verify", help="verify a backup set again")
    backup_target(p_bverify)
    p_bverify.add_argument("--backup-id", metavar="SET_ID", default="", help="default: newest")
    p_bverify.add_argument(
        "--restore-test",
        action="store_true",
        help="restore into a throwaway database and compare rows and checksums with the manifest",
    )
    p_bprune = backup_sub.add_parser(
        "prune", help="remove old sets (never the newest verified one, never forensic sets)"
    )
    backup_target(p_bprune)
    p_bprune.add_argument("--keep", type=_count, metavar="N", help="keep the newest N sets")
    p_bprune.add_argument(
        "--max-age", type=_count, metavar="DAYS", help="remove the sets older than DAYS days"
    )

    p_bsched = backup_sub.add_parser(
        "schedule",
        help="install a systemd timer on the hosts that takes a backup set (same engine)",
    )
    backup_target(p_bsched)
    p_bsched.add_argument(
        "--at",
        required=True,
        metavar="CALENDAR",
        help='systemd calendar spec, e.g. "*-*-* 02:00:00" or daily (systemd.time(7))',
    )
    p_bsched.add_argument(
        "--keep", type=_count, metavar="N", help="prune to the newest N sets after each one"
    )
    p_bunsched = backup_sub.add_parser("unschedule", help="remove the backup timer")
    backup_target(p_bunsched)

    p_history = sub.add_parser("history", help="the audit history of runs (seed 003's table)")
    p_history.add_argument("--json", action="store_true", help="print the entries as JSON")
    p_history.add_argument("--last", type=int, default=20, metavar="N", help="the last N runs")

    p_demo = sub.add_parser(
        "demo", help="roll back a sandbox app on this machine (no Docker, local connection)"
    )
    p_demo.add_argument("--json", action="store_true", help="print the JSON receipt on stdout")

    p_lab = sub.add_parser(
        "lab", help="real test hosts: containers with systemd and sshd (source checkout only)"
    )
    lab_sub = p_lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")
    p_up = lab_sub.add_parser("up", help="start N hosts and write the `lab` inventory")
    p_up.add_argument("--hosts", type=int, default=3, help="how many hosts (default 3)")
    p_up.add_argument(
        "--install",
        action="store_true",
        help="install docker.io and debootstrap with apt-get when missing (root)",
    )
    lab_sub.add_parser("down", help="remove the lab hosts")
    p_status = lab_sub.add_parser("status", help="list the lab hosts")
    p_status.add_argument("--json", action="store_true")
    for p in (p_up, p_status, lab_sub.choices["down"]):
        p.add_argument("--name", default="lab", help=argparse.SUPPRESS)
        p.add_argument("--first-address", default="127.0.0.11", help=argparse.SUPPRESS)
    return parser


def _observer(stream: Any) -> PlainProgress:
    return LiveProgress(stream) if stream.isatty() else PlainProgress(stream)


def _authorize(prep: api.Prepared, args: argparse.Namespace) -> Authorization:
    """Who runs this and who allowed it; asks on a terminal where a person must confirm."""
    auth = Authorization(
        operator=current_operator(),
        approved_by=args.approved_by or "",
        break_glass=args.break_glass,
        reason=args.reason or "",
    )
    # self-approval and break-glass rules hold everywhere, before any prompt
    authorization.check(auth, level=prep.level.name, production=False, check_mode=True)
    if args.check:
        return auth
    names = ", ".join(prep.hosts)
    if prep.production and not (auth.approved_by or auth.break_glass):
        if not sys.stdin.isatty():
            authorization.check(auth, level=prep.level.name, production=True, check_mode=False)
        answer = input(
            f"PRODUCTION: level {prep.level.name} on {names}, by {auth.operator}, no approval.\n"
            f"Type the inventory name ({prep.inventory.name}) to go on: "
        )
        if answer.strip() not in {prep.inventory.name, getattr(args, "inventory", None)}:
            raise Refused("not confirmed; nothing was changed")
        return dataclasses.replace(auth, confirmed_by_typing=True)
    if args.yes:
        return auth
    if not sys.stdin.isatty():
        raise Refused("no terminal to confirm on: add --yes to apply without asking")
    answer = input(f"Apply level {prep.level.name} to {names}? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise Refused("not confirmed; nothing was changed")
    return auth


def _finish(result: RunResult, args: argparse.Namespace, observer: PlainProgress) -> int:
    if isinstance(observer, LiveProgress):
        observer.finish()
    print(recap(result), file=sys.stderr)
    if args.json or result.receipt_error:
        print(json.dumps(result.receipt(), indent=2))
    return result.exit_status


def cmd_apply(args: argparse.Namespace) -> int:
    if args.resume:
        given = [o for o, v in (("--level", args.level), ("--limit", args.limit)) if v]
        given += [o for o, v in (("--flag", args.flag), ("--to", args.to)) if v]
        given += ["--backup-stamp"] * bool(args.backup_stamp) + ["--force"] * args.force
        if given:
            raise RollbackOpsError(
                f"--resume takes the run's own options; leave out {', '.join(given)}"
            )
        prep = api.prepare_resume(
            args.resume, inventory_name=args.inventory, verify=args.verify, state_dir=args.state_dir
        )
    else:
        missing = [
            o for o, v in (("--level", args.level), ("--inventory", args.inventory)) if not v
        ]
        if missing:
            raise RollbackOpsError(f"apply needs {' and '.join(missing)} (or --resume RUN_ID)")
        prep = _prepare(args)

    auth = _authorize(prep, args)
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


def _prepare(args: argparse.Namespace) -> api.Prepared:
    flags = levels.parse_flags(args.flag)
    if flags and args.level != "flag":
        raise RollbackOpsError("--flag goes with --level flag")
    code_options = [o for o, v in (("--to", args.to), ("--backup-stamp", args.backup_stamp)) if v]
    code_options += ["--force"] * args.force
    if code_options and args.level not in ("code", "full"):
        raise RollbackOpsError(f"{', '.join(code_options)}: only with --level code or full")
    if args.backup_id and args.level not in ("full", "config"):
        raise RollbackOpsError("--backup-id: only with --level full or config")
    return api.prepare(
        args.level,
        args.inventory,
        flags=flags,
        allow_new_flags=args.allow_new_flag,
        verify=args.verify,
        limit=args.limit,
        state_dir=args.state_dir,
        to_ref=args.to,
        backup_stamp=args.backup_stamp,
        force=args.force,
        backup_id=args.backup_id,
    )


def cmd_plan(args: argparse.Namespace) -> int:
    plans = api.plan(_prepare(args))
    if args.json:
        print(json.dumps([p.__dict__ for p in plans], indent=2))
        return 0
    for p in plans:
        print(f"{p.host} ({p.address}) app {p.app}, level {args.level}:")
        for i, step in enumerate(p.steps, 1):
            print(f"  {i:>2}. {step}")
    print("(plan only: no host was contacted, nothing was changed)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    observer = _observer(sys.stderr)
    result = api.verify(
        args.inventory, limit=args.limit, state_dir=args.state_dir, observer=observer
    )
    return _finish(result, args, observer)


def cmd_unlock(args: argparse.Namespace) -> int:
    if args.run:
        receipts.check_run_id(args.run)
    prep = api.prepare(
        "unlock", args.inventory, limit=args.limit, state_dir=args.state_dir, unlock_run=args.run
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
    )
    return _finish(result, args, observer)


def cmd_backup(args: argparse.Namespace) -> int:
    action = args.backup_command
    if action == "prune" and args.keep is None and args.max_age is None:
        raise RollbackOpsError("backup prune needs --keep N and/or --max-age DAYS")
    prep = api.prepare(
        f"backup-{action}",
        args.inventory,
        limit=args.limit,
        app=args.app,
        state_dir=args.state_dir,
        backup_id=getattr(args, "backup_id", ""),
        backup_kind=getattr(args, "kind", "manual"),
        restore_test=getattr(args, "restore_test", False),
        keep=getattr(args, "keep", None),
        max_age_days=getattr(args, "max_age", None),
        schedule_at=getattr(args, "at", ""),
    )
    observer = _observer(sys.stderr)
    result = api.execute(prep, state_dir=args.state_dir, observer=observer)
    code = _finish(result, args, observer)
    print(backup_table(result), file=sys.stderr)
    return code


def cmd_levels(args: argparse.Namespace) -> int:
    for name, lv in levels.LEVELS.items():
        print(f"{name:<10} {lv.summary}  [{lv.seeds}]")
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
        print(
            json.dumps(
                {"inventory": str(lab.inventory_path), "hosts": [h.as_dict() for h in hosts]},
                indent=2,
            )
        )
    elif not hosts:
        print("no lab hosts (rollback-ops lab up)")
    else:
        for h in hosts:
            print(f"{h.name:<6} {h.address:<12} {h.container:<26} {h.state:<8} {h.ssh}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from rollback_ops.text import one_line, short

    if args.last < 1:
        raise RollbackOpsError(f"--last {short(args.last)}: must be 1 or more (the last N runs)")
    warnings: list[str] = []
    rows = history.read(paths.readable_state_dir(args.state_dir), warnings)[-args.last :]
    for warning in warnings:
        print(f"rollback-ops: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        print("no runs recorded yet")
        return 0
    table: list[tuple[str, ...]] = [
        (
            "DATE",
            "ENVIRONMENT",
            "LEVEL",
            "OPERATOR",
            "APPROVED BY",
            "REASON",
            "DURATION",
            "OUTCOME",
            "RUN ID",
        )
    ]
    for r in rows:
        if r.break_glass:
            approver = "BREAK-GLASS"
        elif r.confirmed_by_typing:
            approver = "typed confirmation"
        else:
            approver = r.approved_by or "-"
        outcome = r.result + (" (check)" if r.check else "")
        duration = f"{r.duration:.1f}s" if r.duration is not None else "-"
        cells = (
            r.started,
            ",".join(r.environment) or "?",
            r.level,
            r.operator,
            approver,
            r.reason or "-",
            duration,
            outcome,
            r.run_id,
        )
        # values from a file: one line each, no escape sequence, bounded
        table.append(tuple(one_line(c, 64) for c in cells))
    print("\n".join(progress.table(table)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rollback_ops import report

    state = paths.readable_state_dir(args.state_dir)
    print(report.render(state, args.run_id, args.templates), end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from rollback_ops import inventory, recommend

    thresholds = recommend.Thresholds()
    if args.inventory:
        inv = inventory.load(args.inventory, paths.state_dir(args.state_dir))
        host = next(iter(inv.hosts.values()))
        thresholds = recommend.Thresholds.from_vars(
            host.vars.get("rollback_thresholds"), host.origin("rollback_thresholds")
        )
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
        print(json.dumps(rec.as_dict(), indent=2))
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


COMMANDS = {
    "apply": cmd_apply,
    "plan": cmd_plan,
    "verify": cmd_verify,
    "levels": cmd_levels,
    "unlock": cmd_unlock,
    "history": cmd_history,
    "backup": cmd_backup,
    "report": cmd_report,
    "recommend": cmd_recommend,
    "demo": cmd_demo,
    "lab": cmd_lab,
}


# the commands that write runs, receipts, history or locks: the state dir is checked first
WRITES_STATE = ("apply", "unlock", "backup", "verify", "demo")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code; every problem, expected or not, ends as a
    short message on stderr and an exit code (see the module docstring), never a traceback."""
    parsed = _parse(argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed
    try:
        if args.command in WRITES_STATE:
            paths.writable_state_dir(args.state_dir)
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except RollbackOpsError as exc:
        _error(str(exc))
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
