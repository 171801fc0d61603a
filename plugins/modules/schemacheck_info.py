#!/usr/bin/python
"""Warn when a code rollback goes back to a release whose schema is older than the live one."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: schemacheck_info
short_description: Compare the schema recorded with a release to the live databases' schema
description:
  - Finds the newest verified backup set taken with the code at I(code_ref) and compares
    each database's recorded schema version (its schema_version_query) with the live one.
  - Warns, naming the versions, when the live schema is newer and the database has no
    C(migrations_rollback) files, since the old code would run against the new schema; the
    full level (restore, or migration rollback) is the way back. Read-only; never fails on
    this.
options:
  databases:
    type: list
    elements: dict
    required: true
    description: The database specs, without passwords.
  passwords:
    type: dict
    default: {}
    description: Database name to password (never logged).
  code_ref:
    type: str
    required: true
    description: The git commit the code rollback goes back to.
extends_documentation_fragment:
  - rollback_ops.rollback.backupset
author: rollback-ops developers
"""

EXAMPLES = r"""
- name: Warn when the release rolled back to ran with an older schema
  rollback_ops.rollback.schemacheck_info:
    app: shop
    code_ref: 3f2c9d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d
    databases:
      - name: main
        engine: postgresql
        database: shop
        schema_version_query: SELECT max(version) FROM schema_migrations
    passwords: {main: "{{ vault_shop_db_password }}"}
  register: __schema
"""

RETURN = r"""
set_id:
  description: The set the recorded versions come from ("" when no set was taken with code_ref).
  type: str
  returned: always
databases:
  description: Per database, C(recorded), C(live), C(older), C(migrations_rollback).
  type: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset import (
    BackupError,
    schema_check,
    with_passwords,
)
from ansible_collections.rollback_ops.rollback.plugins.module_utils.options import (
    backupset_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            databases=dict(type="list", elements="dict", required=True),
            passwords=dict(type="dict", default={}, no_log=True),
            code_ref=dict(type="str", required=True),
            **backupset_argument_spec(),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        databases = with_passwords(params["databases"], params["passwords"])
        result = schema_check(params["root"], params["app"], databases, params["code_ref"])
    except BackupError as exc:
        module.warn("could not compare the database schema with the target release: %s" % exc)
        module.exit_json(changed=False, set_id="", databases={})
    for name, db in result["databases"].items():
        if db["older"] and not db["migrations_rollback"]:
            module.warn(
                "database %s: the target release ran with schema version %s (backup set %s), "
                "the live database is at %s and the app has no migrations_rollback: the old "
                "code would meet the new schema; use --level full to restore the database too"
                % (name, db["recorded"], result["set_id"], db["live"])
            )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
