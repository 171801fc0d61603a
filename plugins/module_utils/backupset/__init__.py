"""Backup sets of an app's databases and files on a host: create, list, verify, prune,
choose, restore, and the forensic set taken before a restore.

Python 3.9+ standard library only, no Ansible import, relative imports only: the modules
import it as ``ansible_collections.rollback_ops.rollback.plugins.module_utils.backupset``
(AnsiballZ ships it with them), and the backup role installs it on a host beside
``files.py`` for the scheduled job (``job.py``, run as ``python3 -m``).

- ``engines/``: the ``Engine`` interface and one class per database engine (PostgreSQL,
  SQLite, MySQL/MariaDB), chosen by name from one registry (``engine_for``).
- ``layout``: set paths, ids and the manifest; ``specs``: database specs and passwords.
- ``create``, ``verify``, ``prune``, ``choose`` (what to restore, checked before anything
  stops), ``restore``, ``forensic``: the operations on sets; ``migrate``: the schema level's
  migration rollback on the live databases (previewed, then applied); ``offhost``: a set's
  copy on a backup host; ``job``: the scheduled job.
- ``external``: the backups a team already makes, picked, checked and adopted into a set.

Passwords never go into argv, results, manifests or error messages: they reach the client
tools in the subprocess environment only (PGPASSWORD, MYSQL_PWD).
"""

from __future__ import annotations

from .choose import check_restorable, choose_set, live_differences, newest_holding, schema_check
from .common import BackupError
from .create import create_set
from .engines import ENGINES, Engine, engine_for
from .external import adopt, check_external, external_sources, find_adopted, newest_first
from .forensic import create_forensic, data_loss, find_forensic, save_keys
from .layout import list_sets, read_manifest, set_path
from .migrate import apply as apply_schema_rollback
from .migrate import cost as schema_cost
from .migrate import preview as preview_schema_rollback
from .offhost import describe, set_files
from .prune import prune
from .restore import integrity, restore_database, restore_set, run_migrations
from .specs import normalize_database, with_passwords
from .verify import freshness, span, verify_set

__all__ = [
    "ENGINES",
    "BackupError",
    "Engine",
    "adopt",
    "apply_schema_rollback",
    "check_external",
    "check_restorable",
    "choose_set",
    "create_forensic",
    "create_set",
    "data_loss",
    "describe",
    "engine_for",
    "external_sources",
    "find_adopted",
    "find_forensic",
    "freshness",
    "integrity",
    "list_sets",
    "live_differences",
    "newest_first",
    "newest_holding",
    "normalize_database",
    "preview_schema_rollback",
    "prune",
    "read_manifest",
    "restore_database",
    "restore_set",
    "run_migrations",
    "save_keys",
    "schema_check",
    "schema_cost",
    "set_files",
    "set_path",
    "span",
    "verify_set",
    "with_passwords",
]
