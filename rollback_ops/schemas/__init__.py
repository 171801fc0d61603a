"""The JSON Schemas of rollback-ops' JSON outputs (see :mod:`rollback_ops.jsonout`)."""
