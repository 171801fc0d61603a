#!/usr/bin/python
"""Roll an app's database schema back on the live databases: its migration rollback files,
previewed first, after a forensic set, with integrity checks after (the schema level)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: dbmigrate
short_description: Run an app's migration rollback files on its live databases (no restore)
description:
  - Runs each database's C(migrations_rollback) files against the live database, each file
    in one transaction, in order. Nothing is restored; the rows written since the release
    stay, only what the files drop goes (seed 003 step 4, C(004_rollback.sql)).
  - First a preview, always; the files run in one transaction that is rolled back
    (PostgreSQL, SQLite), counting what they would drop, the tables (rows and non-null
    values) and the columns of the kept tables (non-null values). C(state=previewed) stops
    there and changes nothing.
  - C(state=applied), when the preview finds a change, makes a forensic set of the live
    databases (never pruned; the run's own when I(run_id) already has one), runs the files,
    counts what they dropped from the live databases before and after, and runs the
    integrity_checks (fails, after the change, when one fails). When the preview finds no
    change (the schema is already rolled back) nothing is done and C(changed) is false.
  - A file that cannot run twice (SQLite has no C(DROP COLUMN IF EXISTS)) fails its preview
    once applied; when this module recorded exactly these files as applied to the database
    (in I(root)/I(app)/.schema-rollback.json), that database counts as rolled back
    (C(already_applied) in its cost) instead of failing. Any other failing preview fails
    before anything changes, naming the database and the error.
  - A file with its own C(BEGIN;) or C(COMMIT;) is refused before anything runs. MySQL is
    refused; its DDL commits by itself, so it can be neither previewed nor undone.
  - Passwords go in I(passwords) (name to password, never logged), never in I(databases).
  - Supports check mode (the preview, as C(state=previewed)).
author: rollback-ops developers
options:
  state:
    description: C(previewed), count the cost only; C(applied), roll the schema back.
    type: str
    choices: [previewed, applied]
    default: previewed
  databases:
    description: The databases, as for M(rollback_ops.rollback.backup); no C(password) in them.
    type: list
    elements: dict
    required: true
  passwords:
    description: Database name to password.
    type: dict
    default: {}
  forensic_set_id:
    description: The forensic set already made for this run; empty means the run's own, or
      a new one.
    type: str
    default: ""
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
  - rollback_ops.rollback.run.run_id
"""

EXAMPLES = r"""
- name: Count what the migration rollback would drop
  rollback_ops.rollback.dbmigrate:
    app: analyticbot
    databases: "{{ rollback_app.databases }}"
    passwords: "{{ db_passwords }}"
  register: schema_preview

- name: Roll the schema back, after a forensic set
  rollback_ops.rollback.dbmigrate:
    state: applied
    app: analyticbot
    run_id: "{{ rollback_run_id }}"
    databases: "{{ rollback_app.databases }}"
    passwords: "{{ db_passwords }}"
"""

RETURN = r"""
planned:
  description: Database name to what its files would change (the preview), as I(dropped).
  type: dict
  returned: always
dropped:
  description: Database name to what its files changed, counted on the live database before
    and after; C(tables) (table, rows, non_null), C(columns) (table, column, non_null),
    C(added), C(rows_changed), C(values_lost) (non-null values dropped), C(changes).
  type: dict
  returned: when state is applied
forensic_set_id:
  description: The forensic set made (or found) before the change; empty when nothing changed.
  type: str
  returned: when state is applied
migrations:
  description: Database name to the files run (file, sha256).
  type: dict
  returned: when state is applied
integrity:
  description: Database name to ok, passed, failures (name, count, rows).
  type: dict
  returned: when state is applied
values_lost:
  description: The non-null values dropped (applied) or that would be (previewed), in all.
  type: int
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    apply_schema_rollback,
    preview_schema_rollback,
    with_passwords,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
    run_argument_spec,
)


def total(costs):
    return sum(c["values_lost"] for c in costs.values())


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["previewed", "applied"], default="previewed"),
            databases=dict(type="list", elements="dict", required=True),
            passwords=dict(type="dict", default={}, no_log=True),
            forensic_set_id=dict(type="str", default=""),
            **dict(run_argument_spec(operator=False), **backupset_argument_spec()),
        ),
        supports_check_mode=True,
    )
    params = module.params
    result = dict(changed=False, state=params["state"], planned={}, values_lost=0)
    try:
        databases = with_passwords(params["databases"], params["passwords"])
        if params["state"] == "previewed" or module.check_mode:
            planned = preview_schema_rollback(databases, params["root"], params["app"])
            result.update(planned=planned, values_lost=total(planned))
            result["changed"] = params["state"] == "applied" and any(
                c["changes"] for c in planned.values()
            )
            module.exit_json(**result)
        outcome = apply_schema_rollback(
            params["root"],
            params["app"],
            databases,
            params["run_id"],
            params["forensic_set_id"],
        )
        result.update(outcome)
        result["values_lost"] = total(outcome["dropped"])
        if not outcome["ok"]:
            failed = [
                "%s: %s" % (name, ", ".join(f["name"] for f in check["failures"]))
                for name, check in outcome["integrity"].items()
                if not check["ok"]
            ]
            module.fail_json(
                msg="schema rolled back, but integrity checks fail: %s" % "; ".join(failed),
                **result,
            )
        if not outcome["changed"]:
            result["msg"] = "the schema is already rolled back: the files change nothing"
    except BackupError as exc:
        result.update(exc.result)
        module.fail_json(msg="dbmigrate: %s" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
