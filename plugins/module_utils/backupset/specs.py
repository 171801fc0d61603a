"""Database specs as the inventory gives them: checked, defaults filled, passwords merged."""

from __future__ import annotations

from .common import NAME_RE, BackupError, Json
from .engines import ENGINES


def normalize_database(spec: Json) -> Json:
    """Check a database spec and fill its defaults (returns a new dict)."""
    if not isinstance(spec, dict):
        raise BackupError(f"a database spec must be a mapping, got {type(spec).__name__!r}")
    name = str(spec.get("name") or "")
    if not NAME_RE.match(name):
        raise BackupError(f"database name {name!r}: letters, digits and . _ - only")
    named = spec.get("engine")
    engine = ENGINES.get(named) if isinstance(named, str) else None
    if engine is None:
        raise BackupError(f"database {name}: engine must be one of {', '.join(ENGINES)}")
    out = dict(spec)
    engine.normalize(spec, out)
    out["compression"] = int(spec.get("compression", 6))
    out["lock_wait_timeout"] = int(spec.get("lock_wait_timeout", 60))
    out["tables"] = [str(t) for t in spec.get("tables") or []]
    out["schema_version_query"] = str(spec.get("schema_version_query") or "")
    out["migrations_rollback"] = [str(f) for f in spec.get("migrations_rollback") or []]
    for key, fields in (
        ("integrity_checks", ("name", "sql")),
        ("data_loss_tables", ("table", "key")),
    ):
        items = spec.get(key) or []
        for item in items:
            if not isinstance(item, dict) or any(not item.get(f) for f in fields):
                needs = " and ".join(fields)
                raise BackupError(f"database {name}: each of {key} needs {needs}")
        out[key] = [dict(item) for item in items]
    return out


def normalize_all(databases: list[Json] | tuple[Json, ...]) -> list[Json]:
    """Every spec normalized; their names unique."""
    specs = [normalize_database(d) for d in databases]
    names = [s["name"] for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BackupError(f"database names must be unique: {', '.join(dupes)}")
    return specs


def with_passwords(databases: list[Json], passwords: dict[str, str]) -> list[Json]:
    """The database specs with their passwords merged in, for the client tools only (never
    returned by the modules). A spec holding a password itself is refused: passwords travel
    in the modules' no_log ``passwords`` option, so the specs and results stay printable."""
    merged = []
    for spec in databases:
        if "password" in spec:
            raise BackupError(
                f"database {spec.get('name')}: put its password in the passwords option, "
                "not in databases"
            )
        spec = dict(spec)
        if passwords.get(str(spec.get("name"))):
            spec["password"] = passwords[str(spec["name"])]
        merged.append(spec)
    return merged
