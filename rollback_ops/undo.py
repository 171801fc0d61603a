"""``rollback-ops undo RUN_ID``: put back what a run changed, from its receipt.

An undo is the undone run's own level run again with each host's previous state pinned
(:func:`prepare_undo` builds the :class:`~rollback_ops.operations.Request`, like
``api.prepare_resume``), so it gets that level's preflight, host locks, check and diff modes,
verification and, above all, its production guard: ``authorization.check`` with that level
(``--break-glass`` only where the level allows it). Its receipt and history entry record the
level and ``undoes: RUN_ID``.

What goes back, per level:

- **flag, emergency**: each key the run changed gets its ``before`` on each host; a key the
  run added (``before`` null) is removed. The env file's other bytes are kept, so a file the
  run only changed values in gets back its exact bytes. The level's steps follow: a copy of
  the file before the change, the restart where it changed, the checks (the running process
  must report the restored values).
  A secret key's values are masked in the receipt, so they are not put back from it: the
  envfile module reads each one on the host from the copy of the env file the run made
  before changing it (``values_from``: the copy's path from the receipt's backups, checked
  there against the sha256 the receipt keeps in ``data.backup_sha256``), so the value never
  passes through the controller, argv, logs or receipts; the preflight compares the key's
  current value by its mask. A copy that is gone or not the run's (another sha256), and a
  run that recorded no copy or several, are refused naming them (no mask is ever written
  into a file).
- **code** (git): HEAD goes back exactly to the commit the run recorded
  (``code.snapshot.head``, kept as ``refs/rollback-ops/RUN_ID``), on the branch it was on (or
  detached, as it was), whatever the app's git mode; then, as the code level does,
  dependencies, images rebuilt from the restored context (a new image id, built from the
  same files: its context label equals the one before the run) and containers recreated.
  Code restored from backup files (a tarball) is refused, naming the tarball.
- **full**: not undone. The databases are never restored silently: the refusal names each
  host's forensic set (the data as it was when the run started) and the ``plan`` command
  that shows how to put code and data back to it.
- **config**: each file the run replaced gets back the bytes, mode and owner it had, from
  the copy the run made before replacing it (the receipt's ``data.config_files`` per host:
  the file, its copy, the copy's sha256 and the sha256 the run wrote; configrestore's
  ``undo`` option). As the config level: a copy of the current file first (the undo's
  receipt lists it), an atomic replace, the caches cleared and a restart where a file
  changed, the checks; check and diff mode change nothing, diffs mask secret-looking values.
  A file the run created (no copy) is moved aside to ``<file>.backup.<stamp>``. A copy gone,
  not beside its file or whose sha256 is not the recorded one is refused naming it; so is a
  receipt of an older rollback-ops without ``config_files`` (it names the copies).

Safety:

- Each host's preflight checks every key still holds the value the run set (or already the
  one the undo puts back), HEAD is still the commit the run left (or already the one it
  puts back), and each config file's sha256 is still the one the run wrote (or it already
  equals its copy): a later run's change is never silently reverted; ``--force`` overwrites
  it (and, for code, discards uncommitted changes after recording them, as ``apply
  --force``).
- A host already back where the undo puts it changes nothing (idempotent); a run that an
  earlier undo already undid is refused naming that undo (whose own undo is a redo: an undo
  of an undo puts the undone run's changes back, except keys the undo removed).
- Refused before any host is touched: an unknown run, a check-mode run, a run that changed
  nothing, a level that cannot be undone, another inventory than the run's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollback_ops import api, paths, receipts, runner
from rollback_ops.appspec import FLAG_KEY, env_value_problem
from rollback_ops.exceptions import ConfigError
from rollback_ops.operations import Request
from rollback_ops.operations.base import GIT_REF, SHA
from rollback_ops.text import one_line, short

UNDOABLE = ("flag", "emergency", "code", "config")
HEX64 = re.compile(r"[0-9a-f]{64}")
MASKED = re.compile(r"<secret sha256:[0-9a-f]{8}>")


def prepare_undo(
    run_id: str,
    *,
    inventory_sources: str | Sequence[str] | None = None,
    force: bool = False,
    verify: bool = True,
    state_dir: Path | None = None,
    options: runner.AnsibleOptions | None = None,
) -> api.Prepared:
    """A run of RUN_ID's level that puts back, on each host it changed, what it changed.

    ``inventory_sources`` only confirms the inventory (RUN_ID's own is used); ``force`` drops
    the check that nothing changed the keys or HEAD since RUN_ID.
    """
    state = paths.state_dir(state_dir)
    receipt, _ = receipts.load(state, run_id)
    level = str(receipt["level"])
    if receipt.get("check"):
        raise ConfigError(f"run {run_id} was a check-mode run: it changed nothing to undo")
    _refuse_level(run_id, level, receipt)
    inventory_path = api.same_inventory(receipt, inventory_sources, state, "undo")
    if not inventory_path:
        raise ConfigError(f"the receipt of run {run_id} names no inventory_path")
    done_by = undone_by(state, run_id)
    if done_by:
        raise ConfigError(
            f"run {run_id} was already undone by run {done_by} "
            f"(`rollback-ops undo {done_by}` puts its changes back)"
        )
    hosts: dict[str, Any] = receipt["hosts"]
    targets: dict[str, str] = {}
    if level == "code":
        undo = {h: e for h in sorted(hosts) if (e := _code_entry(run_id, h, hosts[h], force))}
        targets = {h: str(e["head"]) for h, e in undo.items()}
    elif level == "config":
        undo = {h: e for h in sorted(hosts) if (e := _config_entry(run_id, h, hosts[h], force))}
    else:
        undo = {h: e for h in sorted(hosts) if (e := _env_entry(run_id, h, hosts[h], force))}
        _refuse_redo_of_removal(run_id, receipt)
    if not undo:
        raise ConfigError(f"run {run_id} changed nothing to undo on any host")
    request = _dict(receipt.get("request"))
    return api.prepare(
        level,
        inventory_path,
        Request(
            verify=verify,
            allow_new_flags=bool(request.get("allow_new_flags", False)),
            # the procedure the run followed: its keys (units, maintenance ...) apply again
            procedure=str(request.get("procedure", "")),
            force=force,
            targets=targets,
            undo=undo,
            undoes=run_id,
        ),
        limit=",".join(undo),
        state_dir=state_dir,
        options=options,
    )


def _refuse_level(run_id: str, level: str, receipt: dict[str, Any]) -> None:
    """A run undo cannot put back: say what can be done instead."""
    hosts: dict[str, Any] = receipt["hosts"]
    inv = receipt.get("inventory") or receipt.get("inventory_path") or "INV"
    if level == "full":
        sets = {h: _text(_dict(r.get("data")).get("forensic_set_id")) for h, r in hosts.items()}
        found = ", ".join(f"{h}: {s}" for h, s in sorted(sets.items()) if s) or "none recorded"
        heads = {
            _text(_dict(_dict(r.get("code")).get("current")).get("head")) for r in hosts.values()
        }
        to = f" --to {next(iter(heads))}" if len(heads) == 1 and "" not in heads else ""
        example = next((s for s in sets.values() if s), "SET_ID")
        raise ConfigError(
            f"run {run_id} is level full: undo does not put databases back silently; the "
            f"data as it was when the run started is in its forensic sets ({found}); "
            f"`rollback-ops plan --level full -i {inv} --backup-id {example}{to}` shows "
            "how to put code and data back to them"
        )
    if level not in UNDOABLE:
        raise ConfigError(
            f"run {run_id} is {short(level)}, not a rollback undo puts back "
            f"({', '.join(UNDOABLE)}; full is explained when asked)"
        )


def _env_entry(run_id: str, host: str, result: dict[str, Any], force: bool) -> dict[str, Any]:
    """What goes back on one host of a flag or emergency run (empty: it changed nothing)."""
    changed = [f for f in result.get("flags") or [] if f.get("changed")]
    if not changed:
        return {}
    env: dict[str, str] = {}
    remove: list[str] = []
    secrets: list[str] = []
    expect: dict[str, list[str | None]] = {}
    host = one_line(host, 80)
    for change in changed:
        key, before, after = change["key"], change["before"], change["after"]
        if not FLAG_KEY.match(key) or (before is not None and env_value_problem(before)):
            raise ConfigError(f"run {run_id}: the receipt's {host} {short(key)} cannot be set")
        if before is None:
            remove.append(key)
        elif MASKED.fullmatch(before):
            secrets.append(key)  # its value comes from the run's copy, read on the host
        else:
            env[key] = before
        expect[key] = [after, before]
    entry: dict[str, Any] = {"env": env, "env_remove": remove}
    if secrets:
        entry["env_from"] = _secret_source(run_id, host, result, secrets)
    if not force:
        entry["env_expect"] = expect
    return entry


def _config_entry(run_id: str, host: str, result: dict[str, Any], force: bool) -> dict[str, Any]:
    """What goes back on one host of a config run: each file it replaced, from the copy it
    made (empty: it replaced none)."""
    recorded = _dict(result.get("data")).get("config_files")
    host = one_line(host, 80)
    loaded = _dict(result.get("data")).get("config_rows")
    rows = [_dict(r) for r in loaded] if isinstance(loaded, list) else []
    if rows:  # the app's load command is no undo: say where the rows as they were are
        dumps = ", ".join(f"{_text(r.get('name'))}: {_text(r.get('copy'))}" for r in rows)
        raise ConfigError(
            f"run {run_id} loaded config rows on {host}: undo does not load rows back; the "
            f"rows as they were before are in {one_line(dumps, 600)} (load them with the "
            "app's config.rows load command)"
        )
    if recorded is None:
        copies = [one_line(b, 300) for b in _list(result.get("backups"))]
        if not copies:
            return {}
        raise ConfigError(
            f"run {run_id}'s receipt records no config_files for {host} (a run of an older "
            f"rollback-ops): restore the files by hand from the copies it made: {', '.join(copies)}"
        )
    if not isinstance(recorded, list):
        raise ConfigError(f"run {run_id}: the receipt's {host} config_files is not a list")
    files = []
    for item in recorded:
        item = _dict(item)
        path, copy = _text(item.get("path")), _text(item.get("copy"))
        copy_sha, wrote = _text(item.get("copy_sha256")), _text(item.get("sha256"))
        beside = copy.startswith(f"{path}.backup.") and "/" not in copy[len(path) :]
        if (
            not path.startswith("/")
            or (copy and not (beside and HEX64.fullmatch(copy_sha)))
            or (wrote and not HEX64.fullmatch(wrote))
            or not (copy or wrote)
        ):
            raise ConfigError(
                f"run {run_id}: the receipt's {host} config_files entry {short(path)} is not one "
                "undo can use (a path, its copy beside it with a sha256, the sha256 written)"
            )
        entry = {"path": path, "copy": copy, "copy_sha256": copy_sha}
        if not force:
            entry["expect_sha256"] = wrote  # "" : the run moved the file aside
        files.append(entry)
    return {"config": files} if files else {}


def _secret_source(
    run_id: str, host: str, result: dict[str, Any], keys: list[str]
) -> dict[str, Any]:
    """Where the envfile module reads the secret KEYS back from on HOST: the one copy of the
    env file the run made, with its sha256 when the receipt has it (the host checks both)."""
    copies = [one_line(b, 300) for b in _list(result.get("backups")) if ".backup." in b]
    if len(copies) != 1:
        where = f"copies {', '.join(copies)}" if copies else "no copy"
        raise ConfigError(
            f"run {run_id} changed the secret {', '.join(keys)} on {host} and recorded {where} "
            "of the env file: undo needs exactly one to read the values back from; restore the "
            "file by hand"
        )
    sha = _text(_dict(_dict(result.get("data")).get("backup_sha256")).get(copies[0]))
    if sha and not HEX64.fullmatch(sha):
        raise ConfigError(f"run {run_id}: the receipt's {host} backup_sha256 is not a sha256")
    return {"path": copies[0], "keys": keys, "sha256": sha}


def _code_entry(run_id: str, host: str, result: dict[str, Any], force: bool) -> dict[str, Any]:
    """What goes back on one host of a code run (empty: its code was not changed)."""
    code = _dict(result.get("code"))
    snapshot = _dict(code.get("snapshot"))
    if not snapshot:
        return {}
    host = one_line(host, 80)
    if snapshot.get("kind") != "git-ref":
        what = {
            "git-paths": "restored git paths (not the whole tree)",
            "archive": "restored files from an archive directory",
        }.get(str(snapshot.get("source", "")), "restored backup files")
        raise ConfigError(
            f"run {run_id} {what} on {host}: undo puts back git runs only; the "
            f"files as they were are in {one_line(str(snapshot.get('path')), 200)} (tar -xzf it "
            f"in {one_line(str(snapshot.get('base')), 200)})"
        )
    head, branch = str(snapshot.get("head", "")), str(snapshot.get("branch") or "")
    after = str(code.get("head_after") or "")
    if not SHA.match(head) or (after and not SHA.match(after)):
        raise ConfigError(f"run {run_id}: the receipt's {host} code.snapshot is not a commit")
    if branch and not GIT_REF.match(branch):
        raise ConfigError(f"run {run_id}: the receipt's {host} branch {short(branch)} is not one")
    entry: dict[str, Any] = {"head": head, "branch": branch}
    if not force and after:
        entry["expect_head"] = [after, head]
    return entry


def _refuse_redo_of_removal(run_id: str, receipt: dict[str, Any]) -> None:
    """An undo that removed keys cannot be undone from its receipt (the values are not kept
    where flags list them): say so rather than leave them out silently."""
    undo = _dict(_dict(receipt.get("request")).get("undo"))
    removed = sorted({k for e in undo.values() for k in _list(_dict(e).get("env_remove"))})
    if removed:
        raise ConfigError(
            f"run {run_id} removed {', '.join(removed)} (keys run {receipt.get('undoes')} "
            f"added): run {receipt.get('undoes')}'s command again instead of undoing it"
        )


def _dict(value: Any) -> dict[str, Any]:
    """A receipt's object, or {} where the file holds something else (nothing is trusted)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[str]:
    """A receipt's list of strings, without what is not a string."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return one_line(value, 200) if isinstance(value, str) else ""


def undone_by(state: Path, run_id: str) -> str:
    """The run that undid RUN_ID and was not undone itself since, or "" (from the receipts of
    the runs after it: run ids start with their UTC start)."""
    runs = state / "runs"
    later: list[tuple[str, dict[str, Any]]] = []
    try:
        names = sorted(p.name for p in runs.iterdir() if p.name > run_id)
    except OSError:
        return ""
    for name in names:
        try:
            data = json.loads((runs / name / "receipt.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("result") == "ok" and not data.get("check"):
            later.append((name, data))
    undone = ""
    for name, data in later:
        if data.get("undoes") == run_id:
            undone = name
        elif undone and data.get("undoes") == undone:
            undone = ""
    return undone
