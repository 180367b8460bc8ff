"""Silence is noticed (I/O): which hours each Bastion host wrote records in, and the health
timer that raises `host_silent`, `diagnostic_setting_changed` and the coverage findings
(`host_not_covered`, `host_covered_again`). The deciding is pure
(`shared.hosts.activity`, `shared.hosts.diagnostics`, `shared.notify.incidents`).

Ingest upserts one row per host and UTC hour that has records (`host|<resource ID>` partitions of
the index table, plus one `hosts` row per host so the timer knows them); a worker remembers
what it wrote, so a busy hour costs one upsert per worker. The timer reads each host's last
`activity.HISTORY_DAYS` days (one range read), and before it calls a host silent it lists the
host's blobs of the silent hours: records that exist but are not read yet mean this app is
behind (`GET /api/status` says so), not that the host is silent.

Findings are rows of the alerts table keyed by what they are about (the host and the hour its
silence began; the host, the verdict and the day), so every run of the timer meets the same
row: one incident per silence, one per changed setting per day.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.core.domain import Incident, Kind, Severity
from shared.hosts import activity, coverage
from shared.hosts.coverage import Cover
from shared.hosts.diagnostics import Check
from shared.notify import incidents
from shared.notify.delivery import Deliverer
from shared.store import layout
from shared.store.entities import EventRow
from shared.store.tables import Conflict, Storage, etag_of

log = logging.getLogger(__name__)
_REMEMBERED = 50_000


@dataclass
class KnownHost:
    """A host the timer watches: its resource ID, its blobs' folder, its activity partitions
    (the ID's, plus a name-keyed one written before issue 23) and how people see it."""

    host_id: str
    folder: str
    partitions: list[str] = field(default_factory=list)
    label: str = ""


def _host_id(row: EventRow) -> str:
    """The host of a stored event: from its blob's folders, else the record's resource ID."""
    return layout.host_id_of_blob(row.get("SourceBlob", "")) or row.get("BastionResourceId", "")


class Health:
    """Host activity and the health timer; one per worker process."""

    def __init__(self, storage: Storage, deliverer: Deliverer) -> None:
        self.storage = storage
        self.settings = storage.settings
        self.deliverer = deliverer
        self.interval = timedelta(minutes=self.settings.notify_interval_minutes)
        self._written: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.checker: Any = None  # an `arm.Checker`, made on first use (tests give their own)

    # -- ingest -------------------------------------------------------------------------------
    def record(self, rows: Sequence[EventRow]) -> None:
        """Remember the hours each host wrote records in (idempotent upserts), keyed by the
        host's resource ID: two hosts of one name are two hosts."""
        hours, folders = set(), {}
        for row in rows:
            host_id = _host_id(row)
            if host_id:
                hours.add((host_id, f"{row['TimeGenerated'].astimezone(UTC):%Y-%m-%dT%H}"))
                folders[host_id] = layout.host_folder(row.get("SourceBlob", ""))
        with self._lock:
            new = sorted(hours - self._written)
        if not new:
            return
        entities = [layout.host_hour_entity(host, hour) for host, hour in new]
        entities += [layout.host_entity(h, folders.get(h, "")) for h in sorted({h for h, _ in new})]
        self.storage.upsert((self.storage.index, entities))
        with self._lock:
            if len(self._written) > _REMEMBERED:
                self._written.clear()
            self._written.update(new)

    # -- the timer ----------------------------------------------------------------------------
    def run(self, now: datetime | None = None) -> list[str]:
        """Look for silent hosts and check the diagnostic settings; the AlertIds told."""
        now = now or datetime.now(UTC)
        told: list[str] = []
        for host in self.hosts():
            self._silence(host, now, told)
        covered = self._coverage(now, told)
        for check in self._checks(skip=covered):
            self._diagnostic(check, now, told)
        return told

    def hosts(self) -> list[KnownHost]:
        """Every host seen, by resource ID. A row written before issue 23 (keyed by name, no
        `HostId`) is read as the host its folder names, its activity partition added to that
        host's: no migration is written, and those rows expire with retention."""
        found: dict[str, KnownHost] = {}
        for r in self.storage.index.partition(layout.HOSTS, ["RowKey", "Host", "HostId", "Folder"]):
            folder = str(r.get("Folder") or "")
            host_id = str(r.get("HostId") or "") or layout.host_id_of_blob(folder) or str(r["Host"])
            host = found.setdefault(host_id.casefold(), KnownHost(host_id, folder))
            host.partitions.append(layout.HOST_PREFIX + str(r["RowKey"]))
            host.folder = host.folder or folder
        labels = layout.host_labels(h.host_id for h in found.values())
        for host in found.values():
            host.label = labels[host.host_id]
        return sorted(found.values(), key=lambda h: (h.label, h.host_id))

    def active_hours(self, host: KnownHost, since: datetime) -> set[datetime]:
        out: set[datetime] = set()
        for pk in sorted(set(host.partitions)):
            params = {"pk": pk, "lo": f"{since:%Y-%m-%dT%H}", "hi": "~"}
            out |= {datetime.fromisoformat(str(r["RowKey"]) + ":00+00:00")
                    for r in self.storage.index.seek(params, ["RowKey"])}  # fmt: skip
        return out

    def _silence(self, host: KnownHost, now: datetime, told: list[str]) -> None:
        s = self.settings
        since = activity.hour_of(now) - timedelta(days=activity.HISTORY_DAYS + 1)
        active = self.active_hours(host, since)
        found = activity.silence(active, now, timedelta(days=s.baseline_days), s.silence_hours)
        if found is None or self._unread(host.folder, found):
            return
        key = (layout.day_of(found.since), layout.silence_key(host.host_id, found.since))
        inc = incidents.single(Kind.HOST, host.label, ("host_silent",), Severity.MEDIUM,
                               found.since, found.until, found.hours,
                               hosts=(host.label,))  # fmt: skip
        self._settle(inc, key, now, told)

    def _unread(self, folder: str, found: activity.Silence) -> bool:
        """Blobs of the host's silent hours that hold bytes: we are behind, it is not silent."""
        if not folder:
            return False
        logs = self.storage.logs()
        for day in layout.days_between(found.since, found.until):
            y, m, d = day.split("-")
            for blob in logs.list_blobs(name_starts_with=f"{folder}y={y}/m={m}/d={d}/"):
                hour = layout.hour_of_blob(blob.name)
                when = datetime.fromisoformat(hour + ":00+00:00") if hour else None
                if when and found.since <= when <= found.until and int(blob.size or 0) > 0:
                    return True
        return False

    def _checker(self) -> Any:
        if self.checker is None:
            from shared.hosts.arm import Checker, credential

            s = self.settings
            self.checker = Checker(s.logs_storage_account_id, credential(s), s.arm_endpoint)
        return self.checker

    def _checks(self, skip: set[str]) -> list[Check]:
        """The configured hosts' checks, but for those the coverage check just asked about."""
        ids = [i for i in self.settings.bastion_resource_ids if i.casefold() not in skip]
        if not ids:
            return []
        checks: list[Check] = self._checker().check_all(ids)
        return checks

    # -- coverage -----------------------------------------------------------------------------
    def _coverage(self, now: datetime, told: list[str]) -> set[str]:
        """Every Bastion host of the covered subscriptions: its verdict kept, its news told.
        A subscription ARM cannot list is logged and skipped (no finding). The hosts asked."""
        found = []
        for subscription in self.settings.coverage_subscriptions:
            try:
                found += self._checker().list_bastions(subscription)
            except Exception as exc:  # noqa: BLE001 - a failed listing is logged, never raised
                status = getattr(exc, "status_code", None)
                log.warning("coverage: listing the Bastion hosts of %s failed: %s status=%s",
                            subscription, type(exc).__name__, status or "-")  # fmt: skip
        # as `status` shows them: two hosts of one name in two subscriptions are told apart
        labels = layout.host_labels(h.host_id for h in found)
        for host in found:
            check = None if host.developer else self._checker().check(host.host_id)
            self._cover(coverage.verdict(host, check), labels[host.host_id], now, told)
        return {h.host_id.casefold() for h in found}

    def _cover(self, found: coverage.Finding, label: str, now: datetime, told: list[str]) -> None:
        """Keep a host's verdict (ETag-guarded: of two timers, one writes and tells)."""
        if found.verdict is Cover.UNKNOWN:
            return
        old = self.storage.state.get(layout.COVERAGE, layout.host_key(found.host_id))
        news = coverage.change(old, found)
        kept = old is not None and Cover(str(old["Verdict"])).covered == found.verdict.covered
        since = layout.utc(old["Since"]) if old is not None and kept else now
        row = layout.coverage_entity(found.host_id, found.subscription, found.sku,
                                     found.verdict.value, found.detail, since, now)  # fmt: skip
        guard = {"etag": etag_of(old)} if old is not None else {}
        try:
            self.storage.state.transact([("update" if old is not None else "create", row, guard)])
        except Conflict:
            return  # another run of the timer wrote it first, and tells
        if news is None:
            return
        rule, severity = (
            ("host_not_covered", Severity.HIGH)
            if news == "uncovered"
            else ("host_covered_again", Severity.MEDIUM)
        )
        inc = incidents.single(Kind.HOST, label, (rule,), severity, since, now, hosts=(label,))
        key = (layout.day_of(since), layout.coverage_key(found.host_id, news, since))
        self._settle(inc, key, now, told)

    def _diagnostic(self, check: Check, now: datetime, told: list[str]) -> None:
        if not check.is_finding:
            return
        host = layout.host_labels(self.settings.bastion_resource_ids).get(
            check.bastion_id, check.host
        )
        key = (layout.day_of(now), layout.diagnostic_key(check.bastion_id, check.verdict.value))
        old = self.storage.alerts.get(*key)
        first = layout.utc(old["FirstSeen"]) if old is not None else now
        inc = incidents.single(Kind.HOST, host, ("diagnostic_setting_changed",), Severity.HIGH,
                               first, now, hosts=(host,))  # fmt: skip
        self._settle(inc, key, now, told, old)

    def _settle(
        self,
        inc: Incident,
        key: tuple[str, str],
        now: datetime,
        told: list[str],
        old: Any = None,
    ) -> None:
        old = old if old is not None else self.storage.alerts.get(*key)
        ops, owes = incidents.settle_one(inc, old, key, now, self.interval)
        for op in ops:
            self.storage.alerts.transact([op])
        if owes:
            told.append(str(ops[0][1]["AlertId"]))
            self.deliverer.deliver_incident(*key, str(ops[0][1]["AlertId"]))
