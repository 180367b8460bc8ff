"""Parallel invocations (as from several Function instances) end in the state of a serial run.

Each thread has its own Pipeline (own clients, own HTTP session), all on the same table, queue
and container names, as instances of one app have; they start together behind a barrier.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from azure.storage.blob import BlobClient
from reliability_support import (
    ATTACK_IP,
    HOUR,
    assert_same_state,
    close,
    invoke,
    lines,
    logs_container,
    names,
    new_pipeline,
    snapshot,
    split_attack,
    upload,
)

from devtools import samples
from devtools.azurite import Azurite
from shared.ingest import normalize
from shared.ingest.loop import Pipeline

pytestmark = pytest.mark.azurite
INSTANCES = 8


def run_parallel(work: list[Callable[[], None]]) -> None:
    """Start every callable at once (behind a barrier); re-raise the first failure."""
    barrier = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(fn: Callable[[], None]) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "an invocation hung"
    if errors:
        raise errors[0]


def test_parallel_instances_equal_serial_run(emulator: Azurite) -> None:
    blobs = {**samples.build()[0], **split_attack()}
    now = datetime.now(UTC)

    serial = new_pipeline(emulator.connection_string, names())
    container = upload(serial, blobs)
    for name in blobs:
        serial.ingest(container.get_blob_client(name), now)
    want = snapshot(serial)
    close(serial)

    env = names()
    instances = [new_pipeline(emulator.connection_string, env) for _ in range(INSTANCES)]
    container = upload(instances[0], blobs)
    alerted: list[str] = []

    def instance(i: int, p: Pipeline) -> Callable[[], None]:
        order = sorted(blobs)
        random.Random(i).shuffle(order)  # each blob is ingested by all instances, in any order

        def work() -> None:
            for name in order:
                alerted.extend(invoke(p, container.get_blob_client(name), now).alerts)

        return work

    run_parallel([instance(i, p) for i, p in enumerate(instances)])
    got = snapshot(instances[0])
    close(*instances)

    assert want.alerts and len(want.events) > 100
    assert_same_state(got, want)
    assert len(got.alerts) == len(want.alerts), "one alert per incident"
    assert sorted(alerted) == got.alert_ids, (
        f"an incident was notified twice or not at all: {alerted}"
    )
    assert got.queue_messages == got.notices, "an alert was sent twice"


def test_concurrent_invocations_on_growing_append_blob(emulator: Azurite) -> None:
    """A writer appends records in pieces cut at random bytes while 8 instances keep ingesting
    the blob; every record is stored once and the cursor counts each record once."""
    rng = random.Random(7)
    records = [
        samples.record(HOUR + timedelta(seconds=7 * i), f"worker{i % 6}", samples.OK,
                       f"10.8.0.{i % 4}", port=10000 + i, host="BASTION-GROW")
        for i in range(300)
    ]  # fmt: skip
    records += [
        samples.record(HOUR + timedelta(minutes=20, seconds=5 * i), "admin", samples.FAIL,
                       ATTACK_IP, port=9000 + i, host="BASTION-GROW")
        for i in range(8)
    ]  # fmt: skip
    records.sort(key=lambda r: r["time"])
    data = lines(records)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]

    env = names()
    instances = [new_pipeline(emulator.connection_string, env) for _ in range(INSTANCES)]
    name = samples.blob_path("BASTION-GROW", HOUR)
    blob: BlobClient = logs_container(instances[0]).get_blob_client(name)
    blob.create_append_blob()
    now = HOUR + timedelta(minutes=30)  # the hour is not over: the blob may still grow
    done = threading.Event()

    def writer() -> None:
        for piece in pieces:
            blob.append_block(piece)
        done.set()

    def reader(p: Pipeline) -> Callable[[], None]:
        client = logs_container(p).get_blob_client(name)

        def work() -> None:
            while not done.is_set():
                invoke(p, client, now)
            invoke(p, client, now)

        return work

    run_parallel([writer, *(reader(p) for p in instances)])
    got = snapshot(instances[0])
    close(*instances)

    expected = {
        (e["PartitionKey"], e["RowKey"])
        for e in (normalize.normalize(r, name, 0, 0) for r in map(orjson.loads, data.splitlines()))
    }
    assert set(got.events) == expected and len(got.events) == len(records)
    cursor = got.cursors[name]
    assert (cursor["Offset"], cursor["Stored"], cursor["Quarantined"], cursor["Skipped"]) == (
        len(data),
        len(records),
        0,
        0,
    )
    assert not got.quarantine
    # One campaign, one incident: the account's brute force is the attacking IP's incident.
    rules = sorted((a["Rule"], a["Subject"], tuple(a["Users"])) for a in got.alerts.values())
    assert rules == [("ip_brute_force", ATTACK_IP, ("admin",))]
    assert got.queue_messages == 1
    assert len(got.cursors) == 1
