"""Store room: turn one chunk's pieces into stored records, index rows and quarantine lines.

Every record gets a deterministic key, so storing a chunk twice (a retry, a racing instance)
writes the same rows; the counts satisfy `read == stored + quarantined + skipped`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from shared.core import domain
from shared.detect import planning
from shared.ingest import normalize
from shared.store import keys, layout, quarantine
from shared.store.entities import EventRow
from shared.store.tables import Storage


@dataclass(frozen=True)
class Stored:
    """What storing one chunk did."""

    rows: list[EventRow]  # the records stored (for detection)
    quarantined: int
    skipped: int  # the same record twice in the chunk: stored once
    cut_at: int | None  # offset of a last line quarantined as cut short, if any
    latest: datetime | None  # the latest record time stored
    no_identity: int = 0  # records stored with no user name and no e-mail

    def others(
        self, counts: Iterable[tuple[str | None, int]]
    ) -> tuple[tuple[str | None, int], ...]:
        """`counts` plus this chunk's `Other` messages (see `normalize.count_others`)."""
        return normalize.count_others(counts, self.rows)

    @property
    def stored(self) -> int:
        return len(self.rows)

    @property
    def read(self) -> int:
        return self.stored + self.quarantined + self.skipped


def store(
    storage: Storage, blob_name: str, pieces: Iterable[domain.Piece], quarantine_from: str = ""
) -> Stored:
    """Normalize, deduplicate and write a chunk's records (events and index rows), and its
    rejected pieces as one quarantine document, unless the blob's hour is before the first day
    quarantine keeps (`quarantine_from`: a late blob's rejects would outlive their retention;
    they are counted all the same). Raises on storage faults."""
    events: dict[tuple[str, str], EventRow] = {}
    cut_at: int | None = None
    rejects = quarantine.Batch(blob_name)  # one document per chunk, bounded in size
    last_rejected, reason = object(), ""  # parse shares the value of identical items
    skipped = 0
    to_row = normalize.normalize
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
            entity = to_row(piece.value, blob_name, piece.offset, piece.item)
        except normalize.Rejected as exc:
            last_rejected, reason = piece.value, str(exc)
            rejects.add(piece, reason)
            continue
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in events:
            skipped += 1
        else:
            events[key] = entity
    rows = list(events.values())
    # Index rows first, events after: an account (which reads events) then never sees a
    # failure its address (which reads the index) cannot, or it could decide the attack is
    # its own and tell people before the address's incident exists (docs/guarantees.md).
    aliases = storage.new_aliases(layout.alias_rows(rows))
    # Merged: a `fail|<hour>` row gathers the minutes of every writer's failures.
    storage.upsert((storage.index, [*layout.index_rows(rows), *aliases]), merge=True)
    storage.wrote_aliases(aliases)
    planning.checkpoint("stored", "index")
    storage.upsert((storage.events, rows))
    hour = layout.hour_of_blob(blob_name)  # '' for a name without hour folders: kept
    if not (quarantine_from and hour) or hour[:10] >= quarantine_from:
        storage.quarantine(rejects)
    latest = max((r["TimeGenerated"] for r in rows), default=None)
    anonymous = sum(not keys.identified(r["UserKey"]) for r in rows)
    return Stored(rows, rejects.count, skipped, cut_at, latest, anonymous)


def backfill_aliases(storage: Storage, batch: int = 5000) -> int:
    """Write the `who` rows (`layout.alias_rows`) of events stored before they existed: one
    read of the events table (three columns), once; upserts make a re-run harmless. How many
    (alias, account) rows were written."""
    select = ["PartitionKey", "RowKey", "UserName", "UserEmail", "UserKey"]
    seen: set[str] = set()
    pending: list[dict[str, object]] = []
    for row in storage.events.client.list_entities(select=select):
        event = cast(EventRow, {"UserName": "", "UserEmail": "", **dict(row)})
        pending += [r for r in layout.alias_rows([event]) if r["RowKey"] not in seen]
        seen.update(str(r["RowKey"]) for r in pending)
        if len(pending) >= batch:
            storage.upsert((storage.index, pending))
            pending = []
    storage.upsert((storage.index, pending))
    return len(seen)


def backfill_vm_keys(storage: Storage, batch: int = 5000) -> int:
    """Set `TargetVMKey` on the `ip|<day>` rows stored before it existed (issue 25: a VM
    question reads the IP partition filtered on it): one read of the IP partitions (four
    columns), merges of that one property; a re-run finds nothing to do. Rows updated."""
    select = ["PartitionKey", "RowKey", "TargetVMName", "TargetVMKey"]
    span = {"lo": layout.IP_PREFIX, "hi": layout.IP_PREFIX + "~"}
    pending: list[dict[str, str]] = []
    done = 0
    for row in storage.index.query(layout.PK_RANGE, span, select):
        if row.get("TargetVMName") and not row.get("TargetVMKey"):
            pending.append({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                            "TargetVMKey": str(row["TargetVMName"]).casefold()})  # fmt: skip
            done += 1
            if len(pending) >= batch:
                storage.upsert((storage.index, pending), merge=True)
                pending = []
    storage.upsert((storage.index, pending), merge=True)
    return done
