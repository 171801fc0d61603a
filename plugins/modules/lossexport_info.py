#!/usr/bin/python
"""The rows a restore lost (present in the run's forensic set, missing or changed after the
restore), as SQL or CSV for the app team to replay."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lossexport_info
short_description: Export the rows a data or full level restore lost, as SQL or CSV
description:
  - Reads the forensic set the data and full levels take before a restore (I(forensic_set_id),
    else the newest verified forensic set of I(run_id)) and restores it into a scratch
    database on the host (PostgreSQL, a temporary database dropped afterwards; SQLite, a
    temporary file), then compares each database's C(data_loss_tables) with the live database
    over the columns both hold.
  - Returns, per table, the rows whose key the live database lacks or holds with other
    values, as SQL (one C(INSERT ... ON CONFLICT DO NOTHING) / C(INSERT OR IGNORE) each, so a
    replay skips the rows already there) or CSV (a header; NULL as an empty field).
  - Changes nothing on the host (the scratch database is removed); runs in check mode too.
options:
  run_id:
    type: str
    default: ""
    description: The run whose forensic set to read.
  forensic_set_id:
    type: str
    default: ""
    description: The forensic set (the run's receipt names it); empty, the newest of I(run_id).
  databases:
    type: list
    elements: dict
    default: []
    description: The databases as the inventory gives them (no C(password)).
  passwords:
    type: dict
    default: {}
    description: Database name to password (never logged).
  format:
    type: str
    choices: [sql, csv]
    default: sql
    description: SQL statements or CSV.
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: The rows run 20261203T071500Z-ab12 lost, as SQL
  rollback_ops.rollback.lossexport_info:
    app: shop
    run_id: 20261203T071500Z-ab12
    databases:
      - name: main
        engine: sqlite
        path: /srv/shop/app.db
        data_loss_tables: [{table: orders, key: id}]
    format: sql
  register: __loss
"""

RETURN = r"""
forensic_set_id:
  description: The forensic set read.
  type: str
  returned: success
tables:
  description:
    - Per database and table, C(database), C(table), C(key), C(columns), C(rows) (exported),
      C(missing_count), C(changed_count) and C(content) (the SQL or CSV text).
  type: list
  elements: dict
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    with_passwords,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset.lossexport import (
    export_loss,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type="str", default=""),
            forensic_set_id=dict(type="str", default=""),
            databases=dict(type="list", elements="dict", default=[]),
            passwords=dict(type="dict", default={}, no_log=True),
            format=dict(type="str", choices=["sql", "csv"], default="sql"),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["run_id"] and not params["forensic_set_id"]:
        module.fail_json(msg="export-loss: run_id or forensic_set_id is needed")
    try:
        result = export_loss(
            params["root"],
            params["app"],
            with_passwords(params["databases"], params["passwords"]),
            params["run_id"],
            params["forensic_set_id"],
            params["format"],
        )
    except BackupError as exc:
        module.fail_json(msg="export-loss: %s" % exc)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
