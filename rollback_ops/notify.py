"""Notifications on start, success and failure: a Slack-compatible webhook and/or email.

Configured per inventory with ``rollback_notify`` (see README). Secrets (the webhook URL,
the SMTP password) come from environment variables named in the inventory, never from the
inventory itself. A notification that fails never fails the rollback: it is reported in the
recap and the receipt.
"""

from __future__ import annotations

import json
import os
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from rollback_ops import appspec
from rollback_ops.exceptions import ConfigError
from rollback_ops.inventory import Inventory
from rollback_ops.report import LEVEL_NAMES, environment

TIMEOUT = 10


@dataclass(frozen=True)
class EmailConfig:
    """``rollback_notify.email``, every default from the spec file."""

    host: str
    port: int
    starttls: bool
    sender: str
    to: tuple[str, ...]
    username: str
    password_env: str


@dataclass(frozen=True)
class NotifyConfig:
    """``rollback_notify``; the defaults here are "not configured", nothing sent."""

    webhook_url: str = ""
    webhook_url_env: str = ""
    email: EmailConfig | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.webhook_url_env or self.email)


@dataclass
class Delivery:
    event: str
    channel: str
    ok: bool
    error: str = ""


@dataclass
class Notifier:
    config: NotifyConfig
    state_dir: Path
    templates: Path | None = None
    deliveries: list[Delivery] = field(default_factory=list)

    def send(self, event: str, context: dict[str, Any]) -> None:
        if not self.config.enabled:
            return
        try:
            text = (
                environment(self.state_dir, self.templates)
                .get_template("alert.txt.j2")
                .render(event=event, **context)
            )
        except Exception as exc:  # a broken team template must not stop a rollback
            self.deliveries.append(Delivery(event, "template", False, str(exc)))
            return
        subject, _, body = text.partition("\n")
        if self.config.webhook_url or self.config.webhook_url_env:
            self._deliver(event, "webhook", lambda: self._webhook(text))
        email = self.config.email
        if email:
            self._deliver(event, "email", lambda: self._email(email, subject, body))

    def _deliver(self, event: str, channel: str, send: Callable[[], None]) -> None:
        try:
            send()
        except (OSError, smtplib.SMTPException, urllib.error.URLError, ValueError) as exc:
            self.deliveries.append(Delivery(event, channel, False, f"{type(exc).__name__}: {exc}"))
        else:
            self.deliveries.append(Delivery(event, channel, True))

    def _webhook(self, text: str) -> None:
        url = self.config.webhook_url or os.environ.get(self.config.webhook_url_env, "")
        if not url:
            raise ValueError(f"${self.config.webhook_url_env} is not set")
        request = urllib.request.Request(  # noqa: S310 - http(s) checked when the config is read
            url,
            data=json.dumps({"text": text}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            response.read()

    def _email(self, cfg: EmailConfig, subject: str, body: str) -> None:
        message = EmailMessage()
        message["Subject"] = subject.strip()
        message["From"] = cfg.sender
        message["To"] = ", ".join(cfg.to)
        message.set_content(body.lstrip("\n"))
        with smtplib.SMTP(cfg.host, cfg.port, timeout=TIMEOUT) as smtp:
            if cfg.starttls:
                smtp.starttls()
            if cfg.username:
                password = os.environ.get(cfg.password_env, "") if cfg.password_env else ""
                if not password:
                    raise ValueError(f"SMTP user {cfg.username}: ${cfg.password_env} is not set")
                smtp.login(cfg.username, password)
            smtp.send_message(message)


def config_from(inv: Inventory) -> NotifyConfig:
    """The inventory's ``rollback_notify`` (the same on every host), validated against the
    spec file; ConfigError names the file and the key of every problem."""
    values = {json.dumps(h.vars.get("rollback_notify"), sort_keys=True) for h in inv.hosts.values()}
    if len(values) > 1:
        raise ConfigError(
            f"inventory {inv.name}: rollback_notify differs between hosts; set it once for all"
        )
    host = next(iter(inv.hosts.values()))
    raw = host.vars.get("rollback_notify")
    if raw is None:
        return NotifyConfig()
    value, problems = appspec.validator.validate("rollback_notify", raw)
    if problems or value is None:
        where = host.origin("rollback_notify")
        raise ConfigError(
            f"inventory {inv.name}: rollback_notify is not valid:\n  "
            + "\n  ".join(f"{where}: {path}: {message}" for path, message in problems)
        )
    webhook, email = value.get("webhook", {}), value.get("email")
    if email is not None:  # the spec's keys, but "from" (a Python keyword) is sender
        email = dict(email)
        email = EmailConfig(sender=email.pop("from"), to=tuple(email.pop("to")), **email)
    return NotifyConfig(webhook.get("url", ""), webhook.get("url_env", ""), email)


def strategy(level: str) -> str:
    return LEVEL_NAMES.get(level, level)
