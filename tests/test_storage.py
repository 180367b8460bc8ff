"""Transaction batching: the limits of entity-group transactions, checked without I/O."""

from __future__ import annotations

from shared.storage import MAX_BATCH, MAX_BATCH_BYTES, _batches


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
