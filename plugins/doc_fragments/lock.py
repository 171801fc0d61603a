"""Documentation of the option naming the host's rollback lock."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  lock_path:
    description:
      - The host's rollback lock file (one rollback at a time on a host), a JSON record of the
        run holding it (run id, operator, controller, controller process, since when).
      - M(rollback_ops.rollback.preflight) takes it for the run, M(rollback_ops.rollback.unlock)
        releases or clears it.
    type: str
    default: /var/lib/rollback-ops/rollback.lock
"""
