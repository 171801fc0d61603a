"""``rollback-ops history``: the runs of the audit history as a table, filtered.

The default view fits 100 columns: one line of fixed, bounded columns per run (run id,
level, app, inventory, hosts, outcome) and under it one indented line of who, where, how
long, the linked runs and why. ``--wide`` puts every field on one line per run, unbounded
by the terminal (for a wide terminal or grep). Values come from a file: every cell is one
line, escaped and bounded (:func:`rollback_ops.text.one_line`).
"""

from __future__ import annotations

from pathlib import Path

from rollback_ops.history import RELATION_WORDS, HistoryRow
from rollback_ops.progress import table
from rollback_ops.text import one_line

WIDTH = 100  # the default view's lines are at most this long (real run ids)
# the default view's bounded columns: header, width at most
COLUMNS = (("LEVEL", 9), ("APP", 12), ("INVENTORY", 12), ("HOSTS", 16), ("OUTCOME", 11))


def select(
    rows: list[HistoryRow],
    *,
    app: str | None = None,
    inventory: str | None = None,
    host: str | None = None,
) -> list[HistoryRow]:
    """The runs that targeted app ``app``, inventory ``inventory`` (its name as typed, prod
    and production standing for each other, or its path) and host ``host``; runs recorded
    before the history kept apps or inventory paths match by what they recorded."""
    from rollback_ops.inventory import NAMED

    def same_inventory(row: HistoryRow) -> bool:
        assert inventory is not None
        if NAMED.get(row.inventory, row.inventory) == NAMED.get(inventory, inventory):
            return True
        given = Path(inventory).expanduser()
        return (
            bool(row.inventory_path)
            and given.exists()
            and given.resolve() == Path(row.inventory_path)
        )

    return [
        r
        for r in rows
        if (app is None or app in r.apps)
        and (inventory is None or same_inventory(r))
        and (host is None or host in r.hosts)
    ]


def compact_hosts(hosts: list[str], width: int = 16) -> str:
    """The first two hosts and how many more, ``web1,web2 +3``, in at most ``width``
    characters: fewer hosts shown (and the first one cut) when long names need it, the count
    of the others always kept."""
    if not hosts:
        return "-"
    for shown in (2, 1):
        more = f" +{len(hosts) - shown}" if len(hosts) > shown else ""
        text = one_line(",".join(hosts[:shown]), 10_000) + more
        if len(text) <= width:
            return text
    return one_line(hosts[0], max(width - len(more), 4)) + more


def approval(row: HistoryRow) -> str:
    if row.break_glass:
        return "BREAK-GLASS"
    if row.confirmed_by_typing:
        return "typed confirmation"
    return row.approved_by


def links(row: HistoryRow) -> list[str]:
    """``resumes ID`` for the run this one follows, ``resumed by ID`` for each later one."""
    out = []
    if row.follows:
        out.append(f"{RELATION_WORDS.get(row.relation, ('follows', ''))[0]} {row.follows}")
    out += [
        f"{RELATION_WORDS.get(later.relation, ('', 'followed by'))[1]} {later.run_id}"
        for later in row.followed_by
    ]
    return out


def reason(row: HistoryRow) -> str:
    if not row.reason:
        return "no reason given"
    if row.reason_from:
        kept = "kept" if row.reason_from == row.follows else f"of {row.reason_from}"
        return f"reason ({kept}): {row.reason}"
    return f"reason: {row.reason}"


def render(rows: list[HistoryRow], *, wide: bool = False) -> list[str]:
    """The table's lines: see the module docstring."""
    return _wide(rows) if wide else _compact(rows)


def _compact(rows: list[HistoryRow]) -> list[str]:
    lines = table(
        [
            ("RUN ID", *(name for name, _ in COLUMNS)),
            *(
                (
                    one_line(r.run_id, 64),
                    *(
                        one_line(value, width)
                        for value, (_, width) in zip(
                            (
                                r.level,
                                ",".join(r.apps) or "?",
                                r.inventory or "?",
                                compact_hosts(r.hosts, COLUMNS[3][1]),
                                r.result,
                            ),
                            COLUMNS,
                            strict=True,
                        )
                    ),
                )
                for r in rows
            ),
        ]
    )
    out = [lines[0]]
    for line, r in zip(lines[1:], rows, strict=True):
        who = f"by {r.operator or '?'}" + (
            f", approved by {r.approved_by}" if r.approved_by and not r.break_glass else ""
        )
        if r.break_glass or r.confirmed_by_typing:
            who += f", {approval(r)}"
        details = [
            who,
            ",".join(r.environment),
            f"{r.duration:.1f}s" if r.duration is not None else "",
            "check mode" if r.check else "",
            *links(r),
            reason(r),
        ]
        out += [line, "  " + one_line("; ".join(d for d in details if d), WIDTH - 2)]
    return out


def _wide(rows: list[HistoryRow]) -> list[str]:
    header = (
        "DATE",
        "RUN ID",
        "LEVEL",
        "APP",
        "INVENTORY",
        "ENVIRONMENT",
        "HOSTS",
        "OPERATOR",
        "APPROVED BY",
        "CHECK",
        "DURATION",
        "OUTCOME",
        "LINKS",
        "REASON",
    )
    body = [
        (
            r.started or "?",
            r.run_id,
            r.level,
            ",".join(r.apps) or "?",
            r.inventory or "?",
            ",".join(r.environment) or "?",
            ",".join(r.hosts) or "-",
            r.operator or "?",
            approval(r) or "-",
            "check" if r.check else "-",
            f"{r.duration:.1f}s" if r.duration is not None else "-",
            r.result,
            ", ".join(links(r)) or "-",
            (f"(of {r.reason_from}) " if r.reason_from else "") + (r.reason or "-"),
        )
        for r in rows
    ]
    # values from a file: one line each, no escape sequence, bounded
    return table([header, *(tuple(one_line(c, 200) for c in cells) for cells in body)])
