"""The attributes most of the collection's modules share: full check mode, no diff, POSIX."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # use after ansible.builtin.action_common_attributes, which describes the attributes
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
"""
