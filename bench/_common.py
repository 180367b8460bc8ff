"""Helpers shared by the benchmarks: realistic record streams, isolated settings, naive baseline.

Not part of the app. Records come from `devtools.samples.record`, so their shape (and size,
about 1.07 KB as JSON) is the documented Bastion audit record.
"""

from __future__ import annotations

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
from shared.settings import Settings  # noqa: E402

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
