"""`recommend` answers every row of the seeds' triggers and decision matrices."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from rollback_ops import cli
from rollback_ops.exceptions import ConfigError
from rollback_ops.recommend import Signals, Thresholds, recommend

ROWS = [
    # seed 003 "Rollback Decision Matrix"
    ("003 response time > 5s", Signals(p95_ms=6000), "high", "flag", "< 1 min"),
    ("003 error rate > 5%", Signals(error_rate=6), "high", "flag", "< 1 min"),
    ("003 memory > 2GB", Signals(memory_mb=2500), "medium", "flag", "< 2 min"),
    ("003 code bugs", Signals(code_bug=True), "high", "code", "< 10 min"),
    # seed 002 critical triggers
    (
        "002 error > 5% for > 15 min",
        Signals(error_rate=7, for_minutes=20),
        "critical",
        "flag",
        "immediate",
    ),
    (
        "002 p95 > 2 s for > 15 min",
        Signals(p95_ms=2500, for_minutes=16),
        "critical",
        "flag",
        "immediate",
    ),
    ("002 data corruption", Signals(data_corruption=True), "critical", "full", "immediate"),
    ("002 security issue", Signals(security=True), "critical", "emergency", "immediate"),
    (
        "002 service outage",
        Signals(service_down=True, for_minutes=6),
        "critical",
        "code",
        "immediate",
    ),
    ("002 > 10% users", Signals(users_affected=12), "critical", "flag", "immediate"),
    # seed 002 warning triggers
    (
        "002 error 2-5% for > 30 min",
        Signals(error_rate=3, for_minutes=31),
        "medium",
        "flag",
        "< 30 min",
    ),
    (
        "002 p95 1-2 s for > 30 min",
        Signals(p95_ms=1500, for_minutes=45),
        "medium",
        "flag",
        "< 30 min",
    ),
    # seed 002 "Rollback Decision Matrix"
    ("002 high 5-10% users", Signals(users_affected=7), "high", "config", "< 15 min"),
    ("002 medium 2-5% users", Signals(users_affected=3), "medium", "code", "< 30 min"),
    ("002 low < 2% users", Signals(users_affected=1), "low", "none", "< 1 hour"),
]


@pytest.mark.parametrize(
    ("row", "signals", "severity", "level", "urgency"), ROWS, ids=[r[0] for r in ROWS]
)
def test_every_row_of_the_seeds(row, signals, severity, level, urgency):
    d = recommend(signals).decision
    assert (d.severity, d.level, d.urgency) == (severity, level, urgency), row
    assert d.source.startswith("seed 00")


def test_below_every_threshold_nothing_fires():
    rec = recommend(Signals(error_rate=1, p95_ms=800, for_minutes=60))
    assert rec.decision.level == "none" and rec.fired == []
    # the warning band needs its duration: 3% for 10 minutes is not yet a trigger
    assert recommend(Signals(error_rate=3, for_minutes=10)).decision.level == "none"


def test_the_most_severe_wins_and_data_outranks_flags():
    rec = recommend(Signals(error_rate=9, for_minutes=20, data_corruption=True, p95_ms=6000))
    assert rec.decision.level == "full"
    assert {f.level for f in rec.fired} == {"full", "flag"}
    assert rec.decision.approval.startswith("on-call engineer")


def test_thresholds_are_configurable_and_validated():
    strict = Thresholds.from_vars({"critical_error_rate": 1, "critical_error_minutes": 5}, "x")
    assert recommend(Signals(error_rate=2, for_minutes=6), strict).decision.severity == "critical"
    assert Thresholds.from_vars({"memory_mb": "1024"}, "x").memory_mb == 1024
    with pytest.raises(ConfigError, match="unknown key"):
        Thresholds.from_vars({"memmory_mb": 1}, "x")


def test_thresholds_default_to_the_spec_file_and_report_every_problem():
    defaults = Thresholds.from_vars(None, "x")
    assert (defaults.critical_error_rate, defaults.memory_mb, defaults.medium_users_pct) == (
        5.0,
        2048,
        2,
    )
    with pytest.raises(ConfigError) as error:
        Thresholds.from_vars({"memmory_mb": 1, "outage_minutes": -1, "memory_mb": "lots"}, "f.yml")
    assert [line.strip() for line in str(error.value).splitlines()[1:]] == [
        "f.yml: rollback_thresholds.memmory_mb: unknown key (allowed: "
        + ", ".join(sorted(f.name for f in fields(Thresholds)))
        + ")",
        "f.yml: rollback_thresholds.memory_mb: must be a number >= 0, not 'lots'",
        "f.yml: rollback_thresholds.outage_minutes: must be a number >= 0, not -1.0",
    ]
    with pytest.raises(ConfigError, match="rollback_thresholds: must be a mapping"):
        Thresholds.from_vars([1], "f.yml")


def test_cli_reads_thresholds_from_the_inventory(capsys, tmp_path: Path):
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  vars:\n    rollback_thresholds: {critical_error_rate: 1}\n  hosts:\n    w1:\n"
    )
    assert (
        cli.main(
            ["recommend", "--error-rate", "2", "--for-minutes", "20", "-i", str(inv), "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["decision"]["severity"] == "critical"
    assert cli.main(["recommend", "--p95-ms", "6000"]) == 0
    text = capsys.readouterr().out
    assert (
        "level:    flag" in text
        and "seed 003" in text
        and "next:     rollback-ops plan --level flag" in text
    )
