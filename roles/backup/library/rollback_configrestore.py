#!/usr/bin/python
"""Put an app's config files back from a backup set, keeping a copy of the current ones."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rollback_configrestore
short_description: Restore an app's config files from a backup set (seed 002 strategy 2)
description:
  - The set is I(set_id), or the newest set whose verification passed, which is not forensic
    and which holds every one of I(files).
  - C(state=checked) is read-only. Each file must be in the set, its copy must match the
    sha256 the manifest recorded. Reports which live files differ from their copy (C(needed)).
  - C(state=restored) copies each differing live file to C(<file>.backup.<UTC stamp>) (mode
    and owner kept), then replaces it atomically with the set's copy, with the mode, owner and
    group the manifest recorded. Idempotent; supports check and diff mode.
options:
  state:
    type: str
    choices: [checked, restored]
    default: checked
    description: Inspect only, or restore.
  root:
    type: path
    default: /var/backups/rollback-ops
    description: Where the sets are kept.
  app:
    type: str
    required: true
    description: The app's name.
  set_id:
    type: str
    default: ""
    description: The set; empty means the newest verified non-forensic set holding the files.
  files:
    type: list
    elements: path
    required: true
    description: Absolute paths of the config files to restore.
author: rollback-ops developers
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
import hashlib
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rollback_backupset import BackupError, list_sets, read_manifest, set_path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def changed_lines(path, source):
    """Only the lines that differ, numbered (the rest of a config file may hold secrets)."""
    old, new = lines_of(path), lines_of(source)
    if old is None or new is None:
        return "(binary or unreadable)\n", "(binary or unreadable)\n"
    before, after = [], []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        before += ["%d: %s" % (a1 + i + 1, line) for i, line in enumerate(old[a1:a2])]
        after += ["%d: %s" % (b1 + i + 1, line) for i, line in enumerate(new[b1:b2])]
    return "".join(before), "".join(after)


def replace(entry, source):
    path = entry["path"]
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, int(str(entry.get("mode") or "0644"), 8))
        if "uid" in entry and "gid" in entry:
            os.chown(tmp, int(entry["uid"]), int(entry["gid"]))
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def keep_copy(path):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    copy = "%s.backup.%s" % (path, stamp)
    n = 1
    while os.path.exists(copy):
        n += 1
        copy = "%s.backup.%s.%d" % (path, stamp, n)
    shutil.copy2(path, copy)
    st = os.stat(path)
    os.chown(copy, st.st_uid, st.st_gid)
    return copy


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["checked", "restored"], default="checked"),
            root=dict(type="path", default="/var/backups/rollback-ops"),
            app=dict(type="str", required=True),
            set_id=dict(type="str", default=""),
            files=dict(type="list", elements="path", required=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, set_id="", needed=False, differs=[], problems=[])
    try:
        set_dir, manifest = choose(params["root"], params["app"], params["set_id"], params["files"])
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
            not os.path.exists(path)
            or sha256(path) != entry["sha256"]
            or live_mode != str(entry.get("mode")).zfill(4)
        ):
            plan.append((entry, source))
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
        if os.path.exists(entry["path"]):
            result["backup_files"].append(keep_copy(entry["path"]))
        replace(entry, source)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
