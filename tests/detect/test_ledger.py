"""Notices by event time (pure): the HighVolume rule, an incident's timeline and the ledger that
walks it. A backlog must owe at once, in order, what the same records owed live."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import catalog, domain
from shared.core.domain import MINUTE, Severity, Step
from shared.detect import windows as d
from shared.notify import incidents

T0 = datetime(2026, 11, 24, 9, 55, tzinfo=UTC)
IP = "198.51.100.77"
HOUR = timedelta(hours=1)


def fails(times: list[datetime], user: str = "admin") -> list[domain.Event]:
    return [domain.Event(t, f"k{i}", user, IP, False, "VM", "BH") for i, t in enumerate(times)]


def trickle_then_flood(steady: int = 0) -> list[domain.Event]:
    trickle = [T0 + timedelta(minutes=i, seconds=40) for i in range(5)]
    flood = [T0 + timedelta(minutes=5, seconds=i / 10) for i in range(300)]
    more = [T0 + timedelta(minutes=6 + i // 5, seconds=12 * (i % 5)) for i in range(steady)]
    return fails([*trickle, *flood, *more])


def timeline_of(events: list[domain.Event]) -> tuple[domain.Incident, tuple[Step, ...]]:
    t = catalog.Thresholds()
    buckets = d.build_buckets(domain.Kind.IP, events, t)
    [inc] = d.incidents(domain.Kind.IP, IP, buckets, d.hot_rules(domain.Kind.IP, buckets, t), t)
    return inc, d.timeline(inc, buckets, d.evaluator(domain.Kind.IP, IP, t))


def test_a_flood_after_a_trickle_is_high_volume_from_its_minute_on() -> None:
    inc, steps = timeline_of(trickle_then_flood())
    assert inc.rules == ("high_volume_ip", "ip_brute_force") and inc.severity is Severity.HIGH
    assert [(s.severity, s.failures) for s in steps] == [
        (Severity.MEDIUM, 5),
        (Severity.HIGH, 305),
    ]


def test_a_steady_flood_is_high_volume_from_its_first_minute_and_a_trickle_never() -> None:
    flood = fails([T0 + timedelta(minutes=m, seconds=s) for m in range(5) for s in range(60)])
    assert d.evaluate(domain.Kind.IP, IP, flood, catalog.Thresholds())[0].rule == "high_volume_ip"
    trickle = fails([T0 + timedelta(minutes=m, seconds=s) for m in range(30) for s in (0, 30)])
    assert d.evaluate(domain.Kind.IP, IP, trickle, catalog.Thresholds())[0].rules == (
        "ip_brute_force",
    )


def test_the_ledger_opens_escalates_and_updates_by_event_time() -> None:
    _, steps = timeline_of(trickle_then_flood(steady=450))
    notices, due = incidents.ledger(steps, None, HOUR)
    told = [(n.event, n.severity.value, n.failures, n.at - T0) for n in notices]
    assert told == [
        ("opened", "medium", 5, timedelta(minutes=5)),
        ("escalated", "high", 305, timedelta(minutes=6)),
        ("updated", "high", 605, timedelta(minutes=66)),
    ]
    assert due is None  # 755 is not half again 605


def test_growth_sooner_than_the_interval_falls_due_at_its_event_time() -> None:
    steps = [Step(T0 + k * MINUTE, Severity.MEDIUM, ("ip_brute_force",), 5 * k) for k in (1, 2)]
    notices, due = incidents.ledger(steps, None, HOUR)
    assert [n.event for n in notices] == ["opened"] and due == T0 + MINUTE + HOUR
    later = [*steps, Step(T0 + 2 * HOUR, Severity.MEDIUM, ("ip_brute_force",), 11)]
    notices, due = incidents.ledger(later, None, HOUR)
    # the update falls due an hour after the opening, with the count of that moment (10)
    assert [(n.event, n.at, n.failures) for n in notices] == [
        ("opened", T0 + MINUTE, 5),
        ("updated", T0 + MINUTE + HOUR, 10),
    ]


def test_a_late_escalation_is_told_even_after_a_later_notice() -> None:
    told = (Severity.MEDIUM.rank, 10, T0 + 2 * HOUR)
    late = [Step(T0 + HOUR, Severity.CRITICAL, ("success_after_failures_ip",), 8)]
    notices, _ = incidents.ledger(late, told, HOUR)
    assert [(n.event, n.severity) for n in notices] == [("escalated", Severity.CRITICAL)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 180), st.integers(0, 80)), min_size=1, max_size=40))
def test_live_prefixes_owe_what_the_whole_timeline_owes(minutes: list[tuple[int, int]]) -> None:
    """Walking the timeline minute by minute, carrying what was told, owes the notices of
    walking it at once: the ledger does not depend on how the records were sliced."""
    counts: dict[int, int] = {}
    for minute, n in minutes:
        counts[minute] = counts.get(minute, 0) + n
    total, steps = 0, []
    for minute in sorted(counts):
        total += counts[minute]
        severity = Severity.HIGH if counts[minute] >= 50 else Severity.MEDIUM
        steps.append(Step(T0 + minute * MINUTE, severity, ("x",), total))
    whole, _ = incidents.ledger(steps, None, HOUR)
    live: list[incidents.Notice] = []
    told: incidents.Told | None = None
    for k in range(1, len(steps) + 1):  # each invocation sees the minutes so far
        got, _ = incidents.ledger(steps[:k], told, HOUR)
        live += got
        if got:  # what people were told: the loudest severity, the latest count and time
            loudest = max([n.severity.rank for n in got] + ([told[0]] if told else []))
            told = (loudest, got[-1].failures, got[-1].at)
    assert [(n.event, n.at, n.failures) for n in live] == [
        (n.event, n.at, n.failures) for n in whole
    ]


def test_a_late_escalation_does_not_move_what_was_told_back_in_time() -> None:
    """The row remembers what the ledger carries on: after a late escalation, the minutes
    between it and the last notice stay decided (no growth update is owed for them again)."""
    row = {"ToldSeverity": "medium", "ToldFailures": 10, "ToldAt": T0 + 2 * HOUR, "Seq": 1}
    late = [Step(T0 + HOUR, Severity.CRITICAL, ("success_after_failures_ip",), 8)]
    incidents._decide(row, late, T0 + 3 * HOUR, HOUR)
    assert (row["ToldSeverity"], row["ToldAt"], row["Pending"]) == (
        "critical",
        T0 + 2 * HOUR,
        "escalated",
    )
