"""What one sweep costs (issue 12): storage requests with nothing new, and with one append.

    .venv/bin/python bench/sweep.py            # ~1 min

N Bastion hosts each hold the last four hours' blobs (the default look-back is three hours plus
the current one); all have been ingested once. Then the sweep timer's body runs:

- with nothing new: every blob is unchanged since its cursor, so it costs the per-host day
  listings plus one cursor query per hour, however many blobs there are;
- after one append to one blob: that blob is read and its records stored, nothing else.

Requests are counted at the HTTP transport, so every list, query, read and write is seen.
Baseline: the previous sweep, which walked every folder level and read every recent blob.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from _common import settings
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobPrefix, ContainerClient

from devtools import azurite, samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline
from shared.ingest.sweep import Sweeper, host_folders

COUNTS: Counter[str] = Counter()
_send = RequestsTransport.send


def _counting_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
    port = request.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[-1]
    COUNTS[f"{request.method} {PORTS.get(port, port)}"] += 1
    return _send(self, request, **kwargs)


PORTS: dict[str, str] = {}


RequestsTransport.send = _counting_send  # type: ignore[method-assign]


def build(p: Pipeline, logs: ContainerClient, hosts: int, now: datetime) -> list[str]:
    names = []
    for h in range(hosts):
        for back in range(4):
            hour = (now - timedelta(hours=back)).replace(minute=0, second=0, microsecond=0)
            name = samples.blob_path(f"BASTION-{h:03d}", hour)
            blob = logs.get_blob_client(name)
            blob.create_append_blob()
            blob.append_block(record(hour, h, back))
            names.append(name)
    return names


def record(hour: datetime, host: int, n: int) -> bytes:
    rec = samples.record(hour + timedelta(minutes=n), f"user{host}", samples.OK, "10.0.0.1",
                         host=f"BASTION-{host:03d}", port=n)  # fmt: skip
    return orjson.dumps(rec) + b"\n"


def old_sweep(p: Pipeline, logs: ContainerClient, now: datetime) -> None:
    """The sweep this replaces: a folder walk to every recent hour, then every blob read."""
    hours = {
        (f"y={t:%Y}", f"m={t:%m}", f"d={t:%d}", f"h={t:%H}")
        for t in (now - timedelta(hours=i) for i in range(4))
    }

    def walk(prefix: str, seen: tuple[str, ...]) -> Any:
        for item in logs.walk_blobs(name_starts_with=prefix, delimiter="/"):
            if not isinstance(item, BlobPrefix):
                yield item
                continue
            segment = item.name[len(prefix) :].rstrip("/")
            parts = seen
            if len(seen) < 4 and segment.startswith(("y=", "m=", "d=", "h=")[len(seen)]):
                parts = (*seen, segment)
                if not any(h[: len(parts)] == parts for h in hours):
                    continue
            yield from walk(item.name, parts)

    for item in walk("", ()):
        p.ingest(logs.get_blob_client(item.name), now)


def measure(hosts: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    with azurite.start() as emulator:
        PORTS.update({str(emulator.blob_port): "blob", str(emulator.table_port): "table",
                      str(emulator.queue_port): "queue"})  # fmt: skip
        p = Pipeline(settings(emulator.connection_string, "S"))
        logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
        logs.create_container()
        names = build(p, logs, hosts, now)
        sweeper = Sweeper(p.storage, p, timedelta(hours=3))
        sweeper.run(logs, now)  # first sweep: reads everything, learns the hosts
        out: dict[str, Any] = {"hosts": hosts, "blobs": len(names)}

        def append_one() -> None:
            logs.get_blob_client(names[0]).append_block(record(now, 0, 30))
            sweeper.run(logs, now)

        for label, work in (
            ("quiet", lambda: sweeper.run(logs, now)),
            ("one append", append_one),
            ("host walk", lambda: list(host_folders(logs))),
            ("old, quiet", lambda: old_sweep(p, logs, now)),
        ):
            COUNTS.clear()
            start = time.perf_counter()
            work()
            out[label] = (sum(COUNTS.values()), time.perf_counter() - start, dict(COUNTS))
        p.storage.close()
    return out


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"{'hosts':>5} {'blobs':>5} | {'quiet: requests':>16} {'s':>5} | "
          f"{'one append':>10} {'s':>5} | {'host walk':>9} | "
          f"{'old sweep, quiet':>16} {'s':>5}")  # fmt: skip
    rows = [measure(n) for n in (1, 10, 50)]
    for r in rows:
        q, a, w, o = r["quiet"], r["one append"], r["host walk"], r["old, quiet"]
        print(f"{r['hosts']:>5} {r['blobs']:>5} | {q[0]:>16} {q[1]:5.2f} | {a[0]:>10} {a[1]:5.2f}"
              f" | {w[0]:>9} | {o[0]:>16} {o[1]:5.2f}")  # fmt: skip
    big = rows[-1]
    print("   requests of a quiet sweep with 50 hosts:", big["quiet"][2])
    print(
        f"bench: quiet_requests_per_host={big['quiet'][0] / big['hosts']:.2f} "
        f"append_requests={big['one append'][0] - big['quiet'][0]} "
        f"old_quiet_requests={big['old, quiet'][0]}"
    )


if __name__ == "__main__":
    main()
