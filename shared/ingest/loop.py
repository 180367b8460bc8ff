"""Ingest room: read what is new in one audit-log blob, chunk by chunk, from its cursor.

Every trigger means "this blob changed; read the delta". The cursor (bytes consumed, parser
mode, the bytes just before it) lives in a table row; each chunk is read (`shared.ingest.blobs`),
split (`parse`), stored (`chunks`), detected over (`shared.detect.runner`), and then the
cursor moves on under an ETag check. A crash anywhere repeats at most one chunk, whose writes
are idempotent upserts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from azure.storage.blob import BlobClient

from shared.core.settings import Settings
from shared.detect.runner import Detector, Outcome, build
from shared.ingest import blobs, parse
from shared.ingest.blobs import GUARD_BYTES, digest
from shared.ingest.chunks import Stored, store
from shared.keep import policy
from shared.store import keys
from shared.store.tables import Conflict, Cursor, Storage, blob_etag

log = logging.getLogger(__name__)


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

    @classmethod
    def total(cls, summaries: Iterable[Summary]) -> Summary:
        """One summary for many blobs (the CLI's and the demo's last line)."""
        out = cls("total")
        for one in summaries:
            out.read, out.stored = out.read + one.read, out.stored + one.stored
            out.quarantined += one.quarantined
            out.skipped += one.skipped
            out.bytes_read += one.bytes_read
            out.alerts += one.alerts
        return out

    def add(self, chunk: Stored) -> None:
        self.read += chunk.read
        self.stored += chunk.stored
        self.quarantined += chunk.quarantined
        self.skipped += chunk.skipped

    def line(self) -> str:
        return (
            f"blob={self.blob} read={self.read} stored={self.stored} "
            f"quarantined={self.quarantined} skipped={self.skipped} "
            f"bytes_read={self.bytes_read} new_alerts={len(self.alerts)}"
        )


@dataclass
class _Place:
    """Where the walk through one blob stands: the bytes of an unfinished record carried
    over (starting at absolute offset `pos`), the parser's mode and the bytes before `pos`."""

    pos: int
    mode: parse.Mode
    tail: bytes
    carry: bytes = b""


class Pipeline:
    """Reads blobs for one worker process; `detector` gets every stored chunk's records."""

    def __init__(
        self, settings: Settings, storage: Storage | None = None, detector: Detector | None = None
    ) -> None:
        self.settings = settings
        self.storage = storage or Storage(settings)
        self.detector = detector or build(self.storage)

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
        """Read -> split -> store -> detect -> advance, one chunk at a time."""
        name, chunk_bytes = blob.blob_name, self.settings.read_chunk_bytes
        key = keys.blob_key(blob.container_name, name)
        cursor, opened, guard = self._open(blob, key, summary)
        final = blobs.final(opened.props, now)
        seen = replace(cursor, blob_etag=blob_etag(opened.props.etag), size=opened.size)
        if _nothing_new(cursor, opened.size, final):
            if (seen.blob_etag, seen.size) != (cursor.blob_etag, cursor.size):
                self.storage.write_cursor(key, name, cursor, seen)  # the sweep skips it now
            return
        cursor = replace(seen, etag=cursor.etag)
        place = _Place(cursor.offset, parse.Mode(cursor.mode), opened.data[:guard])
        keep_quarantine = policy.first_kept(self.settings.quarantine_retention_days, now) or ""
        chunk, read_at = opened.data[guard:], cursor.offset + len(opened.data) - guard
        while True:
            buf, last = place.carry + chunk, read_at >= opened.size
            split = parse.stream(
                buf, place.pos, place.mode, final and last, self.settings.max_record_bytes
            )
            stored = store(self.storage, name, split.pieces, keep_quarantine)
            summary.add(stored)
            if stored.rows:
                self.detector.run(stored.rows, now, Outcome(summary.alerts))
            sealed = opened.size if final and last else 0
            cursor = self._advance(key, name, cursor, place, buf, split, stored, sealed)
            if last:
                return
            chunk = blobs.read(blob, read_at, min(chunk_bytes, opened.size - read_at))
            read_at += len(chunk)
            summary.bytes_read += len(chunk)
            if not chunk:  # shrank while we read: the next invocation starts over
                return

    def _open(
        self, blob: BlobClient, key: str, summary: Summary
    ) -> tuple[Cursor, blobs.Opened, int]:
        """The cursor, and one ranged GET that brings the blob's size and type, the bytes
        before the cursor (to check the blob was not rewritten) and the first new chunk."""
        cursor = self.storage.read_cursor(key, blob.blob_name)
        start, chunk_bytes = cursor.offset, self.settings.read_chunk_bytes
        guard = cursor.guard_length if start else 0
        opened = blobs.open_at(blob, start - guard, guard + chunk_bytes)
        summary.bytes_read += len(opened.data)
        if start > opened.size or (start and digest(opened.data[:guard]) != cursor.guard):
            log.warning(
                "%s was rewritten (cursor %d, size %d): reading it again",
                blob.blob_name,
                start,
                opened.size,
            )
            summary.restarted = True
            cursor, guard = Cursor(etag=cursor.etag), 0
            opened = blobs.open_at(blob, 0, chunk_bytes)
            summary.bytes_read += len(opened.data)
        return cursor, opened, guard

    def _advance(
        self,
        key: str,
        name: str,
        cursor: Cursor,
        place: _Place,
        buf: bytes,
        split: parse.Stream,
        stored: Stored,
        final_size: int,
    ) -> Cursor:
        """Move the cursor past what this chunk consumed (ETag-guarded) and `place` with it."""
        consumed, sealed = split.consumed, 0
        if stored.cut_at is not None and final_size and split.mode is parse.Mode.LINES:
            # A cut last line taken as final stays before the cursor: if the blob grows
            # after all (a late or re-exported append), the line is read again, whole.
            consumed, sealed = stored.cut_at - place.pos, final_size
        recent = buf[max(0, consumed - GUARD_BYTES) : consumed]
        place.tail = (place.tail + recent)[-GUARD_BYTES:]
        place.pos, place.mode, place.carry = place.pos + consumed, split.mode, buf[consumed:]
        advanced = replace(
            cursor,
            offset=place.pos,
            mode=split.mode.value,
            guard=digest(place.tail),
            guard_length=len(place.tail),
            stored=cursor.stored + stored.stored,
            quarantined=cursor.quarantined + stored.quarantined,
            skipped=cursor.skipped + stored.skipped,
            others=stored.others(cursor.others),
            no_identity=cursor.no_identity + stored.no_identity,
            sealed=sealed,
            last_time=max(filter(None, (cursor.last_time, stored.latest)), default=None),
        )
        if advanced == cursor and cursor.etag is not None:
            return cursor
        etag = self.storage.write_cursor(key, name, cursor, advanced)
        return replace(advanced, etag=etag)


def _nothing_new(cursor: Cursor, size: int, final: bool) -> bool:
    """Nothing to read: the cursor is at the end (or before a sealed cut line), unless the
    blob is an empty final one never looked at (its cursor is written once, as read)."""
    nothing = cursor.offset >= size or bool(cursor.sealed and size <= cursor.sealed)
    never_read_empty = final and parse.Mode(cursor.mode) is parse.Mode.UNKNOWN and size == 0
    return nothing and not never_read_empty
