#!/usr/bin/env python3
"""Mutation testing of the code that keeps production safe, with cosmic-ray.

Each module below is mutated one small change at a time (a comparison flipped, a number
moved by one, a boolean operator swapped, a ``break`` made ``continue`` ...) and the unit
tests that cover it run against every mutant. A mutant the tests still pass on "survived":
either a test is missing, or the change makes no difference a test could see (an equivalent
mutant, explained in the report). Mutants inside annotations (never evaluated here: every
module has ``from __future__ import annotations``) are skipped, and of the eleven
replacements cosmic-ray makes for each binary operator the default run keeps the one or two
in REPRESENTATIVES (``--all-operators`` runs them all, about three times as many mutants).

The run happens in a throwaway git worktree of HEAD (cosmic-ray edits files in place), with
this checkout's Python (`python -m pytest` from the worktree imports the worktree's code).
Only the fast tier runs (no Docker); a mutant is killed by the tests named here, so a module
whose tests are elsewhere needs its entry updated.

Usage:
  .venv/bin/pip install cosmic-ray    # a tool of this script only, not of the package
  .venv/bin/python bench/mutation.py [GROUP ...] [--jobs N] [--all-operators] [--report-only]

Prints per module: mutants, killed, survived, score; then every survivor with its diff.
The sessions (SQLite, cosmic-ray's format) stay in bench/.mutation/ for `cr-report`.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / ".mutation"
PYTEST = "-m pytest -x -q -p no:cacheprovider -p no:randomly -m 'not lab'"


@dataclass(frozen=True)
class Group:
    module: str  # the file mutated
    tests: tuple[str, ...]  # the unit tests that guard it
    timeout: float = 60.0  # per mutant (a mutant that loops forever is killed by it)


GROUPS: dict[str, Group] = {
    "guard": Group(
        "rollback_ops/authorization.py",
        ("tests/unit/test_authorization.py", "tests/unit/test_guard_api.py"),
    ),
    "host-lock": Group(
        "plugins/module_utils/lock.py",
        (
            "tests/unit/test_lock_utils.py",
            "tests/unit/test_lock_ages.py",
            "tests/unit/test_preflight_module.py",
        ),
    ),
    "controller-lock": Group(
        "rollback_ops/lock.py",
        (
            "tests/unit/test_lock.py",
            "tests/unit/test_lock_ages.py",
            "tests/unit/test_history_and_lock.py",
        ),
    ),
    "envfile-utils": Group(
        "plugins/module_utils/envfile.py",
        ("tests/unit/test_envfile_utils.py", "tests/unit/test_envfile_module.py"),
    ),
    "envfile-module": Group(
        "plugins/modules/envfile.py",
        ("tests/unit/test_envfile_module.py", "tests/unit/test_envfile_utils.py"),
    ),
    "backup-compare": Group(
        "plugins/module_utils/backupset/choose.py",
        ("tests/unit/test_backup_checks.py", "tests/unit/test_backupset.py"),
        timeout=300.0,
    ),
    "backup-verify": Group(
        "plugins/module_utils/backupset/verify.py",
        ("tests/unit/test_backup_checks.py", "tests/unit/test_backupset.py"),
        timeout=300.0,
    ),
    "events": Group(
        "rollback_ops/events.py",
        ("tests/unit/test_runner_events.py", "tests/unit/test_local_role_secrets.py"),
    ),
    "receipts": Group(
        "rollback_ops/receipts.py",
        ("tests/unit/test_receipts.py", "tests/unit/test_history_and_lock.py"),
    ),
    "results": Group(
        "rollback_ops/results.py",
        ("tests/unit/test_receipts.py", "tests/unit/test_runner_events.py"),
    ),
}


def sh(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def config(group: Group, python: str, workdir: Path) -> str:
    tests = " ".join(t for t in group.tests if (workdir / t).exists())
    command = f"{shlex.quote(python)} {PYTEST} {tests}"
    return (
        "[cosmic-ray]\n"
        f"module-path = {group.module!r}\n"
        f"timeout = {group.timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {command!r}\n"
        "\n[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )


def run_group(name: str, group: Group, workdir: Path, python: str, all_operators: bool) -> Path:
    """Mutate one module in workdir; returns its session database."""
    OUT.mkdir(parents=True, exist_ok=True)
    cfg = OUT / f"{name}.toml"
    cfg.write_text(config(group, python, workdir))
    session = OUT / f"{name}.sqlite"
    session.unlink(missing_ok=True)
    tools = Path(python).parent  # cosmic-ray's commands, installed beside this Python
    cr = [str(tools / "cosmic-ray")]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    sh([*cr, "baseline", str(cfg)], workdir, env)  # the unmutated tests must pass
    sh([*cr, "init", str(cfg), str(session)], workdir, env)
    sh([str(tools / "cr-filter-pragma"), str(session)], workdir, env)
    skip_mutants(session, workdir / group.module, all_operators)
    started = time.monotonic()
    sh([*cr, "exec", str(cfg), str(session)], workdir, env)
    print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    return session


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where a module's annotations are, when ``from __future__ import annotations`` makes
    them strings Python never evaluates (mypy checks them; a mutant there is equivalent)."""
    tree = ast.parse(source)
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not future:
        return []
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            found.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
    return [
        ((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0)) for a in found
    ]


# For each binary operator cosmic-ray writes eleven replacements; they are different values
# of one expression and nearly always live or die together. The default run keeps the ones
# that differ most from the original (its inverse, and one more); --all-operators runs all.
REPRESENTATIVES = {
    "Add": ("Sub", "Mul"),
    "Sub": ("Add", "Mod"),
    "Mul": ("Div", "Add"),
    "Div": ("Mul", "FloorDiv"),
    "FloorDiv": ("Div", "Mul"),
    "Mod": ("Add", "Mul"),
    "Pow": ("Mul",),
    "LShift": ("RShift",),
    "RShift": ("LShift",),
    "BitOr": ("BitAnd", "Add"),
    "BitAnd": ("BitOr",),
    "BitXor": ("BitOr",),
}


def redundant(operator: str) -> bool:
    """A binary operator replacement outside REPRESENTATIVES."""
    prefix = "core/ReplaceBinaryOperator_"
    if not operator.startswith(prefix):
        return False
    source, _, target = operator.removeprefix(prefix).partition("_")
    return target not in REPRESENTATIVES.get(source, (target,))


def skip_mutants(session: Path, module: Path, all_operators: bool) -> None:
    """Mark as skipped, as `# pragma: no mutate` would: mutants inside annotations, and
    (unless all_operators) the redundant binary operator replacements."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_spans(module.read_text())
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            mutation = item.mutations[0]
            start = tuple(mutation.start_pos)
            if any(low <= start < high for low, high in spans):
                why = "annotation"
            elif not all_operators and redundant(mutation.operator_name):
                why = "redundant"
            else:
                continue
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=why))


def report(name: str, group: Group, session: Path) -> tuple[int, int, list[str]]:
    """(mutants run, killed, survivor descriptions) of one session."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed, total, survivors = 0, 0, []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue  # `# pragma: no mutate`
            total += 1
            if result.test_outcome != TestOutcome.SURVIVED:
                killed += 1  # killed, or incompetent (the mutant does not even import)
                continue
            mutation = item.mutations[0]
            survivors.append(
                f"{group.module}:{mutation.start_pos[0]} {mutation.operator_name} "
                f"#{mutation.occurrence}\n{result.diff.strip()}"
            )
    return total, killed, survivors


def worktree() -> Path:
    """A throwaway checkout of HEAD (cosmic-ray edits the files it mutates in place)."""
    workdir = Path(tempfile.mkdtemp(prefix="rollback-ops-mutation-"))
    sh(["git", "worktree", "add", "--detach", str(workdir), "HEAD"], ROOT)
    return workdir


def drop(workdir: Path) -> None:
    sh(["git", "worktree", "remove", "--force", str(workdir)], ROOT)
    shutil.rmtree(workdir, ignore_errors=True)


def run_all(names: list[str], jobs: int, all_operators: bool) -> None:
    """Run the groups, ``jobs`` at a time, each job in its own worktree."""
    pending = list(names)
    lock = threading.Lock()

    def job() -> None:
        workdir = worktree()
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    name = pending.pop(0)
                run_group(name, GROUPS[name], workdir, sys.executable, all_operators)
        finally:
            drop(workdir)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(job) for _ in range(min(jobs, len(names)))]:
            future.result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=", ".join(GROUPS))
    parser.add_argument(
        "--report-only", action="store_true", help="report the sessions of the last run"
    )
    parser.add_argument("--jobs", type=int, default=1, help="groups run at once (default 1)")
    parser.add_argument(
        "--all-operators",
        action="store_true",
        help="run every binary operator replacement, not only the representative ones",
    )
    args = parser.parse_args()
    names = args.groups or list(GROUPS)
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}: choose from {', '.join(GROUPS)}")
    if not args.report_only:
        run_all(names, max(1, args.jobs), args.all_operators)
    all_total = all_killed = 0
    lines, details = [], []
    for name in names:
        session = OUT / f"{name}.sqlite"
        if not session.exists():
            continue
        total, killed, survivors = report(name, GROUPS[name], session)
        all_total, all_killed = all_total + total, all_killed + killed
        score = 100 * killed / total if total else 100.0
        lines.append(
            f"{GROUPS[name].module:45} {total:7} {killed:7} {len(survivors):9} {score:6.1f}%"
        )
        details += survivors
    print(f"{'module':45} {'mutants':>7} {'killed':>7} {'survived':>9} {'score':>7}")
    print("\n".join(lines))
    score = 100 * all_killed / all_total if all_total else 100.0
    print(f"{'all':45} {all_total:7} {all_killed:7} {all_total - all_killed:9} {score:6.1f}%")
    if details:
        print("\nsurvivors:\n")
        print("\n\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
