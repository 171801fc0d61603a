"""Documentation of where backup sets live, shared by the modules that read or write them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  root:
    description: Where the sets are kept (C(<root>/<app>/<set id>/)).
    type: path
    default: /var/backups/rollback-ops
  app:
    description: The app's name (a directory under I(root)).
    type: str
    required: true
"""
