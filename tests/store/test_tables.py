"""Transaction batching: the limits of entity-group transactions, checked without I/O."""

from __future__ import annotations

from shared.store.tables import MAX_BATCH, MAX_BATCH_BYTES, _batches


def test_batches_hold_one_partition_at_most_100_entities() -> None:
    rows = [{"PartitionKey": f"p{i % 3}", "RowKey": str(i), "x": "y"} for i in range(450)]
    batches = list(_batches(rows))
    assert all(len({r["PartitionKey"] for r in b}) == 1 for b in batches)
    assert max(len(b) for b in batches) == MAX_BATCH
    assert sorted(r["RowKey"] for b in batches for r in b) == sorted(r["RowKey"] for r in rows)


def test_batches_stay_under_the_payload_limit() -> None:
    big = "z" * 30000  # ~60 KB as UTF-16
    rows = [{"PartitionKey": "p", "RowKey": str(i), "Extra": big} for i in range(100)]
    batches = list(_batches(rows))
    assert len(batches) > 1
    assert all(sum(2 * len(r["Extra"]) for r in b) <= MAX_BATCH_BYTES for b in batches)


def test_batch_parts_are_prepared_in_the_calling_thread() -> None:
    """The pinned azure-core gets the serial batch parts (`serial_batch_parts`); an upgrade
    that moves them must be looked at again, not silently lose the speed."""
    from azure.core import __version__
    from azure.core.pipeline import Pipeline

    from shared.store import tables

    assert __version__ == "1.41.0" and tables.SERIAL_BATCH_PARTS
    assert Pipeline._prepare_multipart_mixed_request is tables._prepare_parts


def test_days_in_runs_of_consecutive_days() -> None:
    from shared.store import layout

    days = ["2026-11-24", "2026-11-22", "2026-11-23", "2026-12-01", "2026-02-28", "2026-03-01"]
    assert layout.day_runs(days) == [
        ("2026-02-28", "2026-03-01"),
        ("2026-11-22", "2026-11-24"),
        ("2026-12-01", "2026-12-01"),
    ]
    assert layout.days_from("2026-12-30", "2027-01-02")[1:3] == ["2026-12-31", "2027-01-01"]
