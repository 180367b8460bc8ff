"""The blob-trigger function end to end against a real Azurite: formats, identities, quarantine,
redelivery, growing append blobs, concurrent invocations and the timer sweep."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from azure.functions.timer import TimerRequest

from devtools import samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest import blobs
from shared.ingest.loop import Pipeline
from shared.store import keys, layout, quarantine

pytestmark = pytest.mark.azurite


def all_rows(pipeline: Pipeline, table: str) -> list[dict[str, Any]]:
    return list(pipeline.storage.table(table).query("PartitionKey ge @lo", {"lo": ""}))


def event_keys(pipeline: Pipeline) -> list[tuple[str, str]]:
    return sorted(
        (r["PartitionKey"], r["RowKey"]) for r in all_rows(pipeline, pipeline.settings.events_table)
    )


def quarantine_lines(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every line of every quarantine document (one JSON Lines blob per chunk with rejects)."""
    container = pipeline.storage.blobs.get_container_client(pipeline.settings.quarantine_container)
    return [
        line
        for item in container.list_blobs()
        for line in quarantine.read(container.download_blob(item.name).readall())
    ]


def upload_samples(logs: Any, prefix: str) -> tuple[list[str], samples.Expected]:
    blobs, expected = samples.build()
    names = []
    for name, data in blobs.items():
        logs.upload_blob(prefix + name, data, overwrite=True)
        names.append(prefix + name)
    return names, expected


def test_indexed_trigger_ingests_the_sample_set(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    pipeline = app_env()
    trigger = indexed_app["ingest_blob"].get_user_function()
    names, expected = upload_samples(logs, blob_prefix)
    for name in names:
        trigger(logs.get_blob_client(name))
    events = all_rows(pipeline, pipeline.settings.events_table)
    assert len(events) == expected.records
    docs = quarantine_lines(pipeline)
    assert len(docs) == expected.quarantined
    assert {d["Reason"].split(":")[0] for d in docs} == {
        "malformed", "wrong_category", "bad_time", "oversized", "truncated"
    }  # fmt: skip
    assert all(d["SourceBlob"] in names and d["Raw"] for d in docs)
    names_seen = {e["UserName"] for e in events}
    assert {"CONTOSO\\bob", "bob/ops", "h#x?r", "zoë", ""} <= names_seen
    incidents = [r for r in all_rows(pipeline, pipeline.settings.alerts_table) if "FirstSeen" in r]
    alerts = {(a["Rule"], a["Subject"]) for a in incidents}
    assert alerts == expected.alerts


def test_redelivery_adds_nothing(pipeline: Pipeline, logs: Any, blob_prefix: str) -> None:
    names, _ = upload_samples(logs, blob_prefix)
    for name in names:
        pipeline.ingest(logs.get_blob_client(name))
    before = event_keys(pipeline), len(all_rows(pipeline, pipeline.settings.alerts_table))
    # The host redelivers: same blobs again, and the cursor of one is lost.
    pipeline.storage.state.client.delete_entity(
        layout.cursor_partition(names[1]),
        keys.blob_key(LOGS_CONTAINER, names[1]),
    )
    summaries = [pipeline.ingest(logs.get_blob_client(name)) for name in names]
    assert event_keys(pipeline) == before[0]
    assert len(all_rows(pipeline, pipeline.settings.alerts_table)) == before[1]
    assert sum(s.read for s in summaries) > 0  # the blob without cursor was read again
    assert not any(s.alerts for s in summaries)


def test_same_record_in_two_blobs_is_stored_once(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    rec = orjson.dumps(samples.record(samples.START, "alice", samples.OK, "1.2.3.4")) + b"\n"
    logs.upload_blob(blob_prefix + "a/PT1H.json", rec + rec)
    logs.upload_blob(blob_prefix + "b/PT1H.json", rec)
    first = pipeline.ingest(logs.get_blob_client(blob_prefix + "a/PT1H.json"))
    second = pipeline.ingest(logs.get_blob_client(blob_prefix + "b/PT1H.json"))
    assert (first.read, first.stored, first.skipped) == (2, 1, 1)
    assert second.stored == 1
    assert len(event_keys(pipeline)) == 1


def test_fail_rows_gather_the_minutes_of_every_blob(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    """Two hosts' blobs fail one account in two minutes of one hour: its `fail|<hour>` row,
    merged by both writers, names both (whichever came first)."""
    at = samples.START + timedelta(minutes=7)
    for host, minute in (("BASTION-A", 7), ("BASTION-B", 41)):
        rec = samples.record(at.replace(minute=minute), "alice", samples.FAIL, "1.2.3.4", host=host)
        name = blob_prefix + samples.blob_path(host, samples.START)
        logs.upload_blob(name, orjson.dumps(rec) + b"\n")
        pipeline.ingest(logs.get_blob_client(name))
    hour = layout.FAIL_PREFIX + samples.START.strftime("%Y-%m-%dT%H")
    rows = {r["RowKey"]: r for r in pipeline.storage.index.partition(hour)}
    assert {k: layout.failed_minutes(r) for k, r in rows.items()} == {
        "ip|1.2.3.4": {7, 41},
        "user|alice": {7, 41},
    }


def _records(n: int, start: int = 0) -> bytes:
    base = datetime(2026, 11, 24, 10, tzinfo=UTC)
    return b"".join(
        orjson.dumps(
            samples.record(
                base + timedelta(seconds=i), f"user{i % 7}", samples.OK, "10.1.1.1", port=i
            )
        )
        + b"\n"
        for i in range(start, start + n)
    )


def growing_blob(logs: Any, blob_prefix: str) -> Any:
    name = blob_prefix + "y=2026/m=11/d=24/h=10/m=00/PT1H.json"
    client = logs.get_blob_client(name)
    client.create_append_blob()
    return client


def test_append_blob_grown_in_steps_stores_every_record_once(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    client = growing_blob(logs, blob_prefix)
    data = _records(50)
    cuts = [0, 700, 5000, 5001, 20000, len(data) - 10, len(data)]  # several end mid-line
    now = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)  # the hour is still being written
    read = 0
    for lo, hi in itertools.pairwise(cuts):
        client.append_block(data[lo:hi])
        summary = pipeline.ingest(client, now=now)
        read += summary.bytes_read
        assert summary.quarantined == 0
    assert len(event_keys(pipeline)) == 50
    # Each byte is read once, plus per invocation the guard bytes and a carried partial line.
    longest = max(len(line) for line in data.splitlines())
    assert read - len(data) <= (len(cuts) - 1) * (blobs.GUARD_BYTES + longest)


def test_truncated_tail_is_final_only_once_nobody_appends_any_more(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    client = growing_blob(logs, blob_prefix)
    client.append_block(_records(3) + b'{"time": "2026-11-24T10:59')
    now = datetime.now(UTC)
    during = pipeline.ingest(client, now=now)
    assert (during.stored, during.quarantined) == (3, 0)  # the tail may still be completed
    after = pipeline.ingest(client, now=now + blobs.SETTLE + timedelta(minutes=1))
    assert (after.read, after.quarantined) == (1, 1)
    again = pipeline.ingest(client, now=now + blobs.SETTLE + timedelta(minutes=2))
    assert again.read == 0  # sealed: nothing new, nothing quarantined twice


def test_an_old_hour_blob_growing_now_loses_no_record(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    """A re-exported or late-written hour of last week, whose appends end mid-line: the blob
    is still growing (its last-modified time is now), so its cut line waits for the rest."""
    name = blob_prefix + "y=2026/m=11/d=17/h=03/m=00/PT1H.json"  # a week-old hour
    client = logs.get_blob_client(name)
    client.create_append_blob()
    data = _records(20)
    cuts = [0, 1500, 7777, len(data) - 300, len(data)]  # appends that end mid-line
    for lo, hi in itertools.pairwise(cuts):
        client.append_block(data[lo:hi])
        summary = pipeline.ingest(client)  # now: the real time, minutes after the append
        assert summary.quarantined == 0
    assert len(event_keys(pipeline)) == 20


def test_a_cut_line_taken_as_final_is_read_again_if_the_blob_grows_after_all(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    client = growing_blob(logs, blob_prefix)
    data = _records(4)
    cut = len(data) - 40
    client.append_block(data[:cut])
    later = datetime.now(UTC) + blobs.SETTLE + timedelta(minutes=5)
    first = pipeline.ingest(client, now=later)  # idle for over an hour: the cut line is final
    assert (first.stored, first.quarantined) == (3, 1)
    client.append_block(data[cut:])  # ...but the rest of it arrives after all
    second = pipeline.ingest(client, now=later)
    assert second.stored == 1 and len(event_keys(pipeline)) == 4


def test_concurrent_invocations_on_one_growing_blob(
    make_pipeline: Callable[..., Pipeline], logs: Any, blob_prefix: str
) -> None:
    first = make_pipeline()
    env = {
        "EVENTS_TABLE": first.settings.events_table,
        "INDEX_TABLE": first.settings.index_table,
        "STATE_TABLE": first.settings.state_table,
        "ALERTS_TABLE": first.settings.alerts_table,
        "READ_CHUNK_BYTES": "65536",
    }
    instances = [first, *(make_pipeline(**env) for _ in range(3))]
    client = growing_blob(logs, blob_prefix)
    data = _records(400)
    now = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    errors: list[BaseException] = []

    def invoke(p: Pipeline) -> None:
        try:
            p.ingest(logs.get_blob_client(client.blob_name), now=now)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for lo in range(0, len(data), len(data) // 4 + 1):
        client.append_block(data[lo : lo + len(data) // 4 + 1])
        threads = [threading.Thread(target=invoke, args=(p,)) for p in instances]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(event_keys(first)) == 400
    cursor = first.storage.read_cursor(
        keys.blob_key(LOGS_CONTAINER, client.blob_name), client.blob_name
    )
    assert cursor.offset == len(data) and cursor.stored + cursor.skipped >= 400


def test_rewritten_blob_is_read_again(pipeline: Pipeline, logs: Any, blob_prefix: str) -> None:
    name = blob_prefix + "PT1H.json"
    logs.upload_blob(name, _records(10))
    assert pipeline.ingest(logs.get_blob_client(name)).stored == 10
    logs.upload_blob(name, _records(5, start=100), overwrite=True)  # shorter, other content
    again = pipeline.ingest(logs.get_blob_client(name))
    assert again.restarted and again.stored == 5
    logs.upload_blob(name, _records(12, start=200), overwrite=True)  # longer, other content
    third = pipeline.ingest(logs.get_blob_client(name))
    assert third.restarted and third.stored == 12
    assert len(event_keys(pipeline)) == 27


def test_timer_sweep_picks_up_appends_no_trigger_announced(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = app_env()
    now = datetime.now(UTC)
    name = blob_prefix + samples.blob_path("BASTION-SWEEP", now)
    client = logs.get_blob_client(name)
    client.create_append_blob()
    client.append_block(_records(5, start=5000))
    indexed_app["ingest_blob"].get_user_function()(client)  # Event Grid: fired on creation
    client.append_block(_records(7, start=5005))  # AppendBlock raises no event
    quiet = blob_prefix + samples.blob_path("BASTION-QUIET", now)  # read already, unchanged
    logs.upload_blob(quiet, _records(2, start=6000))
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(quiet))
    old = blob_prefix + samples.blob_path("BASTION-SWEEP", datetime(2020, 1, 1, tzinfo=UTC))
    logs.upload_blob(old, _records(3, start=7000))  # an old hour's folder
    reads: list[str] = []
    original = Pipeline.ingest

    def counted(self: Pipeline, blob: Any, now: datetime | None = None) -> Any:
        reads.append(blob.blob_name)
        return original(self, blob, now)

    monkeypatch.setattr(Pipeline, "ingest", counted)
    timer = indexed_app["sweep_recent_blobs"].get_user_function()
    timer(TimerRequest(past_due=False))
    events = all_rows(pipeline, pipeline.settings.events_table)
    assert len([e for e in events if e["SourceBlob"] == name]) == 12
    assert not [e for e in events if e["SourceBlob"] == old]  # old folders are not walked
    assert name in reads and quiet not in reads  # an unchanged blob costs no request
    reads.clear()
    timer(TimerRequest(past_due=False))
    assert name not in reads  # nothing new since: skipped on its ETag


def test_empty_blob_gives_a_clear_outcome(pipeline: Pipeline, logs: Any, blob_prefix: str) -> None:
    logs.upload_blob(blob_prefix + "PT1H.json", b"")
    summary = pipeline.ingest(logs.get_blob_client(blob_prefix + "PT1H.json"))
    assert (summary.read, summary.stored, summary.quarantined) == (0, 0, 0)


def test_storage_fault_fails_the_invocation(
    pipeline: Pipeline, logs: Any, blob_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = blob_prefix + "PT1H.json"
    logs.upload_blob(name, _records(10))

    def broken(*args: object, **kwargs: object) -> None:
        raise ConnectionError("table service down")

    with monkeypatch.context() as m:
        m.setattr(pipeline.storage, "upsert", broken)
        with pytest.raises(ConnectionError):
            pipeline.ingest(logs.get_blob_client(name))
    retry = pipeline.ingest(logs.get_blob_client(name))  # the host's retry
    assert retry.stored == 10 and len(event_keys(pipeline)) == 10
