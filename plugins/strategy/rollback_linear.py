# rollback-ops: the linear strategy, interruptible between tasks.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible's ``linear`` strategy that can be asked to stop between two tasks.

When the file named by ``$ROLLBACK_OPS_STOP_FILE`` appears (rollback-ops creates it on the
first Ctrl-C or SIGTERM), no new task of a block's main part starts: the task running on each
host finishes, then every host that is not already in a ``rescue``/``always`` section is
failed the way ``any_errors_fatal`` fails hosts, so each block's ``rescue`` and ``always``
sections run. The rollback playbooks release the host locks in ``always``.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: rollback_linear
short_description: The linear strategy, stopping cleanly between tasks on request
description:
  - Ansible's C(linear) strategy. When the file named by the C(ROLLBACK_OPS_STOP_FILE)
    environment variable exists, the running task finishes, no further task of a block's main
    part starts, and every host goes to its blocks' C(rescue) and C(always) sections (which
    still run), as C(any_errors_fatal) would send it.
  - Without that variable it is exactly C(linear).
author: rollback-ops developers
"""

import os

from ansible.executor.play_iterator import IteratingStates
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule
from ansible.utils.display import Display

display = Display()

STOP_FILE_ENV = "ROLLBACK_OPS_STOP_FILE"
INTERRUPTED = "interrupted: rollback-ops was asked to stop (Ctrl-C or SIGTERM)"
CLEANUP_STATES = (IteratingStates.RESCUE, IteratingStates.ALWAYS, IteratingStates.HANDLERS)


def _in_cleanup(iterator, state):
    """Whether the host runs a rescue/always section (or handlers) at any nesting depth."""
    while state is not None:
        if state.run_state in CLEANUP_STATES:
            return True
        if state.run_state != IteratingStates.TASKS:
            return False
        state = state.tasks_child_state
    return False


class StrategyModule(LinearStrategyModule):
    def __init__(self, tqm):
        super().__init__(tqm)
        self._stop_file = os.environ.get(STOP_FILE_ENV, "")
        self._stopping = False

    def _stop_requested(self):
        if not self._stopping and self._stop_file and os.path.exists(self._stop_file):
            self._stopping = True
            display.warning("rollback-ops: stop requested; finishing the cleanup steps")
        return self._stopping

    def _get_next_task_lockstep(self, hosts, iterator):
        if self._stop_requested():
            for host in hosts:
                state = iterator.get_host_state(host)
                if state.run_state in (IteratingStates.SETUP, IteratingStates.TASKS) and not (
                    _in_cleanup(iterator, state)
                ):
                    self._interrupt(host, iterator)
        return super()._get_next_task_lockstep(hosts, iterator)

    def _interrupt(self, host, iterator):
        """Fail the host between two tasks, with the bookkeeping of a failed task."""
        iterator.mark_host_failed(host)
        state = iterator.get_host_state(host)
        if iterator.is_any_block_rescuing(state):
            iterator._play._removed_hosts.remove(host.name)
            self._variable_manager.set_nonpersistent_facts(
                host.name,
                dict(
                    ansible_failed_task=dict(name="(stopped before its next step)"),
                    ansible_failed_result=dict(msg=INTERRUPTED, failed=True),
                ),
            )
        else:
            self._tqm._stats.increment("failures", host.name)
        if state.run_state == IteratingStates.COMPLETE:
            self._tqm._failed_hosts[host.name] = True
