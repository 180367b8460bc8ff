"""Helpers for the reliability suite: fast clients, state snapshots, a restartable Azurite.

Every helper here is test-only; production code is exercised unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

from devtools import azurite, samples
from shared.core.settings import CONNECTION, LOGS_CONTAINER, Settings
from shared.ingest.loop import Pipeline, Summary
from shared.store import quarantine
from shared.store.layout import CURSOR_PARTITION
from shared.store.tables import Busy, Storage

#: What makes two alert rows "the same incident": everything but delivery bookkeeping.
ALERT_FIELDS = (
    "Rule",
    "Rules",
    "State",
    "Severity",
    "SubjectKind",
    "Subject",
    "FailureCount",
    "SuccessCount",
    "FirstSeen",
    "LastSeen",
    "Users",
    "DistinctUsers",
    "ClientIps",
    "TargetVMs",
    "BastionHosts",
    "CompromisedUsers",
    "Summary",
)
LIST_FIELDS = ("Users", "ClientIps", "TargetVMs", "BastionHosts", "CompromisedUsers")
#: The cursor's durable fields (the ETag is not part of the state).
CURSOR_FIELDS = (
    "BlobName",
    "Offset",
    "Mode",
    "Guard",
    "Stored",
    "Quarantined",
    "Skipped",
    "Size",
    "Sealed",
)


class FastStorage(Storage):
    """`Storage` whose clients give up at once when the emulator is gone.

    The SDK defaults retry for minutes with backoff (blob: 15 s initial backoff); the code under
    test relies on the *host* retrying the invocation, so the test retries the invocation too.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        conn = settings.connection
        fast = {
            "retry_total": 0,
            "retry_connect": 0,
            "retry_read": 0,
            "retry_status": 0,
            "connection_timeout": 2,
            "read_timeout": 10,
        }
        self.blobs = BlobServiceClient.from_connection_string(conn, **fast)
        self.tables = TableServiceClient.from_connection_string(conn, **fast)
        self.queues = QueueServiceClient.from_connection_string(conn, **fast)


def names(**overrides: str) -> dict[str, str]:
    """Table, queue and container names no other test (or process) uses."""
    env = azurite.isolated_env("", "R", **{"WEBHOOK_TIMEOUT_SECONDS": "2", **overrides})
    del env[CONNECTION]
    return env


def new_pipeline(connection: str, env: dict[str, str], fast: bool = False) -> Pipeline:
    settings = Settings.from_env({**env, CONNECTION: connection})
    return Pipeline(settings, FastStorage(settings) if fast else None)


def close(*pipelines: Pipeline) -> None:
    for p in pipelines:
        p.storage.close()
        p.detector.close()


#: Invocations that raised and were retried, as the Functions host retries a blob trigger.
HOST_RETRIES: list[str] = []


def invoke(p: Pipeline, blob: BlobClient, now: datetime, attempts: int = 5) -> Summary:
    """One blob-trigger invocation with the host's retries: a storage fault (here: the emulator
    resetting a connection under load) fails the invocation, and the host runs it again."""
    for attempt in range(attempts):
        try:
            return p.ingest(blob, now)
        except (AzureError, Busy) as exc:  # what the host retries
            if attempt == attempts - 1:
                raise
            HOST_RETRIES.append(f"{blob.blob_name}: {type(exc).__name__}: {exc}"[:300])
    raise AssertionError("unreachable")


def logs_container(p: Pipeline) -> ContainerClient:
    container = p.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not container.exists():
        container.create_container()
    return container


def upload(p: Pipeline, blobs: dict[str, bytes]) -> ContainerClient:
    container = logs_container(p)
    for name, data in blobs.items():
        container.upload_blob(name, data, overwrite=True)
    return container


def _rows(p: Pipeline, table: str) -> Iterable[dict[str, Any]]:
    return p.storage.table(table).query("PartitionKey ge @lo", {"lo": ""})


@dataclass
class Snapshot:
    """Everything a run leaves behind that must not depend on faults, timing or interleaving."""

    events: dict[tuple[str, str], dict[str, Any]]
    index: dict[tuple[str, str], dict[str, Any]]
    alerts: dict[tuple[str, str], dict[str, Any]]
    cursors: dict[str, dict[str, Any]]
    quarantine: dict[str, dict[str, Any]]
    queue_messages: int
    alert_ids: list[str]  # which invocation named an incident depends on timing
    notices: int = 0  # decided for people, over all incidents (each is sent once)

    def incidents(self) -> list[str]:
        """Alerts without their row keys (which name the first finding, whoever found it)."""
        return sorted(repr([a[f] for f in ALERT_FIELDS]) for a in self.alerts.values())


def _alert_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The incident's fields; its name lists are sets (their order is the order of discovery,
    which depends on which blob was read first)."""
    out = {f: row.get(f) for f in ALERT_FIELDS}
    for f in LIST_FIELDS:
        out[f] = sorted(orjson.loads(out[f] or "[]"))
    return out


def snapshot(p: Pipeline, blob_prefix: str = "") -> Snapshot:
    s = p.settings

    def keyed(table: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["PartitionKey"], r["RowKey"]): _answer(r) for r in _rows(p, table)}

    rows = [r for r in keyed(s.alerts_table).values() if "FirstSeen" in r]  # not head rows
    alerts = {(r["PartitionKey"], r["RowKey"]): _alert_fields(r) for r in rows}
    cursors = {
        row["BlobName"]: {f: row.get(f) for f in CURSOR_FIELDS}
        for row in p.storage.state.query(  # `cursor` and the hour partitions `cursor|<hour>`
            "PartitionKey ge @lo and PartitionKey lt @hi",
            {"lo": CURSOR_PARTITION, "hi": CURSOR_PARTITION + "~"},
        )
        if row["BlobName"].startswith(blob_prefix)
    }
    quarantine = quarantine_lines(p)
    queue = p.storage.queues.get_queue_client(s.alert_queue)
    try:
        messages = queue.get_queue_properties().approximate_message_count
    except Exception:  # no alert was ever sent: the queue does not exist
        messages = 0
    return Snapshot(
        events=keyed(s.events_table),
        index=keyed(s.index_table),
        alerts=alerts,
        cursors=cursors,
        quarantine=quarantine,
        queue_messages=messages,
        alert_ids=sorted(r["AlertId"] for r in rows),
        notices=sum(int(r.get("Seq") or 0) for r in rows),
    )


#: Bookkeeping of arrival, not answers: a baseline row's `Was` names the sign-in its first
#: sighting displaced (which one depends on the order records came in; `shared.baselines.profiler`).
ARRIVAL_FIELDS = ("Was", "WasIp")


def _answer(row: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in ARRIVAL_FIELDS}


def quarantine_lines(p: Pipeline) -> dict[str, dict[str, Any]]:
    """Every quarantine line, keyed by the piece it describes (`<blob>@<offset>#<index>`).

    A chunk's rejects are one JSON Lines document; where a retry cut the blob at another
    byte, a piece may be listed in two documents, identically: keyed by piece, it counts once.
    """
    out: dict[str, dict[str, Any]] = {}
    container = p.storage.blobs.get_container_client(p.settings.quarantine_container)
    if not container.exists():
        return out
    for item in container.list_blobs():
        for line in quarantine.read(container.download_blob(item.name).readall()):
            line.pop("QuarantinedAt")
            out[f"{line['SourceBlob']}@{line['SourceOffset']:012d}#{line['SourceIndex']}"] = line
    return out


def assert_same_state(got: Snapshot, want: Snapshot, same_alert_keys: bool = True) -> None:
    """Nothing lost, nothing doubled: same rows with the same properties, table by table."""
    assert set(got.events) == set(want.events), "event keys differ"
    assert got.events == want.events, "event properties differ"
    assert set(got.index) == set(want.index), "index keys differ"
    assert got.index == want.index, "index properties differ"
    if same_alert_keys:
        assert set(got.alerts) == set(want.alerts), "alert keys differ"
        assert got.alerts == want.alerts, "alert properties differ"
    assert got.incidents() == want.incidents(), "incidents differ"
    assert got.cursors == want.cursors, "cursors differ"
    assert got.quarantine == want.quarantine, "quarantine differs"


class Restartable:
    """An Azurite on fixed ports and a folder on disk, so it can be stopped and started again."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.ports = (azurite.free_port(), azurite.free_port(), azurite.free_port())
        self.running: azurite.Azurite | None = azurite.start(location, self.ports)
        self.connection_string = self.running.connection_string
        self.stops = 0

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
            self.running = None
            self.stops += 1

    def start(self) -> None:
        if self.running is None:
            self.running = azurite.start(self.location, self.ports)


# -- data -----------------------------------------------------------------------------------
ATTACK_IP = "203.0.113.99"
SPRAY_IP = "198.18.7.7"
HOUR = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def lines(records: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def big_blob(records: int = 250) -> tuple[str, bytes]:
    """One hour of one host, several 64 KiB chunks long, with a brute force running through it
    (so alerts are created early and merged into later) and some lines for quarantine."""
    out = []
    for i in range(records):
        when = HOUR + timedelta(seconds=11 * i)
        out.append(
            samples.record(when, f"user{i % 8}", samples.OK, f"82.165.10.{i % 5}",
                           port=30000 + i, host="BASTION-FAULT")
        )  # fmt: skip
        if i % 12 == 0:
            out.append(
                samples.record(when + timedelta(seconds=1), "admin", samples.FAIL, ATTACK_IP,
                               port=20000 + i, host="BASTION-FAULT")
            )  # fmt: skip
    body = lines(out)
    third = body.index(b"\n", len(body) // 3) + 1
    bad = b'{"time": "2026-11-24T10:20:00Z", "category": "BastionAuditLogs", "prop\n<x>\xff\xfe\n'
    return samples.blob_path("BASTION-FAULT", HOUR), body[:third] + bad + body[third:]


def split_attack(parts: int = 4) -> dict[str, bytes]:
    """A brute force and a password spray split over several hosts' blobs of the same hour."""
    hosts = [f"BASTION-SPLIT-{n}" for n in range(parts)]
    per_host: dict[str, list[dict[str, Any]]] = {h: [] for h in hosts}
    start = HOUR + timedelta(hours=1)
    for i in range(16):  # root from ATTACK_IP, interleaved over the hosts
        host = hosts[i % parts]
        when = start + timedelta(seconds=20 * i)
        per_host[host].append(
            samples.record(when, "root", samples.FAIL, ATTACK_IP, port=21000 + i, host=host)
        )
    for i in range(9):  # nine users from SPRAY_IP
        host = hosts[(i * 3) % parts]
        when = start + timedelta(minutes=30, seconds=40 * i)
        per_host[host].append(
            samples.record(when, f"sprayed{i}", samples.FAIL, SPRAY_IP, port=22000 + i, host=host)
        )
    for i in range(parts * 5):  # ordinary traffic
        host = hosts[i % parts]
        when = start + timedelta(minutes=2 * i)
        per_host[host].append(
            samples.record(when, f"ops{i}", samples.OK, f"10.1.0.{i}", port=23000 + i, host=host)
        )
    return {
        samples.blob_path(h, start): lines(sorted(rs, key=lambda r: r["time"]))
        for h, rs in per_host.items()
    }


def all_blobs() -> dict[str, bytes]:
    """The sample set, a multi-chunk blob and an attack split over blobs."""
    blobs, _ = samples.build()
    name, data = big_blob()
    return {**blobs, name: data, **split_attack()}


def fault_blobs() -> dict[str, bytes]:
    """A multi-chunk blob, a legacy wrapper blob and an attack split over blobs."""
    blobs, _ = samples.build()
    wrapper = samples.blob_path("BASTION-DEV", samples.START)
    name, data = big_blob()
    return {name: data, wrapper: blobs[wrapper], **split_attack()}
