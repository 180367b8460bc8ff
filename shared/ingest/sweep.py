"""The sweep: find the hour blobs that grew since they were last read, and ingest those.

Appends to an append blob raise no Event Grid event, so a timer (every minute by default) looks
for them. It must cost almost nothing when nothing changed:

- the Bastion hosts' folders (`.../BASTIONHOSTS/<host>/`) are found by walking the container's
  upper folders, at most every `HOSTS_REFRESH`, and remembered by the worker;
- per host, one flat listing per day in the look-back window returns its hour blobs with their
  ETags (the only per-host request of a quiet minute);
- the cursors of those hours are read in one query per hour (they are partitioned by hour);
- a blob whose ETag is the one its cursor last saw is skipped without a request, unless its
  cut last line has meanwhile become final (nobody appended for `ingest.SETTLE`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobPrefix, BlobProperties, ContainerClient

from shared.ingest.blobs import SETTLE
from shared.ingest.loop import Pipeline, Summary
from shared.store import layout
from shared.store.tables import Cursor, Storage, blob_etag

log = logging.getLogger(__name__)
#: How often the worker walks the container again for Bastion hosts it has not seen yet.
HOSTS_REFRESH = timedelta(minutes=10)
_HOST_FOLDER = "BASTIONHOSTS"


class SweepError(RuntimeError):
    """Some blobs of a sweep failed (each is logged); the others were ingested."""


@dataclass
class SweepResult:
    summaries: list[Summary] = field(default_factory=list)
    listed: int = 0  # hour blobs in the look-back window
    skipped: int = 0  # unchanged since their cursor: no request made for them


@dataclass
class Sweeper:
    """One per worker process: remembers the hosts' folders between sweeps."""

    storage: Storage
    pipeline: Pipeline
    lookback: timedelta
    hosts: list[str] = field(default_factory=list)
    found_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, container: ContainerClient, now: datetime | None = None) -> SweepResult:
        """Ingest every recent hour blob that changed; raise `SweepError` after all others
        were done if some failed (the next sweep tries them again)."""
        now = now or datetime.now(UTC)
        since = now - self.lookback
        hours = _hours(since, now)
        listed = self._listed(container, now, since)
        recent = [b for b in listed if layout.hour_of_blob(b.name) in hours]
        cursors = self.storage.cursors(hours)
        out = SweepResult(listed=len(recent))
        failed = 0
        for item in recent:
            if item.last_modified < since or unchanged(item, cursors.get(item.name), now):
                out.skipped += 1
                continue
            try:  # one blob's fault must not hide the others' appends
                out.summaries.append(
                    self.pipeline.ingest(container.get_blob_client(item.name), now)
                )
            except Exception:
                failed += 1
                log.exception("sweep: %s failed; the next sweep tries again", item.name)
        log.info(
            "sweep: %d recent blob(s), %d unchanged, %d read, %d failed",
            out.listed,
            out.skipped,
            len(out.summaries),
            failed,
        )
        if failed:
            raise SweepError(f"{failed} of {out.listed} blob(s) failed; see the log")
        return out

    def _listed(
        self, container: ContainerClient, now: datetime, since: datetime
    ) -> Iterator[BlobProperties]:
        for host in self._hosts(container, now):
            for day in _days(since, now):
                prefix = f"{host}y={day:%Y}/m={day:%m}/d={day:%d}/"
                yield from container.list_blobs(name_starts_with=prefix)

    def _hosts(self, container: ContainerClient, now: datetime) -> list[str]:
        with self.lock:
            if self.found_at is None or now - self.found_at >= HOSTS_REFRESH:
                self.hosts = sorted(host_folders(container))
                self.found_at = now
            return list(self.hosts)


def unchanged(item: BlobProperties, cursor: Cursor | None, now: datetime) -> bool:
    """Nothing to do for this blob: same ETag as last read, and no cut line turned final."""
    if cursor is None or not cursor.blob_etag or cursor.blob_etag != blob_etag(item.etag):
        return False
    waiting = cursor.offset < cursor.size and not cursor.sealed
    return not (waiting and now - item.last_modified >= SETTLE)


def host_folders(container: ContainerClient, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """`.../BASTIONHOSTS/<host>/` folders, walking folder by folder (never listing blobs)."""
    if depth > 24:
        return
    for item in container.walk_blobs(name_starts_with=prefix, delimiter="/"):
        if not isinstance(item, BlobPrefix):
            continue
        parent = prefix.rstrip("/").rsplit("/", 1)[-1]
        if parent.upper() == _HOST_FOLDER:
            yield item.name
        elif not item.name[len(prefix) :].startswith("y="):
            yield from host_folders(container, item.name, depth + 1)


def _hours(since: datetime, now: datetime) -> set[str]:
    out, hour = set(), since.replace(minute=0, second=0, microsecond=0)
    while hour <= now:
        out.add(f"{hour:%Y-%m-%dT%H}")
        hour += timedelta(hours=1)
    return out


def _days(since: datetime, now: datetime) -> list[datetime]:
    out, day = [], since.replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= now:
        out.append(day)
        day += timedelta(days=1)
    return out
