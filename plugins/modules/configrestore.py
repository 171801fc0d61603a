#!/usr/bin/python
"""Put an app's config files back from a backup set, keeping a copy of the current ones."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: configrestore
short_description: Restore an app's config files from a backup set (seed 002 strategy 2)
description:
  - The set is I(backup_id), or the newest set whose verification passed, which is not forensic
    and which holds every one of I(files).
  - C(state=checked) is read-only. Each file must be in the set, its copy must match the
    sha256 the manifest recorded. Reports which live files differ from their copy (C(needed)).
  - Both states refuse, before any change, a differing file that an atomic replace would get
    wrong (more than one hard link, not a regular file, a missing file whose directory is
    gone), and a filesystem without room for the backup copies, the temp files and
    I(min_free_mb).
  - C(state=restored) copies each differing live file to C(<file>.backup.<UTC stamp>) (mode,
    owner and times kept), then replaces it atomically with the set's copy, with the mode,
    owner and group the manifest recorded. A symlink is kept and its final target replaced
    (the copy goes beside the link); a file missing on the host is created. A failed write
    leaves the file as it was and no partial copy or temp file. Idempotent; supports check
    and diff mode. It returns C(config_files), per file replaced, its copy, the copy's sha256
    and the sha256 written, which C(rollback-ops undo) reads from the run's receipt.
  - With I(undo) (C(rollback-ops undo) of a config run) the files come from the copies a run
    made instead of a set; each file gets back the copy's bytes, mode and owner, after a copy
    of the current file is made the same way (a file the run created, without a copy, is
    moved aside to C(<file>.backup.<UTC stamp>)). Refused before any change, naming the
    file, are a copy that is not C(<file>.backup.*) beside it, is gone or whose sha256 is not
    the one recorded, a file not in I(files), and a file whose sha256 is no longer the one
    the run wrote (I(expect_sha256), a later change) unless it already equals the copy. A
    file already equal to its copy (bytes, mode, owner) is left alone.
  - With I(crontabs) the users' crontabs go back too (seed 001 restores cron jobs); each
    must be in the set (C(backup) with I(crontabs)), its copy matching its sha256. A crontab
    that differs from the set's (C(crontab -l -u USER)) is copied to
    C(<root>/<app>/.crontab-copies/<user>.backup.<UTC stamp>) (mode 0600) when the user has
    one, then the set's is installed with C(crontab -u USER FILE) (C(crontab -r) where the set
    recorded none). Returned in C(crontabs), the copies in C(backup_files) too. An undo
    (I(undo)) does not touch crontabs.
  - The diff holds the changed lines only; on a line setting a key that looks secret (the
    M(rollback_ops.rollback.envfile) patterns C(*_KEY), C(*_TOKEN), C(*PASSWORD*),
    C(*SECRET*), in any case; set with C(=) or a colon) the value shows as
    C(<secret sha256:XXXXXXXX>).
options:
  state:
    type: str
    choices: [checked, restored]
    default: checked
    description: Inspect only, or restore.
  backup_id:
    aliases: [set_id]
    type: str
    default: ""
    description: The set; empty means the newest verified non-forensic set holding the files.
  files:
    type: list
    elements: path
    required: true
    description: Absolute paths of the config files to restore.
  undo:
    type: list
    elements: dict
    default: []
    description:
      - What to put back from a run's copies (from its receipt's C(config_files)), each
        C(path), C(copy) (empty for a file the run created), C(copy_sha256) and, unless the
        undo is forced, C(expect_sha256) (the sha256 the run wrote). I(backup_id) is not used.
  crontabs:
    type: list
    elements: str
    default: []
    description: Users whose crontab to put back from the set (each must be in it).
  min_free_mb:
    type: int
    default: 10
    description: Free space each filesystem written to keeps beyond the copies and temp files.
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Which config files differ from the newest verified set
  rollback_ops.rollback.configrestore:
    state: checked
    app: shop
    files: [/etc/shop/app.toml, /srv/shop/.env, /etc/cron.d/shop]
    crontabs: [shop]
  register: __config

- name: Put them back, keeping a copy of the current ones
  rollback_ops.rollback.configrestore:
    state: restored
    app: shop
    set_id: "{{ __config.set_id }}"
    files: [/etc/shop/app.toml, /srv/shop/.env, /etc/cron.d/shop]
    crontabs: [shop]
  when: __config.needed
"""

RETURN = r"""
set_id:
  description: The set the files come from.
  type: str
  returned: always
needed:
  description: Whether a live file differs from its copy in the set.
  type: bool
  returned: always
differs:
  description: The live files that differ from the set's copies.
  type: list
  returned: always
backup_files:
  description: The copies of the live files made before they were replaced.
  type: list
  returned: when state is restored
config_files:
  description:
    - Per file replaced, C(path), C(copy) (its copy, empty where the file was created),
      C(copy_sha256) and C(sha256) (of what was written; empty where a file was moved aside).
  type: list
  elements: dict
  returned: when state is restored and something changed
crontabs:
  description:
    - Per crontab put back, C(user), C(copy) (the copy of the one replaced, empty where the
      user had none), C(copy_sha256) and C(sha256) (of the one installed, empty when removed).
  type: list
  elements: dict
  returned: when state is restored and a crontab changed
"""

import difflib
import hashlib
import os
import re
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    newest_holding,
    read_manifest,
    set_path,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset.crontab import (
    copy_crontab,
    install_crontab,
    read_crontab,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile import (
    DEFAULT_SECRET_KEYS,
    is_secret,
    mask,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.files import (
    FileError,
    backup_path,
    file_problem,
    safe_write,
    sha256,
    writes_space_problems,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def choose(root, app, set_id, files, crontabs=()):
    """(set_dir, manifest) of the given set, or of the newest usable one holding every file
    and every user's crontab."""
    if set_id:
        set_dir = set_path(root, app, set_id)
        return set_dir, read_manifest(set_dir)

    def holds(manifest):
        held = set(entry["path"] for entry in manifest.get("files", []))
        users = set(entry["user"] for entry in manifest.get("crontabs", []))
        return all(f in held for f in files) and all(u in users for u in crontabs)

    found = newest_holding(root, app, holds)
    if found is not None:
        return found
    wanted = list(files) + ["the crontab of %s" % u for u in crontabs]
    raise BackupError(
        "no verified backup set of %s under %s holds %s (`rollback-ops backup list`)"
        % (app, root, ", ".join(wanted))
    )


def lines_of(path, limit=1 << 20):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8").splitlines(True)
    except (OSError, UnicodeDecodeError):
        return None


# A line setting a key: KEY=value, export KEY=value, key: value, key = value, "key": value.
SETTING = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?[\"']?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*[=:]\s*)"
    r"(?P<value>.*?)(?P<eol>\r?\n?)$",
    re.DOTALL,
)


def shown(line):
    """line, or with its value masked when it sets a key that looks secret (any case)."""
    match = SETTING.match(line)
    if match and is_secret(match.group("key").upper(), DEFAULT_SECRET_KEYS):
        return match.group("lead") + mask(match.group("value")) + match.group("eol")
    return line


def changed_lines(path, source):
    """Only the lines that differ, numbered (the rest of a config file may hold secrets),
    the values of secret-looking keys masked."""
    return changed_between(lines_of(path), lines_of(source))


def changed_between(old, new):
    """changed_lines of two lists of lines (None: binary or unreadable)."""
    if old is None or new is None:
        return "(binary or unreadable)\n", "(binary or unreadable)\n"
    before, after = [], []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        before += ["%d: %s" % (a1 + i + 1, shown(line)) for i, line in enumerate(old[a1:a2])]
        after += ["%d: %s" % (b1 + i + 1, shown(line)) for i, line in enumerate(new[b1:b2])]
    return "".join(before), "".join(after)


def restore(entry, source):
    """Put the set's copy at entry's path with the recorded mode and owner (a symlink kept,
    its target replaced); return the live file's backup copy ("" when there was none)."""
    with open(source, "rb") as handle:
        data = handle.read()
    owner = "uid" in entry and "gid" in entry
    return safe_write(
        entry["path"],
        None,
        data,
        backup=True,
        mode=int(str(entry.get("mode") or "0644"), 8),
        uid=int(entry["uid"]) if owner else None,
        gid=int(entry["gid"]) if owner else None,
    )


def owned_like(path, st):
    """Whether path is a regular file with st's mode, owner and group."""
    try:
        live = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(live.st_mode) and (
        stat.S_IMODE(live.st_mode),
        live.st_uid,
        live.st_gid,
    ) == (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def copy_problem(path, copy, copy_sha):
    """Why copy cannot be the run's copy of path ("" when it can)."""
    prefix = os.path.basename(path) + ".backup."
    name = os.path.basename(copy)
    if os.path.dirname(copy) != os.path.dirname(path) or not name.startswith(prefix):
        return "%s is not a copy of %s (<file>.backup.* beside it)" % (copy, path)
    if os.path.islink(copy) or not os.path.isfile(copy):
        return "the copy %s of %s is gone (or not a regular file)" % (copy, path)
    if sha256(copy) != copy_sha:
        return "the copy %s of %s is not the one the run made (its sha256 differs)" % (copy, path)
    return ""


def undo_plan(params, result):
    """[(entry, copy or "")] to put back from a run's copies; problems go to result."""
    plan = []
    for entry in params["undo"]:
        path, copy = str(entry.get("path") or ""), str(entry.get("copy") or "")
        expect = entry.get("expect_sha256")
        if path not in params["files"]:
            result["problems"].append(
                "%s is not one of the config files %s" % (path, params["files"])
            )
            continue
        if copy:
            problem = copy_problem(path, copy, str(entry.get("copy_sha256") or ""))
            if problem:
                result["problems"].append(problem)
                continue
            st = os.stat(copy)
            if (
                os.path.isfile(path)
                and sha256(path) == entry["copy_sha256"]
                and owned_like(path, st)
            ):
                continue  # already back
        elif not os.path.lexists(path):
            continue  # the file the run created is already gone
        current = sha256(path) if os.path.isfile(path) else ""
        if expect is not None and current != expect:
            result["problems"].append(
                "%s changed since the run: its sha256 is %s, not %s as the run left it "
                "(rollback-ops undo --force overwrites it)"
                % (path, current[:12] or "missing", str(expect)[:12] or "missing")
            )
            continue
        problem = file_problem(path, what="config file", missing_ok=True)
        if problem:
            result["problems"].append(problem)
            continue
        plan.append((dict(path=path), copy))
    return plan


def put_back(path, copy):
    """Put copy's bytes, mode and owner at path (a copy of path made first), or with no copy
    move path aside; the entry of config_files."""
    if not copy:
        aside = backup_path(path)
        try:
            os.rename(path, aside)
        except OSError as exc:
            raise FileError(
                "could not move %s aside: %s; the file is unchanged" % (path, exc)
            ) from exc
        return dict(path=path, copy=aside, copy_sha256=sha256(aside), sha256="")
    with open(copy, "rb") as handle:
        data = handle.read()
    st = os.stat(copy)
    made = safe_write(
        path, None, data, backup=True, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid
    )
    return dict(path=path, copy=made, copy_sha256=sha256(made) if made else "", sha256=sha256(path))


def crontab_plan(params, set_dir, manifest, result):
    """[(user, current, wanted)] of the crontabs that differ from the set's (None: the user
    has none / the set recorded none); problems go to result."""
    entries = dict((e["user"], e) for e in manifest.get("crontabs", []))
    plan = []
    for user in params["crontabs"]:
        entry = entries.get(user)
        if entry is None:
            result["problems"].append(
                "the crontab of %s is not in backup set %s" % (user, manifest["set_id"])
            )
            continue
        wanted = None
        if entry.get("present"):
            source = os.path.join(str(set_dir), entry["file"])
            if not os.path.isfile(source) or sha256(source) != entry.get("sha256"):
                result["problems"].append(
                    "the copy of %s's crontab in set %s does not match its sha256"
                    % (user, manifest["set_id"])
                )
                continue
            with open(source, "rb") as handle:
                wanted = handle.read()
        try:
            current = read_crontab(user)
        except BackupError as exc:
            result["problems"].append(str(exc))
            continue
        if current != wanted:
            plan.append((user, current, wanted))
    return plan


def crontab_lines(data):
    if data is None:
        return []
    try:
        return data.decode("utf-8").splitlines(True)
    except UnicodeDecodeError:
        return None


def put_crontab(params, user, current, wanted):
    """Copy the user's current crontab, install the set's; the entry of crontabs."""
    copy = ""
    if current is not None:
        copy = copy_crontab(user, current, params["root"], params["app"])
    install_crontab(user, wanted)
    if read_crontab(user) != wanted:
        raise BackupError(
            "the crontab of %s is not the set's after crontab -u %s (its copy: %s)"
            % (user, user, copy or "none, it had none")
        )
    return dict(
        user=user,
        copy=copy,
        copy_sha256=sha256(copy) if copy else "",
        sha256=hashlib.sha256(wanted).hexdigest() if wanted is not None else "",
    )


def set_plan(params, result):
    """([(entry, source)], [(user, current, wanted)]) to put back from the backup set; its id
    goes to result."""
    try:
        set_dir, manifest = choose(
            params["root"], params["app"], params["backup_id"], params["files"], params["crontabs"]
        )
    except BackupError as exc:
        result["problems"].append(str(exc))
        return [], []
    result["set_id"] = manifest["set_id"]
    crontabs = crontab_plan(params, set_dir, manifest, result)
    entries = dict((e["path"], e) for e in manifest.get("files", []))
    plan = []
    for path in params["files"]:
        entry = entries.get(path)
        if entry is None:
            result["problems"].append("%s is not in backup set %s" % (path, manifest["set_id"]))
            continue
        source = os.path.join(str(set_dir), entry["file"])
        if not os.path.isfile(source) or sha256(source) != entry.get("sha256"):
            result["problems"].append(
                "the copy of %s in set %s does not match its sha256" % (path, manifest["set_id"])
            )
            continue
        live_mode = "%04o" % (os.stat(path).st_mode & 0o7777) if os.path.exists(path) else ""
        if (
            not os.path.isfile(path)
            or sha256(path) != entry["sha256"]
            or live_mode != str(entry.get("mode")).zfill(4)
        ):
            # Only a file to replace must be one an atomic replace gets right.
            problem = file_problem(path, what="config file", missing_ok=True)
            if problem:
                result["problems"].append(problem)
                continue
            plan.append((entry, source))
    return plan, crontabs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["checked", "restored"], default="checked"),
            backup_id=dict(type="str", default="", aliases=["set_id"]),
            files=dict(type="list", elements="path", required=True),
            undo=dict(type="list", elements="dict", default=[]),
            crontabs=dict(type="list", elements="str", default=[]),
            min_free_mb=dict(type="int", default=10),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, set_id="", needed=False, differs=[], problems=[])
    undo = bool(params["undo"])
    plan, crontabs = (undo_plan(params, result), []) if undo else set_plan(params, result)
    writes = [
        (
            entry["path"],
            os.path.getsize(entry["path"]) if os.path.exists(entry["path"]) else None,
            os.path.getsize(source) if source else 0,
        )
        for entry, source in plan
    ]
    result["problems"].extend(writes_space_problems(writes, params["min_free_mb"]))
    if result["problems"]:
        module.fail_json(msg="config: " + "; ".join(result["problems"]), **result)
    result["differs"] = [entry["path"] for entry, _ in plan]
    result["differs"] += ["crontab of %s" % user for user, _, _ in crontabs]
    result["needed"] = bool(plan or crontabs)
    if params["state"] == "checked" or not result["needed"]:
        module.exit_json(**result)
    result["changed"] = True
    result["diff"] = []
    for entry, source in plan:
        before, after = changed_lines(entry["path"], source or os.devnull)
        if undo:
            header = "%s (%s)" % (entry["path"], source or "moved aside")
        else:
            header = "%s (set %s)" % (entry["path"], result["set_id"])
        result["diff"].append(
            dict(before=before, after=after, before_header=entry["path"], after_header=header)
        )
    for user, current, wanted in crontabs:
        before, after = changed_between(crontab_lines(current), crontab_lines(wanted))
        result["diff"].append(
            dict(
                before=before,
                after=after,
                before_header="crontab of %s" % user,
                after_header="crontab of %s (set %s)" % (user, result["set_id"]),
            )
        )
    if module.check_mode:
        module.exit_json(**result)
    result["backup_files"] = []
    result["config_files"] = []
    for entry, source in plan:
        try:
            if undo:
                done = put_back(entry["path"], source)
            else:
                copy = restore(entry, source)
                done = dict(
                    path=entry["path"],
                    copy=copy,
                    copy_sha256=sha256(copy) if copy else "",
                    sha256=entry["sha256"],
                )
        except FileError as exc:
            module.fail_json(msg="config: %s" % exc, **result)
        result["config_files"].append(done)
        if done["copy"]:
            result["backup_files"].append(done["copy"])
    if crontabs:
        result["crontabs"] = []
    for user, current, wanted in crontabs:
        try:
            done = put_crontab(params, user, current, wanted)
        except BackupError as exc:
            module.fail_json(msg="config: %s" % exc, **result)
        result["crontabs"].append(done)
        if done["copy"]:
            result["backup_files"].append(done["copy"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
