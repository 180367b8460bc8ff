"""Is it working? Per Bastion host: what arrived last, how far ingest is behind, what was
stored, quarantined and skipped in the last 24 hours (and how much of it had an undocumented
message or no identity), and a verdict a person can act on; every undocumented message by text.

Read from the cursors of the last 24 hours (one query per hour), one listing per host and day
(current blob sizes), the alerts still pending delivery, the detection retries queued and the
blob trigger's poison queue; and whether every Bastion host of the covered subscriptions is
covered, as the health timer last found it. `verdict` is pure.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.answer import queries
from shared.core import text
from shared.ingest import normalize
from shared.ingest.sweep import host_folders
from shared.notify import incidents
from shared.store import layout
from shared.store.tables import Cursor, Storage

WINDOW = timedelta(hours=24)
#: A host with records in the window but none for this long is reported silent.
SILENT_AFTER = timedelta(hours=2)
#: Unread bytes older than this mean ingest is behind (the sweep runs every minute).
BEHIND_AFTER = timedelta(minutes=5)
POISON_QUEUE = "webjobs-blobtrigger-poison"
#: Notifications past the retry horizon listed by name (all are counted).
LISTED = 50
OK, BEHIND, SILENT, FAILING = "ok", "behind", "silent", "failing"


@dataclass
class HostStatus:
    host: str  # how people see it: the name, with subscription and group if two share it
    host_id: str = ""  # the key: its resource ID from the blobs' folders ('' for "(other)")
    last_record: datetime | None = None
    last_blob: str = ""
    behind_bytes: int = 0
    stale_bytes: int = 0  # unread bytes of blobs nobody appended to for BEHIND_AFTER
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    other: int = 0  # records whose message is no documented outcome
    no_identity: int = 0  # records with no user name and no e-mail
    poisoned: int = 0
    verdict: str = OK
    why: str = ""

    def json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "hostId": self.host_id,
            "verdict": self.verdict,
            "why": self.why,
            "lastRecord": text.utc(self.last_record) or None,
            "lastBlob": self.last_blob,
            "bytesBehind": self.behind_bytes,
            "stored24h": self.stored,
            "quarantined24h": self.quarantined,
            "skipped24h": self.skipped,
            "other24h": self.other,
            "noIdentity24h": self.no_identity,
            "poisonMessages": self.poisoned,
        }


@dataclass
class Status:
    checked_at: datetime
    hosts: list[HostStatus] = field(default_factory=list)
    pending_alerts: int = 0
    #: Pending for longer than ALERT_RETRY_HOURS: no longer retried, listed for people.
    undelivered: list[dict[str, Any]] = field(default_factory=list)
    detection_retries: int = 0
    poison_messages: int | None = None  # None: the queue could not be read
    #: `Other` messages of the window per text (every host), so a new one is seen the day it
    #: appears (`None`: texts a blob had no room to name, see `normalize.count_others`).
    others: Counter[str | None] = field(default_factory=Counter)
    #: Every Bastion host of the covered subscriptions (`queries.coverage_items`).
    coverage: list[dict[str, Any]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "checkedAt": text.utc(self.checked_at),
            "hosts": [h.json() for h in self.hosts],
            "pendingAlerts": self.pending_alerts,
            "alertsPastRetryHorizon": self.undelivered,
            "detectionRetries": self.detection_retries,
            "poisonMessages": self.poison_messages,
            **other_messages(self.others),
            "coverage": self.coverage,
        }


def other_messages(counts: Counter[str | None]) -> dict[str, Any]:
    """The most frequent `Other` messages, neutralised (`text.plain`), and how many records
    the rest hold (texts past `LISTED`, and those no blob had room to name)."""
    named = sorted(
        ((t, n) for t, n in counts.items() if t is not None), key=lambda x: (-x[1], x[0])
    )
    listed = [
        {"message": text.plain(t, normalize.MAX_OTHER_CHARS), "count": n} for t, n in named[:LISTED]
    ]
    rest = counts[None] + sum(n for _, n in named[LISTED:])
    return {"otherMessages24h": listed, "otherMessagesUnlisted24h": rest}


def verdict(h: HostStatus, now: datetime) -> tuple[str, str]:
    """ok / behind / silent / failing, and why, for one host."""
    if h.poisoned:
        return FAILING, f"{h.poisoned} blob(s) in the poison queue: see README, Poisoned blobs"
    if h.stale_bytes:
        return BEHIND, f"{h.stale_bytes} bytes not read although nothing was appended for 5 min"
    if h.last_record is None:
        return SILENT, "no record stored in the last 24 hours"
    if now - h.last_record > SILENT_AFTER:
        hours = (now - h.last_record).total_seconds() / 3600
        return SILENT, f"no record for {hours:.1f} h (is its diagnostic setting still there?)"
    return OK, ""


def collect(storage: Storage, logs: ContainerClient, now: datetime | None = None) -> Status:
    now = now or datetime.now(UTC)
    out = Status(now)
    hosts: dict[str, HostStatus] = {}
    hours = [f"{now - timedelta(hours=i):%Y-%m-%dT%H}" for i in range(25)]  # WINDOW, by hour
    cursors = storage.cursors(hours)
    for name, cursor in cursors.items():
        _add_cursor(hosts, name, cursor)
        out.others.update(dict(cursor.others))
    for folder in sorted(set(host_folders(logs))):
        host = _host(hosts, folder)
        for day in {now.date(), (now - WINDOW).date()}:
            prefix = f"{folder}y={day:%Y}/m={day:%m}/d={day:%d}/"
            for blob in logs.list_blobs(name_starts_with=prefix):
                if blob.last_modified < now - WINDOW:
                    continue
                read = cursors.get(blob.name)
                limit = storage.settings.max_record_bytes
                _add_size(host, blob.name, int(blob.size), blob.last_modified, read, now, limit)
    poisoned, out.poison_messages = _poison(storage)
    for name, count in poisoned.items():
        host = _host(hosts, name)
        host.poisoned += count
    labels = layout.host_labels(h.host_id for h in hosts.values() if h.host_id)
    for h in hosts.values():
        h.host = labels.get(h.host_id, h.host)
        h.verdict, h.why = verdict(h, now)
    out.hosts = sorted(hosts.values(), key=lambda h: (h.host, h.host_id))
    out.pending_alerts, out.undelivered = _pending(storage, now)
    retries = storage.state.partition(layout.RETRY_PARTITION, ["RowKey"])
    out.detection_retries = sum(1 for _ in retries)
    out.coverage = queries.coverage_items(storage)
    return out


def _add_cursor(hosts: dict[str, HostStatus], name: str, cursor: Cursor) -> None:
    host = _host(hosts, name)
    host.stored += cursor.stored
    host.quarantined += cursor.quarantined
    host.skipped += cursor.skipped
    host.other += sum(n for _, n in cursor.others)
    host.no_identity += cursor.no_identity
    if cursor.last_time is not None:
        last = cursor.last_time.astimezone(UTC)
        if host.last_record is None or last > host.last_record:
            host.last_record = last
    if name > host.last_blob:
        host.last_blob = name


def _add_size(
    host: HostStatus,
    name: str,
    size: int,
    modified: datetime,
    cursor: Cursor | None,
    now: datetime,
    max_record: int,
) -> None:
    read = 0 if cursor is None else (size if cursor.sealed else cursor.offset)
    behind = max(size - read, 0)
    host.behind_bytes += behind
    waiting_line = cursor is not None and behind <= max_record  # a cut line, waiting
    if behind and not waiting_line and now - modified > BEHIND_AFTER:
        host.stale_bytes += behind
    if name > host.last_blob:
        host.last_blob = name


def _poison(storage: Storage) -> tuple[dict[str, int], int | None]:
    """Blob names in the blob trigger's poison queue (a peek: at most 32), and its depth."""
    queue = storage.queues.get_queue_client(POISON_QUEUE)
    try:
        depth = int(queue.get_queue_properties().approximate_message_count or 0)
        messages = queue.peek_messages(max_messages=32) if depth else []
    except ResourceNotFoundError:
        return {}, 0  # never created: nothing was ever poisoned
    except HttpResponseError:
        return {}, None  # not allowed to read it (least privilege): say unknown, not zero
    names: dict[str, int] = defaultdict(int)
    for message in messages:
        name = _blob_name(message.content)
        if name:
            names[name] += 1
    return dict(names), depth


def _blob_name(content: str) -> str:
    for raw in (content, _b64(content)):
        try:
            doc = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("BlobName"), str):
            return str(doc["BlobName"])
    return ""


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def _pending(storage: Storage, now: datetime) -> tuple[int, list[dict[str, Any]]]:
    """Every notification still pending, whatever day its events are on, and those past the
    retry horizon (no longer sent: someone must look), oldest first, at most `LISTED`."""
    horizon = timedelta(hours=storage.settings.alert_retry_hours)
    select = ["PartitionKey", "RowKey", "AlertId", "Pending", "PendingSince", "UpdatedAt",
              "Severity", "Attempts", "LastError"]  # fmt: skip
    count, stuck = 0, []
    for row in storage.alerts.query(incidents.PENDING_FILTER, {"pending": "pending"}, select):
        count += 1
        if incidents.past_horizon(row, now, horizon):
            stuck.append(
                {
                    "alertId": str(row.get("AlertId") or ""),
                    "event": str(row.get("Pending") or ""),
                    "severity": str(row.get("Severity") or ""),
                    "pendingSince": _iso(incidents.pending_since(row)),
                    "attempts": int(row.get("Attempts") or 0),
                    "lastError": str(row.get("LastError") or ""),
                }
            )
    stuck.sort(key=lambda r: (r["pendingSince"] or "", r["alertId"]))
    return count, stuck[:LISTED]


def _host(hosts: dict[str, HostStatus], name: str) -> HostStatus:
    """The host a blob (or folder) is under, keyed by its resource ID: two hosts of one name
    in two subscriptions or resource groups are two rows."""
    host_id = layout.host_id_of_blob(name)
    if host_id.casefold() not in hosts:
        hosts[host_id.casefold()] = HostStatus(layout.host_name(host_id) or "(other)", host_id)
    return hosts[host_id.casefold()]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
