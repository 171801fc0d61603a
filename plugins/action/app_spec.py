# -*- coding: utf-8 -*-
"""rollback_ops.rollback.app_spec: validate the host's rollback_app against the app schema
(roles/app/meta/argument_specs.yml) on the controller, and return the app with the schema's
defaults filled in. Documented in plugins/modules/app_spec.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase
from ansible_collections.rollback_ops.rollback.plugins.module_utils.app_spec import (
    declared_keys,
    secret_keys,
    with_procedure,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("procedure",))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}

        raw = task_vars.get("rollback_app")
        procedure = self._task.args.get("procedure") or ""
        if not isinstance(procedure, str):
            procedure = str(procedure)
        app, problems = with_procedure(
            None if raw is None else self._templar.template(raw), procedure
        )
        result["changed"] = False
        if problems:
            result["failed"] = True
            result["problems"] = ["%s: %s" % problem for problem in problems]
            result["msg"] = "rollback_app is not valid:\n  " + "\n  ".join(result["problems"])
            return result
        result.update(
            app=app,
            procedure=procedure,
            secret_keys=secret_keys(app),
            declared_keys=declared_keys(app),
        )
        return result
