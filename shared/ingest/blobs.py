"""Read room: ranged reads of one audit-log blob and what its properties say.

Kept apart from the ingest loop so the loop reads as steps; nothing here writes anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, BlobProperties, BlobType

#: The cursor remembers a digest of this many bytes before it, to notice a rewritten blob.
GUARD_BYTES = 1024
#: An append blob nobody appended to for this long is taken as complete: its cut last line is
#: quarantined (and read again, whole, should the blob grow after all).
SETTLE = timedelta(hours=1)


@dataclass(frozen=True)
class Opened:
    """The first read of an invocation: the blob's size and properties, and the bytes read."""

    size: int
    props: BlobProperties
    data: bytes


def open_at(blob: BlobClient, begin: int, length: int) -> Opened:
    """Blob size, properties, and up to `length` bytes from `begin` (none past the end)."""
    try:
        download = blob.download_blob(offset=begin, length=length)
    except HttpResponseError as exc:
        if exc.status_code != 416:  # 416: `begin` is at or past the end
            raise
        props = blob.get_blob_properties()
        return Opened(int(props.size), props, b"")
    props = download.properties
    # A ranged read's `size` is the range's; the blob's is after the slash of Content-Range.
    total = props.content_range.rpartition("/")[2] if props.content_range else ""
    size = int(total) if total.isdigit() else int(props.size)
    return Opened(size, props, download.readall())


def read(blob: BlobClient, offset: int, length: int) -> bytes:
    """The next chunk (empty if the blob shrank while we read)."""
    return bytes(blob.download_blob(offset=offset, length=length).readall())


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def final(props: BlobProperties, now: datetime) -> bool:
    """Can the blob still grow? Not if it is not an append blob, or nobody appended for SETTLE
    (whatever hour its name says: copies, re-exports and late writes append to old hours)."""
    if props.blob_type != BlobType.APPENDBLOB:
        return True
    modified = props.last_modified
    return modified is not None and now - modified >= SETTLE
