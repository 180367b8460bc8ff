"""Ingest what is new in one audit-log blob: read from the cursor, store, detect, advance.

Every trigger means "this blob changed; read the delta". The cursor (bytes consumed, parser
mode, the bytes just before it) lives in a table row; the new bytes are read with ranged GETs
in bounded chunks, and after each chunk's records, index rows, quarantine and detection are
written, the cursor moves on under an ETag check. A crash anywhere repeats at most one chunk,
whose writes are idempotent upserts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobClient,
    BlobPrefix,
    BlobProperties,
    BlobType,
    ContainerClient,
)

from . import keys, model, parse, quarantine
from .alerting import Deliverer
from .detect import Detector, Outcome
from .detection import Thresholds
from .settings import Settings
from .storage import Conflict, Cursor, Storage

log = logging.getLogger(__name__)
#: The cursor remembers a digest of this many bytes before it, to notice a rewritten blob.
GUARD_BYTES = 1024
_HOUR = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/")
#: Hour blobs stop growing soon after their hour; past this their partial tail is final.
SETTLE = timedelta(hours=1)


@dataclass
class Summary:
    """What one invocation did with one blob; `read == stored + quarantined + skipped`."""

    blob: str
    read: int = 0
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    bytes_read: int = 0
    alerts: list[str] = field(default_factory=list)
    restarted: bool = False

    def line(self) -> str:
        return (
            f"blob={self.blob} read={self.read} stored={self.stored} "
            f"quarantined={self.quarantined} skipped={self.skipped} "
            f"bytes_read={self.bytes_read} new_alerts={len(self.alerts)}"
        )


class Pipeline:
    """Everything an invocation needs, built once per worker process."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.storage = storage or Storage(settings)
        self.deliverer = Deliverer(self.storage)
        self.thresholds = thresholds(settings)
        self._pool = ThreadPoolExecutor(settings.write_concurrency, "detect")
        self.detector = Detector(
            self.storage,
            self.thresholds,
            timedelta(minutes=settings.notify_interval_minutes),
            self._allowed,
            self.deliverer.deliver_incident,
            self._pool,
        )

    def ingest(self, blob: BlobClient, now: datetime | None = None) -> Summary:
        """Store everything the blob holds beyond its cursor. Raises on storage faults."""
        summary = Summary(blob.blob_name)
        while True:
            try:
                self._ingest_once(blob, summary, now or datetime.now(UTC))
            except Conflict:
                log.info(
                    "cursor of %s moved under us; continuing from its new place", blob.blob_name
                )
                continue
            log.info("ingest %s", summary.line())
            return summary

    def _ingest_once(self, blob: BlobClient, summary: Summary, now: datetime) -> None:
        s = self.settings
        bkey = keys.blob_key(blob.container_name, blob.blob_name)
        cursor = self.storage.read_cursor(bkey)
        start = cursor.offset
        # One ranged GET brings the blob's size and type, the bytes before the cursor (to check
        # that the blob was not rewritten) and the first new chunk.
        guard = cursor.guard_length if start else 0
        size, props, data = _open(blob, start - guard, guard + s.read_chunk_bytes)
        summary.bytes_read += len(data)
        if start > size or (start and digest(data[:guard]) != cursor.guard):
            log.warning(
                "%s was rewritten (cursor %d, size %d): reading it again",
                blob.blob_name,
                start,
                size,
            )
            summary.restarted = True
            start, guard, cursor = 0, 0, Cursor(etag=cursor.etag)
            size, props, data = _open(blob, 0, s.read_chunk_bytes)
            summary.bytes_read += len(data)
        final = props.blob_type != BlobType.APPENDBLOB or _settled(blob.blob_name, now)
        mode = parse.Mode(cursor.mode)
        if start >= size and not (final and mode is parse.Mode.UNKNOWN and size == 0):
            return
        tail, chunk = data[:guard], data[guard:]
        carry = b""
        pos = start  # absolute offset of carry[0]
        read_at = start + len(chunk)
        while True:
            buf = carry + chunk if carry else chunk
            last = read_at >= size
            split = parse.stream(buf, pos, mode, final and last, s.max_record_bytes)
            counts = self._store(blob.blob_name, split.pieces, summary, now)
            new_pos = pos + split.consumed
            recent = buf[max(0, split.consumed - GUARD_BYTES) : split.consumed]
            tail = (tail + recent)[-GUARD_BYTES:]
            advanced = Cursor(
                offset=new_pos,
                mode=split.mode.value,
                guard=digest(tail),
                guard_length=len(tail),
                stored=cursor.stored + counts[0],
                quarantined=cursor.quarantined + counts[1],
                skipped=cursor.skipped + counts[2],
            )
            if new_pos != cursor.offset or split.mode.value != cursor.mode or cursor.etag is None:
                etag = self.storage.write_cursor(bkey, blob.blob_name, cursor, advanced)
                cursor = replace(advanced, etag=etag)
            if last:
                return
            carry, pos, mode = buf[split.consumed :], new_pos, split.mode
            length = min(s.read_chunk_bytes, size - read_at)
            chunk = blob.download_blob(offset=read_at, length=length).readall()
            read_at += len(chunk)
            summary.bytes_read += len(chunk)
            if not chunk:  # shrank while we read: the next invocation starts over
                return

    def _store(
        self, blob_name: str, pieces: Iterable[parse.Piece], summary: Summary, now: datetime
    ) -> tuple[int, int, int]:
        events: dict[tuple[str, str], dict[str, Any]] = {}
        rejects = quarantine.Batch(blob_name)  # one document per chunk, bounded in size
        last_rejected, reason = object(), ""  # parse shares the value of identical items
        skipped = 0
        normalize = model.normalize
        for piece in pieces:
            if piece.error is not None:
                rejects.add(piece, piece.error)
                continue
            if piece.value is last_rejected:
                rejects.add(piece, reason)
                continue
            try:
                entity = normalize(piece.value, blob_name, piece.offset, piece.index)
            except model.Rejected as exc:
                last_rejected, reason = piece.value, str(exc)
                rejects.add(piece, reason)
                continue
            key = (entity["PartitionKey"], entity["RowKey"])
            if key in events:
                skipped += 1
            else:
                events[key] = entity
        rows = list(events.values())
        self.storage.upsert(
            (self.settings.events_table, rows),
            (self.settings.index_table, list(model.index_rows(rows))),
        )
        self.storage.quarantine(rejects)
        summary.read += len(rows) + rejects.count + skipped
        summary.stored += len(rows)
        summary.quarantined += rejects.count
        summary.skipped += skipped
        if rows:
            self.detector.run(rows, now, Outcome(summary.alerts))
        return len(rows), rejects.count, skipped

    def _allowed(self, ip: str) -> bool:
        if not self.settings.ip_allowlist:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.settings.ip_allowlist)

    # -- the sweep ----------------------------------------------------------------------
    def sweep(self, container: ContainerClient, now: datetime | None = None) -> list[Summary]:
        """Ingest every recently changed blob: appends to an append blob raise no event."""
        now = now or datetime.now(UTC)
        since = now - timedelta(hours=self.settings.sweep_lookback_hours)
        hours = {
            _date_parts(now - timedelta(hours=i))
            for i in range(self.settings.sweep_lookback_hours + 1)
        }
        done: list[Summary] = []
        failed = 0
        for item in recent_blobs(container, "", (), hours):
            if item.last_modified >= since and item.name.endswith(".json"):
                try:  # one blob's fault must not hide the others' appends
                    done.append(self.ingest(container.get_blob_client(item.name), now))
                except Exception:
                    failed += 1
                    log.exception("sweep: %s failed; the next sweep tries again", item.name)
        log.info("sweep: %d recent blob(s) checked, %d failed", len(done) + failed, failed)
        if failed:
            raise SweepError(f"{failed} of {len(done) + failed} blob(s) failed; see the log")
        return done


class SweepError(RuntimeError):
    """Some blobs of a sweep failed (each is logged); the others were ingested."""


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        failures=settings.failure_threshold,
        window=timedelta(minutes=settings.failure_window_minutes),
        spray_users=settings.spray_user_threshold,
        spray_window=timedelta(minutes=settings.spray_window_minutes),
        quiet=timedelta(minutes=settings.incident_quiet_minutes),
        max_hours=settings.incident_max_hours,
    )


def _date_parts(when: datetime) -> tuple[str, ...]:
    return (f"y={when:%Y}", f"m={when:%m}", f"d={when:%d}", f"h={when:%H}")


def recent_blobs(
    container: ContainerClient, prefix: str, seen: tuple[str, ...], hours: set[tuple[str, ...]]
) -> Iterator[BlobProperties]:
    """Blobs under `prefix`, walking folders but only the `y=/m=/d=/h=` ones of `hours`.

    Listing the whole container every few minutes would grow with years of hour blobs; this
    reads a few folder listings per Bastion host instead.
    """
    for item in container.walk_blobs(name_starts_with=prefix, delimiter="/"):
        if not isinstance(item, BlobPrefix):
            yield item
            continue
        segment = item.name[len(prefix) :].rstrip("/")
        parts = seen
        if len(seen) < 4 and segment.startswith(("y=", "m=", "d=", "h=")[len(seen)]):
            parts = (*seen, segment)
            if not any(h[: len(parts)] == parts for h in hours):
                continue  # an older year, month, day or hour
        yield from recent_blobs(container, item.name, parts, hours)


def _open(blob: BlobClient, begin: int, length: int) -> tuple[int, BlobProperties, bytes]:
    """Blob size, properties, and up to `length` bytes from `begin` (none past the end)."""
    try:
        download = blob.download_blob(offset=begin, length=length)
    except HttpResponseError as exc:
        if exc.status_code != 416:  # 416: `begin` is at or past the end
            raise
        props = blob.get_blob_properties()
        return int(props.size), props, b""
    props = download.properties
    # A ranged read's `size` is the range's; the blob's is after the slash of Content-Range.
    total = props.content_range.rpartition("/")[2] if props.content_range else ""
    return int(total) if total.isdigit() else int(props.size), props, download.readall()


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _settled(name: str, now: datetime) -> bool:
    """An hour blob whose hour ended more than SETTLE ago will not grow any more."""
    match = _HOUR.search("/" + name)
    if not match:
        return False
    y, m, d, h = (int(g) for g in match.groups())
    end = datetime(y, m, d, h, tzinfo=UTC) + timedelta(hours=1)
    return now >= end + SETTLE
