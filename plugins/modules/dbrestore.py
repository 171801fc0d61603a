#!/usr/bin/python
"""Check, take a forensic copy of, and restore an app's databases from a backup set."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dbrestore
short_description: Restore an app's databases from a backup set, with a forensic copy first
description:
  - The set restored is I(backup_id), or the newest set under C(<root>/<app>/) whose
    verification passed and which is not forensic.
  - C(state=checked) is read-only, for before anything is stopped. The set must be this
    app's, verified, hold every database of I(databases) with the same engine and database,
    every file must match its sha256 and every dump must read (pg_restore --list, PRAGMA
    integrity_check). Reports the set, its code ref and each database's schema version;
    fails listing every problem.
  - C(state=forensic) makes a forensic set (never pruned) of the live databases, and saves
    in it C(keys.json), each data_loss_tables row's key and md5 over the columns the live
    table shares with the set to restore. Once per I(run_id), a second call finds it made.
  - C(state=restored) checks the set again, restores each database (PostgreSQL, pg_restore
    --clean --if-exists --single-transaction, owners kept when the user may; SQLite, atomic
    replace), runs its migrations_rollback files (each in one transaction), its
    integrity_checks, and compares the data_loss_tables with the forensic keys. Fails (after
    restoring) when an integrity check fails. Refuses, before touching anything, without a
    forensic set of the run unless I(require_forensic) is false.
  - With I(source=external) the set is made from the backups the team already makes, each
    database's C(external_backups) (the newest file its glob matches, by the stamp in the
    name or by mtime) or the file I(backup_files) gives. C(state=checked) verifies those
    files read-only (SQLite integrity_check on a private copy, pg_restore --list, a plain
    SQL dump loaded into a scratch database, mysqldump's completion line), unless a verified
    set adopted from the same files (path and sha256) exists, which it then checks as any
    set. C(state=imported) adopts them into a verified set of kind C(external) (once; the
    same files find the same set). C(state=forensic) and C(state=restored) use that set.
  - Passwords go in I(passwords) (name to password, never logged), never in I(databases).
  - Supports check mode (forensic and restored report what they would do).
options:
  state:
    description: What to do.
    type: str
    choices: [checked, imported, forensic, restored]
    default: checked
  databases:
    description: The databases, as for M(rollback_ops.rollback.backup); no C(password) in them.
    type: list
    elements: dict
    required: true
  passwords:
    description: Database name to password.
    type: dict
    default: {}
  backup_id:
    aliases: [set_id]
    description: The set to restore; empty means the newest verified non-forensic set.
    type: str
    default: ""
  source:
    description: C(set), a backup set; C(external), the app's own backups (see above).
    type: str
    choices: [set, external]
    default: set
  backup_files:
    description: source=external, database name to the backup file to use (instead of the
      newest its C(external_backups) glob matches).
    type: dict
    default: {}
  backup_chosen:
    description: source=external, database name to how its I(backup_files) entry was chosen
      when an earlier check chose it (the later steps of a run restore the file the check
      chose, and the receipt keeps the check's reason instead of C(given)).
    type: dict
    default: {}
  kinds:
    description: Without I(backup_id), choose only among sets of these kinds (e.g. predeploy).
    type: list
    elements: str
    default: []
  run_id:
    description: The rollback run (names the forensic set; restored looks for that run's).
    type: str
    default: ""
  forensic_set_id:
    description: restored, the forensic set to compare with; empty means the run's newest.
    type: str
    default: ""
  require_forensic:
    description: restored, refuse to restore without a forensic set to compare with.
    type: bool
    default: true
  files:
    description: forensic, files to copy into the forensic set too.
    type: list
    elements: path
    default: []
  code_path:
    description: forensic, the code directory whose git ref is recorded.
    type: path
    default: ""
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Check the newest verified predeploy set before anything stops
  rollback_ops.rollback.dbrestore:
    state: checked
    app: shop
    kinds: [predeploy]
    databases: "{{ shop_databases }}"
    passwords: "{{ shop_db_passwords }}"
  register: __check

- name: Take the forensic copy of the live databases (once per run)
  rollback_ops.rollback.dbrestore:
    state: forensic
    app: shop
    set_id: "{{ __check.set_id }}"
    run_id: "{{ rollback_run_id }}"
    databases: "{{ shop_databases }}"
    passwords: "{{ shop_db_passwords }}"

- name: Restore the set, run the migration rollbacks and report the rows lost
  rollback_ops.rollback.dbrestore:
    state: restored
    app: shop
    set_id: "{{ __check.set_id }}"
    run_id: "{{ rollback_run_id }}"
    databases: "{{ shop_databases }}"
    passwords: "{{ shop_db_passwords }}"
"""

RETURN = r"""
set_id:
  description: The set chosen to restore.
  type: str
  returned: always
code:
  description: The chosen set's code (path, ref, describe), or {} when it was not git.
  type: dict
  returned: always
schema_versions:
  description: Database name to the chosen set's schema version.
  type: dict
  returned: always
live_differences:
  description: checked, per database, how the live one differs from the set ([] when equal).
  type: dict
  returned: when state is checked
needed:
  description: checked, whether any live database differs from the set.
  type: bool
  returned: when state is checked
external:
  description: source=external, the files chosen (name, path, format, size, sha256, mtime,
    chosen), what was checked, and whether they still need adopting.
  type: dict
  returned: when source is external
manifest:
  description: imported, the adopted set's manifest.
  type: dict
  returned: when state is imported
problems:
  description: What makes the set unfit to restore (the module fails when there is any).
  type: list
  returned: always
forensic_set_id:
  description: forensic and restored, the forensic set.
  type: str
  returned: when state is forensic or restored
backup_file:
  description: forensic, the forensic set's directory.
  type: str
  returned: when state is forensic
keys:
  description: forensic, database to table to the number of row keys saved.
  type: dict
  returned: when state is forensic
restored:
  description: restored, what was done for each database.
  type: list
  returned: when state is restored
migrations:
  description: restored, database name to the migration files run.
  type: dict
  returned: when state is restored
integrity:
  description: restored, database name to ok, passed, failures (name, count, rows).
  type: dict
  returned: when state is restored
data_loss:
  description: restored, database to table to missing, changed (first 20 keys), missing_count,
    changed_count, dropped_columns.
  type: dict
  returned: when state is restored
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    adopt,
    check_external,
    check_restorable,
    choose_set,
    create_forensic,
    external_sources,
    find_adopted,
    find_forensic,
    live_differences,
    restore_set,
    set_path,
    with_passwords,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(
                type="str",
                choices=["checked", "imported", "forensic", "restored"],
                default="checked",
            ),
            source=dict(type="str", choices=["set", "external"], default="set"),
            backup_files=dict(type="dict", default={}),
            backup_chosen=dict(type="dict", default={}),
            databases=dict(type="list", elements="dict", required=True),
            passwords=dict(type="dict", default={}, no_log=True),
            backup_id=dict(type="str", default="", aliases=["set_id"]),
            kinds=dict(type="list", elements="str", default=[]),
            run_id=dict(type="str", default=""),
            forensic_set_id=dict(type="str", default=""),
            require_forensic=dict(type="bool", default=True),
            files=dict(type="list", elements="path", default=[]),
            code_path=dict(type="path", default=""),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    root, app = params["root"], params["app"]
    result = dict(changed=False, state=state, set_id="", code={}, schema_versions={}, problems=[])
    try:
        databases = with_passwords(params["databases"], params["passwords"])
        if params["source"] == "external":
            found = external_set(module, result, databases)
            if found is None:
                module.exit_json(**result)
            set_dir, manifest = found
        else:
            set_dir, manifest = own_set(params, databases)
        check = check_restorable(set_dir, app, databases)
        result.update(
            set_id=manifest["set_id"],
            kind=manifest.get("kind"),
            created=manifest.get("created"),
            code=check.get("code", {}),
            schema_versions=check.get("schema_versions", {}),
            problems=check["problems"],
            checks=check["checks"],
        )
        if check["problems"]:
            module.fail_json(
                msg="backup set %s cannot be restored: %s"
                % (manifest["set_id"], "; ".join(check["problems"])),
                **result,
            )
        if state == "checked":
            differences = live_differences(manifest, databases)
            result["live_differences"] = differences
            result["needed"] = any(differences.values())
            module.exit_json(**result)

        forensic = None
        if params["forensic_set_id"] or params["run_id"]:
            forensic = find_forensic(root, app, params["run_id"], params["forensic_set_id"])

        if state == "forensic":
            if forensic is not None:
                result.update(
                    forensic_set_id=forensic[1]["set_id"],
                    backup_file=str(forensic[0]),
                    msg="the forensic set of run %s exists" % params["run_id"],
                )
                module.exit_json(**result)
            result["changed"] = True
            if module.check_mode:
                module.exit_json(msg="would make a forensic set", **result)
            made = create_forensic(
                root,
                app,
                databases,
                params["files"],
                params["code_path"] or "",
                params["run_id"],
                target=manifest,
            )
            forensic_id = made["manifest"]["set_id"]
            result.update(
                forensic_set_id=forensic_id,
                backup_file=str(set_path(root, app, forensic_id)),
                keys=made["keys"],
                verification=made["manifest"]["verification"],
            )
            if not made["manifest"]["verification"]["ok"]:
                module.fail_json(
                    msg="the forensic set %s failed its verification" % forensic_id, **result
                )
            module.exit_json(**result)

        # restored
        # in check mode the forensic step made nothing, so there is none to require
        if forensic is None and params["require_forensic"] and not module.check_mode:
            module.fail_json(
                msg="no forensic set of run %r to compare with: make one first (state=forensic) "
                "or set require_forensic=false" % params["run_id"],
                **result,
            )
        result["forensic_set_id"] = forensic[1]["set_id"] if forensic else ""
        result["changed"] = True
        if module.check_mode:
            module.exit_json(msg="would restore from %s" % manifest["set_id"], **result)
        outcome = restore_set(set_dir, databases, forensic[0] if forensic else None)
        result.update(outcome)
        if not outcome["ok"]:
            failed = [
                "%s: %s" % (name, ", ".join(f["name"] for f in check_["failures"]))
                for name, check_ in outcome["integrity"].items()
                if not check_["ok"]
            ]
            module.fail_json(
                msg="restored from %s, but integrity checks fail: %s"
                % (manifest["set_id"], "; ".join(failed)),
                **result,
            )
    except BackupError as exc:
        result.update(exc.result)
        module.fail_json(msg="dbrestore: %s" % exc, **result)
    module.exit_json(**result)


def own_set(params, databases):
    """The set asked for, or the newest verified one; when there is none and the databases
    declare external backups, the refusal says how to use them."""
    try:
        return choose_set(
            params["root"], params["app"], params["backup_id"], tuple(params["kinds"])
        )
    except BackupError as exc:
        declared = [d.get("name") for d in databases if d.get("external_backups")]
        if params["backup_id"] or not declared:
            raise
        raise BackupError(
            "%s; %s declare external backups: --from external restores the newest of them"
            % (exc, ", ".join(declared))
        ) from None


def external_set(module, result, databases):
    """source=external: the set adopted from the chosen files, made now (imported) when
    there is none. None when the module is done (checked, or imported in check mode)."""
    params = module.params
    root, app, state = params["root"], params["app"], params["state"]
    sources = external_sources(databases, params["backup_files"], params["backup_chosen"])
    found = find_adopted(root, app, sources)
    external = dict(sources=sources, checks=[], adopted=found[1]["set_id"] if found else "")
    result["external"] = external
    if found is not None:
        if state == "imported":
            result.update(set_id=found[1]["set_id"], manifest=found[1])
            result["msg"] = "already adopted as set %s" % found[1]["set_id"]
            return None
        return found
    checked = check_external(databases, sources)
    external["checks"] = checked["checks"]
    if checked["problems"]:
        result["problems"] = checked["problems"]
        module.fail_json(
            msg="external backup cannot be restored: %s" % "; ".join(checked["problems"]),
            **result,
        )
    if state == "checked":
        result.update(needed=True, live_differences={}, schema_versions={})
        result["msg"] = "verified %s; adopted into a set before anything stops" % ", ".join(
            s["path"] for s in sources
        )
        return None
    if state != "imported" and module.check_mode:  # the import step made nothing
        result["changed"] = True
        result["msg"] = "would %s the set adopted from %s" % (
            "make a forensic set before restoring" if state == "forensic" else "restore",
            ", ".join(s["path"] for s in sources),
        )
        return None
    if state != "imported":
        module.fail_json(
            msg="no set adopted from %s yet: adopt them first (state=imported)"
            % ", ".join(s["path"] for s in sources),
            **result,
        )
    result["changed"] = True
    if module.check_mode:
        result["msg"] = "would adopt %s into a set" % ", ".join(s["path"] for s in sources)
        return None
    manifest = adopt(root, app, databases, sources, params["run_id"])
    result.update(set_id=manifest["set_id"], manifest=manifest, kind="external")
    if not manifest["verification"]["ok"]:
        module.fail_json(
            msg="the adopted set %s failed its verification: %s"
            % (manifest["set_id"], "; ".join(manifest["verification"]["problems"])),
            **result,
        )
    external["adopted"] = manifest["set_id"]
    return None


if __name__ == "__main__":
    main()
