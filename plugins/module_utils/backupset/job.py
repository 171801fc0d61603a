"""The scheduled job's entry point on a host: create, list, verify or prune an app's backup
sets from a JSON config, passwords from the environment variables it names (``password_env``,
e.g. systemd EnvironmentFile=). Python 3.9+ standard library only; the backup role installs
this package beside files.py and runs it as a module::

    cd /usr/local/lib/rollback-ops && python3 -m rollback_ops_utils.backupset.job \\
        create --config /etc/rollback-ops/backup-<app>.json

Prints JSON; exits 1 when a verification fails, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .common import BackupError, Json
from .create import create_set
from .layout import DEFAULT_ROOT, list_sets
from .prune import prune
from .verify import verify_set

COMMANDS = ("create", "list", "verify", "prune")


def load_config(path: str) -> Json:
    try:
        config: Json = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"config {path}: {exc}") from exc
    if not config.get("app"):
        raise BackupError(f"config {path}: app is required")
    for spec in config.get("databases") or []:
        if isinstance(spec, dict) and "password" in spec:
            raise BackupError(
                f"config {path}: put passwords in the environment (password_env), not the file"
            )
    return config


def parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(
        prog="python3 -m rollback_ops_utils.backupset.job",
        description="Backup sets of an app's databases and files on a host (scheduled jobs).",
    )
    out.add_argument("command", choices=COMMANDS)
    out.add_argument(
        "--config",
        required=True,
        help="JSON: app, root, kind, databases, files, crontabs, code_path, keep, max_age_days",
    )
    out.add_argument("--kind", help="create: overrides the config's kind (default scheduled)")
    out.add_argument("--run-id", default="", help="create: recorded in the manifest")
    out.add_argument("--set-id", default="", help="verify: the set (default: the newest)")
    out.add_argument(
        "--restore-test",
        action="store_true",
        help="create, verify: restore into a throwaway database",
    )
    out.add_argument("--keep", type=int, help="prune: overrides the config's keep")
    out.add_argument(
        "--max-age-days", type=float, help="prune: overrides the config's max_age_days"
    )
    return out


def run(args: argparse.Namespace) -> tuple[Any, int]:
    """The command's JSON output and exit code."""
    config = load_config(args.config)
    root = config.get("root") or DEFAULT_ROOT
    app = config["app"]
    databases = config.get("databases") or []
    restore_test = args.restore_test or bool(config.get("restore_test"))
    if args.command == "create":
        manifest = create_set(
            root,
            app,
            args.kind or config.get("kind") or "scheduled",
            databases,
            config.get("files") or [],
            config.get("code_path") or "",
            args.run_id or config.get("run_id") or "",
            restore_test,
            config.get("crontabs") or [],
        )
        return manifest, 0 if manifest["verification"]["ok"] else 1
    if args.command == "list":
        return list_sets(root, app), 0
    if args.command == "verify":
        set_id = args.set_id or (list_sets(root, app) or [{}])[0].get("set_id", "")
        if not set_id:
            raise BackupError(f"no backup set of {app} under {root}")
        outcome = verify_set(root, app, set_id, databases, restore_test)
        return outcome, 0 if outcome["verification"]["ok"] else 1
    keep = args.keep if args.keep is not None else config.get("keep")
    age = args.max_age_days if args.max_age_days is not None else config.get("max_age_days")
    return prune(root, app, keep, age), 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        out, code = run(args)
    except BackupError as exc:
        out, code = {"failed": True, "msg": str(exc)}, 2
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
