"""Where the time goes: cProfile of parse+normalize and of Pipeline.ingest, plus µs per step.

    .venv/bin/python bench/prof_ingest.py [--records 20000] [--ingest-records 3000]

Not a benchmark (profiling slows Python code down); use it to pick what to optimize.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import pstats
import time
from collections.abc import Callable
from typing import Any

import _common as c
import orjson
from azure.storage.blob import BlobServiceClient
from ingest import NOW, split_normalize

from devtools import azurite, samples
from shared.core import domain
from shared.core.settings import LOGS_CONTAINER
from shared.ingest import normalize, parse
from shared.ingest.loop import Pipeline
from shared.store import keys


def per_record(label: str, fn: Callable[[], Any], n: int, rows: list[tuple[str, float]]) -> None:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    rows.append((label, best / n * 1e6))


def breakdown(data: bytes) -> list[tuple[str, float]]:
    """µs per record of each step of split + normalize, timed in isolation."""
    s = c.settings("", "p")
    lines = [line for line in data.split(b"\n") if line]
    values = [orjson.loads(line) for line in lines]
    props = [v["properties"] for v in values]
    n = len(values)
    rows: list[tuple[str, float]] = []
    per_record("TOTAL split+normalize", lambda: split_normalize(data, 4 << 20, 32768), n, rows)
    per_record(
        "  parse.split (incl. orjson.loads)",
        lambda: parse.split(data, 0, parse.Mode.LINES, True, s.max_record_bytes),
        n,
        rows,
    )
    per_record("    bare orjson.loads per line", lambda: [orjson.loads(x) for x in lines], n, rows)
    per_record(
        "    Piece() construction",
        lambda: [domain.Piece(0, 0, v, b"") for v in values],
        n,
        rows,
    )
    per_record(
        "  normalize.normalize",
        lambda: [normalize.normalize(v, "b", 0, 0) for v in values],
        n,
        rows,
    )
    per_record(
        "    key-set checks (top, props)",
        lambda: [
            (v.keys() <= normalize._KNOWN_TOP, p.keys() <= normalize._KNOWN_PROPS)
            for v, p in zip(values, props, strict=True)
        ],
        n,
        rows,
    )
    times = [normalize._time(v["time"], "time") for v in values]
    per_record(
        "    _time (ciso8601 + tz)",
        lambda: [normalize._time(v["time"], "t") for v in values],
        n,
        rows,
    )
    per_record(
        "    isoformat(timespec=us)",
        lambda: [t.isoformat(timespec="microseconds") for t in times],
        n,
        rows,
    )

    def text_props() -> None:
        for p in props:
            e = {}
            for raw, name in normalize._TEXT_PROPS.items():
                text = p.get(raw, "")
                e[name] = text if text.__class__ is str else normalize._text(text, raw)
            for raw, name in normalize._INT_PROPS.items():
                number = p.get(raw)
                if number is not None:
                    e[name] = number

    per_record("    text/int property loops", text_props, n, rows)
    per_record(
        "    _resource_parts + vm_name (cached)",
        lambda: [
            (normalize._resource_parts(v["resourceId"]), normalize.vm_name(p["targetResourceId"]))
            for v, p in zip(values, props, strict=True)
        ],
        n,
        rows,
    )
    per_record(
        "    outcome(message)", lambda: [normalize.outcome(p["message"]) for p in props], n, rows
    )
    per_record(
        "    user_key + ip_key (cached)",
        lambda: [
            (keys.user_key(p["userName"], p["userEmail"]), normalize.ip_key(p["clientIpAddress"]))
            for p in props
        ],
        n,
        rows,
    )
    stamps = [t.isoformat(timespec="microseconds") for t in times]

    def identity() -> None:
        for stamp, v, p in zip(stamps, values, props, strict=True):
            fields = [p.get(k, "") for k in normalize._TEXT_PROPS if k != "userAgent"][:9]
            text = "\x1f".join([stamp, v["resourceId"], str(p["clientPort"]), "None", *fields])
            hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()

    per_record("    identity join + blake2b", identity, n, rows)
    per_record(
        "    partition_key + row_key",
        lambda: [
            (keys.partition_key(p["userName"].casefold(), st[:13]), keys.row_key(st, "0" * 20))
            for st, p in zip(stamps, props, strict=True)
        ],
        n,
        rows,
    )
    return rows


def top(profile: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    return text[text.find("   ncalls") :]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--ingest-records", type=int, default=3_000)
    args = ap.parse_args()

    data = c.lines(args.records, seed=11)
    print(f"== µs per record, {args.records:,} records (each step timed alone, best of 3)")
    for label, us in breakdown(data):
        print(f"  {label:<40} {us:7.2f}")

    prof = cProfile.Profile()
    prof.enable()
    split_normalize(data, 4 << 20, 32768)
    prof.disable()
    print("\n== cProfile parse+normalize (tottime)")
    print(top(prof, "tottime", 15))

    with azurite.start() as az:
        conn = az.connection_string
        logs = BlobServiceClient.from_connection_string(conn).get_container_client(LOGS_CONTAINER)
        logs.create_container()
        blob = logs.get_blob_client(samples.blob_path("BASTION-PROD", samples.START))
        blob.upload_blob(c.lines(args.ingest_records, seed=22))
        pipeline = Pipeline(c.settings(conn, "prof"))
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        summary = pipeline.ingest(blob, NOW)
        prof.disable()
        took = time.perf_counter() - t0
        pipeline.storage.close()
    print(f"\n== cProfile Pipeline.ingest: {summary.line()} in {took:.1f} s (cumulative)")
    print(top(prof, "cumulative", 30))


if __name__ == "__main__":
    main()
