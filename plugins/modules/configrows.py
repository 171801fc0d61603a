#!/usr/bin/python
"""Load an app's config rows back from a backup set, keeping a dump of the current ones."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: configrows
short_description: Restore an app's config rows from a backup set with its own load command
description:
  - Config rows are configuration an app keeps in its database (seed 002 strategy 2,
    C(manage.py dumpdata bot.AgentConfiguration) and C(loaddata)). C(backup create) (the
    M(rollback_ops.rollback.backup) module's I(rows)) puts each C(dump)'s output in the set
    as C(rows/<name>), with its sha256 in the manifest.
  - The set is I(backup_id), or the newest set whose verification passed, which is not
    forensic and which holds every one of I(rows).
  - C(state=checked) runs each C(dump) into a private temp file (removed after) and
    compares it with the set's file, whose sha256 must be the manifest's. Reports the rows
    that differ (C(needed), C(differs)) and, with diff mode, their changed lines.
  - C(state=restored), for each row that differs, first dumps the current rows to
    I(keep_dir)C(/<name>.<UTC stamp>) (0600; nothing is lost), then runs C(load) with a
    private copy of the set's file its user can read (C({file}) in the argv is replaced by
    its path, literally; no shell), then dumps again and compares (rows that still differ
    because the load keeps rows the set lacks are reported in C(warnings) and C(still_differs)).
  - A failing dump or load fails with one line naming the rows, the program, its exit code
    and the last line of its error output. Check mode runs only the dumps.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - rollback_ops.rollback.attributes
  - rollback_ops.rollback.backupset
attributes:
  check_mode:
    support: full
    details: Runs the dumps into temp files only.
  diff_mode:
    support: full
options:
  state:
    type: str
    choices: [checked, restored]
    default: checked
    description: Inspect only, or load.
  backup_id:
    aliases: [set_id]
    type: str
    default: ""
    description: The set; empty means the newest verified non-forensic set holding the rows.
  rows:
    type: list
    elements: dict
    required: true
    description:
      - As in C(rollback_app.config.rows), each C(name), C(dump), C(load), C(user), C(chdir),
        C(environment), C(timeout).
  keep_dir:
    type: path
    default: /var/lib/rollback-ops/config-rows
    description: Where the current rows are dumped before a load.
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Load the agent configuration of the newest verified set where it differs
  rollback_ops.rollback.configrows:
    state: restored
    app: bot
    rows:
      - name: agent_configuration.json
        dump: [/srv/bot/venv/bin/python, manage.py, dumpdata, bot.AgentConfiguration]
        load: [/srv/bot/venv/bin/python, manage.py, loaddata, "{file}"]
        user: bot
        chdir: /srv/bot
"""

RETURN = r"""
set_id:
  description: The set the rows come from.
  type: str
  returned: always
needed:
  description: Whether any rows differ from the set's.
  type: bool
  returned: always
differs:
  description: The names of the rows that differ (before the load).
  type: list
  elements: str
  returned: always
backup_files:
  description: The dumps of the current rows made before each load.
  type: list
  elements: str
  returned: when state is restored
config_rows:
  description:
    - Per rows loaded, C(name), C(copy) (the dump before), C(copy_sha256), C(sha256) (the
      set's file).
  type: list
  elements: dict
  returned: when state is restored and something changed
still_differs:
  description: The rows that still differ from the set's after the load.
  type: list
  elements: str
  returned: when state is restored
"""

import difflib
import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    newest_holding,
    read_manifest,
    set_path,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.configrows import (
    RowsError,
    dump,
    load,
    sha256_of,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)

DIFF_LINES = 400


def choose(root, app, set_id, names):
    """(set_dir, manifest) of the given set, or of the newest usable one holding every rows."""
    if set_id:
        set_dir = set_path(root, app, set_id)
        return set_dir, read_manifest(set_dir)

    def holds(manifest):
        held = set(entry.get("name") for entry in manifest.get("rows", []))
        return all(n in held for n in names)

    found = newest_holding(root, app, holds)
    if found is not None:
        return found
    raise BackupError(
        "no verified backup set of %s under %s holds the config rows %s "
        "(`rollback-ops backup create` dumps them)" % (app, root, ", ".join(names))
    )


def set_file(set_dir, manifest, name):
    """The set's file of rows NAME, checked against the manifest's sha256."""
    entry = next((e for e in manifest.get("rows", []) if e.get("name") == name), None)
    if entry is None:
        raise BackupError("set %s holds no config rows %s" % (manifest.get("set_id"), name))
    path = os.path.join(str(set_dir), entry["file"])
    if not os.path.isfile(path) or sha256_of(path) != entry.get("sha256"):
        raise BackupError(
            "set %s: rows/%s is missing or its sha256 is not the manifest's"
            % (manifest.get("set_id"), name)
        )
    return path, entry["sha256"]


def lines(path):
    with open(path, "rb") as handle:
        return handle.read(1 << 20).decode("utf-8", "replace").splitlines(True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["checked", "restored"], default="checked"),
            backup_id=dict(type="str", default="", aliases=["set_id"]),
            rows=dict(type="list", elements="dict", required=True),
            keep_dir=dict(type="path", default="/var/lib/rollback-ops/config-rows"),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    rows = p["rows"]
    result = dict(changed=False, set_id="", needed=False, differs=[])
    tmp = tempfile.mkdtemp(prefix="rollback-ops-rows-check-")
    try:
        set_dir, manifest = choose(p["root"], p["app"], p["backup_id"], [r["name"] for r in rows])
        result["set_id"] = manifest.get("set_id", "")
        sources, diffs = {}, []
        for row in rows:
            name = row["name"]
            source, digest = set_file(set_dir, manifest, name)
            sources[name] = (source, digest)
            current = os.path.join(tmp, name)
            dump(row, current)
            if sha256_of(current) != digest:
                result["differs"].append(name)
                diffs.append(
                    "".join(
                        list(
                            difflib.unified_diff(
                                lines(current), lines(source), "%s (now)" % name, "%s (set)" % name
                            )
                        )[:DIFF_LINES]
                    )
                )
        result["needed"] = bool(result["differs"])
        if module._diff and diffs:
            result["diff"] = dict(prepared="".join(diffs))
        if p["state"] == "checked" or not result["needed"]:
            module.exit_json(**result)
        result["changed"] = True
        if module.check_mode:
            module.exit_json(**result)
        if not os.path.isdir(p["keep_dir"]):
            os.makedirs(p["keep_dir"], 0o700)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        result.update(backup_files=[], config_rows=[], still_differs=[], warnings=[])
        for row in rows:
            name = row["name"]
            if name not in result["differs"]:
                continue
            source, digest = sources[name]
            copy = os.path.join(p["keep_dir"], "%s.%s" % (name, stamp))
            shutil.copyfile(os.path.join(tmp, name), copy)
            os.chmod(copy, 0o600)
            result["backup_files"].append(copy)
            load(row, source)
            result["config_rows"].append(
                dict(name=name, copy=copy, copy_sha256=sha256_of(copy), sha256=digest)
            )
            after = os.path.join(tmp, name + ".after")
            dump(row, after)
            if sha256_of(after) != digest:
                result["still_differs"].append(name)
                result["warnings"].append(
                    "config rows %s: after the load the dump still differs from the set's "
                    "(a load that keeps rows the set lacks?)" % name
                )
    except (BackupError, RowsError, OSError) as exc:
        module.fail_json(msg=str(exc), **result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
