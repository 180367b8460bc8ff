"""Detection rules over one subject's events (a user's, or a source IP's). Pure code.

Windows use event time, not arrival time, and the caller hands in every stored event of the
subject around the new ones, whichever blob they came from, so the answer does not depend on
the order blobs are processed in. Each rule is a small class; `RULES` lists them all.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

USER = "user"
IP = "ip"
MAX_LISTED = 20  # users, IPs and targets named in one finding


@dataclass(frozen=True, slots=True)
class Event:
    """What detection needs of a stored record."""

    time: datetime
    key: str  # the record's RowKey: duplicates collapse on it
    user: str  # UserKey (case-folded name, else e-mail)
    ip: str  # ClientIpKey
    success: bool  # otherwise a failure (other outcomes are not passed in)
    target: str = ""
    host: str = ""


@dataclass(frozen=True)
class Thresholds:
    failures: int = 5
    window: timedelta = timedelta(minutes=15)
    spray_users: int = 5
    spray_window: timedelta = timedelta(minutes=20)
    quiet: timedelta = timedelta(minutes=60)

    @property
    def reach(self) -> timedelta:
        """How far around new events a rule may look."""
        return max(self.window, self.spray_window)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    kind: str  # USER or IP
    subject: str
    first_seen: datetime
    last_seen: datetime
    failures: int
    users: tuple[str, ...]
    ips: tuple[str, ...]
    targets: tuple[str, ...]
    hosts: tuple[str, ...]
    successes: int = 0


class Rule(Protocol):
    name: str
    kind: str
    severity: str

    def evaluate(self, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
        """Findings for one subject; `events` are sorted by time and unique by key."""
        ...


class UserBruteForce:
    """Many failures for one user in a short window (password guessing)."""

    name, kind, severity = "user_brute_force", USER, "medium"

    def evaluate(self, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
        failures = [e for e in events if not e.success]
        hot = _dense(failures, t.failures, t.window, len)
        return _findings(self, subject, failures, hot, t)


class IpBruteForce:
    """Many failures from one address that its users did not then fix by signing in."""

    name, kind, severity = "ip_brute_force", IP, "medium"

    def evaluate(self, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
        failures = unresolved_failures(events, t.window)
        hot = _dense(failures, t.failures, t.window, len)
        return _findings(self, subject, failures, hot, t)


class PasswordSpray:
    """Failures for many distinct users from one address."""

    name, kind, severity = "password_spray", IP, "high"

    def evaluate(self, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
        failures = unresolved_failures(events, t.spray_window)
        hot = _dense(
            failures, t.spray_users, t.spray_window, lambda batch: len({e.user for e in batch})
        )
        return _findings(self, subject, failures, hot, t)


class SuccessAfterFailures:
    """A sign-in that worked right after the failure threshold was reached: maybe compromise."""

    severity = "high"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"success_after_failures_{kind}"

    def evaluate(self, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
        if self.kind == USER:
            failures = [e for e in events if not e.success]
        else:
            failures = unresolved_failures(events, t.window)
        times = [e.time for e in failures]
        hot: list[Event] = []
        successes: list[Event] = []
        for event in events:
            if not event.success:
                continue
            lo = bisect.bisect_left(times, event.time - t.window)
            hi = bisect.bisect_left(times, event.time)
            before = failures[lo:hi]
            if self.kind == IP:  # the user's own typos do not count against the address
                before = [f for f in before if f.user != event.user]
            if len(before) >= t.failures:
                hot.extend(before)
                successes.append(event)
        if not successes:
            return []
        return _findings(self, subject, sorted({*hot, *successes}, key=_order), None, t)


RULES: tuple[Rule, ...] = (
    UserBruteForce(),
    IpBruteForce(),
    PasswordSpray(),
    SuccessAfterFailures(USER),
    SuccessAfterFailures(IP),
)


def evaluate(kind: str, subject: str, events: Sequence[Event], t: Thresholds) -> list[Finding]:
    """All findings of the rules for `kind` over a subject's events (any order, duplicates ok)."""
    unique = sorted({e.key: e for e in events}.values(), key=_order)
    return [f for rule in RULES if rule.kind == kind for f in rule.evaluate(subject, unique, t)]


def unresolved_failures(events: Sequence[Event], window: timedelta) -> list[Event]:
    """Failures not followed, within `window`, by the same user succeeding from the same IP.

    People behind one NAT address who mistype once and then sign in are not an attack.
    """
    last_success: dict[tuple[str, str], list[datetime]] = {}
    for e in events:
        if e.success:
            last_success.setdefault((e.user, e.ip), []).append(e.time)
    out = []
    for e in events:
        if e.success:
            continue
        wins = last_success.get((e.user, e.ip), [])
        i = bisect.bisect_right(wins, e.time)
        if i < len(wins) and wins[i] - e.time <= window:
            continue
        out.append(e)
    return out


def _order(e: Event) -> tuple[datetime, str]:
    return (e.time, e.key)


def _dense(
    failures: Sequence[Event],
    threshold: int,
    window: timedelta,
    measure: Callable[[Sequence[Event]], int],
) -> list[Event]:
    """Failures that sit in some window of length `window` whose measure reaches `threshold`."""
    hot: set[int] = set()
    lo = 0
    for hi in range(len(failures)):
        while failures[hi].time - failures[lo].time > window:
            lo += 1
        if measure(failures[lo : hi + 1]) >= threshold:
            hot.update(range(lo, hi + 1))
    return [failures[i] for i in sorted(hot)]


def _findings(
    rule: Rule,
    subject: str,
    pool: Sequence[Event],
    hot: Sequence[Event] | None,
    t: Thresholds,
) -> list[Finding]:
    """Group hot events into incidents split by `quiet` gaps; count the pool inside each."""
    marked = list(pool if hot is None else hot)
    if not marked:
        return []
    groups: list[list[Event]] = [[marked[0]]]
    for e in marked[1:]:
        if e.time - groups[-1][-1].time > t.quiet:
            groups.append([e])
        else:
            groups[-1].append(e)
    out = []
    for group in groups:
        first, last = group[0].time, group[-1].time
        inside = [e for e in pool if first <= e.time <= last]
        fails = [e for e in inside if not e.success]
        out.append(
            Finding(
                rule=rule.name,
                severity=rule.severity,
                kind=rule.kind,
                subject=subject,
                first_seen=first,
                last_seen=last,
                failures=len(fails),
                successes=len(inside) - len(fails),
                users=_top(e.user for e in inside),
                ips=_top(e.ip for e in inside),
                targets=_top(e.target for e in inside if e.target),
                hosts=_top(e.host for e in inside if e.host),
            )
        )
    return out


def _top(values: Iterable[str]) -> tuple[str, ...]:
    counts = Counter(values)
    return tuple(v for v, _ in counts.most_common(MAX_LISTED))
