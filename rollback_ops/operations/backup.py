"""The backup commands: sets of the apps' databases, env and config files, and code ref."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar

from rollback_ops import paths, receipts
from rollback_ops.appspec import AppSpec
from rollback_ops.durations import duration
from rollback_ops.exceptions import ConfigError
from rollback_ops.operations.base import (
    Argument,
    Operation,
    Request,
    argument,
    count,
    parse_backup_files,
)

B = "rollback-ops backup "  # the examples' start
APP = argument("--app", help="only the hosts of this app (rollback_app.name)")


class Backup(Operation):
    """A backup command: `backup ACTION`, on the hosts of one app with --app."""

    arguments: ClassVar[tuple[Argument, ...]] = (APP,)
    examples: ClassVar[tuple[str, ...]] = ()  # shown under --help, one command line each

    @property
    def action(self) -> str:
        return self.name.removeprefix("backup-")


class Job(Backup):
    """A backup command that writes on the hosts: it holds their locks, unguarded."""

    changes_hosts = True


class Create(Job):
    name = "backup-create"
    playbook = "backup_create"
    summary = "take a backup set on each host and verify it right away"
    examples = (
        f"{B}create -i staging",
        f"{B}create -i production --app analyticbot --restore-test",
    )
    needs_db_passwords = True
    examples = (
        "rollback-ops backup create -i prod --kind predeploy",
        "rollback-ops backup create -i staging --app shop --restore-test --json",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--kind",
            choices=["predeploy", "manual"],
            default="predeploy",
            help="predeploy (default; what the full level restores) or manual",
            request_field="backup_kind",
        ),
        argument(
            "--restore-test",
            action="store_true",
            help="also restore into a throwaway database and compare every table",
            request_field="restore_test",
        ),
    )


class Copy(Job):
    name = "backup-copy"
    playbook = "backup_copy"
    summary = (
        "copy a verified set (default: the newest) to the app's backup.offhost host and "
        "verify it there; a copy already whole there is not copied again"
    )
    examples = (
        "rollback-ops backup copy -i prod",
        "rollback-ops backup copy -i prod --backup-id 20261203T070000Z-predeploy --json",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--backup-id",
            metavar="SET_ID",
            default="",
            help="default: the newest verified set",
            request_field="backup_id",
        ),
    )

    def check(self, app: AppSpec, request: Request) -> list[str]:
        if not app.backup.offhost_host:
            return [f"app {app.name} has no rollback_app.backup.offhost (the backup host)"]
        return []


class List(Backup):
    name = "backup-list"
    playbook = "backup_list"
    summary = "the backup sets per host, newest first"
    examples = ("rollback-ops backup list -i prod", "rollback-ops backup list -i prod --json")


class Verify(Backup):
    name = "backup-verify"
    playbook = "backup_verify"
    summary = (
        "verify a backup set again; with --max-age, also exit 1 unless each host has a "
        "verified set that young (for monitoring)"
    )
    needs_db_passwords = True
    examples = (
        "rollback-ops backup verify -i prod --restore-test",
        "rollback-ops backup verify -i prod --max-age 26h",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--backup-id",
            metavar="SET_ID",
            default="",
            help="default: newest",
            request_field="backup_id",
        ),
        argument(
            "--restore-test",
            action="store_true",
            help="restore into a throwaway database and compare rows and checksums with the "
            "manifest",
            request_field="restore_test",
        ),
        argument(
            "--max-age",
            type=duration,
            metavar="DURATION",
            help="also fail (exit 1) on each host with no verified set (forensic ones aside) "
            "younger than DURATION (90m, 26h, 2d), naming the newest verified set and its age",
            request_field="max_age_seconds",
        ),
    )


class Prune(Job):
    name = "backup-prune"
    playbook = "backup_prune"
    summary = (
        "remove old sets (never the newest verified one, never forensic sets); --check lists "
        "them; on production it needs --break-glass --reason (recorded and notified)"
    )
    guarded = True  # production's guard and the notifications, as the levels have
    # an approved request (`request`, `approve`) is made for the levels; prune, which only
    # removes old sets (never the newest verified one), is allowed on production with a
    # recorded, notified reason
    break_glass = True
    examples = (
        "rollback-ops backup prune -i staging --keep 7 --check",
        "rollback-ops backup prune -i prod --keep 7 --break-glass --reason 'disk 95% full'",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--keep",
            type=count,
            metavar="N",
            help="keep the newest N sets",
            request_field="keep",
        ),
        argument(
            "--max-age",
            dest="max_age_days",
            type=count,
            metavar="DAYS",
            help="remove the sets older than DAYS days",
            request_field="max_age_days",
        ),
    )

    def usage_problems(self, args: argparse.Namespace) -> list[str]:
        if args.keep is None and args.max_age_days is None:
            return ["backup prune needs --keep N and/or --max-age DAYS"]
        return []


class Import(Job):
    name = "backup-import"
    playbook = "backup_import"
    summary = (
        "adopt the app's own backups (its databases' external_backups, or --backup-file) into "
        "a verified set of kind external, once per file"
    )
    needs_db_passwords = True
    examples = (
        "rollback-ops backup import -i prod --app ancestry",
        "rollback-ops backup import -i prod --backup-file main=/srv/app/Data/backups/a.db",
    )
    fixed: ClassVar[dict[str, str]] = {"backup_from": "external"}

    def check(self, app: AppSpec, request: Request) -> list[str]:
        lacking = [
            d.name
            for d in app.databases
            if not d.external_glob and d.name not in request.backup_files
        ]
        if not app.databases:
            return [f"app {app.name} has no rollback_app.databases"]
        if lacking:
            return [
                f"database {', '.join(lacking)} of app {app.name} declares no external_backups; "
                f"give --backup-file {lacking[0]}=PATH"
            ]
        return []

    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--backup-file",
            action="append",
            default=[],
            metavar="DB=PATH",
            help="adopt this file on the host for database DB instead of the newest its "
            "external_backups glob matches (repeatable)",
            request_field="backup_files",
            convert=parse_backup_files,
        ),
    )


class Schedule(Job):
    name = "backup-schedule"
    playbook = "backup_schedule"
    summary = (
        "install a systemd timer on the hosts that takes a backup set (same engine) and, "
        "when it fails, sends the inventory's rollback_notify from the host"
    )
    needs_db_passwords = True
    examples = (
        'rollback-ops backup schedule -i prod --at "*-*-* 02:00:00" --keep 14',
        "rollback-ops backup schedule -i staging --app shop --at daily",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        APP,
        argument(
            "--at",
            required=True,
            metavar="CALENDAR",
            help='systemd calendar spec, e.g. "*-*-* 02:00:00" or daily (systemd.time(7))',
            request_field="schedule_at",
        ),
        argument(
            "--keep",
            type=count,
            metavar="N",
            help="prune to the newest N sets after each one",
            request_field="keep",
        ),
    )


class Unschedule(Job):
    name = "backup-unschedule"
    playbook = "backup_unschedule"
    summary = "remove the backup timer"
    examples = ("rollback-ops backup unschedule -i prod --app shop",)


def _out_dir(text: str) -> str:
    """--out DIR as an absolute path on the controller."""
    return str(Path(text).expanduser().resolve()) if text else ""


class ExportLoss(Backup):
    """The rows a data or full run's restore lost, for the app team to replay (seed 002
    strategy 4): each host restores the run's forensic set into a scratch database and
    exports the data_loss_tables rows the live database lacks or holds differently."""

    name = "backup-export-loss"
    playbook = "backup_export_loss"
    summary = (
        "write the rows a data or full run's restore lost (in its forensic set, missing or "
        "changed after it) as SQL (INSERT ... ON CONFLICT DO NOTHING / INSERT OR IGNORE) or CSV"
    )
    needs_db_passwords = True
    examples = (
        f"{B}export-loss 20261203T071500Z-a1b2c3 -i prod --out ./lost",
        f"{B}export-loss 20261203T071500Z-a1b2c3 -i prod --format csv --out ./lost",
    )
    arguments: ClassVar[tuple[Argument, ...]] = (
        argument(
            "run_id",
            metavar="RUN_ID",
            help="the data or full run (see `history`); its receipt names each host's forensic set",
            request_field="loss_run",
        ),
        APP,
        argument(
            "--format",
            dest="loss_format",
            choices=["sql", "csv"],
            default="sql",
            help="sql (default): one INSERT per row that skips a taken key; csv: a header row",
            request_field="loss_format",
        ),
        argument(
            "--out",
            metavar="DIR",
            default="",
            help="the controller's directory the files go to, <host>-<database>-<table>.<format> "
            "(default: only counted)",
            request_field="loss_out",
            convert=_out_dir,
        ),
    )

    def request(self, args: argparse.Namespace, **over: Any) -> Request:
        """The receipt of RUN_ID names each host's forensic set (a bad RUN_ID: one line)."""
        run_id = str(args.run_id)
        receipt, _ = receipts.load(paths.state_dir(getattr(args, "state_dir", None)), run_id)
        level = str(receipt.get("level", ""))
        if level not in ("data", "full"):
            raise ConfigError(
                f"run {run_id} is a {level or '?'} run: only the data and full levels take a "
                "forensic set and report lost rows"
            )
        raw = receipt.get("hosts")
        hosts: dict[str, Any] = raw if isinstance(raw, dict) else {}
        sets = {
            str(host): str(result["data"]["forensic_set_id"])
            for host, result in hosts.items()
            if isinstance(result, dict)
            and isinstance(result.get("data"), dict)
            and result["data"].get("forensic_set_id")
        }
        if not sets:
            raise ConfigError(f"run {run_id}'s receipt names no forensic set on any host")
        return super().request(args, loss_sets=sets, **over)

    def check(self, app: AppSpec, request: Request) -> list[str]:
        if not any(db.data_loss_tables for db in app.databases):
            return [f"app {app.name} has no databases[].data_loss_tables to export"]
        return []
