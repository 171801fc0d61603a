#!/usr/bin/python
"""Create, list, verify and prune an app's backup sets (databases and files) on a host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: backup
short_description: Create, list, verify and prune backup sets of an app's databases and files
description:
  - A backup set is C(<root>/<app>/<set_id>/) (directories 0700, files 0600) holding
    C(manifest.json), C(db/<name>.dump) (PostgreSQL custom format), C(db/<name>.sqlite3) or
    C(db/<name>.sql.gz) (MySQL), C(files/<absolute path>) copies of the app's files and
    C(crontabs/<user>) copies of its users' crontabs.
    I(backup_id) is C(<UTC %Y%m%dT%H%M%SZ>-<kind>).
  - C(state=created) dumps each database with its engine's own tool (PostgreSQL, pg_dump in
    the snapshot of a REPEATABLE READ session that takes each table's row count and checksum
    in that same snapshot; SQLite, the online backup API; MySQL, mysqldump
    --single-transaction, gzip), copies the files, records the code's git ref, verifies the
    set at once and writes the manifest atomically. It fails when the verification fails
    (the set is kept, its manifest says why).
  - C(state=listed) returns the sets, newest first. C(state=verified) checks every file's
    sha256 and every dump (pg_restore --list, PRAGMA integrity_check) and, with
    I(restore_test), restores into a throwaway database and compares each table's rows and
    checksum with the manifest; the outcome is recorded in the manifest. C(state=pruned)
    removes the sets beyond the newest I(keep) or older than I(max_age_days), never the
    newest verified set nor a forensic set.
  - Passwords go in I(passwords) (name to password, never logged), never in I(databases),
    so the databases and the results stay visible. They reach the client tools through the
    environment only (PGPASSWORD, MYSQL_PWD).
  - Supports check mode (nothing is written; pruned reports what it would remove).
options:
  state:
    description: What to do.
    type: str
    choices: [created, listed, verified, pruned]
    default: created
  kind:
    description: created, why the set is made.
    type: str
    choices: [predeploy, scheduled, manual, forensic]
    default: manual
  databases:
    description:
      - The databases, as the inventory gives them; each a dict with C(name), C(engine)
        (postgresql, sqlite, mysql), C(database) (PostgreSQL, MySQL) or C(path) (SQLite),
        and optionally C(host), C(port), C(user), C(os_user), C(compression), C(tables),
        C(schema_version_query), C(integrity_checks), C(data_loss_tables),
        C(migrations_rollback), C(lock_wait_timeout), C(password_env). No C(password).
    type: list
    elements: dict
    default: []
  passwords:
    description: Database name to password.
    type: dict
    default: {}
  files:
    description: created, absolute paths of files to copy (the app's env and config files).
    type: list
    elements: path
    default: []
  rows:
    description:
      - created, the app's config rows (C(rollback_app.config.rows)), each C(name), C(dump)
        (an argv printing them), C(user), C(chdir), C(environment), C(timeout); each dump's
        output is in the set as C(rows/<name>), checksummed and verified like its files.
    type: list
    elements: dict
    default: []
  crontabs:
    description:
      - created, the users whose crontab (C(crontab -l -u USER)) the set holds, as
        C(crontabs/<user>) with its sha256 (a user without one is recorded as absent).
    type: list
    elements: str
    default: []
  code_path:
    description: created, the app's code directory; its git HEAD and describe are recorded.
    type: path
    default: ""
  run_id:
    description: created, the run that made the set (recorded in the manifest).
    type: str
    default: ""
  backup_id:
    aliases: [set_id]
    description: verified, the set to verify; empty means the newest.
    type: str
    default: ""
  restore_test:
    description: created and verified, also restore into a throwaway database and compare.
    type: bool
    default: false
  keep:
    description: pruned, how many of the newest sets to keep (forensic sets not counted).
    type: int
  max_age_days:
    description: pruned, remove the sets older than this many days.
    type: float
  max_age_seconds:
    description:
      - verified, also fail unless a verified set (forensic ones aside) younger than this
        many seconds exists (for monitoring); the failure names the newest verified set and
        its age. Ages run from each manifest's C(created), written by the host's clock.
    type: int
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Take a predeploy set of the app's database and env file
  rollback_ops.rollback.backup:
    state: created
    app: shop
    kind: predeploy
    databases:
      - {name: main, engine: postgresql, database: shop, host: 127.0.0.1, user: shop}
    passwords: {main: "{{ vault_shop_db_password }}"}
    files: [/srv/shop/.env, /etc/cron.d/shop]
    crontabs: [shop]
    code_path: /srv/shop/current
    run_id: "{{ rollback_run_id }}"
  register: __set

- name: List the app's sets, newest first
  rollback_ops.rollback.backup:
    state: listed
    app: shop

- name: Verify the newest set, restoring it into a throwaway database
  rollback_ops.rollback.backup:
    state: verified
    app: shop
    databases: [{name: main, engine: sqlite, path: /srv/shop/app.db}]
    restore_test: true

- name: Fail unless a verified set younger than 26 hours exists (monitoring)
  rollback_ops.rollback.backup:
    state: verified
    app: shop
    max_age_seconds: 93600
- name: Keep the newest 7 sets and none older than 30 days
  rollback_ops.rollback.backup:
    state: pruned
    app: shop
    keep: 7
    max_age_days: 30
"""

RETURN = r"""
manifest:
  description: created, the set's manifest.
  type: dict
  returned: when state is created and not in check mode
set_id:
  description: The set created or verified.
  type: str
  returned: when state is created or verified
backup_file:
  description: created, the set's directory.
  type: str
  returned: when state is created and not in check mode
sets:
  description: listed, the sets newest first (set_id, kind, created, run_id, size, verified,
    describe, databases).
  type: list
  returned: when state is listed
verification:
  description: ok, at, checks, problems.
  type: dict
  returned: when state is created or verified
freshness:
  description: verified with max_age_seconds, ok, max_age_seconds, and the newest verified
    set's set_id, created and age_seconds (absent when there is none).
  type: dict
  returned: when state is verified and max_age_seconds is set
restore_test:
  description: ok, at, tables (per database, each table's rows and checksum), problems.
  type: dict
  returned: when state is created or verified
removed:
  description: pruned, the sets removed (or that would be, in check mode), with the reasons.
  type: list
  returned: when state is pruned
kept:
  description: pruned, the set ids kept.
  type: list
  returned: when state is pruned
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    create_set,
    freshness,
    list_sets,
    prune,
    set_path,
    span,
    verify_set,
    with_passwords,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.configrows import (
    RowsError,
    dump,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def dump_rows(row, path):
    """The app's config rows dumped into the set (a failed dump fails the set)."""
    try:
        dump(row, path)
    except RowsError as exc:
        raise BackupError(str(exc)) from None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(
                type="str", choices=["created", "listed", "verified", "pruned"], default="created"
            ),
            kind=dict(
                type="str",
                choices=["predeploy", "scheduled", "manual", "forensic"],
                default="manual",
            ),
            databases=dict(type="list", elements="dict", default=[]),
            passwords=dict(type="dict", default={}, no_log=True),
            files=dict(type="list", elements="path", default=[]),
            rows=dict(type="list", elements="dict", default=[]),
            crontabs=dict(type="list", elements="str", default=[]),
            code_path=dict(type="path", default=""),
            run_id=dict(type="str", default=""),
            backup_id=dict(type="str", default="", aliases=["set_id"]),
            restore_test=dict(type="bool", default=False),
            keep=dict(type="int"),
            max_age_days=dict(type="float"),
            max_age_seconds=dict(type="int"),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    state = params["state"]
    result = dict(changed=False, state=state)
    try:
        databases = with_passwords(params["databases"], params["passwords"])
        if state == "created":
            result["changed"] = True
            if module.check_mode:
                result["msg"] = "would create a %s set of %s" % (params["kind"], params["app"])
                module.exit_json(**result)
            manifest = create_set(
                params["root"],
                params["app"],
                params["kind"],
                databases,
                params["files"],
                params["code_path"] or "",
                params["run_id"],
                params["restore_test"],
                crontabs=params["crontabs"],
                rows=params["rows"],
                dumper=dump_rows,
            )
            result.update(
                manifest=manifest,
                set_id=manifest["set_id"],
                backup_file=str(set_path(params["root"], params["app"], manifest["set_id"])),
                verification=manifest["verification"],
                restore_test=manifest["restore_test"],
            )
            if not manifest["verification"]["ok"]:
                module.fail_json(
                    msg="backup set %s failed its verification: %s"
                    % (manifest["set_id"], "; ".join(manifest["verification"]["problems"])),
                    **result,
                )
        elif state == "listed":
            result["sets"] = list_sets(params["root"], params["app"])
        elif state == "verified":
            set_id = params["backup_id"]
            if not set_id:
                sets = list_sets(params["root"], params["app"])
                if not sets:
                    module.fail_json(
                        msg="no backup set of %s under %s" % (params["app"], params["root"]),
                        **result,
                    )
                set_id = sets[0]["set_id"]
            outcome = verify_set(
                params["root"],
                params["app"],
                set_id,
                databases,
                params["restore_test"],
                record=not module.check_mode,
            )
            result.update(outcome)
            if not outcome["verification"]["ok"]:
                module.fail_json(
                    msg="backup set %s failed its verification: %s"
                    % (set_id, "; ".join(outcome["verification"]["problems"])),
                    **result,
                )
            if params["max_age_seconds"] is not None:
                fresh = freshness(params["root"], params["app"], params["max_age_seconds"])
                result["freshness"] = fresh
                if not fresh["ok"]:
                    newest = (
                        "the newest verified set, %s, is %s old"
                        % (fresh["set_id"], span(fresh["age_seconds"]))
                        if "set_id" in fresh
                        else "it has no verified set"
                    )
                    module.fail_json(
                        msg="no verified backup set of %s younger than %s on this host: %s"
                        % (params["app"], span(fresh["max_age_seconds"]), newest),
                        **result,
                    )
        else:
            outcome = prune(
                params["root"],
                params["app"],
                params["keep"],
                params["max_age_days"],
                dry_run=module.check_mode,
            )
            result.update(outcome)
            result["changed"] = bool(outcome["removed"])
    except BackupError as exc:
        result.update(exc.result)
        module.fail_json(msg="backup: %s" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
