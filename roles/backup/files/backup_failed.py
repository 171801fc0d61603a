"""Tell someone a scheduled backup failed: run by systemd as the OnFailure= unit
``rollback-ops-backup-failed@<failed unit>.service``, on the host, as root.

Python 3 standard library only (the host runs Ansible's modules, so it has python3). It
reads ``/etc/rollback-ops/backup-<app>.notify.json`` (root only, 0600: the inventory's
``rollback_notify`` as the controller resolved it when the job was scheduled, the webhook
URL and SMTP password included), asks systemd how the unit failed and which lines it logged
in its last run, and sends one message: a Slack-compatible webhook (``{"text": ...}`` plus
``host``, ``app``, ``unit``, ``result``, ``exit_status``, ``journal``) and/or an email.

No secret reaches the message, argv or the journal: the config travels in the file only,
and the journal lines are cut to the last 20 (300 characters each) with every value of the
job's EnvironmentFile (database passwords) and of the config's secrets replaced by
``<secret>``. Exit 0 when every channel took the message, 1 otherwise (the journal says
why, without the URL).
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import socket
import subprocess
import sys
import urllib.request
from email.message import EmailMessage
from pathlib import Path

ETC = Path("/etc/rollback-ops")
PREFIX = "rollback-ops-backup-"
LINES = 20
WIDTH = 300
TIMEOUT = 10
UNIT = re.compile(r"^rollback-ops-backup-([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.service\Z")


def systemd(*argv: str) -> str:
    """A systemctl/journalctl answer, or "" when it fails."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def env_values(path: Path) -> list[str]:
    """The values of a systemd EnvironmentFile (KEY=VALUE lines)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    values = []
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            values.append(value.strip().strip("'\""))
    return values


def redact(line: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            line = line.replace(secret, "<secret>")
    return line[:WIDTH]


def message(unit: str, config: dict, secrets: list[str]) -> dict:
    """What failed, as systemd says, with the last lines of its last run."""
    show = dict(
        line.partition("=")[::2]
        for line in systemd(
            "systemctl",
            "show",
            "--property=Result,ExecMainStatus,InvocationID,ActiveState",
            unit,
        ).splitlines()
    )
    query = ["journalctl", "--no-pager", "--output=cat", "--lines", str(LINES), "--unit", unit]
    if show.get("InvocationID"):
        query.append("_SYSTEMD_INVOCATION_ID=" + show["InvocationID"])
    journal = [redact(line, secrets) for line in systemd(*query).splitlines()[-LINES:]]
    host = str(config.get("host") or socket.gethostname())
    app = str(config.get("app") or "")
    result = show.get("Result", "unknown")
    status = show.get("ExecMainStatus", "")
    text = (
        f"SCHEDULED BACKUP FAILED: {app} on {host}\n"
        f"Unit: {unit} (result {result}, exit status {status or '?'})\n"
        f"Machine: {socket.gethostname()}\n"
        "Last lines of its journal:\n" + "\n".join(journal or ["(none)"])
    )
    return {
        "text": text,
        "host": host,
        "app": app,
        "unit": unit,
        "result": result,
        "exit_status": status,
        "journal": journal,
    }


def webhook(url: str, body: dict) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError("the webhook URL is not http(s)")
    request = urllib.request.Request(  # noqa: S310 - http(s) checked above
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
        response.read()


def email(cfg: dict, body: dict) -> None:
    mail = EmailMessage()
    subject, _, rest = body["text"].partition("\n")
    mail["Subject"] = subject
    mail["From"] = cfg.get("from") or "rollback-ops@localhost"
    to = cfg.get("to") or []
    mail["To"] = ", ".join([to] if isinstance(to, str) else to)
    mail.set_content(rest)
    with smtplib.SMTP(cfg["host"], int(cfg.get("port") or 25), timeout=TIMEOUT) as smtp:
        if cfg.get("starttls"):
            smtp.starttls()
        if cfg.get("username"):
            smtp.login(cfg["username"], cfg.get("password") or "")
        smtp.send_message(mail)


def main(argv: list[str]) -> int:
    unit = argv[1] if len(argv) == 2 else ""
    found = UNIT.match(unit)
    if not found:
        print(f"usage: backup_failed.py {PREFIX}<app>.service (got {unit[:200]!r})")
        return 2
    app = found.group(1)
    path = ETC / f"backup-{app}.notify.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"{unit} failed; no notification configured for {app} ({path} is missing)")
        return 1
    except (OSError, ValueError) as exc:
        print(f"{unit} failed; {path} is unreadable: {type(exc).__name__}")
        return 1
    hook = str(config.get("webhook_url") or "")
    mail = config.get("email") or None
    secrets = [hook, str((mail or {}).get("password") or "")]
    secrets += env_values(ETC / f"backup-{app}.env")
    body = message(unit, config, secrets)
    failed = []
    for channel, send in (
        ("webhook", (lambda: webhook(hook, body)) if hook else None),
        ("email", (lambda: email(mail, body)) if mail else None),
    ):
        if send is None:
            continue
        try:
            send()
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            # the exception's class only: its text may hold the URL
            failed.append(f"{channel}: {type(exc).__name__}")
    if not hook and not mail:
        print(f"{unit} failed; the notification of {app} names no webhook or email")
        return 1
    if failed:
        print(f"{unit} failed; notifying it failed too: {', '.join(failed)}")
        return 1
    print(f"{unit} failed; notified ({'webhook' if hook else ''}{' email' if mail else ''})")
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv))
