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
    and diff mode.
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
    files: [/etc/shop/app.toml, /srv/shop/.env]
  register: __config

- name: Put them back, keeping a copy of the current ones
  rollback_ops.rollback.configrestore:
    state: restored
    app: shop
    set_id: "{{ __config.set_id }}"
    files: [/etc/shop/app.toml, /srv/shop/.env]
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
"""

import difflib
import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    list_sets,
    read_manifest,
    set_path,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.envfile import (
    DEFAULT_SECRET_KEYS,
    is_secret,
    mask,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.files import (
    FileError,
    file_problem,
    safe_write,
    sha256,
    writes_space_problems,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def choose(root, app, set_id, files):
    """(set_dir, manifest) of the given set, or of the newest usable one holding every file."""
    if set_id:
        set_dir = set_path(root, app, set_id)
        return set_dir, read_manifest(set_dir)
    for summary in list_sets(root, app):
        if summary.get("kind") == "forensic" or not summary.get("verified"):
            continue
        set_dir = set_path(root, app, summary["set_id"])
        manifest = read_manifest(set_dir)
        held = set(entry["path"] for entry in manifest.get("files", []))
        if all(f in held for f in files):
            return set_dir, manifest
    raise BackupError(
        "no verified backup set of %s under %s holds %s (`rollback-ops backup list`)"
        % (app, root, ", ".join(files))
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
    old, new = lines_of(path), lines_of(source)
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["checked", "restored"], default="checked"),
            backup_id=dict(type="str", default="", aliases=["set_id"]),
            files=dict(type="list", elements="path", required=True),
            min_free_mb=dict(type="int", default=10),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, set_id="", needed=False, differs=[], problems=[])
    try:
        set_dir, manifest = choose(
            params["root"], params["app"], params["backup_id"], params["files"]
        )
    except BackupError as exc:
        module.fail_json(msg="config: %s" % exc, **result)
    result["set_id"] = manifest["set_id"]
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
    writes = [
        (
            entry["path"],
            os.path.getsize(entry["path"]) if os.path.exists(entry["path"]) else None,
            os.path.getsize(source),
        )
        for entry, source in plan
    ]
    result["problems"].extend(writes_space_problems(writes, params["min_free_mb"]))
    if result["problems"]:
        module.fail_json(msg="config: " + "; ".join(result["problems"]), **result)
    result["differs"] = [entry["path"] for entry, _ in plan]
    result["needed"] = bool(plan)
    if params["state"] == "checked" or not plan:
        module.exit_json(**result)
    result["changed"] = True
    result["diff"] = []
    for entry, source in plan:
        before, after = changed_lines(entry["path"], source)
        result["diff"].append(
            dict(
                before=before,
                after=after,
                before_header=entry["path"],
                after_header="%s (set %s)" % (entry["path"], manifest["set_id"]),
            )
        )
    if module.check_mode:
        module.exit_json(**result)
    result["backup_files"] = []
    for entry, source in plan:
        try:
            copy = restore(entry, source)
        except FileError as exc:
            module.fail_json(msg="config: %s" % exc, **result)
        if copy:
            result["backup_files"].append(copy)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
