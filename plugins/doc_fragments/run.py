"""Documentation of the options naming the rollback run a module acts for."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # rollback_ops.rollback.run.run_id: the run's id alone
    RUN_ID = r"""
options:
  run_id:
    description:
      - The id of the rollback run this task belongs to (rollback-ops gives every run one and
        passes it to every module of the run).
      - It names what the run leaves on the host (its lock, the record of the code it
        replaced), so that a later step, or a later run, can tell it apart.
    type: str
    default: ""
"""

    # rollback_ops.rollback.run: the run's id and who runs it
    DOCUMENTATION = (
        RUN_ID
        + r"""
  operator:
    description:
      - Who runs the rollback, recorded in what the run leaves on the host (the lock, a
        revert commit's message). Empty records nobody.
    type: str
    default: ""
"""
    )
