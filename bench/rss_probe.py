"""Measure this process's peak RSS while Pipeline.ingest reads one (large) blob from Azurite.

Run by bench/ingest.py and bench/load.py as a subprocess, so the parent's memory (the data
generator, the uploader) does not count. Prints one JSON line. Blob reads, the cursor and
detection always go to Azurite; with `--stub-writes` the table upserts are counted but not
sent (Azurite takes minutes for 300 MB of records; the memory of a chunk is the same).
"""

from __future__ import annotations

import argparse
import threading
import time

import _common
import orjson
import psutil

from shared.core.settings import LOGS_CONTAINER, Settings
from shared.ingest.loop import Pipeline
from shared.store.tables import Storage


class CountingStorage(Storage):
    """Storage whose table upserts are counted (and batched, as for real) but not sent."""

    written = 0

    def upsert(self, *writes: tuple[str, list], merge: bool = False) -> None:  # type: ignore[override]
        from shared.store.tables import _batches

        for _table, entities in writes:
            for batch in _batches(entities):
                self.written += len(batch)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conn", required=True)
    ap.add_argument("--blob", required=True)
    ap.add_argument("--tag", default="rss")
    ap.add_argument("--stub-writes", action="store_true")
    args = ap.parse_args()

    settings = Settings.from_env(_common.env(args.conn, args.tag))
    storage = CountingStorage(settings) if args.stub_writes else Storage(settings)
    pipeline = Pipeline(settings, storage)
    blob = storage.blobs.get_container_client(LOGS_CONTAINER).get_blob_client(args.blob)
    me = psutil.Process()
    idle = me.memory_info().rss / 2**20
    idle_peak = _common.peak_rss_mb()

    sampled = [idle]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            sampled.append(me.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    summary = pipeline.ingest(blob)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    storage.close()
    print(
        orjson.dumps(
            {
                "idle_rss_mb": round(idle, 1),
                "idle_peak_rss_mb": round(idle_peak, 1),
                "peak_rss_mb": round(_common.peak_rss_mb(), 1),
                "sampled_peak_rss_mb": round(max(sampled), 1),
                "records": summary.stored,
                "quarantined": summary.quarantined,
                "bytes_read": summary.bytes_read,
                "seconds": round(seconds, 2),
                "stub_writes": args.stub_writes,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
