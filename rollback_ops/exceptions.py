"""The one exception hierarchy of rollback-ops.

Library code raises these; only the CLI turns them into messages and exit codes.
A failed rollback on a host is *not* an exception: it is a :class:`RunResult` whose
status says so. Exceptions are for problems found before or around a run.
"""

from __future__ import annotations


class RollbackOpsError(Exception):
    """Base class: a problem the user can act on, shown without a traceback."""

    exit_code = 2


class ConfigError(RollbackOpsError):
    """Bad input: an inventory, a flag, an option or a path that does not fit."""


class PreflightError(RollbackOpsError):
    """A check made before any change found that the rollback cannot run."""

    exit_code = 3


class Refused(RollbackOpsError):
    """The operator declined, or a guard refused to go on (e.g. production)."""

    exit_code = 3


class LabError(RollbackOpsError):
    """The test lab (Docker engine, image, hosts) could not be set up or reached."""

    exit_code = 4


class RunnerError(RollbackOpsError):
    """ansible-runner itself could not run (not: a playbook that failed on a host)."""

    exit_code = 4


class StateDirError(RollbackOpsError):
    """The state directory (runs, receipts, history, locks) cannot be used: not a directory,
    read-only, full. Raised before any host is touched where it can be found out first."""

    exit_code = 4

    def __init__(self, path: object, problem: str):
        from rollback_ops.text import one_line  # the path may be any length, any bytes

        super().__init__(f"state dir {one_line(str(path), 200)}: {problem}")
        self.path = path
        self.problem = problem
