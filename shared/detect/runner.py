"""Detection for one invocation: read what the planning needs, write what it decided, notify.
The deciding is pure (`shared.detect.planning`, `shared.detect.windows`, `shared.notify.incidents`).

Order of work, so an account attacked from an address is that address's incident:
1. every touched IP: rebuild its buckets for the minutes the new records change, re-derive its
   incidents for the days those minutes can affect, write them, notify;
2. read which IPs have open incidents (the *coverage*), then every touched account: the same,
   counting as its own only failures no IP incident covers; a sign-in after an attack from a
   covered IP becomes a mark on that IP's incident. Accounts whose stored incidents a changed
   IP incident now covers are re-derived too;
3. IPs that received marks: re-derive their incidents.

Concurrency: bucket and incident writes are ETag-guarded (a writer that read older events loses
and looks again); every change of an IP's incidents also rewrites the day's *cover* row, and an
account that wrote incidents checks afterwards that no cover row changed since it read the
coverage, and looks again at the addresses of its failures before it gets an incident of its
own, so two invocations each holding half an attack end as one serial run would.

Each actor fails alone: a non-transient error is logged and the actor is queued for the retry
timer; a storage fault that a retry can cure is raised, so the host retries the invocation
(every write here is idempotent or guarded, so the retry doubles nothing).
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.baselines import agents, habits
from shared.baselines.profiler import Profiler
from shared.core import domain
from shared.core.catalog import Thresholds
from shared.core.domain import MINUTE, Bucket, Event, Kind, Mark
from shared.core.settings import IPNetwork
from shared.detect import planning, windows
from shared.detect.planning import Actor, Coverage, Op, Stored, Touch
from shared.hosts.health import Health
from shared.notify import incidents
from shared.notify.delivery import Deliverer
from shared.respond.ending import Responder
from shared.store import keys, layout
from shared.store.entities import EventRow
from shared.store.tables import Busy, Conflict, Storage, transient

log = logging.getLogger(__name__)
_SELECT_EVENT = [
    "TimeGenerated",
    "UserKey",
    "ClientIpKey",
    "Outcome",
    "TargetVMName",
    "BastionHostName",
    "UserAgent",
]
_COVER_SELECT = ["PartitionKey", "RowKey", "Subject", "SubjectKind", "FirstSeen", "LastSeen",
                 "State", "ClientIps"]  # fmt: skip
_ATTEMPTS = 8
#: An actor's head row ETag per day, read before anything it decides from (None: no row yet).
Heads = dict[str, str | None]
#: A notice an actor's decision owes: the incident row's day, row key and incident id.
Debt = tuple[str, str, str]


@dataclass
class Result:
    """What one actor's evaluation did: marks for IPs, and (for an account whose incidents
    cannot change) bucket writes left to be batched with others'."""

    marks: list[Mark] = field(default_factory=list)
    writes: list[Op] = field(default_factory=list)
    owed: list[Debt] = field(default_factory=list)  # notices it decided, to be sent


@dataclass(frozen=True)
class Task:
    """One actor's evaluation in one invocation: what it looks at, and what it has told."""

    actor: Actor
    touch: Touch
    now: datetime
    coverage: Coverage | None  # accounts: the open IP incidents they decide from
    rebuild: bool  # rebuild the touched minutes from the events (else decide from stored)
    told: list[str]  # incident ids notified, as they go


@dataclass
class Rebuilt:
    """An actor's minutes rebuilt from its events: [lo, hi], of which [lo, until] are written,
    their stored rows (`wide`: and `reach` around [lo, hi]), the events read and the fresh
    buckets."""

    lo: datetime
    hi: datetime
    until: datetime
    around: Stored
    events: list[Event]
    fresh: dict[datetime, Bucket]
    wide: bool


@dataclass
class Outcome:
    notified: list[str] = field(default_factory=list)  # AlertIds of incidents told about
    failed: list[Actor] = field(default_factory=list)  # actors queued for the retry timer


class CoverageChanged(Conflict):
    """An IP incident changed while an account was deciding from the coverage it had read."""


class Unpaid(Conflict):
    """A conflict after some of an actor's days were written: the notices they owe. The
    attempt that decides again finds them decided already and owes nothing, so it must pay
    these (else they wait for the redelivery timer)."""

    def __init__(self, cause: Conflict, owed: list[Debt]) -> None:
        super().__init__(str(cause))
        self.cause, self.owed = cause, owed


def build(storage: Storage) -> Detector:
    """The worker's detector, from its settings: thresholds, allow-list, a delivery session
    and the thread pool that evaluates actors side by side."""
    s = storage.settings
    return Detector(
        storage,
        s.thresholds,
        timedelta(minutes=s.notify_interval_minutes),
        lambda ip: allowed(ip, s.ip_allowlist),
        Deliverer(storage),
        ThreadPoolExecutor(s.write_concurrency, "detect"),
    )


def allowed(ip: str, networks: Sequence[IPNetwork]) -> bool:
    """Is the address in the allow-list (its failures count for no IP incident)?"""
    if not networks:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in networks)


class ActorRows:
    """An actor's rows in the index table: its minute buckets and marks, its events, the
    versions of its head rows; and bucket writes, guarded, in transactions."""

    def __init__(self, storage: Storage, thresholds: Thresholds, pool: ThreadPoolExecutor) -> None:
        self.storage, self.t, self.pool = storage, thresholds, pool

    def read_buckets(self, actor: Actor, lo: datetime, hi: datetime) -> Stored:
        """The actor's bucket rows (with ETags) and marks of the minutes [lo, hi]."""
        out = Stored()
        for day in layout.days_between(lo, hi):
            start = datetime.fromisoformat(day).replace(tzinfo=UTC)
            first, last = max(lo, start), min(hi, start + timedelta(days=1) - MINUTE)
            pk, low, high = layout.minute_range(actor.kind, actor.subject, first, last)
            for row in self.storage.index.seek({"pk": pk, "lo": low, "hi": high}):
                out.add(row, actor)
        return out

    def read_bucket(self, actor: Actor, minute: datetime) -> Stored:
        """One bucket row of an actor (the cheapest read a table has, in Azure and Azurite)."""
        out = Stored()
        row = self.storage.index.get(*layout.bucket_key(actor.kind, actor.subject, minute))
        if row is not None:
            out.add(row, actor)
        return out

    def read_days(self, actor: Actor, days: Sequence[str], fresh: dict[datetime, Bucket]) -> Stored:
        """Whole days of an actor's buckets, plus the neighbouring days' edges when a bucket
        within `reach` of midnight makes hotness there depend on them."""
        first = datetime.fromisoformat(days[0]).replace(tzinfo=UTC)
        last = datetime.fromisoformat(days[-1]).replace(tzinfo=UTC) + timedelta(days=1)
        out = self.read_buckets(actor, first, last - MINUTE)
        minutes = [b.minute for b in out.buckets] + list(fresh)
        reach = self.t.reach
        if minutes and min(minutes) < first + reach:
            out.merge(self.read_buckets(actor, first - reach, first - MINUTE))
        if minutes and max(minutes) >= last - reach:
            out.merge(self.read_buckets(actor, last, last + reach))
        return out

    def read_events(self, actor: Actor, lo: datetime, hi: datetime) -> list[Event]:
        """The actor's successes and failures in [lo, hi) (index for an IP, events for a user)."""
        if actor.kind is Kind.IP:
            rows: Iterator[Any] = (
                row
                for day in layout.days_between(lo, hi)
                for row in self.storage.index.seek(
                    layout.index_seek(layout.IP_PREFIX, actor.subject, day, lo, hi),
                    select=["EventRowKey", *_SELECT_EVENT],
                )
            )
        else:
            first, last = keys.hour_of(lo.isoformat()), keys.hour_of(hi.isoformat())
            plo, phi = keys.hour_range(actor.subject, first, last)
            rows = self.storage.events.query(
                "PartitionKey ge @plo and PartitionKey lt @phi and RowKey ge @lo and RowKey lt @hi",
                {"plo": plo, "phi": phi, "lo": layout.time_key(lo), "hi": layout.time_key(hi)},
                select=["RowKey", *_SELECT_EVENT],
            )
        return [_event(row) for row in rows if row["Outcome"] != domain.Outcome.OTHER.value]

    def heads(self, actor: Actor, days: Sequence[str]) -> Heads:
        """The ETags of the actor's head rows of these days (None: no row yet)."""
        heads = {d: _etag(self.storage.alerts.get(*layout.head_key(actor.kind, actor.subject, d)))
                 for d in days}  # fmt: skip
        planning.checkpoint("decide", actor.kind.value)  # what it decides from is read next
        return heads

    def write_buckets(self, writes: list[Op]) -> None:
        by_partition: dict[str, list[Op]] = {}
        for op in writes:
            by_partition.setdefault(op[1]["PartitionKey"], []).append(op)
        for ops in by_partition.values():
            for i in range(0, len(ops), 100):
                self.storage.index.transact(ops[i : i + 100])

    def write_batched(self, deferred: dict[Actor, list[Op]]) -> list[Actor]:
        """Many accounts' guarded bucket writes in few transactions; returns the accounts whose
        transaction lost a race (their writes did not happen)."""

        def write(batch: tuple[list[Actor], list[Op]]) -> list[Actor]:
            try:
                self.write_buckets(batch[1])
            except Conflict:
                return batch[0]
            return []

        batches = planning.batches(deferred)
        return [actor for lost in self.pool.map(write, batches) for actor in lost]


class CoverReader:
    """What the open IP incidents of some days cover (accounts decide from it), read once per
    invocation, read again when it moved, and marked changed when an IP incident changes."""

    def __init__(self, storage: Storage, thresholds: Thresholds) -> None:
        self.storage, self.t = storage, thresholds

    def read(self, touches: Iterable[Touch]) -> Coverage:
        """Open incidents of the days around these records (one read per day)."""
        planning.checkpoint("coverage", "")
        days: set[str] = set()
        span = self.t.reach + self.t.linger + timedelta(days=1)
        for touch in touches:
            days.update(layout.days_between(touch.lo - span, touch.hi + span))
        cover = Coverage()
        self._read(cover, days)
        return cover

    def _read(self, cover: Coverage, days: Iterable[str]) -> None:
        """The days' incidents and cover versions: one query per run of consecutive days."""
        for first, last in layout.day_runs(days):
            versions: dict[str, str | None] = dict.fromkeys(layout.days_from(first, last))
            span = layout.day_partitions(first, last)
            for row in self.storage.alerts.query(layout.PK_RANGE, span, select=_COVER_SELECT):
                if row["PartitionKey"] not in versions:
                    continue
                if row["RowKey"] == layout.COVER:
                    versions[row["PartitionKey"]] = row.metadata["etag"]
                elif "FirstSeen" in row:
                    cover.add(row)
            cover.versions.update(versions)

    def refresh(self, cover: Coverage) -> None:
        fresh = Coverage()
        self._read(fresh, cover.versions)
        cover.replace_with(fresh)

    def moved(self, cover: Coverage) -> bool:
        """Did an IP incident change since `cover` was read? (Then decide again.)"""
        for day, version in list(cover.versions.items()):
            row = self.storage.alerts.get(day, layout.COVER)
            if (row.metadata["etag"] if row is not None else None) != version:
                return True
        return False

    def touch(self, bumped: set[str], found: Sequence[domain.Incident]) -> None:
        """An IP incident that runs past midnight covers the next day too: mark it changed."""
        spanned = {d for inc in found for d in layout.days_between(inc.first_seen, inc.last_seen)}
        for day in sorted(spanned - bumped):
            self.storage.alerts.put({"PartitionKey": day, "RowKey": layout.COVER})


class Evaluation:
    """One actor at a time: read its rows, rebuild the minutes that changed, decide its
    incidents, write them under its head rows' ETags, and send what they owe."""

    def __init__(
        self,
        storage: Storage,
        thresholds: Thresholds,
        notify_interval: timedelta,
        parts: tuple[ActorRows, CoverReader, Deliverer, Profiler, Responder],
    ) -> None:
        self.storage, self.t, self.interval = storage, thresholds, notify_interval
        self.rows, self.cover, self.deliverer, self.profiler, self.responder = parts
        self.trusted = storage.settings.trusted_networks

    def actor(self, task: Task) -> Result:
        debts: list[Debt] = []
        for attempt in range(_ATTEMPTS):
            try:
                result = self._actor_once(task, None)
            except Conflict as exc:
                if isinstance(exc, Unpaid):
                    debts += exc.owed
                    exc = exc.cause
                if isinstance(exc, CoverageChanged):
                    assert task.coverage is not None
                    self.cover.refresh(task.coverage)
                else:  # another invocation changed this actor's rows: look again, a little later
                    time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
                continue
            self._pay([*debts, *result.owed], task.told)
            return result
        self._pay(debts, task.told)
        raise Busy(f"{task.actor.kind.value} rows kept changing; the host retries")

    def _pay(self, owed: Sequence[Debt], told: list[str]) -> None:
        """Send what the actor's decisions owe, each incident once (a debt of an attempt that
        met a conflict may be owed again by the next one, or be gone: decided away unsent)."""
        for day, rk, alert_id in dict.fromkeys(owed):
            if alert_id in told:
                continue
            row = self.deliverer.owing(day, rk, alert_id)
            if row is not None:
                told.append(alert_id)
                self.deliverer.deliver(row)
                self.responder.respond(row)  # after the alert: never delays it

    def _actor_once(self, task: Task, heads: Heads | None) -> Result:
        """Decide and write. Incidents are decided only from rows read after the actor's head
        rows (`heads`), whose ETags then guard the write: an invocation that settled in between
        makes this one decide again, so a stale view never overwrites a newer one."""
        t, actor, touch, coverage, rebuild = (
            self.t,
            task.actor,
            task.touch,
            task.coverage,
            task.rebuild,
        )
        lo, hi = planning.changed_minutes(actor, touch, t)
        days = layout.days_between(lo - t.reach, hi + t.reach)  # whose incidents can change
        if heads is None and not rebuild:
            heads = self.rows.heads(actor, days)
        fresh: dict[datetime, Bucket] = {}
        writes: list[Op] = []
        if rebuild:
            read = self._rebuild(task, lo, hi)
            around, events, fresh = read.around, read.events, read.fresh
            mine = {m: b for m, b in fresh.items() if m <= read.until}
            writes = planning.bucket_writes(actor, lo, read.until, mine, around)
            if not touch.failures and not writes:
                return Result()  # sign-ins no rule looks at
            if actor.kind is Kind.USER:
                assert coverage is not None
                if not planning.may_change(actor, touch, events, coverage, t):
                    return Result(writes=writes)  # written with other accounts' in batches
            if not read.wide:  # whether a rebuilt minute is hot depends on `reach` around it
                around.merge(self.rows.read_buckets(actor, lo - t.reach, lo - MINUTE))
                around.merge(self.rows.read_buckets(actor, read.until + MINUTE, hi + t.reach))
            if planning.quiet(actor, around, fresh, (lo, hi), touch, coverage, t):
                return Result(writes=writes)  # a typo, say: no incident can change
            if heads is None:  # hot: read the heads, then everything it decides from again
                again = self.rows.heads(actor, days)
                return self._actor_once(task, again)
        assert heads is not None
        stored = self.rows.read_days(actor, days, fresh)
        buckets = {b.minute: b for b in stored.buckets if not (rebuild and lo <= b.minute <= hi)}
        buckets.update(fresh)
        ordered = [buckets[m] for m in sorted(buckets)]
        found, new_marks = self._incidents(task, ordered, stored.marks)
        writes += [("upsert", layout.mark_entity(m), {}) for m in new_marks]
        self.rows.write_buckets(writes)
        return Result(new_marks, owed=self._settle_days(task, heads, found))

    def _rebuild(self, task: Task, lo: datetime, hi: datetime) -> Rebuilt:
        """Bucket ETags are read before the events: a writer that read older events than a
        concurrent one then fails its guarded write instead of overwriting. The buckets of
        [lo, hi] are rebuilt from the events (another invocation's later records in the
        window count even before it writes their buckets). New failures that no sign-in
        follows (`planning.narrow`) need no events before `lo` and change their own minutes
        only; otherwise the read reaches a window before and `reach` around [lo, hi]."""
        t, actor = self.t, task.actor
        narrow = planning.narrow(task.touch, t)
        span = planning.event_span(actor, lo, hi, t)
        if narrow is not None:
            last, until = narrow
            wide = actor.kind is Kind.IP  # always judged with `reach` around: one read
            if wide:
                around = self.rows.read_buckets(actor, lo - t.reach, hi + t.reach)
            elif lo == last:  # an account's one minute (no marks): a point read
                around = self.rows.read_bucket(actor, lo)
            else:
                around = self.rows.read_buckets(actor, lo, last)
            events = self.rows.read_events(actor, lo, span[1])
            if not any(e.success and e.time <= until for e in events):
                built = windows.build_buckets(
                    actor.kind, events, t, lo, hi, known_sign_ins(self.profiler, self.trusted)
                )
                return Rebuilt(lo, hi, last, around, events, {b.minute: b for b in built}, wide)
        around = self.rows.read_buckets(actor, lo - t.reach, hi + t.reach)
        events = self.rows.read_events(actor, *span)
        built = windows.build_buckets(
            actor.kind, events, t, lo, hi, known_sign_ins(self.profiler, self.trusted)
        )
        return Rebuilt(lo, hi, hi, around, events, {b.minute: b for b in built}, True)

    def _incidents(
        self, task: Task, ordered: list[Bucket], marks: list[Mark]
    ) -> tuple[list[domain.Incident], list[Mark]]:
        """The actor's incidents from its buckets (an account: only what no IP covers)."""
        t, actor, coverage = self.t, task.actor, task.coverage
        if actor.kind is Kind.IP:
            hot = windows.hot_rules(actor.kind, ordered, t)
            found = windows.incidents(actor.kind, actor.subject, ordered, hot, t, marks)
            run = windows.evaluator(actor.kind, actor.subject, t, marks)
            return windows.with_steps(found, ordered, run), []
        assert coverage is not None
        own, new_marks, hot = windows.fold_user(actor.subject, ordered, t, coverage.covers)
        if hot and self._recheck_sources(task, own, hot):
            own, new_marks, hot = windows.fold_user(actor.subject, ordered, t, coverage.covers)
        found = windows.incidents(actor.kind, actor.subject, own, hot, t)
        run = windows.evaluator(actor.kind, actor.subject, t, covered=coverage.covers)
        return windows.with_steps(found, ordered, run, own), new_marks

    def _settle_days(self, task: Task, heads: Heads, found: list[domain.Incident]) -> list[Debt]:
        """Write the incidents of each day and check the coverage held; returns the notices
        they owe (a conflict on a later day carries those of the days written before it)."""
        actor, coverage = task.actor, task.coverage
        bumped: set[str] = set()
        owed: list[Debt] = []
        try:
            for day, version in heads.items():
                mine = [i for i in found if layout.day_of(i.first_seen) == day]
                if self._settle(actor, (day, version), mine, task.now, owed):
                    bumped.add(day)
            if bumped and actor.kind is Kind.IP:
                self.cover.touch(bumped, found)
            if bumped and coverage is not None and self.cover.moved(coverage):
                # Decided from coverage that has changed since: decide again before telling
                # anyone (an incident nobody was told about is deleted if it should not exist).
                raise CoverageChanged(actor.kind.value)
        except Conflict as exc:
            if owed:
                raise Unpaid(exc, owed) from exc
            raise
        return owed

    def _recheck_sources(self, task: Task, own: Sequence[Bucket], hot: dict[int, set[str]]) -> bool:
        """Before an account gets an incident of its own, look again at the addresses its hot
        failures came from (each once per invocation): another invocation may have stored the
        rest of their attack after this one evaluated them. True if any was looked at."""
        coverage = task.coverage
        assert coverage is not None
        sources = planning.sources_to_recheck(own, hot, coverage)
        fresh = [ip for ip in sorted(sources) if coverage.claim(ip)]
        for ip in fresh:
            lo, hi = sources[ip]
            touch = Touch(lo, hi + MINUTE - timedelta(microseconds=1), failures=[(lo, ip)])
            try:
                self.actor(Task(Actor(Kind.IP, ip), touch, task.now, None, True, task.told))
            except Exception as exc:  # that IP's own evaluation reports and queues its failure
                if transient(exc):
                    raise
                log.warning("second look at an address failed: %s", type(exc).__name__)
        if fresh:
            self.cover.refresh(coverage)
        return bool(fresh)

    def _settle(
        self,
        actor: Actor,
        head_seen: tuple[str, str | None],
        found: list[domain.Incident],
        now: datetime,
        owed: list[Debt],
    ) -> bool:
        """Make the stored incidents of an actor's day match `found`, if its head row is still
        the version read before deciding (else `Conflict`); what is now owed a notification
        goes to `owed` as (day, RowKey, AlertId). Returns whether it wrote."""
        planning.checkpoint("settle", actor.kind.value)
        day = head_seen[0]
        prefix = layout.actor_prefix(actor.kind, actor.subject)
        rows = list(self.storage.alerts.seek({"pk": day, "lo": prefix, "hi": prefix + "~~"}))
        head_key = layout.head_key(actor.kind, actor.subject, day)
        head = next((r for r in rows if r["RowKey"] == head_key[1]), None)
        stored = [r for r in rows if r is not head and "FirstSeen" in r]
        plan = incidents.plan(found, stored, head, head_key, now, self.interval)
        if not plan.ops:
            return False
        if _etag(head) != head_seen[1]:
            raise Conflict("another invocation settled this actor's day since it decided")
        ops = list(plan.ops)
        if actor.kind is Kind.IP:  # the day's coverage changes with it, atomically
            ops.append(("upsert", {"PartitionKey": day, "RowKey": layout.COVER}, {}))
        self.storage.alerts.transact(ops)
        owed.extend((day, rk, alert_id) for rk, alert_id in plan.notify)
        return True


class RetryQueue:
    """Actors whose detection failed alone, kept in the state table for the retry timer."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def queue(self, actor: Actor, touch: Touch) -> None:
        try:
            self.storage.state.put(
                {
                    "PartitionKey": layout.RETRY_PARTITION,
                    "RowKey": f"{actor.kind.value}|{keys.encode(actor.subject)}",
                    "Kind": actor.kind.value,
                    "Subject": actor.subject[: incidents.MAX_SUBJECT],
                    "Lo": touch.lo,
                    "Hi": touch.hi,
                }
            )
        except Exception:
            log.exception("could not queue the detection retry")


class Detector:
    """Runs detection for the records one invocation stored; one per worker process. The
    parts it wires side by side: the actors' rows, the coverage, the evaluation of one actor,
    the retry queue, the baselines (`profiler`), the host checks (`health`) and delivery."""

    def __init__(
        self,
        storage: Storage,
        thresholds: Thresholds,
        notify_interval: timedelta,
        allowed: Callable[[str], bool],
        deliverer: Deliverer,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.storage = storage
        self.t = thresholds
        self.allowed = allowed
        self.deliverer = deliverer
        self.pool = pool
        arm = timedelta(days=storage.settings.baseline_days)
        self.profiler = Profiler(storage, thresholds, arm, notify_interval, deliverer, pool)
        self.health = Health(storage, deliverer)
        self.responder = Responder(storage, deliverer)
        self.rows = ActorRows(storage, thresholds, pool)
        self.cover = CoverReader(storage, thresholds)
        parts = (self.rows, self.cover, deliverer, self.profiler, self.responder)
        self.evaluation = Evaluation(storage, thresholds, notify_interval, parts)
        self.retries = RetryQueue(storage)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.deliverer.session.close()

    def run(
        self,
        rows: Sequence[EventRow],
        now: datetime | None = None,
        out: Outcome | None = None,
    ) -> Outcome:
        """Detect over the records one invocation stored. `out` receives what was notified as
        it happens, so a later fault (the host retries) cannot hide what people were told."""
        now = now or datetime.now(UTC)
        out = out if out is not None else Outcome()
        # Baselines first: detection asks them whether a sign-in after failures is usual.
        relooks = self.profiler.run(rows, now, out.notified)
        for actors in [
            planning.touched(rows, self.allowed),
            *planning.relook(relooks, self.allowed),
        ]:
            wanted = self._wanted(actors)
            self._detect({a: actors[a] for a in sorted(wanted)}, now, out)
        self.health.record(rows)
        return out

    def _detect(self, actors: dict[Actor, Touch], now: datetime, out: Outcome) -> None:
        """IPs first, then accounts (counting what IP incidents do not cover), then IPs again
        where an account's compromise was folded into them."""
        ips = {a: t for a, t in actors.items() if a.kind is Kind.IP}
        users = {a: t for a, t in actors.items() if a.kind is Kind.USER}
        marks: dict[str, list[Mark]] = {}
        self._phase(ips, now, out, marks, rebuild=True)
        if users or ips:
            coverage = self.cover.read([*users.values(), *ips.values()])
            self._phase(users, now, out, marks, rebuild=True, coverage=coverage)
            again: dict[Actor, Touch] = {}
            for ip in ips:  # accounts whose own incidents a changed IP incident now covers
                for user, (lo, hi) in coverage.accounts_of(ip.subject).items():
                    actor = Actor(Kind.USER, user)
                    if actor not in users:
                        again[actor] = Touch(lo, hi)
            self._phase(again, now, out, marks, rebuild=False, coverage=coverage)
        if marks:  # compromises folded into IP incidents: re-derive those incidents
            marked = {
                Actor(Kind.IP, ip): Touch(min(m.time for m in ms), max(m.time for m in ms))
                for ip, ms in marks.items()
            }
            self._phase(marked, now, out, {}, rebuild=False)

    def _wanted(self, actors: dict[Actor, Touch]) -> set[Actor]:
        """Actors whose new records can change an incident: they failed now, or failed nearby."""
        wanted = {a for a, touch in actors.items() if touch.failures}
        rest = {a for a in actors if a not in wanted}
        if rest:
            spans = {a: planning.wanted_hours(actors[a], self.t) for a in rest}
            failing = self._failing({h for hours in spans.values() for h in hours})
            wanted |= {a for a in rest if planning.failed_nearby(a, actors[a], failing, self.t)}
        return wanted

    def _failing(self, hours: Iterable[str]) -> planning.Failing:
        """Per hour, the (kind, subject) pairs that failed in it and in which minutes (one
        read per hour)."""
        return {
            hour: {
                (row["Kind"], row["Subject"]): layout.failed_minutes(row)
                for row in self.storage.index.partition(layout.FAIL_PREFIX + hour)
            }
            for hour in sorted(hours)
        }

    def _phase(
        self,
        actors: dict[Actor, Touch],
        now: datetime,
        out: Outcome,
        marks: dict[str, list[Mark]],
        rebuild: bool,
        coverage: Coverage | None = None,
    ) -> None:
        """Evaluate actors of one kind in parallel; each one fails alone."""
        if not actors:
            return
        told: dict[Actor, list[str]] = {a: [] for a in actors}  # filled as notifications go

        def work(actor: Actor) -> Callable[[], Result]:
            task = Task(actor, actors[actor], now, coverage, rebuild, told[actor])
            return lambda: self.evaluation.actor(task)

        jobs = {a: self.pool.submit(work(a)) for a in actors}
        deferred: dict[Actor, list[Op]] = {}
        try:
            for actor, job in jobs.items():
                result = self._isolated(actor, actors[actor], job.result, out)
                if result is not None:
                    _collect(result, marks)
                    if result.writes:
                        deferred[actor] = result.writes
            for actor in self.rows.write_batched(deferred):  # lost a race: do those alone
                again = self._isolated(actor, actors[actor], work(actor), out)
                if again is not None:
                    self.rows.write_buckets(again.writes)
                    _collect(again, marks)
        finally:
            for job in jobs.values():
                job.exception()  # every job has ended before its notifications are read
            for names in told.values():
                out.notified.extend(names)

    def _isolated(
        self, actor: Actor, touch: Touch, work: Callable[[], Result], out: Outcome
    ) -> Result | None:
        try:
            return work()
        except Exception as exc:
            if transient(exc):
                raise
            log.exception(
                "detection for %s %s failed; queued for retry",
                actor.kind.value,
                planning.digest(actor.subject),
            )
            self.retries.queue(actor, touch)
            out.failed.append(actor)
            return None

    def retry_failed(self, now: datetime | None = None) -> tuple[int, int]:
        """Timer: run detection again for actors whose detection failed; (tried, done)."""
        now = now or datetime.now(UTC)
        tried = done = 0
        for row in list(self.storage.state.partition(layout.RETRY_PARTITION)):
            tried += 1
            actor = Actor(Kind(row["Kind"]), row["Subject"])
            lo, hi = layout.utc(row["Lo"]), layout.utc(row["Hi"])
            out = Outcome()
            self._detect({actor: Touch(lo, hi, failures=[(lo, "")])}, now, out)
            if not out.failed:
                self.storage.state.delete(layout.RETRY_PARTITION, row["RowKey"])
                done += 1
        return tried, done


def known_sign_ins(profiler: Profiler, trusted: Sequence[IPNetwork]) -> windows.Known:
    """Is a sign-in from its account's usual network, client and machine? Each account's
    baseline is read once per evaluation, and only if a sign-in just after failures asks."""
    read: dict[str, dict[str, habits.Sighting]] = {}

    def known(e: Event) -> bool:
        if e.agent is None:
            return False
        rows = read.get(e.user)
        if rows is None:
            rows = read[e.user] = profiler.rows(e.user)
        s = habits.Sighting(e.time, e.key, e.ip, e.target, e.host, agents.client_of(e.agent))
        return habits.known(rows, s, allowed(e.ip, trusted))

    return known


def _etag(row: Any) -> str | None:
    return row.metadata["etag"] if row is not None else None


def _collect(result: Result, marks: dict[str, list[Mark]]) -> None:
    for m in result.marks:
        marks.setdefault(m.ip, []).append(m)


def _event(row: Any) -> Event:
    return Event(
        time=layout.utc(row["TimeGenerated"]),
        key=row.get("EventRowKey") or row["RowKey"],
        user=row["UserKey"],
        ip=row["ClientIpKey"],
        success=row["Outcome"] == domain.Outcome.SUCCESS.value,
        target=row.get("TargetVMName") or "",
        host=row.get("BastionHostName") or "",
        agent=row.get("UserAgent"),
    )
