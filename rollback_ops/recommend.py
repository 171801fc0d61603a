"""``rollback-ops recommend``: which level, how urgently, with whose approval, from the
symptoms, by the seeds' triggers and decision matrices. Every rule names its source; every
rule that fired is reported; the decision is the most severe one (and, at equal severity,
the larger level, so data corruption outranks "turn the flag off").

Thresholds default to the seeds' numbers, in the spec file, and can be set per inventory
(``rollback_thresholds``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rollback_ops import appspec
from rollback_ops.exceptions import ConfigError

SEVERITIES = ("none", "low", "medium", "high", "critical")
LEVEL_ORDER = ("none", "flag", "emergency", "config", "code", "full")
APPROVAL = {  # seed 002 "Rollback Decision Matrix"; seed 001 P0-P3; seed 003 authorization
    "critical": "on-call engineer (P0: may act first with --break-glass, notify after)",
    "high": "engineering lead (P1)",
    "medium": "engineering lead + PM (P2)",
    "low": "team decision (P3: fix forward)",
    "none": "none",
}


@dataclass(frozen=True)
class Signals:
    error_rate: float | None = None  # percent of requests failing
    p95_ms: float | None = None  # p95 response time
    for_minutes: float = 0  # how long the symptoms have lasted
    users_affected: float | None = None  # percent of users unable to use core features
    memory_mb: float | None = None
    data_corruption: bool = False
    security: bool = False
    service_down: bool = False
    code_bug: bool = False


@dataclass(frozen=True)
class Thresholds:
    """``rollback_thresholds``: the numbers and their sources (seeds 002 and 003) are in the
    spec file, roles/app/meta/argument_specs.yml; build one with ``from_vars``."""

    critical_error_rate: float
    critical_error_minutes: float
    warning_error_rate: float
    warning_error_minutes: float
    critical_p95_ms: float
    critical_p95_minutes: float
    warning_p95_ms: float
    warning_p95_minutes: float
    quick_rollback_p95_ms: float
    memory_mb: float
    outage_minutes: float
    critical_users_pct: float
    high_users_pct: float
    medium_users_pct: float

    @classmethod
    def from_vars(cls, raw: Any, where: str) -> Thresholds:
        """An inventory's ``rollback_thresholds`` (None: the spec's defaults), validated;
        ConfigError names ``where`` (the file that set it) and the key of every problem."""
        value, problems = appspec.validator.validate(
            "rollback_thresholds", {} if raw is None else raw
        )
        if problems or value is None:
            raise ConfigError(
                "rollback_thresholds is not valid:\n  "
                + "\n  ".join(f"{where}: {path}: {message}" for path, message in problems)
            )
        return cls(**value)


@dataclass(frozen=True)
class Finding:
    severity: str
    level: str
    urgency: str
    rule: str
    source: str
    approval: str = ""

    def __post_init__(self) -> None:
        if not self.approval:
            object.__setattr__(self, "approval", APPROVAL[self.severity])


@dataclass
class Recommendation:
    decision: Finding
    fired: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"decision": asdict(self.decision), "fired": [asdict(f) for f in self.fired]}


def _rules(s: Signals, t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    minutes = s.for_minutes
    if s.data_corruption:
        out.append(
            Finding(
                "critical",
                "full",
                "immediate",
                "evidence of data loss or corruption",
                "seed 002 critical triggers; strategy 4 'critical bugs with data corruption'",
            )
        )
    if s.security:
        out.append(
            Finding(
                "critical",
                "emergency",
                "immediate",
                "security vulnerability discovered: stop first (read-only mode)",
                "seed 002 critical triggers 'Security Issue'",
            )
        )
    if s.service_down and minutes >= t.outage_minutes:
        out.append(
            Finding(
                "critical",
                "code",
                "immediate",
                f"service down (health check failing) for {minutes:g} min >= {t.outage_minutes:g}",
                "seed 002 critical alerts 'Service Down'; seed 004 decision tree",
            )
        )
    if s.code_bug:
        out.append(
            Finding(
                "high",
                "code",
                "< 10 min",
                "code bugs requiring revert",
                "seed 003 decision matrix 'Code bugs'; seed 002 strategy 3",
            )
        )
    if s.error_rate is not None:
        if s.error_rate > t.critical_error_rate and minutes >= t.critical_error_minutes:
            out.append(
                Finding(
                    "critical",
                    "flag",
                    "immediate",
                    f"error rate {s.error_rate:g}% > {t.critical_error_rate:g}% for "
                    f"{minutes:g} min >= {t.critical_error_minutes:g}",
                    "seed 002 critical triggers 'Error Rate'",
                )
            )
        elif s.error_rate > t.critical_error_rate:
            out.append(
                Finding(
                    "high",
                    "flag",
                    "< 1 min",
                    f"error rate {s.error_rate:g}% > {t.critical_error_rate:g}%: "
                    "quick rollback (disable all)",
                    "seed 003 decision matrix 'Error rate > 5%'",
                )
            )
        elif s.error_rate >= t.warning_error_rate and minutes >= t.warning_error_minutes:
            out.append(
                Finding(
                    "medium",
                    "flag",
                    "< 30 min",
                    f"error rate {s.error_rate:g}% in {t.warning_error_rate:g}-"
                    f"{t.critical_error_rate:g}% for {minutes:g} min: evaluate",
                    "seed 002 warning triggers 'Error Rate'",
                )
            )
    if s.p95_ms is not None:
        if s.p95_ms > t.quick_rollback_p95_ms:
            out.append(
                Finding(
                    "high",
                    "flag",
                    "< 1 min",
                    f"p95 {s.p95_ms:g} ms > {t.quick_rollback_p95_ms:g} ms: "
                    "quick rollback (disable all)",
                    "seed 003 decision matrix 'Response time > 5s'",
                )
            )
        if s.p95_ms > t.critical_p95_ms and minutes >= t.critical_p95_minutes:
            out.append(
                Finding(
                    "critical",
                    "flag",
                    "immediate",
                    f"p95 {s.p95_ms:g} ms > {t.critical_p95_ms:g} ms for {minutes:g} min",
                    "seed 002 critical triggers 'Response Time'",
                )
            )
        elif t.warning_p95_ms <= s.p95_ms <= t.critical_p95_ms and minutes >= t.warning_p95_minutes:
            out.append(
                Finding(
                    "medium",
                    "flag",
                    "< 30 min",
                    f"p95 {s.p95_ms:g} ms in {t.warning_p95_ms:g}-{t.critical_p95_ms:g} ms "
                    f"for {minutes:g} min: evaluate",
                    "seed 002 warning triggers 'Response Time'",
                )
            )
    if s.memory_mb is not None and s.memory_mb > t.memory_mb:
        out.append(
            Finding(
                "medium",
                "flag",
                "< 2 min",
                f"memory {s.memory_mb:g} MB > {t.memory_mb:g} MB: partial rollback "
                "(disable the costly feature, e.g. time-weighting)",
                "seed 003 decision matrix 'Memory usage > 2GB'",
            )
        )
    if s.users_affected is not None:
        u = s.users_affected
        if u > t.critical_users_pct:
            out.append(
                Finding(
                    "critical",
                    "flag",
                    "immediate",
                    f"{u:g}% of users affected > {t.critical_users_pct:g}%",
                    "seed 002 decision matrix 'Critical'",
                )
            )
        elif u >= t.high_users_pct:
            out.append(
                Finding(
                    "high",
                    "config",
                    "< 15 min",
                    f"{u:g}% of users affected ({t.high_users_pct:g}-{t.critical_users_pct:g}%): "
                    "feature flag or config",
                    "seed 002 decision matrix 'High'",
                )
            )
        elif u >= t.medium_users_pct:
            out.append(
                Finding(
                    "medium",
                    "code",
                    "< 30 min",
                    f"{u:g}% of users affected ({t.medium_users_pct:g}-{t.high_users_pct:g}%): "
                    "config or code",
                    "seed 002 decision matrix 'Medium'",
                )
            )
        else:
            out.append(
                Finding(
                    "low",
                    "none",
                    "< 1 hour",
                    f"{u:g}% of users affected < {t.medium_users_pct:g}%: "
                    "evaluate, may not roll back",
                    "seed 002 decision matrix 'Low'",
                )
            )
    return out


def recommend(signals: Signals, thresholds: Thresholds | None = None) -> Recommendation:
    fired = _rules(signals, thresholds or Thresholds.from_vars(None, "spec"))
    if not fired:
        none = Finding(
            "none",
            "none",
            "-",
            "no rollback trigger met: keep monitoring, fix forward",
            "seed 001 'P3 - Low: fix forward'",
        )
        return Recommendation(none, [])
    decision = max(fired, key=lambda f: (SEVERITIES.index(f.severity), LEVEL_ORDER.index(f.level)))
    return Recommendation(decision, fired)
