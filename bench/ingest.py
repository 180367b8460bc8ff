"""Ingest benchmark: parser speed, Azurite throughput, growing blob, read amplification, RSS.

    .venv/bin/python bench/ingest.py            # full run (a few minutes)
    .venv/bin/python bench/ingest.py --quick    # smaller sizes (about a minute)

Runs against a private Azurite (in memory, free ports) and prints a table; the last line is
`bench: parse_ratio=.. append_speedup=.. read_amplification=.. peak_rss_mb=.. ...`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import _common as c
import orjson
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from devtools import azurite, samples
from shared.core.settings import LOGS_CONTAINER
from shared.ingest import normalize, parse
from shared.ingest.loop import Pipeline

BLOCK = 4 * 1024 * 1024
NOW = samples.START + timedelta(minutes=30)  # the hour blob is still growing


# -- a. parse + normalize vs bare JSON ------------------------------------------------------
def split_normalize(data: bytes, chunk: int, max_record: int) -> int:
    """What ingest does to the bytes, minus I/O: split in read-sized chunks, normalize."""
    to_row, name = normalize.normalize, "bench/PT1H.json"
    carry, pos, mode, read_at, n = b"", 0, parse.Mode.UNKNOWN, 0, 0
    while True:
        piece = data[read_at : read_at + chunk]
        read_at += len(piece)
        buf = carry + piece if carry else piece
        last = read_at >= len(data)
        split = parse.split(buf, pos, mode, last, max_record)
        for p in split.pieces:
            if p.error is None:
                to_row(p.value, name, p.offset, p.item)
                n += 1
        carry, pos, mode = buf[split.consumed :], pos + split.consumed, split.mode
        if last:
            return n


def bare(loads: Any, data: bytes) -> int:
    n = 0
    for line in data.split(b"\n"):
        if line:
            loads(line)
            n += 1
    return n


def best_rate(fn: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_parse(n: int, repeats: int) -> dict[str, float]:
    data = c.lines(n, seed=11)
    s = c.settings("", "p")
    ours = best_rate(lambda: split_normalize(data, s.read_chunk_bytes, s.max_record_bytes), repeats)
    fast = best_rate(lambda: bare(orjson.loads, data), repeats)
    std = best_rate(lambda: bare(json.loads, data), repeats)
    return {"records": n, "mb": len(data) / 1e6, "ours": ours, "orjson": fast, "json": std}


# -- b. whole blob into Azurite: Pipeline vs naive --------------------------------------------
def bench_ingest(conn: str, logs: ContainerClient, n: int) -> dict[str, float]:
    data = c.lines(n, seed=22)
    blob = logs.get_blob_client("b/" + samples.blob_path("BASTION-PROD", samples.START))
    blob.upload_blob(data, overwrite=True)
    pipeline = Pipeline(c.settings(conn, "b"))
    t0 = time.perf_counter()
    with c.RowCounter() as written:
        summary = pipeline.ingest(blob, NOW)
    ours = time.perf_counter() - t0
    st = pipeline.storage
    events = c.count(st.events.client)
    st.close()
    assert summary.stored == n == events, (summary.line(), events)
    naive_table = st.tables.create_table("BenchNaiveB" + str(id(blob)))
    t0 = time.perf_counter()
    naive_n, _ = c.naive_ingest(blob, naive_table)
    naive = time.perf_counter() - t0
    assert naive_n == n
    return {
        "records": n,
        "ours": n / ours,
        "naive": n / naive,
        "alerts": len(summary.alerts),
        "rows_per_record": written.total() / n,  # every row written, in every table
        "rows_by_kind": written.by_kind(),
    }


# -- b2. an ordinary day: 200 people, home and the office NAT, hour blobs growing ----------
def bench_day(conn: str, logs: ContainerClient, days: int = 2) -> dict[str, Any]:
    """Rows written per record on the last of `days` ordinary days (the first ones teach the
    baselines: a day like any other, not the first one), each hour blob grown in 6 appends
    and ingested after each."""
    pipeline = Pipeline(c.settings(conn, "day"))
    start = samples.START.replace(hour=0)
    for d in range(days):
        stored = 0
        with c.RowCounter() as written:
            for name, data in c.ordinary_day(day=start + timedelta(days=d)).items():
                lines = data.splitlines(keepends=True)
                blob = logs.get_blob_client(f"day{d}/" + name)
                blob.create_append_blob()
                per = max(1, -(-len(lines) // 6))
                for k in range(0, len(lines), per):
                    blob.append_block(b"".join(lines[k : k + per]))
                    stored += pipeline.ingest(blob).stored
    pipeline.storage.close()
    return {"records": stored, "rows_per_record": written.total() / stored,
            "rows_by_kind": written.by_kind()}  # fmt: skip


# -- c/d. a growing append blob ---------------------------------------------------------------
def appends(n_appends: int, per_append: int) -> list[bytes]:
    """The blob's bytes in `n_appends` pieces; every other piece ends in the middle of a line."""
    lines = [orjson.dumps(r) + b"\n" for r in c.records(n_appends * per_append, seed=33)]
    ends, total = [], 0
    for line in lines:
        total += len(line)
        ends.append(total)
    data = b"".join(lines)
    cuts = [0]
    for k in range(1, n_appends):
        cut = ends[k * per_append - 1]
        if k % 2:
            cut += len(lines[k * per_append]) // 2  # mid-line
        cuts.append(cut)
    cuts.append(len(data))
    return [data[a:b] for a, b in itertools.pairwise(cuts)]


def bench_append(conn: str, logs: ContainerClient, n_appends: int, per_append: int) -> dict:
    pieces = appends(n_appends, per_append)
    total = n_appends * per_append
    name = samples.blob_path("BASTION-PROD", samples.START)
    ours_blob = logs.get_blob_client("c-ours/" + name)
    naive_blob = logs.get_blob_client("c-naive/" + name)
    ours_blob.create_append_blob()
    naive_blob.create_append_blob()
    pipeline = Pipeline(c.settings(conn, "c"))
    counting = c.CountingBlob(ours_blob)
    naive_table = pipeline.storage.tables.create_table("BenchNaiveC" + str(id(pieces)))
    ours = naive = 0.0
    bytes_read = stored = skipped = naive_upserts = 0
    for piece in pieces:
        ours_blob.append_block(piece)
        naive_blob.append_block(piece)
        t0 = time.perf_counter()
        summary = pipeline.ingest(counting, NOW)  # type: ignore[arg-type]
        ours += time.perf_counter() - t0
        bytes_read += summary.bytes_read
        stored += summary.stored
        skipped += summary.skipped + summary.quarantined
        t0 = time.perf_counter()
        n, _ = c.naive_ingest(naive_blob, naive_table)
        naive += time.perf_counter() - t0
        naive_upserts += n
    size = sum(len(p) for p in pieces)
    events = c.count(pipeline.storage.events.client)
    pipeline.storage.close()
    return {
        "appends": n_appends,
        "per_append": per_append,
        "records": total,
        "size": size,
        "ours_s": ours,
        "naive_s": naive,
        "naive_upserts": naive_upserts,
        "stored": stored,
        "events": events,
        "exactly_once": stored == events == total and skipped == 0,
        "read_amp": bytes_read / size,
        "wire_read_amp": counting.downloaded / size,
    }


# -- e. peak RSS on a big blob ------------------------------------------------------------------
def upload_big(logs: ContainerClient, name: str, target: int, seed: int) -> tuple[int, int]:
    """Stage ~`target` bytes of JSON Lines in 4 MiB blocks from a generator; (records, bytes)."""
    blob = logs.get_blob_client(name)
    blocks, buf, n, size = [], bytearray(), 0, 0
    per_hour = max(1, target // 1100)
    for rec in c.records(per_hour * 2, seed=seed):
        line = orjson.dumps(rec) + b"\n"
        buf += line
        n += 1
        size += len(line)
        if len(buf) >= BLOCK or size >= target:
            block_id = f"{len(blocks):08d}"
            blob.stage_block(block_id, bytes(buf))
            blocks.append(BlobBlock(block_id))
            buf = bytearray()
        if size >= target:
            break
    blob.commit_block_list(blocks)
    return n, size


def probe(conn: str, name: str, stub: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(c.ROOT / "bench" / "rss_probe.py"), "--conn", conn, "--blob", name]
    if stub:
        cmd.append("--stub-writes")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_rss(conn: str, logs: ContainerClient, big_mb: int, real_mb: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, mb, stub, seed in (("big", big_mb, True, 44), ("real", real_mb, False, 55)):
        name = f"e-{label}/" + samples.blob_path("BASTION-PROD", samples.START)
        t0 = time.perf_counter()
        n, size = upload_big(logs, name, mb * 10**6, seed)
        upload = time.perf_counter() - t0
        result = probe(conn, name, stub)
        assert result["records"] == n, (result, n)
        out[label] = {**result, "size": size, "upload_s": upload}
    return out


# -- report ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = ap.parse_args()
    q = args.quick
    sizes = {
        "parse": 10_000 if q else 50_000,
        "ingest": 1_000 if q else 5_000,
        "appends": (60, 5) if q else (60, 15),
        "big_mb": 60 if q else 300,
        "real_mb": 5 if q else 12,
    }
    started = time.perf_counter()
    a = bench_parse(sizes["parse"], 3 if q else 5)
    with azurite.start() as az:
        conn = az.connection_string
        container = BlobServiceClient.from_connection_string(conn).get_container_client(
            LOGS_CONTAINER
        )
        container.create_container()
        b = bench_ingest(conn, container, sizes["ingest"])
        day = bench_day(conn, container)
        cd = bench_append(conn, container, *sizes["appends"])
        e = bench_rss(conn, container, sizes["big_mb"], sizes["real_mb"])
    elapsed = time.perf_counter() - started

    parse_ratio = a["ours"] / a["orjson"]
    append_speedup = cd["naive_s"] / cd["ours_s"]
    big, real = e["big"], e["real"]
    peak = max(big["peak_rss_mb"], real["peak_rss_mb"])
    rows = [
        (
            "a parse+normalize",
            f"{a['ours']:,.0f} rec/s",
            f"{a['records']:,} records, {a['mb']:.0f} MB",
        ),
        ("a bare orjson.loads/line", f"{a['orjson']:,.0f} rec/s", "same bytes"),
        ("a stdlib json.loads/line", f"{a['json']:,.0f} rec/s", "reference"),
        ("a parse_ratio (>= 0.6)", f"{parse_ratio:.3f}", "ours / bare orjson"),
        ("b Pipeline.ingest", f"{b['ours']:,.0f} rec/s", f"{b['records']:,} records, 1 block blob"),
        ("b naive (1 upsert/record)", f"{b['naive']:,.0f} rec/s", "stdlib json, same blob"),
        (
            "b ingest_ratio",
            f"{b['ours'] / b['naive']:.2f}",
            f"{b['alerts']} alerts",
        ),
        (
            "b rows written per record",
            f"{b['rows_per_record']:.2f}",
            ", ".join(f"{k} {v / b['records']:.2f}" for k, v in b["rows_by_kind"].items()),
        ),
        (
            "b2 ordinary day: rows/record",
            f"{day['rows_per_record']:.2f}",
            f"{day['records']} records, 2nd day; "
            + ", ".join(f"{k} {v / day['records']:.2f}" for k, v in day["rows_by_kind"].items()),
        ),
        (
            "c growing blob: ours",
            f"{cd['ours_s']:.1f} s",
            f"{cd['appends']} appends x {cd['per_append']} records, {cd['size'] / 1e6:.1f} MB",
        ),
        (
            "c growing blob: naive",
            f"{cd['naive_s']:.1f} s",
            f"{cd['naive_upserts']:,} upserts (re-reads whole blob)",
        ),
        (
            "c append_speedup (>= 10)",
            f"{append_speedup:.1f}",
            f"exactly once: {cd['exactly_once']} ({cd['events']:,} entities)",
        ),
        (
            "d read_amplification (<= 1.1)",
            f"{cd['read_amp']:.3f}",
            "sum(Summary.bytes_read) / size",
        ),
        (
            "d incl. cursor guard reads",
            f"{cd['wire_read_amp']:.3f}",
            "every byte downloaded / size",
        ),
        ("e idle interpreter RSS", f"{big['idle_rss_mb']:.0f} MB", "same imports, Pipeline built"),
        (
            "e peak RSS, big blob",
            f"{big['peak_rss_mb']:.0f} MB",
            f"{big['size'] / 1e6:.0f} MB, {big['records']:,} rec, {big['seconds']:.0f} s, "
            "upserts stubbed",
        ),
        (
            "e peak RSS, real writes",
            f"{real['peak_rss_mb']:.0f} MB",
            f"{real['size'] / 1e6:.0f} MB, {real['records']:,} rec, {real['seconds']:.0f} s "
            "into Azurite",
        ),
        ("e peak_rss_mb (<= 200)", f"{peak:.0f}", "max of the two"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bastion-audit ingest benchmark ({'quick' if q else 'full'}, {elapsed:.0f} s)")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")
    print(
        f"bench: parse_ratio={parse_ratio:.3f} append_speedup={append_speedup:.1f} "
        f"read_amplification={cd['read_amp']:.3f} peak_rss_mb={peak:.0f} "
        f"idle_rss_mb={big['idle_rss_mb']:.0f} ingest_ratio={b['ours'] / b['naive']:.2f} "
        f"parse_rps={a['ours']:.0f} ingest_rps={b['ours']:.0f} exactly_once={cd['exactly_once']} "
        f"rows_per_record={b['rows_per_record']:.2f} "
        f"rows_per_record_day={day['rows_per_record']:.2f}"
    )


if __name__ == "__main__":
    main()
