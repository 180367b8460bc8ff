"""What a million records cost in Azure's meters (issue 25): measured, not estimated.

    .venv/bin/python bench/cost.py              # 50,000 records a way (~6 min on 2 cores)
    .venv/bin/python bench/cost.py --records N

The same day of records (`_common.records`: 150 people, ~4 % failures, scanners) is ingested two
ways into a private Azurite: as **one blob a day** (one block blob, one invocation) and as **hour
blobs** (24 append blobs, each grown in six appends and ingested after each, as Azure Monitor
writes them). For each it counts, at the HTTP transport and the SDKs: table transactions
(a batch of up to 100 entities is one transaction; point reads, queries and their continuation
pages each count), blob reads, queue messages, the bytes the tables hold (Azure's billed entity
size: 4 + 2 x key lengths + 8 + 2 x name length + value size per property) and the log lines
(and their bytes) at the host's levels (ours at INFO, the Azure SDK at WARNING). It prints them
per record and per million records (linear: a step's cost does not grow with the data; see
docs/performance.md). Prices are not applied here: multiply by the list prices of the day.
"""

from __future__ import annotations

import argparse
import io
import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import _common as c
import orjson
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient

from devtools import azurite, samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline

REQUESTS: Counter[str] = Counter()
PORTS: dict[int, str] = {}
_send = RequestsTransport.send


def _counting_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
    service = PORTS.get(urlsplit(request.url).port or 0, "other")
    REQUESTS[f"{service}_{'read' if request.method in ('GET', 'HEAD') else 'write'}"] += 1
    if service == "queue" and request.method == "POST":
        REQUESTS["queue_messages"] += 1
    return _send(self, request, **kwargs)


RequestsTransport.send = _counting_send  # type: ignore[method-assign]


def entity_bytes(entity: dict[str, Any]) -> int:
    """Azure Table Storage's billed size of an entity."""
    size = 4 + 2 * len(entity["PartitionKey"]) + 2 * len(entity["RowKey"])
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + 2 * len(value)
        elif isinstance(value, bool):
            size += 1
        elif isinstance(value, bytes):
            size += 4 + len(value)
        else:  # int, float, datetime, GUID-like: 8 bytes (Int32 is 4; counted as 8)
            size += 8
    return size


def stored_bytes(p: Pipeline) -> int:
    return sum(
        entity_bytes(dict(e))
        for t in (p.storage.events, p.storage.index, p.storage.state, p.storage.alerts)
        for e in t.client.list_entities()
    )


def day_lines(n: int) -> list[bytes]:
    start = samples.START.replace(hour=0)
    return c.lines(n, seed=77, start=start, span=timedelta(hours=24)).splitlines(keepends=True)


def run(conn: str, mode: str, lines: list[bytes]) -> dict[str, Any]:
    logs = BlobServiceClient.from_connection_string(conn).get_container_client(LOGS_CONTAINER)
    p = Pipeline(c.settings(conn, mode[:3]))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    REQUESTS.clear()
    t0, stored, invocations = time.perf_counter(), 0, 0
    with c.RowCounter() as rows:
        if mode == "one blob a day":
            blob = logs.get_blob_client(f"{mode[:3]}/" + samples.blob_path("BH", samples.START))
            blob.upload_blob(b"".join(lines))
            stored, invocations = p.ingest(blob, samples.START + timedelta(days=2)).stored, 1
        else:
            hours: dict[str, list[bytes]] = {}
            for line in lines:
                at = datetime.fromisoformat(orjson.loads(line)["time"].replace("Z", "+00:00"))
                name = samples.blob_path("BH", at.replace(minute=0, second=0, microsecond=0))
                hours.setdefault(name, []).append(line)
            for name, mine in hours.items():
                blob = logs.get_blob_client(f"{mode[:3]}/" + name)
                blob.create_append_blob()
                per = max(1, -(-len(mine) // 6))
                for k in range(0, len(mine), per):
                    blob.append_block(b"".join(mine[k : k + per]))
                    stored += p.ingest(blob, samples.START + timedelta(days=2)).stored
                    invocations += 1
    seconds = time.perf_counter() - t0
    logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    out = {
        "records": stored,
        "invocations": invocations,
        "seconds": seconds,
        "table_transactions": REQUESTS["table_read"] + REQUESTS["table_write"],
        "rows_written": rows.total(),
        "blob_reads": REQUESTS["blob_read"],
        "queue_messages": REQUESTS["queue_messages"],
        "stored_bytes": stored_bytes(p),
        "log_lines": text.count("\n"),
        "log_bytes": len(text.encode()),
    }
    p.storage.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])
    logging.getLogger("azure").setLevel(logging.WARNING)
    lines = day_lines(args.records)
    results = {}
    with azurite.start() as emulator:
        PORTS.update({emulator.blob_port: "blob", emulator.queue_port: "queue",
                      emulator.table_port: "table"})  # fmt: skip
        BlobServiceClient.from_connection_string(emulator.connection_string).create_container(
            LOGS_CONTAINER
        )
        for mode in ("one blob a day", "hour blobs"):
            results[mode] = run(emulator.connection_string, mode, lines)
    keys = ["table_transactions", "rows_written", "blob_reads", "queue_messages",
            "stored_bytes", "log_lines", "log_bytes"]  # fmt: skip
    stored = next(iter(results.values()))["records"]
    print(f"{args.records:,} records over one day, {stored:,} stored")
    print(f"{'per million records':<22}" + "".join(f"{m:>18}" for m in results))
    for k in ("invocations", *keys):
        values = [
            r[k] * 1_000_000 / r["records"] if k != "invocations" else r[k]
            for r in results.values()
        ]
        shown = [f"{v / 1e9:.3f} GB" if k.endswith("bytes") else f"{v:,.0f}" for v in values]
        print(f"{k:<22}" + "".join(f"{s:>18}" for s in shown))
    day, hours = results["one blob a day"], results["hour blobs"]
    print(
        "bench: "
        + " ".join(f"{k}_per_m_day={day[k] * 1e6 / day['records']:.0f}" for k in keys)
        + " "
        + " ".join(f"{k}_per_m_hours={hours[k] * 1e6 / hours['records']:.0f}" for k in keys)
    )


if __name__ == "__main__":
    main()
