"""Retention and erasure: the deletes and rewrites `shared.keep.policy` decides.

Every step is a delete or an ETag-guarded rewrite of known keys, and a missing row is not an
error, so a run that stopped half-way (a crash, the host's timeout) is finished by the next:

- retention removes a day's events before the index rows that find them, and moves its
  watermark only once the whole day is gone;
- erasure takes the account out of the alerts first, then per day removes the rows derived from
  its events before the events (the events are how they are found), the baseline last.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError

from shared.baselines import habits
from shared.keep import policy
from shared.keep.policy import ALERTS, EVENTS, PK_RANGE, QUARANTINE, Policy
from shared.notify.delivery import DIGEST_PARTITION
from shared.store import keys, layout, quarantine
from shared.store.tables import Conflict, Storage, Table, etag_of

log = logging.getLogger(__name__)
#: A baseline row's times that retention forgets once older than it (the row stays known).
baseline_times = ("First", "FirstKey", "Was", "WasIp")
Key = tuple[str, str]
_PAGE = 1000
_KEYS = ["PartitionKey", "RowKey"]
#: Fields of an event that its index rows are derived from (`layout.index_rows`).
_EVENT_FIELDS = [*_KEYS, *layout.INDEX_FIELDS, "UserEmail"]
#: Longest a timer run keeps expiring days (the host stops a function at 10 minutes); the
#: next run goes on from the watermark.
BUDGET_SECONDS = 420.0


class Deleter:
    """Deletes keys in same-partition transactions of <= 100, in parallel; a key already gone
    is skipped (the batch is retried row by row), so deleting twice is deleting once."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.pool = ThreadPoolExecutor(storage.settings.write_concurrency, "retain")

    def delete(self, table: Table, keys_: Iterable[Key]) -> int:
        """Delete these rows; how many were there."""
        by_partition: dict[str, list[str]] = defaultdict(list)
        for pk, rk in dict.fromkeys(keys_):
            by_partition[pk].append(rk)
        chunks = [(pk, rks[i : i + 100]) for pk, rks in by_partition.items()
                  for i in range(0, len(rks), 100)]  # fmt: skip
        return sum(self.pool.map(lambda c: _delete_chunk(table, *c), chunks))

    def drop(self, table: Table, flt: str, params: dict[str, str]) -> int:
        """Delete every row a filter finds, a page at a time (keys only are read)."""
        removed, token = 0, None
        while True:
            rows, token = table.page(flt, params, _KEYS, _PAGE, token)
            removed += self.delete(table, ((r["PartitionKey"], r["RowKey"]) for r in rows))
            if token is None:
                return removed

    def __enter__(self) -> Deleter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)


def _delete_chunk(table: Table, pk: str, rks: list[str]) -> int:
    try:
        table.transact([("delete", {"PartitionKey": pk, "RowKey": rk}, {}) for rk in rks])
        return len(rks)
    except Conflict:  # some row is already gone (a re-run): one at a time, counting the real
        removed = 0
        for rk in rks:
            if table.get(pk, rk) is not None:
                table.delete(pk, rk)  # the SDK takes a row that is gone meanwhile as deleted
                removed += 1
        return removed


def _first_partition(table: Table, lo: str, hi: str) -> str | None:
    """The smallest PartitionKey in [lo, hi) (one row read), None if the range is empty."""
    rows = table.client.query_entities(
        PK_RANGE, parameters={"lo": lo, "hi": hi}, select=["PartitionKey"], results_per_page=1
    )
    first = next(iter(rows), None)
    return None if first is None else str(first["PartitionKey"])


class Expirer:
    """The retention timer: removes every day each class no longer keeps."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.policy = Policy.of(storage.settings)

    def run(self, now: datetime | None = None, budget: float = BUDGET_SECONDS) -> Counter[str]:
        """Remove the expired days of every class (oldest first, until `budget` seconds have
        passed); what was removed, by kind of row, plus `days_<class>`."""
        with Deleter(self.storage) as self.d:
            return self._run(now or datetime.now(UTC), budget)

    def _run(self, now: datetime, budget: float) -> Counter[str]:
        deadline = time.monotonic() + budget
        out: Counter[str] = Counter()
        folders = [str(r.get("Folder", "")) for r in
                   self.storage.index.partition(layout.HOSTS, ["RowKey", "Folder"])]  # fmt: skip
        for kind in policy.CLASSES:
            keep_from = policy.first_kept(self.policy.days(kind), now)
            row = self.storage.state.get(policy.WATERMARK_PARTITION, kind)
            through = str(row["Through"]) if row is not None else None
            oldest = self.oldest(kind, cursors=not through)
            if through and oldest and oldest <= through:  # stored since: a late blob, a backfill
                through = None
            elif through:
                oldest = None
            days = policy.expiring(keep_from, through, oldest)
            for day in days:
                if time.monotonic() > deadline:
                    log.warning("retention stopped at %s %s: the next run goes on", kind, day)
                    return out
                removed = self._day(kind, day, folders)
                self.storage.state.put(policy.watermark(kind, day, removed))
                out.update(removed)
                out[f"days_{kind}"] += 1
            if keep_from and not days and through is None:  # nothing stored yet that old
                mark = policy.watermark(kind, policy.next_day(keep_from, -1), {})
                self.storage.state.put(mark)
            if kind == EVENTS and keep_from:
                out["detection_retries"] += self._retries(keep_from)
                out.update(self._baselines(keep_from))
        return out

    def oldest(self, kind: str, cursors: bool = True) -> str | None:
        """The oldest day a class holds: one row read per partition range. Every run asks
        (records of an expired day stored after its run, a backfill or a late append, are
        found behind the watermark and go on this run); cursors count only on a first run
        (a cursor of a blob still in the logs container is kept on purpose). Quarantine has
        no such late days: ingest writes none for a blob older than its retention."""
        if kind == ALERTS:
            first = _first_partition(self.storage.alerts, *policy.ALERT_DAYS)
            return policy.day_of_partition(first) if first else None
        found = [_first_partition(self.storage.state, f"{layout.CURSOR_PARTITION}|",
                                  f"{layout.CURSOR_PARTITION}|~")] if cursors else []  # fmt: skip
        if kind == EVENTS:
            for prefix in (*policy.DAY_PARTITIONS, layout.FAIL_PREFIX):
                found.append(_first_partition(self.storage.index, prefix, prefix + "~"))
        days = [policy.day_of_partition(pk) for pk in found if pk]
        return min(filter(None, days), default=None)

    def _day(self, kind: str, day: str, folders: list[str]) -> Counter[str]:
        if kind == ALERTS:  # the day's alerts, and the record of its digest (sent, to whom)
            n = Counter(alerts=self.d.drop(self.storage.alerts, layout.PARTITION, {"pk": day}))
            n["digests"] += self.d.delete(self.storage.state, [(DIGEST_PARTITION, day)])
            return n
        if kind == QUARANTINE:
            return Counter(quarantine_blobs=self._quarantine(day, folders))
        return self._events_day(day)

    def _events_day(self, day: str) -> Counter[str]:
        """Events first (the `ip|` rows find them), then the index partitions of the day."""
        s, n = self.storage, Counter[str]()
        select = [*_KEYS, "EventPartitionKey", "EventRowKey", "UserKey"]
        token = None
        accounts: set[str] = set()
        while True:
            rows, token = s.index.page(layout.PARTITION, {"pk": layout.IP_PREFIX + day}, select,
                                       _PAGE, token)  # fmt: skip
            accounts.update(str(r.get("UserKey") or "") for r in rows)
            n["events"] += self.d.delete(
                s.events, ((str(r["EventPartitionKey"]), str(r["EventRowKey"])) for r in rows)
            )
            n["index"] += self.d.delete(s.index, ((r["PartitionKey"], r["RowKey"]) for r in rows))
            if token is None:
                break
        for prefix in (layout.VM_PREFIX, layout.DET_PREFIX):
            n["index"] += self.d.drop(s.index, layout.PARTITION, {"pk": prefix + day})
        n["index"] += self.d.drop(s.index, PK_RANGE, policy.day_range(layout.FAIL_PREFIX, day))
        for host in s.index.partition(layout.HOSTS, ["RowKey"]):
            n["host_hours"] += self.d.drop(s.index, layout.SEEK,
                                           policy.host_day(host["RowKey"], day))  # fmt: skip
        n["cursors"] += self._cursors(day)
        n["accounts_forgotten"] += self._forget(accounts - {""}, n)
        return n

    def _forget(self, accounts: set[str], n: Counter[str]) -> int:
        """Accounts of an expired day with no record left: nothing else may name them, so
        their baseline and alias rows go too (a person not seen within `RETENTION_DAYS` is
        learned afresh, quiet while it learns). One read per account of the day."""
        index, gone = self.storage.index, 0
        for user in sorted(accounts):
            left, _ = self.storage.events.page(PK_RANGE, policy.event_range(user), _KEYS, 1)
            if left:
                continue
            gone += 1
            n["baseline"] += self.d.drop(index, layout.PARTITION,
                                         {"pk": layout.profile_partition(user)})  # fmt: skip
            n["aliases"] += self.d.drop(index, "PartitionKey eq @pk and Account eq @account",
                                        {"pk": layout.ALIASES, "account": user})  # fmt: skip
        if gone:
            self.storage.forget_aliases()
        return gone

    def _cursors(self, day: str) -> int:
        """Cursors of the day's hour blobs that no longer exist (a kept cursor stops a later
        backfill from storing the expired records again)."""
        logs = self.storage.logs()
        params = policy.day_range(f"{layout.CURSOR_PARTITION}|", day)
        gone = [(r["PartitionKey"], r["RowKey"])
                for r in self.storage.state.query(PK_RANGE, params, [*_KEYS, "BlobName"])
                if not logs.get_blob_client(str(r.get("BlobName", ""))).exists()]  # fmt: skip
        return self.d.delete(self.storage.state, gone)

    def _quarantine(self, day: str, folders: list[str]) -> int:
        container = self.storage.blobs.get_container_client(
            self.storage.settings.quarantine_container
        )
        removed = 0
        try:
            for folder in filter(None, folders):
                prefix = policy.quarantine_prefix(folder, day)
                for blob in container.list_blobs(name_starts_with=prefix):
                    try:
                        container.delete_blob(blob.name)
                        removed += 1
                    except ResourceNotFoundError:
                        pass
        except ResourceNotFoundError:  # nothing was ever quarantined: no container
            return removed
        return removed

    def _baselines(self, keep_from: str) -> Counter[str]:
        """Baseline rows by last use: a row no sign-in used since `keep_from` goes (its
        network, client, machine or hour is new again); a kept row forgets the time of a first
        sighting older than that (known "before the retention window", `habits.BEFORE`).
        Two service-side filtered reads over the baselines: their cost follows the rows that
        cross the line, not the days kept."""
        index, n = self.storage.index, Counter[str]()
        span = {"lo": layout.PROFILE_PREFIX, "hi": layout.PROFILE_PREFIX + "~"}
        stale = habits.stale_before(keep_from)  # `Last` lags a use by up to a week
        unused = index.query(policy.UNUSED_SINCE, {**span, "keep": stale}, _KEYS)
        n["baseline"] += self.d.delete(index, [(r["PartitionKey"], r["RowKey"]) for r in unused])
        first = datetime.fromisoformat(keep_from).replace(tzinfo=UTC)
        for row in index.query(policy.FIRST_BEFORE, {**span, "first": first}):
            first_day = layout.utc(row["First"]).date().isoformat()
            if (row["Last"] < stale) if row.get("Last") else first_day < keep_from:
                n["baseline"] += self.d.delete(index, [(row["PartitionKey"], row["RowKey"])])
                continue
            kept = {k: v for k, v in row.items() if k not in baseline_times}
            try:
                index.transact([("update", kept, {"etag": etag_of(row), "mode": "replace"})])
                n["baseline_times_forgotten"] += 1
            except Conflict:  # the profiler moved it meanwhile: the next run looks again
                pass
        return n

    def _retries(self, keep_from: str) -> int:
        """Detection retries for times no longer kept (their records are gone)."""
        state = self.storage.state
        old = [(r["PartitionKey"], r["RowKey"])
               for r in state.partition(layout.RETRY_PARTITION, [*_KEYS, "Hi"])
               if layout.day_of(layout.utc(r["Hi"])) < keep_from]  # fmt: skip
        return self.d.delete(state, old)


class Eraser:
    """Erasure of a person from every table: `erase(name)`, each account the name reaches."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def erase(
        self, name: str, now: datetime | None = None, all_matches: bool = False, exact: bool = False
    ) -> Counter[str]:
        """Remove the accounts the name reaches (`policy.accounts_to_erase`; `found` says
        which): their events, index rows, buckets and baselines, redact them in the alerts,
        then their `who` rows (last: they find the accounts again if this stops half-way).
        `exact`: the account of that very name only. What was removed or rewritten, by kind.
        Running it again changes nothing."""
        literal = policy.account(name)
        index = self.storage.index
        rows = [] if exact else list(index.seek(layout.alias_seek(name), ["Account"]))
        self.found = layout.resolution(name, rows)
        stored, _ = self.storage.events.page(PK_RANGE, policy.event_range(literal), _KEYS, 1)
        accounts = policy.accounts_to_erase(self.found, bool(stored), all_matches)
        if not (stored or rows or self._baseline(literal)):
            raise policy.NoSuchAccount(name)
        n: Counter[str] = Counter()
        self.storage.forget_aliases()  # their `who` rows go: this worker writes them again
        self.names = {name, *accounts}  # what names the person in raw text (and its e-mails)
        with Deleter(self.storage) as self.d:
            for user in accounts:
                n.update(self._erase(user, now))
            mark = policy.marker(layout.day_of(now or datetime.now(UTC)))
            n["quarantine_redacted"] += self._quarantine(self.names, mark)
            for user in accounts:
                mine = {"pk": layout.ALIASES, "account": user}
                n["aliases"] += self.d.drop(index, "PartitionKey eq @pk and Account eq @account",
                                            mine)  # fmt: skip
        return n

    def _baseline(self, user: str) -> bool:
        """Does anything else hold the account (a baseline whose records expired)?"""
        rows, _ = self.storage.index.page(
            layout.PARTITION, {"pk": layout.profile_partition(user)}, _KEYS, 1
        )
        return bool(rows)

    def _quarantine(self, names: set[str], mark: str) -> int:
        """Quarantined raw text that names the person, redacted in place (the documents keep
        which pieces were rejected and why; only their text goes). Reads every quarantine
        document: they are few (`QUARANTINE_RETENTION_DAYS`) and text is not indexed."""
        container = self.storage.blobs.get_container_client(
            self.storage.settings.quarantine_container
        )
        changed = 0
        try:
            for item in container.list_blobs():
                blob = container.get_blob_client(item.name)
                download = blob.download_blob()
                lines, hits = policy.redact_quarantine(
                    quarantine.read(download.readall()), names, mark
                )
                if hits:
                    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
                    blob.upload_blob(body, overwrite=True, etag=download.properties.etag,
                                     match_condition=MatchConditions.IfNotModified)  # fmt: skip
                    changed += hits
        except ResourceNotFoundError:  # nothing was ever quarantined: no container
            return changed
        return changed

    def _erase(self, user: str, now: datetime | None) -> Counter[str]:
        mark = policy.marker(layout.day_of(now or datetime.now(UTC)))
        n: Counter[str] = Counter()
        self._alerts(user, mark, n)
        for day, events in self._days(user):
            self.names.update(
                str(e.get(f) or "") for e in events for f in ("UserName", "UserEmail")
            )
            self._buckets(user, day, events, mark, n)
            n["index"] += self.d.delete(self.storage.index, policy.derived_keys(events))
            legacy = policy.legacy_vm_rows(user, day)
            n["index"] += self.d.drop(self.storage.index, policy.LEGACY_VM_ROWS, legacy)
            n["events"] += self.d.delete(
                self.storage.events, ((e["PartitionKey"], e["RowKey"]) for e in events)
            )
        profile = {"pk": layout.profile_partition(user)}
        n["baseline"] += self.d.drop(self.storage.index, layout.PARTITION, profile)
        retry = (layout.RETRY_PARTITION, f"user|{keys.encode(user)}")
        n["detection_retries"] += self.d.delete(self.storage.state, [retry])
        return n

    def _days(self, user: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """The account's events, a day at a time (partitions sort by hour)."""
        day, batch = "", list[dict[str, Any]]()
        rows = self.storage.events.query(PK_RANGE, policy.event_range(user), _EVENT_FIELDS)
        for row in rows:
            event = {"TargetVMName": "", "ClientIpKey": "", "Outcome": "", **dict(row)}
            hour_day = policy.day_of_partition(str(row["PartitionKey"]))
            if batch and hour_day != day:
                yield day, batch
                batch = []
            day = hour_day
            batch.append(event)
        if batch:
            yield day, batch

    def _buckets(
        self, user: str, day: str, events: list[dict[str, Any]], mark: str, n: Counter[str]
    ) -> None:
        """The account's detection buckets of the day go; the IPs' buckets forget its name."""
        index = self.storage.index
        n["buckets"] += self.d.drop(index, layout.SEEK, policy.user_buckets(user, day))
        doomed = []
        for ip in sorted({str(e["ClientIpKey"]) for e in events} - {""}):
            for row in index.seek(policy.ip_buckets(ip, day)):
                change = policy.redact_bucket(row, user, mark)
                if change is None:
                    continue
                if change.pop("delete", False):
                    doomed.append((change["PartitionKey"], change["RowKey"]))
                else:
                    index.transact([("update", change, {"mode": "merge"})])
                    n["buckets_redacted"] += 1
        n["buckets"] += self.d.delete(index, doomed)

    def _alerts(self, user: str, mark: str, n: Counter[str]) -> None:
        """Every alerts row naming the account, rewritten (one read of the alerts table:
        alerts are few, and a name in a list cannot be found by a filter)."""
        table = self.storage.alerts
        for row in table.client.list_entities():
            for _ in range(3):
                ops = policy.redact_alert(row, user, mark, secrets.token_hex(6))
                if not ops:
                    break
                try:
                    table.transact(ops)
                    n["alerts_redacted" if ops[-1][0] != "delete" else "alert_heads"] += 1
                    break
                except Conflict:  # changed meanwhile: read it again
                    again = table.get(str(row["PartitionKey"]), str(row["RowKey"]))
                    if again is None:
                        break
                    row = again
