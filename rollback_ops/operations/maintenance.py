"""The runs that are not levels: the checks alone, clearing dead runs' host locks, and
continuing a failed run."""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from rollback_ops.appspec import AppSpec
from rollback_ops.operations.base import OPERATIONS, Argument, Operation, Request, argument
from rollback_ops.operations.levels import LEVEL_ARGUMENTS, verify_steps


class Verify(Operation):
    name = "verify"
    playbook = "verify"
    summary = "run only the checks (units, health, log)"
    examples = ("rollback-ops verify -i staging", "rollback-ops verify -i production -l web1")

    def check(self, app: AppSpec, request: Request) -> list[str]:
        if not app.checks_anything and not app.verify_none_ok:
            return [
                f"nothing to verify: app {app.name} configures no units, health url or log "
                "error_pattern (set rollback_app.verify: none to accept that)"
            ]
        return []

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return verify_steps(app, {})


class Unlock(Operation):
    """Clears the locks the inspect phase found dead, each by its run id."""

    name = "unlock"
    playbook = "unlock"
    summary = "clear the host locks a dead run left (see the refusal's message)"
    examples = (
        "rollback-ops unlock -i staging",
        "rollback-ops unlock -i production --run 20260101T120000Z-a1b2c3 --reason 'run died'",
    )
    guarded = True
    changes_hosts = True
    break_glass = True  # production: --break-glass --reason (it changes no app)
    arguments: ClassVar[tuple[Argument, ...]] = (
        argument(
            "--run",
            default="",
            metavar="RUN_ID",
            help="clear only this run's locks (default: every dead run's)",
            request_field="unlock_run",
        ),
        argument(
            "--force",
            action="store_true",
            help="also clear a lock another controller's run took less than its maximum age "
            "ago (a run still running on this controller is never cleared)",
            request_field="force",
        ),
    )

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        run = request.unlock_runs.get(host) or request.unlock_run or "<a dead run>"
        return [f"remove the host lock of run {run}, if it still holds it"]


class UnlockInspect(Operation):
    """Unlock's first phase: who holds each host's lock (changes nothing)."""

    name = "unlock-inspect"
    playbook = "unlock"
    summary = "read the host locks (who holds them)"
    fixed: ClassVar[dict[str, Any]] = {"unlock_inspect": True}

    def plan(self, host: str, app: AppSpec, request: Request) -> list[str]:
        return ["read the host lock and its holder"]


class Resume(Operation):
    """`apply --resume RUN_ID`: RUN_ID's level on the hosts where it did not finish, with its
    options and pinned targets (api.prepare_resume); it runs no playbook of its own."""

    name = "resume"
    summary = "continue a failed run on the hosts where it did not finish"
    arguments: ClassVar[tuple[Argument, ...]] = (
        argument(
            "--resume",
            metavar="RUN_ID",
            help="continue RUN_ID (code level) on the hosts where it did not finish, with its "
            "level, inventory, options and targets; the steps it completed change nothing",
        ),
    )

    @staticmethod
    def levels() -> list[str]:
        """The levels whose failed runs resume."""
        return [n for n, op in OPERATIONS.items() if op.resumable]

    def usage_problems(self, args: argparse.Namespace) -> list[str]:
        """A resumed run takes its options from its receipt: any given is refused."""
        given = [o for o, v in (("--level", args.level), ("--limit", args.limit)) if v]
        given += [
            a.display for a in LEVEL_ARGUMENTS if a.request_field != "verify" and a.given(args)
        ]
        if given:
            return [f"--resume takes the run's own options; leave out {', '.join(given)}"]
        return []
