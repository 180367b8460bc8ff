"""Helpers shared by the benchmarks: realistic record streams, isolated settings, naive baseline.

Not part of the app. Records come from `devtools.samples.record`, so their shape (and size,
about 1.07 KB as JSON) is the documented Bastion audit record.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import random
import resource
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from azure.data.tables import TableClient, UpdateMode  # noqa: E402
from azure.storage.blob import BlobClient  # noqa: E402

from devtools import azurite, samples  # noqa: E402
from shared.core.settings import Settings  # noqa: E402

_FIRST = ["anna", "ben", "carla", "dmitri", "elif", "farid", "gina", "hugo", "ines", "jon"]
_LAST = ["smith", "mueller", "rossi", "kowalski", "nguyen", "garcia", "ivanova", "dubois"]
_ids = itertools.count(1)


def _people(rng: random.Random, n: int = 150) -> list[tuple[str, str, str]]:
    """(user name, usual client IP, usual VM) for `n` colleagues, some with a domain prefix."""
    vms = list(samples.VMS)
    out = []
    for i in range(n):
        name = f"{_FIRST[i % len(_FIRST)]}.{_LAST[(i // len(_FIRST)) % len(_LAST)]}{i // 80 or ''}"
        if i % 5 == 0:
            name = "CONTOSO\\" + name
        if i % 10 == 3:
            ip = f"2001:db8:{rng.randrange(1 << 16):x}::{rng.randrange(1 << 16):x}"
        else:
            first = rng.choice((82, 93, 145, 178))
            ip = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{i % 250 + 1}"
        out.append((name, ip, vms[i % len(vms)]))
    return out


def records(
    n: int,
    seed: int = 1,
    start: datetime = samples.START,
    span: timedelta = timedelta(hours=1),
    host: str = "BASTION-PROD",
) -> Iterator[dict[str, Any]]:
    """`n` realistic records in time order over `span`: ~96 % sign-ins, ~4 % failures.

    The default span is one hour, as a blob holds one hour of one Bastion host.

    150 users, each mostly from their own IP (10 % IPv6) to their usual VM; failures are
    half mistypes from the user's IP, half from 40 scanning addresses against random names.
    Every record is distinct (time strictly increases, port varies).
    """
    rng = random.Random(seed)
    people = _people(rng)
    attackers = [
        f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{i}" for i in range(40)
    ]
    vms = list(samples.VMS)
    step = span / max(n, 1)
    when = start
    for _ in range(n):
        when += max(timedelta(milliseconds=1), step * rng.uniform(0.5, 1.5))
        user, ip, vm = rng.choice(people)
        roll = rng.random()
        if roll < 0.96:
            message = samples.OK
        else:
            message = samples.FAIL
            if roll > 0.98:
                ip, user, vm = rng.choice(attackers), rng.choice(people)[0], rng.choice(vms)
        yield samples.record(
            when, user, message, ip, vm, host=host, port=rng.randrange(1024, 65536)
        )


def lines(n: int, **kwargs: Any) -> bytes:
    """`n` records as JSON Lines."""
    return b"".join(orjson.dumps(r) + b"\n" for r in records(n, **kwargs))


def env(connection: str, tag: str, **overrides: str) -> dict[str, str]:
    """App settings on table, queue and container names no other run uses."""
    return azurite.isolated_env(connection, tag, **overrides)


def settings(connection: str, tag: str, **overrides: str) -> Settings:
    return Settings.from_env(env(connection, tag, **overrides))


def count(table: TableClient) -> int:
    return sum(1 for _ in table.list_entities(select=["RowKey"]))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child started by a big
    parent would report the parent's size at fork time.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the naive baseline: stdlib json, whole-blob reads, one request per record ---------------
def naive_entity(line: bytes) -> dict[str, Any]:
    rec = json.loads(line)
    entity = {k: v for k, v in rec.items() if k != "properties"}
    entity.update(rec["properties"])
    entity["PartitionKey"] = rec["time"][:13]
    entity["RowKey"] = hashlib.sha256(line).hexdigest()
    return entity


def naive_ingest(blob: BlobClient, table: TableClient) -> tuple[int, int]:
    """Read the whole blob, store every complete line with its own upsert; (records, bytes)."""
    data = blob.download_blob().readall()
    complete = data[: data.rfind(b"\n") + 1]
    n = 0
    for line in complete.split(b"\n"):
        if line.strip():
            table.upsert_entity(naive_entity(line), mode=UpdateMode.REPLACE)
            n += 1
    return n, len(data)


class CountingBlob:
    """Wraps a BlobClient and counts every byte downloaded (cursor guard reads included)."""

    def __init__(self, blob: BlobClient) -> None:
        self._blob = blob
        self.downloaded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._blob, name)

    def download_blob(self, *args: Any, **kwargs: Any) -> Any:
        return _Counted(self, self._blob.download_blob(*args, **kwargs))


class _Counted:
    def __init__(self, owner: CountingBlob, stream: Any) -> None:
        self._owner, self._stream = owner, stream

    @property
    def properties(self) -> Any:
        return self._stream.properties

    def readall(self) -> bytes:
        data = self._stream.readall()
        self._owner.downloaded += len(data)
        return bytes(data)


# -- what the app writes, counted at the table client ------------------------------------------
class RowCounter:
    """Counts every row the app writes (upserts, inserts, updates and deletes, one per entity
    in a transaction) by table and row kind (the PartitionKey up to its first `|`), by
    wrapping the Tables SDK's client methods for as long as it is active."""

    _METHODS = ("upsert_entity", "create_entity", "update_entity", "delete_entity")

    def __init__(self) -> None:
        self.rows: collections.Counter[tuple[str, str]] = collections.Counter()
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> RowCounter:
        for name in (*self._METHODS, "submit_transaction"):
            self._saved[name] = getattr(TableClient, name)
        counter = self

        def single(name: str) -> Any:
            def wrapped(client: TableClient, *args: Any, **kwargs: Any) -> Any:
                entity = args[0] if args else kwargs.get("entity") or kwargs
                pk = entity.get("PartitionKey", "") if isinstance(entity, dict) else str(entity)
                counter.add(client.table_name, pk)
                return counter._saved[name](client, *args, **kwargs)

            return wrapped

        def batch(client: TableClient, operations: Any, **kwargs: Any) -> Any:
            ops = list(operations)
            for op in ops:
                counter.add(client.table_name, op[1].get("PartitionKey", ""))
            return counter._saved["submit_transaction"](client, ops, **kwargs)

        for name in self._METHODS:
            setattr(TableClient, name, single(name))
        TableClient.submit_transaction = batch  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for name, method in self._saved.items():
            setattr(TableClient, name, method)

    def add(self, table: str, pk: str) -> None:
        kind = pk.split("|", 1)[0] + "|" if "|" in pk else pk
        if table.lower().startswith("events"):
            kind = "event"
        self.rows[(table.rstrip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") or table, kind)] += 1

    def total(self) -> int:
        return sum(self.rows.values())

    def by_kind(self) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter()
        for (_table, kind), n in self.rows.items():
            out[kind] += n
        return dict(out.most_common())


def ordinary_day(people: int = 200, seed: int = 7, day: datetime | None = None) -> dict[str, bytes]:
    """Hour blobs (name -> JSON Lines) of an ordinary working day: `people` colleagues, each
    signing in 1-4 times between 08:00 and 18:00, from the office NAT or from home, to their
    usual machine, 3 % of sessions after a mistyped password a minute before."""
    rng = random.Random(seed)
    day = day or samples.START.replace(hour=0, minute=0, second=0, microsecond=0)
    nat = "203.0.113.10"
    hours: dict[str, list[tuple[str, bytes]]] = {}
    for name, home, vm in _people(rng, people):
        for _ in range(rng.randint(1, 4)):
            when = day + timedelta(hours=rng.uniform(8, 18))
            ip = nat if rng.random() < 0.6 else home
            port = rng.randrange(1024, 65000)
            recs = []
            if rng.random() < 0.03:
                recs.append(samples.record(when, name, samples.FAIL, ip, vm, port=port))
                when += timedelta(seconds=rng.randint(20, 90))
            recs.append(samples.record(when, name, samples.OK, ip, vm, port=port + 1))
            for r in recs:
                hour = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
                name_of = samples.blob_path("BASTION-PROD", hour.replace(minute=0, second=0))
                hours.setdefault(name_of, []).append((r["time"], orjson.dumps(r) + b"\n"))
    return {n: b"".join(line for _, line in sorted(v)) for n, v in sorted(hours.items())}
