#!/usr/bin/env python3
"""A tiny feature-flag program like seed 002's ``manage.py configure_ux_features``: flags in
a SQLite database, per tenant. The lab test copies it to a host and declares it as the app's
command flag backend (rollback_app.flag_backend).

    flagstore.py DB get TENANT:FLAG          print the value (exit 3: no such flag)
    flagstore.py DB set TENANT:FLAG VALUE    VALUE must be true or false (exit 2 otherwise)
    flagstore.py DB dump                     print every flag as JSON (like dumpdata)
    flagstore.py DB load FILE                replace every flag by FILE's (like loaddata)

dump and load make it the app's config rows too (rollback_app.config.rows).
"""

import json
import sqlite3
import sys

VALUES = ("true", "false")


def rows(db, action, argv):
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE IF NOT EXISTS flags (tenant TEXT, flag TEXT, value TEXT, "
        "PRIMARY KEY (tenant, flag))"
    )
    if action == "dump":
        found = con.execute("SELECT tenant, flag, value FROM flags ORDER BY tenant, flag")
        data = [{"tenant": t, "flag": f, "value": v} for t, f, v in found]
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return 0
    with open(argv[2]) as handle:
        data = json.load(handle)
    with con:
        con.execute("DELETE FROM flags")
        con.executemany(
            "INSERT INTO flags (tenant, flag, value) VALUES (?, ?, ?)",
            [(r["tenant"], r["flag"], r["value"]) for r in data],
        )
    return 0


def main(argv):
    if (len(argv) == 2 and argv[1] == "dump") or (len(argv) == 3 and argv[1] == "load"):
        return rows(argv[0], argv[1], argv)
    if len(argv) < 3 or argv[1] not in ("get", "set"):
        sys.stderr.write("usage: flagstore.py DB get|set TENANT:FLAG [VALUE] | dump | load FILE\n")
        return 2
    db, action, key = argv[0], argv[1], argv[2]
    tenant, sep, flag = key.partition(":")
    if not sep or not tenant or not flag:
        sys.stderr.write(f"flagstore: {key!r} is not TENANT:FLAG\n")
        return 2
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE IF NOT EXISTS flags (tenant TEXT, flag TEXT, value TEXT, "
        "PRIMARY KEY (tenant, flag))"
    )
    if action == "get":
        row = con.execute(
            "SELECT value FROM flags WHERE tenant = ? AND flag = ?", (tenant, flag)
        ).fetchone()
        if row is None:
            sys.stderr.write(f"flagstore: no flag {flag} for tenant {tenant}\n")
            return 3
        sys.stdout.write(row[0] + "\n")
        return 0
    if len(argv) != 4:
        sys.stderr.write("usage: flagstore.py DB set TENANT:FLAG VALUE\n")
        return 2
    value = argv[3]
    if value not in VALUES:
        sys.stderr.write(f"flagstore: invalid value {value!r} for {flag} (true or false)\n")
        return 2
    with con:
        con.execute(
            "INSERT INTO flags (tenant, flag, value) VALUES (?, ?, ?) "
            "ON CONFLICT (tenant, flag) DO UPDATE SET value = excluded.value",
            (tenant, flag, value),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
