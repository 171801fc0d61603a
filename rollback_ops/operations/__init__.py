"""The operations rollback-ops runs, one class per command (see :mod:`.base`).

Importing the package registers every operation in :data:`OPERATIONS`, smallest level first.
"""

from rollback_ops.operations import approval, backup, levels, maintenance, status
from rollback_ops.operations.base import (
    OPERATIONS,
    REQUEST_KEYS,
    Argument,
    Operation,
    Request,
    ansible_arguments,
    ansible_options,
    get,
    parse_backup_files,
    parse_flags,
    request_problems,
    rollback_levels,
    rollback_request,
)

__all__ = [
    "OPERATIONS",
    "REQUEST_KEYS",
    "Argument",
    "Operation",
    "Request",
    "ansible_arguments",
    "ansible_options",
    "approval",
    "backup",
    "get",
    "levels",
    "maintenance",
    "parse_backup_files",
    "parse_flags",
    "request_problems",
    "rollback_levels",
    "rollback_request",
    "status",
]
