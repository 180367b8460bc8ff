"""What one daily retention run costs (issue 17), with 1 and with 30 days of data kept.

    .venv/bin/python bench/policy.py            # ~1 min

Each case ingests, through the real pipeline, a Bastion host's days (four hour blobs a day,
240 records of 8 accounts, a brute force that opens an incident, a bad line that is
quarantined): the day that expires today plus 1 or 30 younger days. The watermarks say the
days before were removed yesterday, as after any earlier daily run. Then the timer's body
runs once, and the requests it sends (counted at the HTTP transport: queries, deletes, blob
listings, blob existence checks) and its seconds are printed. Both cases remove the same one
day, so their cost should match: it follows the data expiring, not the data kept.

Baseline (same run): the first run of the 30-day case's policy over 30 expired days, i.e.
what a run costs per expired day when it has to catch up.
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

from devtools import azurite, samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline
from shared.keep import policy
from shared.keep.expiry import Expirer
from shared.store import layout

COUNTS: Counter[str] = Counter()
_send = RequestsTransport.send
RETENTION = 30


def _counting_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
    COUNTS[request.method] += 1
    return _send(self, request, **kwargs)


RequestsTransport.send = _counting_send  # type: ignore[method-assign]


def day_blobs(host: str, day: datetime) -> dict[str, bytes]:
    out = {}
    for hour in (0, 6, 12, 18):
        start = day + timedelta(hours=hour)
        recs = [
            samples.record(start + timedelta(seconds=50 * i), f"user{i % 8}", samples.OK,
                           f"10.0.{i % 8}.{hour}", host=host, port=i)
            for i in range(60)
        ]  # fmt: skip
        if hour == 12:
            recs += [
                samples.record(start + timedelta(seconds=5 * i), "root", samples.FAIL,
                               "192.0.2.66", host=host, port=900 + i)
                for i in range(6)
            ]  # fmt: skip
        recs.sort(key=lambda r: r["time"])
        body = b"".join(orjson.dumps(r) + b"\n" for r in recs) + b'{"broken\n'
        out[samples.blob_path(host, start)] = body
    return out


def build(p: Pipeline, host: str, days: list[datetime]) -> int:
    logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not logs.exists():
        logs.create_container()
    stored = 0
    for day in days:
        for name, body in day_blobs(host, day).items():
            logs.upload_blob(name, body, overwrite=True)
            hour = datetime.fromisoformat(layout.hour_of_blob(name)).replace(tzinfo=UTC)
            # read as it was written: an hour blob is read within the hour after it
            stored += p.ingest(logs.get_blob_client(name), now=hour + timedelta(minutes=65)).stored
    return stored


def case(connection: str, kept: int, now: datetime, caught_up: bool) -> dict[str, Any]:
    p = Pipeline(settings(connection, f"R{kept}{int(caught_up)}", RETENTION_DAYS=str(RETENTION),
                          ALERT_RETENTION_DAYS=str(RETENTION),
                          QUARANTINE_RETENTION_DAYS=str(RETENTION)))  # fmt: skip
    keep = datetime.fromisoformat(policy.first_kept(RETENTION, now) or "").replace(tzinfo=UTC)
    expired = 1 if caught_up else 30
    days = [keep - timedelta(days=d) for d in range(expired, 0, -1)]
    days += [keep + timedelta(days=d) for d in range(kept)]
    stored = build(p, f"BASTION-{kept}-{int(caught_up)}", days)
    if caught_up:  # yesterday's run removed everything before the expiring day
        before = policy.next_day(days[0].date().isoformat(), -1)
        for kind in policy.CLASSES:
            p.storage.state.put(policy.watermark(kind, before, {}))
    COUNTS.clear()
    start = time.perf_counter()
    removed = Expirer(p.storage).run(now)
    seconds = time.perf_counter() - start
    requests = sum(COUNTS.values())
    p.storage.close()
    p.detector.close()
    return {"stored": stored, "requests": requests, "seconds": seconds,
            "removed": dict(removed), "by_method": dict(COUNTS)}  # fmt: skip


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    now = datetime.now(UTC)
    with azurite.start() as emulator:
        one = case(emulator.connection_string, 1, now, True)
        thirty = case(emulator.connection_string, 30, now, True)
        catch_up = case(emulator.connection_string, 1, now, False)
    for label, r in (("1 day kept", one), ("30 days kept", thirty),
                     ("first run, 30 days expired", catch_up)):  # fmt: skip
        print(f"{label:>27}: stored={r['stored']:>5} requests={r['requests']:>5} "
              f"seconds={r['seconds']:.2f} by_method={r['by_method']}")  # fmt: skip
        print(f"{'':>27}  removed={r['removed']}")
    ratio = thirty["requests"] / max(one["requests"], 1)
    per_day = catch_up["requests"] / 30
    print(
        f"retention: requests_1d={one['requests']} requests_30d={thirty['requests']} "
        f"ratio={ratio:.2f} seconds_1d={one['seconds']:.2f} seconds_30d={thirty['seconds']:.2f} "
        f"catch_up_requests_per_day={per_day:.1f}"
    )


if __name__ == "__main__":
    main()
