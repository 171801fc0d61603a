# (it runs on the managed hosts' python3, 3.6 and later, in the modules' style)
"""The options several modules share, as pieces of their argument specs.

Each function's options are documented once, by the doc fragment of the same name
(plugins/doc_fragments/): ``run_argument_spec`` by ``rollback_ops.rollback.run`` (and
``run_id`` alone by ``rollback_ops.rollback.run.run_id``), ``lock_argument_spec`` by
``rollback_ops.rollback.lock``, ``space_argument_spec`` by ``rollback_ops.rollback.space``,
``backupset_argument_spec`` by ``rollback_ops.rollback.backupset``.
A module builds its spec as ``dict(own options, **run_argument_spec())``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from .lock import DEFAULT_LOCK_PATH


def run_argument_spec(operator=True):
    """run_id, and operator unless operator=False (the run.run_id fragment)."""
    spec = dict(run_id=dict(type="str", default=""))
    if operator:
        spec["operator"] = dict(type="str", default="")
    return spec


def lock_argument_spec():
    """lock_path: the host's rollback lock file."""
    return dict(lock_path=dict(type="str", default=DEFAULT_LOCK_PATH))


def space_argument_spec():
    """min_free_mb: the margin kept free on each filesystem a change writes to."""
    return dict(min_free_mb=dict(type="int", default=10))


def backupset_argument_spec():
    """root and app: where the backup sets live (the backupset fragment)."""
    return dict(
        root=dict(type="path", default="/var/backups/rollback-ops"),
        app=dict(type="str", required=True),
    )
