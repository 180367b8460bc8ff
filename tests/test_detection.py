"""Detection rules on event sequences. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.detection import IP, USER, Event, Thresholds, evaluate

T0 = datetime(2026, 11, 24, 10, 50, tzinfo=UTC)
T = Thresholds()


def ev(minute: float, user: str = "alice", ip: str = "198.51.100.7", ok: bool = False) -> Event:
    when = T0 + timedelta(minutes=minute)
    return Event(when, f"{when.isoformat()}-{user}-{ip}-{ok}", user, ip, ok, "VM1", "BH")


def rules(kind: str, subject: str, events: list[Event]) -> list[str]:
    return sorted(f.rule for f in evaluate(kind, subject, events, T))


def test_exactly_at_threshold_fires_and_one_below_does_not() -> None:
    assert rules(USER, "alice", [ev(i) for i in range(5)]) == ["user_brute_force"]
    assert rules(USER, "alice", [ev(i) for i in range(4)]) == []


def test_window_boundary_is_inclusive_at_fifteen_minutes() -> None:
    assert rules(USER, "alice", [ev(0), ev(5), ev(10), ev(12), ev(15)]) == ["user_brute_force"]
    assert rules(USER, "alice", [ev(0), ev(5), ev(10), ev(12), ev(15.01)]) == []


def test_order_and_duplicates_do_not_matter() -> None:
    events = [ev(i) for i in range(5)]
    shuffled = [events[3], events[0], events[4], events[0], events[1], events[2], events[4]]
    a = evaluate(USER, "alice", events, T)
    b = evaluate(USER, "alice", shuffled, T)
    assert a == b and a[0].failures == 5


def test_burst_across_the_hour_is_one_incident() -> None:
    events = [ev(8 + i * 0.3) for i in range(3)] + [ev(11 + i) for i in range(3)]  # 10:58..11:03
    findings = evaluate(USER, "alice", events, T)
    assert len(findings) == 1
    assert findings[0].failures == 6
    assert findings[0].first_seen.hour == 10 and findings[0].last_seen.hour == 11


def test_failures_spread_over_hours_never_fire() -> None:
    assert rules(USER, "alice", [ev(i * 20) for i in range(12)]) == []


def test_four_failures_then_success_is_ordinary() -> None:
    assert rules(USER, "alice", [*[ev(i) for i in range(4)], ev(5, ok=True)]) == []


def test_success_after_threshold_is_possible_compromise() -> None:
    got = rules(USER, "alice", [*[ev(i) for i in range(5)], ev(6, ok=True)])
    assert got == ["success_after_failures_user", "user_brute_force"]


def test_nat_users_mistyping_once_then_signing_in_is_ordinary() -> None:
    events = []
    for i, user in enumerate(["dave", "erin", "frank", "grace", "heidi", "ivan"]):
        events += [ev(i, user, "203.0.113.10"), ev(i + 0.5, user, "203.0.113.10", ok=True)]
    assert rules(IP, "203.0.113.10", events) == []


def test_ip_brute_force_and_spray() -> None:
    brute = [ev(i * 0.5, "admin") for i in range(5)]
    assert rules(IP, "198.51.100.7", brute) == ["ip_brute_force"]
    spray = [ev(i, f"user{i}") for i in range(5)]
    assert rules(IP, "198.51.100.7", spray) == ["ip_brute_force", "password_spray"]
    four_users = [ev(i, f"user{i % 4}") for i in range(8)]
    assert rules(IP, "198.51.100.7", four_users) == ["ip_brute_force"]


def test_spray_window_is_twenty_minutes() -> None:
    spread = [ev(i * 4.9, f"user{i}") for i in range(5)]  # 19.6 minutes
    assert "password_spray" in rules(IP, "198.51.100.7", spread)
    wider = [ev(i * 5.1, f"user{i}") for i in range(5)]  # 20.4 minutes
    assert "password_spray" not in rules(IP, "198.51.100.7", wider)


def test_success_from_attacking_ip_by_another_user_is_flagged() -> None:
    events = [ev(i, f"user{i}") for i in range(5)] + [ev(6, "victim", ok=True)]
    assert "success_after_failures_ip" in rules(IP, "198.51.100.7", events)


def test_quiet_period_splits_incidents() -> None:
    first = [ev(i) for i in range(5)]
    second = [ev(70 + i) for i in range(5)]  # 66 minutes after the last failure
    assert len(evaluate(USER, "alice", first + second, T)) == 2
    close = [ev(50 + i) for i in range(5)]  # 46 minutes after: the same incident
    assert len(evaluate(USER, "alice", first + close, T)) == 1
