"""Detection planning: which actors new records touch, which minutes and days that can change,
which bucket writes make the stored buckets right, and when nothing can change. Pure code;
`runner` does the reading and writing around it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core import domain
from shared.core.catalog import Thresholds
from shared.core.domain import MINUTE, Bucket, Event, Kind, Mark
from shared.detect import windows
from shared.notify import incidents
from shared.store import keys, layout
from shared.store.entities import EventRow

Op = tuple[str, dict[str, Any], dict[str, Any]]
#: A point where an invocation has decided (or is about to) from rows another invocation may
#: change before it writes: (point, detail). Production passes through at the cost of a call;
#: `tests/reliability/test_interleavings.py` stops there to order two invocations step by step.
Checkpoint = Callable[[str, str], None]


def _go_on(point: str, detail: str) -> None:
    """Production: nothing to wait for."""


checkpoint: Checkpoint = _go_on


@dataclass(frozen=True, order=True)
class Actor:
    kind: Kind
    subject: str


@dataclass
class Touch:
    """The new records of one actor in this invocation (or the span to look at again)."""

    lo: datetime
    hi: datetime
    failures: list[tuple[datetime, str]] = field(default_factory=list)  # (time, ip)
    successes: int = 0
    records: bool = False  # the records themselves (not a span to look at again): see `narrow`


def touched(rows: Iterable[EventRow], allowed: Callable[[str], bool]) -> dict[Actor, Touch]:
    """Actors of the new rows (successes and failures only), with their spans."""
    out: dict[Actor, Touch] = {}
    for row in rows:
        outcome = row["Outcome"]
        if outcome == domain.Outcome.OTHER.value:
            continue
        when: datetime = row["TimeGenerated"]
        ip = row["ClientIpKey"]
        for actor in (Actor(Kind.USER, row["UserKey"]), Actor(Kind.IP, ip)):
            if actor.kind is Kind.USER and not keys.identified(actor.subject):
                continue  # no identity: a pseudo-account, for the per-address rules only
            if not actor.subject or (actor.kind is Kind.IP and allowed(ip)):
                continue
            touch = out.get(actor)
            if touch is None:
                touch = out[actor] = Touch(when, when, records=True)
            touch.lo, touch.hi = min(touch.lo, when), max(touch.hi, when)
            if outcome == domain.Outcome.FAILURE.value:
                touch.failures.append((when, ip))
            else:
                touch.successes += 1
    return out


def relook(
    relooks: Iterable[tuple[str, str, datetime]], allowed: Callable[[str], bool]
) -> list[dict[Actor, Touch]]:
    """The sign-ins that stopped being first sightings (`profiler.Relook`) as rounds of
    actors to look at again (the account and its address, at that minute): one sign-in per
    actor a round, so a look spans minutes, never the days between two of them."""
    rounds: list[dict[Actor, Touch]] = []
    for user, ip, when in sorted(set(relooks), key=lambda r: (r[2], r[0], r[1])):
        for actor in (Actor(Kind.USER, user), Actor(Kind.IP, ip)):
            if not actor.subject or (actor.kind is Kind.IP and allowed(ip)):
                continue
            free = next((r for r in rounds if actor not in r), None)
            if free is None:
                free = {}
                rounds.append(free)
            free[actor] = Touch(when, when, successes=1)
    return rounds


def changed_minutes(actor: Actor, touch: Touch, t: Thresholds) -> tuple[datetime, datetime]:
    """Minutes whose buckets the new records change: theirs, sign-ins up to a window after
    (new failures change what they follow; a sign-in's explained failures, which later sign-ins
    may no longer claim), and with new sign-ins the minutes whose typos or retries they explain."""
    back = t.window if touch.successes else timedelta(0)
    ahead = t.window
    return domain.minute_of(touch.lo - back), domain.minute_of(touch.hi + ahead)


def event_span(
    actor: Actor, lo: datetime, hi: datetime, t: Thresholds
) -> tuple[datetime, datetime]:
    """Events that decide the buckets of minutes [lo, hi]: a window before (is a sign-in
    preceded by a failure?) and a window after (the sign-in that explains a typo or a retried
    password); `windows.build_buckets` is exact given these (a property test checks it)."""
    return lo - t.window, hi + MINUTE + t.window


def narrow(touch: Touch, t: Thresholds) -> tuple[datetime, datetime] | None:
    """New failures only: (the last minute they change, the latest sign-in that would undo
    that). Failures change only the buckets of their own minutes when no sign-in follows
    them within a window (a property test checks it); then the invocation reads the events
    from their first minute on, not a window before it, and rewrites their minutes only. A
    sign-in up to the second value means the full read (`changed_minutes`, `event_span`). A
    campaign's step then reads what it adds, not the attack's history. None: a full read
    (sign-ins, or a span to look at again)."""
    if not touch.records or touch.successes:
        return None
    return domain.minute_of(touch.hi), touch.hi + t.window


def wanted_hours(touch: Touch, t: Thresholds) -> list[str]:
    """Hours whose `fail|<hour>` rows say whether an actor with only sign-ins failed nearby."""
    return hours(touch.lo - t.window, touch.hi)


#: Per hour (`yyyy-MM-ddTHH`): (kind, subject) -> the minutes it failed in (None: any).
Failing = dict[str, dict[tuple[str, str], "set[int] | None"]]


def failed_nearby(actor: Actor, touch: Touch, failing: Failing, t: Thresholds) -> bool:
    """Did an actor with only sign-ins fail within a window before them (or in their
    minutes)? Only such sign-ins are in a bucket (`windows.build_buckets`), so others
    change no incident. A minute more on either side: the rules count whole minutes."""
    lo = domain.minute_of(touch.lo - t.window) - MINUTE
    hi = domain.minute_of(touch.hi) + MINUTE
    for hour in wanted_hours(touch, t):
        minutes = failing.get(hour, {}).get((actor.kind.value, actor.subject), set())
        if minutes is None:
            return True
        start = datetime.fromisoformat(hour).replace(tzinfo=UTC)
        if any(lo <= start + m * MINUTE <= hi for m in minutes):
            return True
    return False


def hours(lo: datetime, hi: datetime) -> list[str]:
    out = []
    hour = lo.replace(minute=0, second=0, microsecond=0)
    while hour <= hi:
        out.append(keys.hour_of(hour.isoformat()))
        hour += timedelta(hours=1)
    return out


@dataclass
class Coverage:
    """Open incidents of the days around some accounts: when each IP had one (its failures then
    are that incident's), which accounts have their own, and the cover rows' versions."""

    ips: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    users: dict[str, list[tuple[datetime, datetime, tuple[str, ...]]]] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed: set[str] = field(default_factory=set)  # IPs looked at again in this invocation

    def claim(self, ip: str) -> bool:
        """True the first time an IP is claimed for a second look (one look per invocation)."""
        with self.lock:
            if ip in self.claimed:
                return False
            self.claimed.add(ip)
            return True

    def add(self, row: dict[str, Any]) -> None:
        if row.get("State") != incidents.OPEN:
            return
        lo = domain.minute_of(layout.utc(row["FirstSeen"]))
        hi = domain.minute_of(layout.utc(row["LastSeen"]))
        if row.get("SubjectKind") == Kind.IP.value:
            self.ips.setdefault(row["Subject"], []).append((lo, hi))
        else:
            ips = tuple(incidents.names(row, "ClientIps"))
            self.users.setdefault(row["Subject"], []).append((lo, hi, ips))

    def replace_with(self, fresh: Coverage) -> None:
        with self.lock:
            self.ips, self.users, self.versions = fresh.ips, fresh.users, fresh.versions

    def covers(self, ip: str, minute: datetime) -> bool:
        return any(lo <= minute <= hi for lo, hi in self.ips.get(ip, ()))

    def has_own(self, user: str, lo: datetime, hi: datetime) -> bool:
        return any(a <= hi and lo <= b for a, b, _ in self.users.get(user, ()))

    def accounts_of(self, ip: str) -> dict[str, tuple[datetime, datetime]]:
        """Accounts whose own incidents list this IP and overlap its incidents."""
        out: dict[str, tuple[datetime, datetime]] = {}
        for user, spans in self.users.items():
            for a, b, ips in spans:
                if ip in ips and any(lo <= b and a <= hi for lo, hi in self.ips.get(ip, ())):
                    out[user] = (a, b)
        return out


@dataclass
class Stored:
    """An actor's stored bucket rows (with ETags), buckets and marks."""

    rows: dict[datetime, Any] = field(default_factory=dict)
    buckets: list[Bucket] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    def merge(self, other: Stored) -> None:
        self.rows.update(other.rows)
        self.buckets = sorted([*self.buckets, *other.buckets], key=lambda b: b.minute)
        self.marks += other.marks

    def add(self, row: Any, actor: Actor) -> None:
        if layout.is_mark(row):
            self.marks.append(layout.mark_from(row, actor.subject))
            return
        bucket = layout.bucket_from(row)
        self.rows[bucket.minute] = row
        if not bucket.empty:
            self.buckets.append(bucket)


def bucket_writes(
    actor: Actor, lo: datetime, hi: datetime, fresh: dict[datetime, Bucket], stored: Stored
) -> list[Op]:
    """ETag-guarded writes that turn the stored buckets of [lo, hi] into `fresh`: a writer that
    read older events cannot overwrite one that read newer ones."""
    ops: list[Op] = []
    for minute, bucket in fresh.items():
        entity = layout.bucket_entity(actor.kind, actor.subject, bucket)
        old = stored.rows.get(minute)
        if old is None:
            ops.append(("create", entity, {}))
        elif not _same(old, entity):
            ops.append(("update", entity, {"etag": old.metadata["etag"]}))
    for minute, old in stored.rows.items():
        if lo <= minute <= hi and minute not in fresh:
            key = {"PartitionKey": old["PartitionKey"], "RowKey": old["RowKey"]}
            ops.append(("delete", key, {"etag": old.metadata["etag"]}))
    return ops


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if set(old) != set(new):
        return False
    for k, v in new.items():
        w = old[k]
        if isinstance(v, datetime):
            if layout.utc(w) != v:
                return False
        elif w != v:
            return False
    return True


def may_change(
    actor: Actor, touch: Touch, events: Sequence[Event], coverage: Coverage, t: Thresholds
) -> bool:
    """Could this account's incidents change? Not when every new failure belongs to an IP
    incident, no sign-in follows and it has no incident of its own nearby: the common case
    in a campaign against many accounts."""
    if touch.successes or any(e.success and e.time >= touch.lo for e in events):
        return True
    reach = t.reach + t.linger
    if coverage.has_own(actor.subject, touch.lo - reach, touch.hi + reach):
        return True
    return not all(coverage.covers(ip, domain.minute_of(when)) for when, ip in touch.failures)


def quiet(
    actor: Actor,
    around: Stored,
    fresh: dict[datetime, Bucket],
    span: tuple[datetime, datetime],
    touch: Touch,
    coverage: Coverage | None,
    t: Thresholds,
) -> bool:
    """No changed minute is hot, before or after: then no incident can change (hotness only
    spreads through windows that hold a hot changed minute). Exact, because a minute's hotness
    depends on `reach` around it only, and that much was read."""
    lo, hi = span
    if around.marks:
        return False
    if coverage is not None and coverage.has_own(
        actor.subject, touch.lo - t.reach - t.linger, touch.hi + t.reach
    ):
        return False  # its own incident may be folded or withdrawn: look at the day
    before = sorted(around.buckets, key=lambda b: b.minute)
    after = sorted([b for b in before if not lo <= b.minute <= hi] + list(fresh.values()),
                   key=lambda b: b.minute)  # fmt: skip
    return not (_hot_in(actor, before, span, coverage, t) or
                _hot_in(actor, after, span, coverage, t))  # fmt: skip


def _hot_in(
    actor: Actor,
    buckets: list[Bucket],
    span: tuple[datetime, datetime],
    coverage: Coverage | None,
    t: Thresholds,
) -> bool:
    if actor.kind is Kind.USER:
        assert coverage is not None
        _, marks, hot = windows.fold_user(actor.subject, buckets, t, coverage.covers)
        if marks:
            return True
    else:
        hot = windows.hot_rules(actor.kind, buckets, t)
    return any(span[0] <= buckets[i].minute <= span[1] for i in hot)


def sources_to_recheck(
    own: Sequence[Bucket], hot: dict[int, set[str]], coverage: Coverage
) -> dict[str, tuple[datetime, datetime]]:
    """Uncovered addresses that sent an account's hot failures (two or more in a minute), with
    the minutes: before the account gets an incident of its own, look at them again."""
    sources: dict[str, tuple[datetime, datetime]] = {}
    for i in hot:
        b = own[i]
        for ip, n in b.ips:
            if n >= 2 and not coverage.covers(ip, b.minute):
                lo, hi = sources.get(ip, (b.minute, b.minute))
                sources[ip] = (min(lo, b.minute), max(hi, b.minute))
    return sources


def batches(deferred: dict[Actor, list[Op]]) -> list[tuple[list[Actor], list[Op]]]:
    """Many accounts' bucket writes grouped into transactions (one partition, <= 100 ops), an
    account's writes never split (so a lost race names the accounts to redo)."""
    out: list[tuple[list[Actor], list[Op]]] = []
    open_batch: dict[str, tuple[list[Actor], list[Op]]] = {}
    for actor, ops in deferred.items():
        pk = ops[0][1]["PartitionKey"]
        if len(ops) > 100 or any(op[1]["PartitionKey"] != pk for op in ops):
            out.append(([actor], ops))  # rare: written in its own transactions
            continue
        current = open_batch.get(pk)
        if current is None or len(current[1]) + len(ops) > 100:
            current = open_batch[pk] = ([], [])
            out.append(current)
        current[0].append(actor)
        current[1].extend(ops)
    return out


def digest(subject: str) -> str:
    """A subject in logs: never its text (record content), only a short digest."""
    return keys.blob_key("subject", subject)[:12]
