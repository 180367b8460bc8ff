"""Account baselines (I/O): fold each invocation's sign-ins into them, keep the findings they
support in step, notify. The deciding is pure (`habits`, `shared.notify.incidents`).

An account's baseline is one partition of the index table (`prof|<account>`, see
`shared.store.layout`); its rows change only when something is seen for the first time (or earlier
than thought), so after the learning days almost every invocation only reads. A worker keeps
the first-sighting times it read (they only ever move earlier), and skips an account whose new
records can change nothing: no read at all.

Each finding lives in the alerts table, in the partition of its day, under a key naming the
account and the network; its network row points at it. When anything the finding depends on
changes (a row of the baseline, failures just before its sign-in), it is evaluated again and
its row written, moved, or withdrawn; the baseline rows are written last, under their ETags,
so a concurrent writer makes this one start over and the outcome is the serial one.

Detection reads baselines too (is a sign-in after failures from the account's usual network
and client?), so the profiler runs first in an invocation, and says which earlier decisions a
late record may change: when a row's first sighting moves earlier, the sign-in that was the
first one (and only it) stops being new. Its row keeps that sign-in (`Was`, `WasIp`) so that a
retried invocation asks for the same second look (`Relook`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from azure.data.tables import TableEntity

from shared.baselines import agents, habits
from shared.baselines.habits import Finding, Sighting
from shared.core import domain
from shared.core.catalog import Thresholds
from shared.core.domain import Kind
from shared.notify import incidents
from shared.notify.delivery import Deliverer
from shared.store import keys, layout
from shared.store.entities import EventRow
from shared.store.tables import Conflict, Storage, etag_of, transient

log = logging.getLogger(__name__)
_ATTEMPTS = 8
_CACHED_ACCOUNTS = 20_000
#: How long a worker trusts what it remembers of a baseline: rows only move earlier, but an
#: erasure (`python -m shared erase`) removes them all, and must be relearned soon after.
_CACHE_SECONDS = 3600.0
#: Rows whose novelty a detection decision may rest on (the others only feed findings).
_DECIDING = (habits.NET, habits.CLIENT, habits.TARGET)
#: (account, address, time) of a sign-in that stopped being the first of something: detection
#: looks at that account and address there again.
Relook = tuple[str, str, datetime]


class Profiler:
    """Keeps the baselines of the accounts one invocation saw; one per worker process."""

    def __init__(
        self,
        storage: Storage,
        thresholds: Thresholds,
        arm: timedelta,
        interval: timedelta,
        deliverer: Deliverer,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.storage = storage
        self.pool = pool
        self.t = thresholds
        self.arm = arm
        self.interval = interval
        self.deliverer = deliverer
        self.findings = Findings(storage, thresholds, interval)
        #: account -> (when read, first sighting per row, last day used per row)
        self._known: OrderedDict[str, tuple[float, dict[str, datetime], dict[str, str]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def rows(self, user: str) -> dict[str, Sighting]:
        """An account's baseline as stored now (detection asks it; never the cache)."""
        pk = layout.profile_partition(user)
        return {
            r["RowKey"]: _from_row(r) for r in self.storage.index.partition(pk) if _sighting_row(r)
        }

    def run(self, rows: Sequence[EventRow], now: datetime, notified: list[str]) -> list[Relook]:
        """Fold the stored records' sign-ins into their accounts' baselines; the sign-ins that
        stopped being first sightings (detection looks there again)."""
        successes: dict[str, list[Sighting]] = {}
        failures: dict[str, list[datetime]] = {}
        for row in rows:
            user = row.get("UserKey", "")
            if not keys.identified(user):
                continue  # no identity: no account whose habits these are
            outcome = row.get("Outcome")
            if outcome == domain.Outcome.SUCCESS.value:
                successes.setdefault(user, []).append(_sighting(row))
            elif outcome == domain.Outcome.FAILURE.value:
                failures.setdefault(user, []).append(row["TimeGenerated"])
        todo = [
            user
            for user in sorted(successes.keys() | failures.keys())
            if self._may_change(user, successes.get(user, []), failures.get(user, []))
        ]
        jobs = [
            self.pool.submit(self._guarded, u, successes.get(u, []), now, notified) for u in todo
        ]
        errors = [job.exception() for job in jobs]  # every account ends before one is raised
        raised = next((e for e in errors if e is not None), None)
        if raised is not None:
            raise raised
        return sorted({r for job in jobs for r in job.result()})

    def _guarded(
        self, user: str, mine: list[Sighting], now: datetime, notified: list[str]
    ) -> list[Relook]:
        """One account (accounts are independent partitions, so they run side by side)."""
        try:
            return self._account(user, mine, now, notified)
        except Exception as exc:
            if transient(exc):
                raise  # the host retries the invocation; every write here is idempotent
            log.exception("baseline of an account failed; it is looked at again next time")
            return []

    def _may_change(self, user: str, mine: list[Sighting], failed: list[datetime]) -> bool:
        """False when the worker's memory of this baseline shows the records change nothing:
        every row they would set is known, no later, and no failure falls just before one of
        the account's first sign-ins from a network."""
        with self._lock:
            entry = self._known.get(user)
            if entry is not None:
                self._known.move_to_end(user)
        if entry is None or time.monotonic() - entry[0] > _CACHE_SECONDS:
            return True  # not seen by this worker lately: read it (then it is known)
        return _changes(entry[1], entry[2], mine, failed, self.t.window)

    def _account(
        self, user: str, mine: list[Sighting], now: datetime, notified: list[str]
    ) -> list[Relook]:
        if self._first_rows(user, mine):
            return []
        for attempt in range(_ATTEMPTS):
            try:
                return self._account_once(user, mine, now, notified)
            except Conflict:
                log.info("baseline of an account changed under us (attempt %d)", attempt + 1)
        raise Conflict("baseline rows kept changing; the host retries")

    def _first_rows(self, user: str, mine: list[Sighting]) -> bool:
        """An account this worker does not know may be new: its first rows are created without
        a read, in one transaction that holds the account row, whose `create` fails when the
        account has a baseline already (every baseline has that row); then the usual way.
        Learning a new account costs one request instead of two. True if done."""
        with self._lock:
            if user in self._known:
                return False
        rows = habits.fold({}, mine)
        nets = [s for rk, s in rows.items() if rk.startswith(habits.NET)]
        if habits.ACCOUNT not in rows or len(rows) > 100:
            return False
        if any(habits.armed(rows, s.time, self.arm) for s in nets):
            return False  # a backfill longer than the learning days: findings to look at
        pk = layout.profile_partition(user)
        used = habits.last_days(mine)
        ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            (
                "create",
                {"PartitionKey": pk, "RowKey": rk, "Account": user, **_to_row(s), "Last": used[rk]},
                {},
            )
            for rk, s in sorted(rows.items())
        ]
        try:
            self.storage.index.transact(ops)
        except Conflict:
            return False
        self._remember(user, rows, used)
        return True

    def _account_once(
        self, user: str, mine: list[Sighting], now: datetime, notified: list[str]
    ) -> list[Relook]:
        pk = layout.profile_partition(user)
        stored = {row["RowKey"]: row for row in self.storage.index.partition(pk)}
        rows = {rk: _from_row(r) for rk, r in stored.items() if _sighting_row(r)}
        changed = habits.fold(rows, mine)
        merged = {**rows, **changed}
        lasts = {rk: str(r.get("Last") or "") for rk, r in stored.items()}
        used = {rk: d for rk, d in habits.last_days(mine).items()
                if rk in merged and habits.refresh(lasts.get(rk, ""), d)}  # fmt: skip
        lasts.update(used)
        displaced = {rk: rows[rk] for rk in changed if rk in rows and rk.startswith(_DECIDING)}
        relooks = {(user, d.ip, d.time) for d in displaced.values()}
        keys_ = {s.key for s in mine}
        for rk, row in stored.items():  # moved by an earlier try of these records
            if row.get("FirstKey") in keys_ and row.get("Was") and rk.startswith(_DECIDING):
                relooks.add((user, str(row.get("WasIp", "")), layout.utc(row["Was"])))
        counted: dict[str, int] = {}

        def failures(first: Sighting) -> int:
            if first.key not in counted:
                counted[first.key] = self.findings.failures_before(user, first)
            return counted[first.key]

        found = habits.findings(merged, failures, self.arm, self.t.failures, self.t.resolve_max)
        pointers: dict[str, dict[str, Any]] = {}
        owed: list[tuple[str, str, str]] = []
        for rk in sorted({*found, *(k for k, r in stored.items() if r.get("FindingDay"))}):
            pointer = self.findings.settle(user, rk, found.get(rk), stored.get(rk), now, owed)
            if pointer is not None:
                pointers[rk] = pointer
        self._write(pk, user, stored, {**{rk: merged[rk] for rk in used}, **changed}, merged,
                    pointers, displaced, used)  # fmt: skip
        self._remember(user, merged, lasts)
        for day, rk, alert_id in owed:
            notified.append(alert_id)
            self.deliverer.deliver_incident(day, rk, alert_id)
        return sorted(relooks)

    def _write(
        self,
        pk: str,
        user: str,
        stored: dict[str, TableEntity],
        changed: dict[str, Sighting],
        merged: dict[str, Sighting],
        pointers: dict[str, dict[str, Any]],
        displaced: dict[str, Sighting],
        used: dict[str, str],
    ) -> None:
        """The baseline rows that changed, ETag-guarded, in transactions of at most 100."""
        ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for rk in sorted(changed.keys() | pointers.keys()):
            entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "Account": user}
            entity.update(_to_row(merged[rk]))
            entity.update(pointers.get(rk, {}))
            if rk in displaced:
                entity.update(Was=displaced[rk].time, WasIp=displaced[rk].ip)
            if rk in used:
                entity["Last"] = used[rk]
            old = stored.get(rk)
            if old is None:
                ops.append(("create", entity, {}))
            else:
                ops.append(("update", entity, {"etag": etag_of(old), "mode": "merge"}))
        for i in range(0, len(ops), 100):
            self.storage.index.transact(ops[i : i + 100])

    def _remember(self, user: str, merged: dict[str, Sighting], lasts: dict[str, str]) -> None:
        with self._lock:
            firsts = {rk: s.time for rk, s in merged.items()}
            self._known[user] = (time.monotonic(), firsts, dict(lasts))
            self._known.move_to_end(user)
            while len(self._known) > _CACHED_ACCOUNTS:
                self._known.popitem(last=False)


class Findings:
    """A baseline finding's alert row, settled to match what the baseline now says (told once),
    and what a finding needs of the stored records: the failures just before a first sign-in."""

    def __init__(self, storage: Storage, thresholds: Thresholds, interval: timedelta) -> None:
        self.storage, self.t, self.interval = storage, thresholds, interval

    def settle(
        self,
        user: str,
        rk: str,
        finding: Finding | None,
        row: TableEntity | None,
        now: datetime,
        owed: list[tuple[str, str, str]],
    ) -> dict[str, Any] | None:
        """Make the finding's alert row match; the pointer fields its network row should hold
        (None: unchanged)."""
        day = str(row.get("FindingDay") or "") if row is not None else ""
        signature = finding.signature if finding is not None else ""
        stored = str(row.get("FindingSig") or "") if row is not None else ""
        if signature == stored and (finding is None or day == layout.day_of(finding.time)):
            return None
        net = rk[len(habits.NET) :]
        old = self.storage.alerts.get(day, layout.finding_key(user, net)) if day else None
        key = (layout.day_of(finding.time), layout.finding_key(user, net)) if finding else ("", "")
        inc = None
        if finding is not None:
            f = finding
            inc = incidents.single(Kind.USER, user, f.rules, f.severity, f.time, f.time, f.failures,
                                   (f.ip,), (f.target,) if f.target else (),
                                   (f.host,) if f.host else ())  # fmt: skip
        ops, owes = incidents.settle_one(inc, old, key, now, self.interval)
        for op in ops:  # the new row first, the old one (maybe another partition) after
            self.storage.alerts.transact([op])
        if owes:
            owed.append((*key, str(ops[0][1]["AlertId"])))
        return {"FindingDay": key[0], "FindingSig": signature}

    def failures_before(self, user: str, first: Sighting) -> int:
        """Failed sign-ins of `user` from the first sign-in's address in the window before it."""
        lo, hi = first.time - self.t.window, first.time
        count = 0
        for day in layout.days_between(lo, hi):
            params = layout.index_seek(layout.IP_PREFIX, first.ip, day, lo, hi)
            for row in self.storage.index.seek(params, ["UserKey", "Outcome"]):
                failed = row.get("Outcome") == domain.Outcome.FAILURE.value
                count += failed and row.get("UserKey") == user
        return count


def _sighting(row: EventRow) -> Sighting:
    return Sighting(
        row["TimeGenerated"],
        row["RowKey"],
        row.get("ClientIpKey", ""),
        row.get("TargetVMName", ""),
        row.get("BastionHostName", ""),
        agents.client_of(row.get("UserAgent", "")),
    )


def _sighting_row(row: TableEntity) -> bool:
    """A baseline row (its first sighting's time may have been forgotten by retention)."""
    return "First" in row or "Last" in row


def _from_row(row: TableEntity) -> Sighting:
    client = row.get("Client")
    return Sighting(
        layout.utc(row["First"]) if "First" in row else habits.BEFORE,
        str(row.get("FirstKey", "")),
        str(row.get("Ip", "")),
        str(row.get("Target", "")),
        str(row.get("Host", "")),
        str(client) if client is not None else None,
    )


def _to_row(s: Sighting) -> dict[str, Any]:
    row: dict[str, Any] = {"Ip": s.ip, "Target": s.target, "Host": s.host}
    if s.time != habits.BEFORE:  # a time retention forgot is not written back
        row.update(First=s.time, FirstKey=s.key)
    if s.client is not None:
        row["Client"] = s.client
    return row


def _changes(
    known: dict[str, datetime],
    lasts: dict[str, str],
    mine: list[Sighting],
    failed: list[datetime],
    window: timedelta,
) -> bool:
    """Would these sign-ins change a baseline whose first sightings (`known`) and last uses
    (`lasts`) are these, or these failures fall just before a first sign-in from a network?"""
    for s in mine:
        for rk in habits.row_keys(s):
            first = known.get(rk)
            if first is None or s.time <= first:  # equal: maybe a retry, ask for its relook
                return True
            if habits.refresh(lasts.get(rk, ""), s.time.date().isoformat()):
                return True  # `Last` is to be moved (`habits.LAST_STEP`)
    nets = [t for rk, t in known.items() if rk.startswith(habits.NET)]
    return any(0 < (t - f).total_seconds() <= window.total_seconds() for f in failed for t in nets)
