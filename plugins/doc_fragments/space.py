"""Documentation of the free-space margin of the modules that write files on the host."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  min_free_mb:
    description:
      - MiB that must stay free on each filesystem the change writes to, beyond what it
        writes there (backup copies, temp files, snapshots).
      - The room is checked, in check mode too, before anything is written; a filesystem
        without it is a problem naming the file, the free and the needed space.
    type: int
    default: 10
"""
