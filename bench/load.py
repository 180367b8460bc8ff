"""Load test: many records across many hour blobs, ingested against Azurite in bounded memory.

    .venv/bin/python bench/load.py                           # 1,000,000 records, 200 blobs
    .venv/bin/python bench/load.py --records 50000 --blobs 10

Blobs are uploaded first (one at a time, from a generator), then one Pipeline ingests them one
after the other, as one Functions worker would. Reports records/s and the peak RSS of the
process (generator and uploader included, so it is an upper bound for the ingest itself).
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import _common as c
import orjson
import psutil
from azure.storage.blob import BlobServiceClient

from devtools import azurite, samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline

HOSTS = 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--blobs", type=int, default=200)
    ap.add_argument("--check", action="store_true", help="count the stored events afterwards")
    args = ap.parse_args()
    per_blob = args.records // args.blobs
    total = per_blob * args.blobs
    me = psutil.Process()

    with azurite.start() as az:
        conn = az.connection_string
        logs = BlobServiceClient.from_connection_string(conn).get_container_client(LOGS_CONTAINER)
        logs.create_container()
        names, size = [], 0
        t0 = time.perf_counter()
        for i in range(args.blobs):  # 10 hosts x (blobs / 10) hours
            host, hour = f"BASTION-{i % HOSTS:02d}", samples.START + timedelta(hours=i // HOSTS)
            data = b"".join(
                orjson.dumps(r) + b"\n"
                for r in c.records(per_blob, seed=1000 + i, start=hour, host=host)
            )
            name = samples.blob_path(host, hour)
            logs.get_blob_client(name).upload_blob(data, overwrite=True)
            names.append(name)
            size += len(data)
            del data
        upload = time.perf_counter() - t0

        pipeline = Pipeline(c.settings(conn, "load"))
        idle = me.memory_info().rss / 2**20
        stored = alerts = 0
        t0 = time.perf_counter()
        lap = t0
        for k, name in enumerate(names, 1):
            summary = pipeline.ingest(logs.get_blob_client(name))
            stored += summary.stored
            alerts += len(summary.alerts)
            if k % max(1, args.blobs // 10) == 0:
                now = time.perf_counter()
                print(
                    f"  {k:4d}/{args.blobs} blobs  {stored:>9,} records  "
                    f"{per_blob * (args.blobs // 10 or 1) / (now - lap):7.0f} rec/s (last)  "
                    f"rss {me.memory_info().rss / 2**20:5.0f} MB",
                    flush=True,
                )
                lap = now
        took = time.perf_counter() - t0
        events = c.count(pipeline.storage.events.client) if args.check else -1
        pipeline.storage.close()

    print(
        f"load: {total:,} records in {args.blobs} blobs ({size / 1e6:.0f} MB), "
        f"upload {upload:.0f} s"
    )
    print(f"load: ingest {took:.1f} s = {total / took:,.0f} records/s; {alerts} alerts")
    print(f"load: rss before ingest {idle:.0f} MB, peak {c.peak_rss_mb():.0f} MB (whole process)")
    if args.check:
        print(f"load: events stored {events:,} (expected {total:,})")
    print(
        f"bench-load: records={total} blobs={args.blobs} records_per_s={total / took:.0f} "
        f"peak_rss_mb={c.peak_rss_mb():.0f} ingest_s={took:.1f} stored={stored}"
    )


if __name__ == "__main__":
    main()
