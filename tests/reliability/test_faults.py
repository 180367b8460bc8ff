"""Faults in the middle of an invocation: the host retries it, and the end state is the same.

The emulator is stopped at chosen points (before the Nth call of a storage operation) and
started again on the same folder and ports; the failed invocation must raise, the retried one
must finish, and the tables, cursors, quarantine and queue must equal those of an undisturbed
run on a separate emulator: nothing lost, nothing doubled, each alert created and sent once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from azure.core.exceptions import AzureError
from reliability_support import (
    Restartable,
    Snapshot,
    assert_same_state,
    close,
    fault_blobs,
    names,
    new_pipeline,
    snapshot,
    split_attack,
    upload,
)

from devtools import samples
from devtools.azurite import Azurite
from shared.detect import runner
from shared.ingest.loop import Pipeline
from shared.notify import delivery
from shared.store import tables

pytestmark = pytest.mark.azurite
CHUNK = {"READ_CHUNK_BYTES": "65536"}  # the smallest chunk: the big blob takes several
LATER = timedelta(minutes=10)  # past the redelivery grace period


def ingest_all(p: Pipeline, blobs: dict[str, bytes], retries: int = 0) -> int:
    """Ingest each blob as its trigger would; a raising invocation is retried like the host
    does (at once here). Returns how many invocations raised."""
    container = upload(p, blobs)
    failed = 0
    for name in blobs:
        for attempt in range(retries + 1):
            try:
                p.ingest(container.get_blob_client(name), datetime.now(UTC))
            except (AzureError, InjectedFault):
                failed += 1
                if attempt == retries:
                    raise
                continue
            break
    p.detector.deliverer.redeliver_pending(datetime.now(UTC) + LATER)  # the timer's job
    return failed


@pytest.fixture(scope="module")
def reference(emulator: Azurite) -> Iterator[Snapshot]:
    """The undisturbed run, on the session emulator with names of its own."""
    p = new_pipeline(emulator.connection_string, names(**CHUNK))
    assert ingest_all(p, fault_blobs()) == 0
    state = snapshot(p)
    close(p)
    assert state.alerts and state.quarantine and len(state.cursors) == len(fault_blobs())
    assert state.queue_messages == state.notices
    yield state


class InjectedFault(RuntimeError):
    pass


def on_nth_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, attr: str, nth: int, fault: Callable[[], None]
) -> list[int]:
    """Run `fault` just before the Nth call of owner.attr; returns the call counter."""
    original = getattr(owner, attr)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            fault()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attr, wrapper)
    return calls


# (what is patched, its name, which call): the 1st chunk's index writes, its event writes
# (index rows stored, events not: the order `store` keeps), a cursor advance, the start of
# incident bookkeeping, and alert delivery.
STOP_POINTS = [
    pytest.param(tables.Storage, "upsert", 1, id="index-write-1"),
    pytest.param(tables.Storage, "upsert", 2, id="events-write-1"),
    pytest.param(tables.Storage, "quarantine", 1, id="quarantine-1"),
    pytest.param(tables.Storage, "write_cursor", 2, id="cursor-advance-2"),
    pytest.param(runner.Evaluation, "_settle", 2, id="incident-record-2"),
    pytest.param(delivery.Deliverer, "deliver", 1, id="alert-delivery-1"),
]


@pytest.mark.parametrize(("owner", "attr", "nth"), STOP_POINTS)
def test_emulator_stopped_mid_invocation(
    restartable: Restartable,
    reference: Snapshot,
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    attr: str,
    nth: int,
) -> None:
    p = new_pipeline(restartable.connection_string, names(**CHUNK), fast=True)
    blobs = fault_blobs()
    upload(p, blobs)  # before the hooks count anything
    calls = on_nth_call(monkeypatch, owner, attr, nth, restartable.stop)
    container = p.storage.blobs.get_container_client("insights-logs-bastionauditlogs")
    raised = 0
    for name in blobs:
        try:
            p.ingest(container.get_blob_client(name), datetime.now(UTC))
        except AzureError:
            raised += 1
            assert restartable.running is None
            restartable.start()  # storage comes back; the host retries the invocation
            p.ingest(container.get_blob_client(name), datetime.now(UTC))
    p.detector.deliverer.redeliver_pending(datetime.now(UTC) + LATER)
    assert calls[0] >= nth and restartable.stops == 1
    assert raised == 1, "the invocation that lost storage must fail (so the host retries it)"
    got = snapshot(p)
    close(p)
    assert_same_state(got, reference)
    assert got.queue_messages == got.notices, "each alert is sent once"


@pytest.mark.parametrize("nth", [1, 4])
def test_failure_between_records_and_cursor(
    emulator: Azurite, reference: Snapshot, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """Records (and alerts) are written, the cursor advance fails: the retry repeats that
    chunk's writes as idempotent upserts and does not alert again."""

    def fault() -> None:
        raise InjectedFault("storage went away before the cursor moved")

    p = new_pipeline(emulator.connection_string, names(**CHUNK))
    calls = on_nth_call(monkeypatch, tables.Storage, "write_cursor", nth, fault)
    raised = ingest_all(p, fault_blobs(), retries=1)
    assert raised == 1 and calls[0] > nth
    got = snapshot(p)
    attempts = [
        row["Attempts"]
        for row in p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
        if "FirstSeen" in row  # not the per-actor head rows
    ]
    close(p)
    assert_same_state(got, reference)
    assert got.queue_messages == got.notices, "an alert was sent twice"
    assert attempts == [1] * len(got.alerts)


def test_a_conflict_after_an_actors_day_was_written_still_sends_its_notice(
    emulator: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account writes its incident (a notice owed), then finds that an IP incident changed
    meanwhile and decides again: the second attempt finds the notice decided already, so the
    invocation must still send it, itself (a parallel run once left one for the timer)."""
    hour = samples.START + timedelta(hours=2)
    spread = [samples.record(hour + timedelta(seconds=50 * i), "victim", samples.FAIL,
                             f"203.0.113.{60 + i}", port=i, host="BASTION-SPREAD")
              for i in range(8)]  # fmt: skip  # one account, from addresses no rule sees
    blobs = {**samples.build()[0], **split_attack(), samples.blob_path("BASTION-SPREAD", hour):
             b"".join(orjson.dumps(r) + b"\n" for r in spread)}  # fmt: skip

    def run() -> Snapshot:
        p = new_pipeline(emulator.connection_string, names())
        container = upload(p, blobs)
        for name in sorted(blobs):
            p.ingest(container.get_blob_client(name), datetime.now(UTC))  # no redelivery timer
        state = snapshot(p)
        close(p)
        return state

    want = run()
    original = runner.CoverReader.moved
    moved: list[bool] = []

    def once(self: runner.CoverReader, cover: Any) -> bool:
        moved.append(not moved)
        return moved[-1] or original(self, cover)

    monkeypatch.setattr(runner.CoverReader, "moved", once)
    got = run()
    assert moved[:1] == [True] and want.notices  # it decided again
    assert_same_state(got, want)
    assert got.queue_messages == got.notices == want.notices
