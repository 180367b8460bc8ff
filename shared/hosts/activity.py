"""When is a Bastion host silent? Its own history says. Pure code.

Bastion writes audit records only when someone connects, so "no record for N hours" is a
normal night. Instead, each UTC hour in which a host wrote records is remembered; for an hour
with no record, the host's history gives the chance it would have had some: the share of the
same hour of the day, on the past days of the same kind (Monday to Friday, or the weekend),
on which it did. A host is *silent* when the hours since its last record add up to at least
`hours` expected busy hours (three hours in which it is always busy, or six in which it is
busy half the time). An hour it is busy on fewer than half of those days counts for nothing:
sparse weekend or night traffic says little, and seventeen empty hours of a quiet Sunday at a
third each are no outage. An earlier outage is not the host's habit: past hours inside an
earlier silence (by the same rule) are left out of the history, so a second outage at the
same hours of the week is found like the first. A host whose first record is less than
`arm` ago is still learning.

Only hours that ended an hour before `now` count (a record of 10:59 may land in the 11:00
blob), and only what was known at `now`, so the answer at a given time is the same whatever
order the records arrived in.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Days of history that say how busy an hour usually is.
HISTORY_DAYS = 14
#: Fewest past days of the same kind an hour needs before its share counts.
MIN_DAYS = 2
#: Least share of days with records for an hour to count as one the host is usually busy in.
USUAL = 0.5


@dataclass(frozen=True)
class Silence:
    since: datetime  # the first hour with no record
    until: datetime  # the last hour looked at (two hours before `now`'s)
    expected: float  # busy hours the history expected in between

    @property
    def hours(self) -> int:
        return int((self.until - self.since) / HOUR) + 1


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def busy_share(
    active: Collection[datetime],
    hour: datetime,
    first: datetime,
    outages: Collection[datetime] = (),
) -> float:
    """The share of past days of the same kind on which the host had records in this hour
    (days on which that hour was part of an outage left out)."""
    weekend = hour.weekday() >= 5
    days = seen = 0
    for back in range(1, HISTORY_DAYS + 1):
        past = hour - back * DAY
        if past < first:
            break
        if (past.weekday() >= 5) != weekend or past in outages:
            continue
        days += 1
        seen += past in active
    return seen / days if days >= MIN_DAYS else 0.0


def expected(
    active: Collection[datetime],
    hours: Sequence[datetime],
    first: datetime,
    outages: Collection[datetime] = (),
) -> float:
    """Busy hours the history expected among these empty hours (usual hours only)."""
    shares = (busy_share(active, h, first, outages) for h in hours)
    return sum(s for s in shares if s >= USUAL)


def outages(
    active: Collection[datetime], lo: datetime, hi: datetime, first: datetime, hours: int
) -> set[datetime]:
    """Hours in [lo, hi) inside an earlier silence: a run of empty hours between two with
    records that the plain history calls one."""
    out: set[datetime] = set()
    run: list[datetime] = []
    hour = max(lo, first)
    while hour < hi:
        if hour in active:
            if run and expected(active, run, first) >= hours:
                out.update(run)
            run = []
        else:
            run.append(hour)
        hour += HOUR
    return out


def silence(
    active: Collection[datetime], now: datetime, arm: timedelta, hours: int
) -> Silence | None:
    """The host's current silence, if its history says it is one."""
    current = hour_of(now) - HOUR  # this hour and the last may still get records
    known = {h for h in active if h < current}
    if not known:
        return None
    first, last = min(known), max(known)
    if current - first < arm:
        return None
    gap, hour = [], last + HOUR
    while hour < current:
        gap.append(hour)
        hour += HOUR
    if not gap:
        return None
    past = outages(known, gap[0] - HISTORY_DAYS * DAY, last, first, hours)
    found = expected(known, gap, first, past)
    if found < hours:
        return None
    return Silence(gap[0], gap[-1], round(found, 2))
