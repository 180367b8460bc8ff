"""The runners (ingest, detection, baselines, delivery, retention) on the in-memory services
(`devtools.memtables`), in milliseconds: the inner loop of `make unit`. What the memory table
may stand in for, `tests/store/test_table_contract.py` proves against Azurite; the Azurite suites
stay the proof of the product.
"""

from __future__ import annotations

import base64
import io
import random
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import orjson
import pytest

from devtools import alerts, azurite, memtables, samples
from shared.core.settings import Settings
from shared.ingest.loop import Pipeline
from shared.keep import expiry
from shared.store.tables import Storage

LATER = samples.START + timedelta(days=3)


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    settings = Settings.from_env(azurite.isolated_env("UseDevelopmentStorage=true"))
    p = Pipeline(settings, Storage(settings, services=memtables.services()))
    yield p
    p.detector.close()
    p.storage.close()


def rows(p: Pipeline, table: str) -> list[dict[str, Any]]:
    return list(p.storage.table(table).query("PartitionKey ge @lo", {"lo": ""}))


def incidents(p: Pipeline) -> list[dict[str, Any]]:
    return [r for r in rows(p, p.settings.alerts_table) if "FirstSeen" in r]


def messages(p: Pipeline) -> list[dict[str, Any]]:
    queue = p.storage.queues.get_queue_client(p.settings.alert_queue)
    return [orjson.loads(base64.b64decode(m.content)) for m in queue.peek_messages(1000)]


def ingest(p: Pipeline, blobs: dict[str, bytes], order: list[str]) -> None:
    for name in order:
        p.ingest(memtables.MemoryBlob(blobs[name], blob_name=name), LATER)  # type: ignore[arg-type]


def test_the_sample_set_gives_its_incidents_each_told_once(pipeline: Pipeline) -> None:
    blobs, expected = samples.build()
    ingest(pipeline, blobs, sorted(blobs))
    assert len(rows(pipeline, pipeline.settings.events_table)) == expected.records
    quarantined = pipeline.storage.blobs.get_container_client(
        pipeline.settings.quarantine_container
    )
    assert quarantined.list_blobs()  # the crafted lines of the sample set
    found = incidents(pipeline)
    assert {(r["Rule"], r["Subject"]) for r in found} == expected.alerts
    assert len(messages(pipeline)) == sum(int(r["Seq"]) for r in found) > 0
    assert all(r["Status"] == "delivered" for r in found if r["Seq"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_order_of_blobs_gives_the_same_incidents(seed: int) -> None:
    """Answers do not depend on the order blobs arrive in (newest first, shuffled)."""
    blobs, expected = samples.build()
    order = sorted(blobs)
    random.Random(seed).shuffle(order)
    settings = Settings.from_env(azurite.isolated_env("UseDevelopmentStorage=true"))
    p = Pipeline(settings, Storage(settings, services=memtables.services()))
    ingest(p, blobs, order)
    assert {(r["Rule"], r["Subject"]) for r in incidents(p)} == expected.alerts
    p.detector.close()


def test_the_queue_command_prints_each_alert_then_the_count(pipeline: Pipeline) -> None:
    blobs, _ = samples.build()
    ingest(pipeline, blobs, sorted(blobs))
    out = io.StringIO()
    assert alerts.show_queue(pipeline.settings, out, storage=pipeline.storage) == 0
    *lines, last = out.getvalue().splitlines()
    events = [m["event"] for m in messages(pipeline)]
    assert [orjson.loads(line)["event"] for line in lines] == events
    assert last == f"{len(lines)} message(s) in {pipeline.settings.alert_queue}"


def test_a_replay_adds_nothing(pipeline: Pipeline) -> None:
    blobs, _ = samples.build()
    ingest(pipeline, blobs, sorted(blobs))
    before = {t: rows(pipeline, t) for t in (pipeline.settings.events_table,
                                             pipeline.settings.alerts_table)}  # fmt: skip
    told = len(messages(pipeline))
    for row in pipeline.storage.state.query("PartitionKey ge @lo", {"lo": ""}):
        pipeline.storage.state.client.delete_entity(row)  # cursors lost: all read again
    ingest(pipeline, blobs, sorted(blobs))
    for table, was in before.items():
        assert len(rows(pipeline, table)) == len(was)
    assert len(messages(pipeline)) == told


def test_baselines_learn_and_a_pending_notice_is_redelivered(pipeline: Pipeline) -> None:
    blobs, _ = samples.build()
    ingest(pipeline, blobs, sorted(blobs))
    baselines = [r for r in rows(pipeline, pipeline.settings.index_table)
                 if r["PartitionKey"].startswith("prof|")]  # fmt: skip
    assert baselines
    (first, *_) = incidents(pipeline)
    alerts = pipeline.storage.alerts
    owed = {"PartitionKey": first["PartitionKey"], "RowKey": first["RowKey"],
            "Pending": first["Rule"] and "updated", "Status": "pending", "DeliveredTo": "",
            "PendingSince": LATER, "UpdatedAt": LATER}  # fmt: skip
    alerts.update(owed, first.metadata["etag"])
    told = len(messages(pipeline))
    tried, done = pipeline.detector.deliverer.redeliver_pending(LATER + timedelta(minutes=10))
    assert (tried, done) == (1, 1) and len(messages(pipeline)) == told + 1


def test_retention_removes_what_is_past_it(pipeline: Pipeline) -> None:
    blobs, expected = samples.build()
    ingest(pipeline, blobs, sorted(blobs))
    assert len(rows(pipeline, pipeline.settings.events_table)) == expected.records
    far = samples.START + timedelta(days=pipeline.settings.retention_days + 3)
    removed = expiry.Expirer(pipeline.storage).run(far.astimezone(UTC))
    assert removed["events"] == expected.records
    assert rows(pipeline, pipeline.settings.events_table) == []
