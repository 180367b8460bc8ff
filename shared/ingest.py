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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobClient,
    BlobProperties,
    BlobType,
)

from . import keys, layout, model, parse, quarantine
from .alerting import Deliverer
from .detect import Detector, Outcome
from .detection import Thresholds
from .settings import Settings
from .storage import Conflict, Cursor, Storage, blob_etag

log = logging.getLogger(__name__)
#: The cursor remembers a digest of this many bytes before it, to notice a rewritten blob.
GUARD_BYTES = 1024
#: An append blob nobody appended to for this long is taken as complete: its cut last line is
#: quarantined (and read again, whole, should the blob grow after all).
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
        cursor = self.storage.read_cursor(bkey, blob.blob_name)
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
        final = _final(props, now)
        mode = parse.Mode(cursor.mode)
        seen = replace(cursor, blob_etag=blob_etag(props.etag), size=size)
        nothing_new = start >= size or (cursor.sealed and size <= cursor.sealed)
        if nothing_new and not (final and mode is parse.Mode.UNKNOWN and size == 0):
            if (seen.blob_etag, seen.size) != (cursor.blob_etag, cursor.size):
                self.storage.write_cursor(bkey, blob.blob_name, cursor, seen)  # sweep skips it
            return
        cursor = replace(seen, etag=cursor.etag)
        tail, chunk = data[:guard], data[guard:]
        carry = b""
        pos = start  # absolute offset of carry[0]
        read_at = start + len(chunk)
        while True:
            buf = carry + chunk if carry else chunk
            last = read_at >= size
            split = parse.stream(buf, pos, mode, final and last, s.max_record_bytes)
            counts, cut_at, latest = self._store(blob.blob_name, split.pieces, summary, now)
            consumed, sealed = split.consumed, 0
            if cut_at is not None and final and last and split.mode is parse.Mode.LINES:
                # A cut last line taken as final stays before the cursor: if the blob grows
                # after all (a late or re-exported append), the line is read again, whole.
                consumed, sealed = cut_at - pos, size
            new_pos = pos + consumed
            recent = buf[max(0, consumed - GUARD_BYTES) : consumed]
            tail = (tail + recent)[-GUARD_BYTES:]
            advanced = replace(
                cursor,
                offset=new_pos,
                mode=split.mode.value,
                guard=digest(tail),
                guard_length=len(tail),
                stored=cursor.stored + counts[0],
                quarantined=cursor.quarantined + counts[1],
                skipped=cursor.skipped + counts[2],
                sealed=sealed,
                last_time=max(filter(None, (cursor.last_time, latest)), default=None),
            )
            if advanced != cursor or cursor.etag is None:
                etag = self.storage.write_cursor(bkey, blob.blob_name, cursor, advanced)
                cursor = replace(advanced, etag=etag)
            if last:
                return
            carry, pos, mode = buf[consumed:], new_pos, split.mode
            length = min(s.read_chunk_bytes, size - read_at)
            chunk = blob.download_blob(offset=read_at, length=length).readall()
            read_at += len(chunk)
            summary.bytes_read += len(chunk)
            if not chunk:  # shrank while we read: the next invocation starts over
                return

    def _store(
        self, blob_name: str, pieces: Iterable[parse.Piece], summary: Summary, now: datetime
    ) -> tuple[tuple[int, int, int], int | None, datetime | None]:
        """Store a chunk's pieces; returns (stored, quarantined, skipped), the offset of a last
        line quarantined as cut short (if any) and the latest record time stored."""
        events: dict[tuple[str, str], dict[str, Any]] = {}
        cut_at: int | None = None
        rejects = quarantine.Batch(blob_name)  # one document per chunk, bounded in size
        last_rejected, reason = object(), ""  # parse shares the value of identical items
        skipped = 0
        normalize = model.normalize
        for piece in pieces:
            if piece.error is not None:
                rejects.add(piece, piece.error)
                if piece.error.startswith("truncated"):
                    cut_at = piece.offset
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
            (self.storage.events, rows),
            (self.storage.index, list(layout.index_rows(rows))),
        )
        self.storage.quarantine(rejects)
        summary.read += len(rows) + rejects.count + skipped
        summary.stored += len(rows)
        summary.quarantined += rejects.count
        summary.skipped += skipped
        if rows:
            self.detector.run(rows, now, Outcome(summary.alerts))
        latest = max((r["TimeGenerated"] for r in rows), default=None)
        return (len(rows), rejects.count, skipped), cut_at, latest

    def _allowed(self, ip: str) -> bool:
        if not self.settings.ip_allowlist:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.settings.ip_allowlist)


def thresholds(settings: Settings) -> Thresholds:
    return Thresholds(
        failures=settings.failure_threshold,
        window=timedelta(minutes=settings.failure_window_minutes),
        spray_users=settings.spray_user_threshold,
        spray_window=timedelta(minutes=settings.spray_window_minutes),
        quiet=timedelta(minutes=settings.incident_quiet_minutes),
        max_hours=settings.incident_max_hours,
    )


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


def _final(props: BlobProperties, now: datetime) -> bool:
    """Can the blob still grow? Not if it is not an append blob, or nobody appended for SETTLE
    (whatever hour its name says: copies, re-exports and late writes append to old hours)."""
    if props.blob_type != BlobType.APPENDBLOB:
        return True
    modified = props.last_modified
    return modified is not None and now - modified >= SETTLE
