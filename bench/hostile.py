"""Hostile blob shapes (issue 12): peak RSS and seconds of ingesting each, beside a well-formed
blob of the same size and format.

    .venv/bin/python bench/hostile.py              # every shape through Pipeline.ingest (~5 min)
    .venv/bin/python bench/hostile.py --quick      # the small shapes only (~1 min)
    .venv/bin/python bench/hostile.py --parsers    # parser only: ours vs ijson, if installed

Each blob is uploaded to a private Azurite (in memory, free ports) as a block blob; each
measurement runs in its own process (`bench/rss_probe.py --stub-writes`): Pipeline.ingest with
4 MiB reads, the cursor, quarantine and detection against Azurite, table upserts counted and
batched but not sent (Azurite needs minutes per 100,000 rows). Peak RSS is that process's
VmHWM. The last line is machine-readable:
`hostile: shapes=.. max_peak_rss_mb=.. max_time_ratio=.. ok=..` (target: RSS <= 300 MB and
time within 3x of the well-formed blob, for every shape).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import _common as c
import orjson
from azure.storage.blob import BlobBlock, BlobServiceClient, ContainerClient

from devtools import azurite
from shared.core.settings import LOGS_CONTAINER

MiB = 1024 * 1024
BLOCK = 4 * MiB
HERE = Path(__file__).resolve().parent
RSS_LIMIT_MB, TIME_RATIO_LIMIT = 300, 3.0
PROBE_MEMORY = 4 << 30
Parts = Callable[[], Iterator[bytes]]


def _record() -> bytes:
    return orjson.dumps(next(c.records(1, seed=5)))


def _repeat(unit: bytes, size: int) -> Iterator[bytes]:
    block = unit * max(1, MiB // len(unit))
    left = size
    while left > 0:
        part = block[: min(left, len(block))]
        left -= len(part)
        yield part


def wrapper(*middle: Parts, close: bool = True) -> Parts:
    """`{"records":[<good>, <middle...>, <good>]}`, as the legacy export writes it."""

    def parts() -> Iterator[bytes]:
        good = _record()
        yield b'{"records": [\n' + good + b",\n"
        for part in middle:
            yield from part()
        if close:
            yield b",\n" + good + b"\n]}"

    return parts


def string_value(size: int, unit: bytes = b"A") -> Parts:
    """A record whose user agent is `size` bytes long."""
    head, tail = _record().split(b'"userAgent":"', 1)
    rest = tail.split(b'"', 1)[1]

    def parts() -> Iterator[bytes]:
        yield head + b'"userAgent":"'
        yield from _repeat(unit, size)
        yield b'"' + rest

    return parts


def scalar(size: int) -> Parts:
    return lambda: _repeat(b"1", size)


def unterminated(size: int) -> Parts:
    def parts() -> Iterator[bytes]:
        yield b'{"category": "BastionAuditLogs", "properties": {"userName": "'
        yield from _repeat(b"x", size)

    return parts


def tiny_items(size: int) -> Parts:
    return lambda: _tiny(size)


def _tiny(size: int) -> Iterator[bytes]:
    """`{},{},...{}`: `size` bytes of empty objects (valid JSON that normalize rejects)."""
    n = size // 3
    block = b"{}," * (MiB // 3)
    full, rest = divmod(n, MiB // 3)
    for _ in range(full):
        yield block
    yield b"{}," * rest + b"{}"


def distinct_items(size: int) -> Parts:
    """`{"n":0},{"n":1},...`: small objects that differ (no two share a parse)."""

    def parts() -> Iterator[bytes]:
        i, left = 0, size
        while left > 0:
            block = b",".join(b'{"n":%d}' % n for n in range(i, i + 50_000))
            i += 50_000
            left -= len(block) + 1
            yield block if left <= 0 else block + b","

    return parts


def minimal_records(size: int) -> Parts:
    """Distinct valid records as small as normalize accepts (~100 bytes): many entities."""

    def parts() -> Iterator[bytes]:
        i, left = 0, size
        while left > 0:
            block = b",".join(
                b'{"category":"BastionAuditLogs","time":"2026-11-23T09:%02d:%02d.%03dZ",'
                b'"properties":{"userName":"u%d","clientPort":%d}}'
                % (n // 60000 % 60, n // 1000 % 60, n % 1000, n % 500, n % 65536)
                for n in range(i, i + 10_000)
            )
            i += 10_000
            left -= len(block) + 1
            yield block if left <= 0 else block + b","

    return parts


def deep(size: int) -> Parts:
    def parts() -> Iterator[bytes]:
        yield from _repeat(b"[", size // 2)
        yield from _repeat(b"]", size // 2)

    return parts


def single_line(size: int) -> Parts:
    """JSON Lines: a good record, one `size`-byte line (a record with a huge value), a good one."""
    value = string_value(size)

    def parts() -> Iterator[bytes]:
        good = _record() + b"\n"
        yield good
        yield from value()
        yield b"\n" + good

    return parts


def well_formed(fmt: str, size: int) -> Parts:
    """Realistic records (bench/_common.records) in `fmt`, about `size` bytes."""

    def parts() -> Iterator[bytes]:
        n = max(1, size // 1100)
        if fmt == "lines":
            for r in c.records(n, seed=3):
                yield orjson.dumps(r) + b"\n"
            return
        yield b'{"records": [\n'
        for i, r in enumerate(c.records(n, seed=3)):
            yield (b",\n" if i else b"") + orjson.dumps(r)
        yield b"\n]}"

    return parts


#: name -> (format of the reference blob, hostile blob); target applies to these.
SHAPES: dict[str, tuple[str, Parts]] = {
    "16 MiB string value": ("wrapper", wrapper(string_value(16 * MiB))),
    "300 MB scalar": ("wrapper", wrapper(scalar(300 * 10**6))),
    "unterminated 20 MB string": ("wrapper", wrapper(unterminated(20 * 10**6), close=False)),
    "4 MiB of {} items": ("wrapper", wrapper(tiny_items(4 * MiB))),
    "50 MB single line": ("lines", single_line(50 * 10**6)),
}
#: Shown for information (no target).
EXTRA: dict[str, tuple[str, Parts]] = {
    "16 MiB of escaped quotes": ("wrapper", wrapper(string_value(16 * MiB, b'\\"'))),
    "20 MB deep nesting": ("wrapper", wrapper(deep(20 * 10**6))),
    "4 MiB of distinct objects": ("wrapper", wrapper(distinct_items(4 * MiB))),
    "4 MiB of 0 items": ("wrapper", wrapper(lambda: _repeat(b"0,", 4 * MiB))),
    "4 MiB of minimal records": ("wrapper", wrapper(minimal_records(4 * MiB))),
}
QUICK = (
    "16 MiB string value",
    "4 MiB of {} items",
    "16 MiB of escaped quotes",
    "4 MiB of distinct objects",
    "4 MiB of 0 items",
    "4 MiB of minimal records",
)


def upload(container: ContainerClient, name: str, parts: Parts) -> int:
    """Upload in 4 MiB blocks (never the whole blob in one request); returns its size."""
    blob = container.get_blob_client(name)
    ids, buf, size = [], bytearray(), 0

    def flush(data: bytes) -> None:
        block_id = f"{len(ids):08d}"
        blob.stage_block(block_id, data)
        ids.append(BlobBlock(block_id=block_id))

    for part in parts():
        buf += part
        size += len(part)
        while len(buf) >= BLOCK:
            flush(bytes(buf[:BLOCK]))
            del buf[:BLOCK]
    if buf:
        flush(bytes(buf))
    blob.commit_block_list(ids)
    return size


def probe(conn: str, name: str, tag: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE / "rss_probe.py"), "--conn", conn, "--blob", name,
         "--tag", tag, "--stub-writes"],
        capture_output=True, text=True, cwd=HERE.parent,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"rss_probe failed on {name}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def quarantine_documents(conn: str, tag: str) -> int:
    """Documents the probe wrote (its quarantine container's name ends with its tag)."""
    service = BlobServiceClient.from_connection_string(conn)
    return sum(
        sum(1 for _ in service.get_container_client(item.name).list_blobs())
        for item in service.list_containers(name_starts_with="quarantine-")
        if item.name.endswith(tag.lower())
    )


def run_ingest(quick: bool) -> int:
    chosen = {**SHAPES, **EXTRA}
    if quick:
        chosen = {k: v for k, v in chosen.items() if k in QUICK}
    rows, refs = [], {}
    t_all = time.perf_counter()
    with azurite.start() as emulator:
        conn = emulator.connection_string
        container = BlobServiceClient.from_connection_string(conn).get_container_client(
            LOGS_CONTAINER
        )
        container.create_container()
        for i, (name, (fmt, parts)) in enumerate(chosen.items()):
            blob = f"hostile/{i}/PT1H.json"
            size = upload(container, blob, parts)
            got = probe(conn, blob, f"h{i}q")
            got["docs"] = quarantine_documents(conn, f"h{i}q")
            key = (fmt, round(size / MiB))
            if key not in refs:
                ref_blob = f"reference/{i}/PT1H.json"
                ref_size = upload(container, ref_blob, well_formed(fmt, size))
                refs[key] = probe(conn, ref_blob, f"r{i}") | {"bytes": ref_size}
            container.delete_blob(blob)
            rows.append((name, fmt, size, got, refs[key], name in SHAPES))
            print(f"  measured {name} ({time.perf_counter() - t_all:.0f} s)", file=sys.stderr)
    print(
        f"\n{'shape':28} {'format':8} {'MB':>7} {'s':>7} {'peak MB':>8} {'read':>8} "
        f"{'quar.':>8} {'docs':>5} | {'ref s':>6} {'ref MB':>7} {'ratio':>6}"
    )
    print("-" * 112)
    worst_rss, worst_ratio, ok = 0.0, 0.0, True
    for name, fmt, size, got, ref, target in rows:
        ratio = got["seconds"] / max(ref["seconds"], 1e-3)
        read = got["records"] + got["quarantined"]
        print(
            f"{name:28} {fmt:8} {size / 1e6:7.1f} {got['seconds']:7.2f} "
            f"{got['peak_rss_mb']:8.0f} {read:8d} {got['quarantined']:8d} {got['docs']:5d} | "
            f"{ref['seconds']:6.2f} {ref['peak_rss_mb']:7.0f} {ratio:6.2f}"
            + ("" if target else "  (info)")
        )
        if target:
            worst_rss = max(worst_rss, got["peak_rss_mb"])
            worst_ratio = max(worst_ratio, ratio)
            ok = ok and got["peak_rss_mb"] <= RSS_LIMIT_MB and ratio <= TIME_RATIO_LIMIT
    idle, total = rows[0][3]["idle_rss_mb"], time.perf_counter() - t_all
    print(
        "\nref = a well-formed blob of the same size and format (realistic records); "
        f"idle interpreter ~{idle:.0f} MB; total {total:.0f} s"
    )
    print(
        f"hostile: shapes={sum(r[5] for r in rows)} max_peak_rss_mb={worst_rss:.0f} "
        f"max_time_ratio={worst_ratio:.2f} ok={str(ok).lower()}"
    )
    return 0 if ok else 1


# -- parser only: ours vs ijson -------------------------------------------------------------
PARSER_SHAPES: dict[str, Parts] = {
    "well-formed 50 MB wrapper": well_formed("wrapper", 50 * 10**6),
    "16 MiB string value": wrapper(string_value(16 * MiB)),
    "300 MB scalar": wrapper(scalar(300 * 10**6)),
    "unterminated 20 MB string": wrapper(unterminated(20 * 10**6), close=False),
    "4 MiB of {} items": wrapper(tiny_items(4 * MiB)),
    "20 MB deep nesting": wrapper(deep(20 * 10**6)),
}


def _chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as blob:
        while chunk := blob.read(BLOCK):
            yield chunk


def parse_probe(path: str, impl: str) -> None:
    """One measurement, in this process: items out of the blob's 4 MiB chunks, pushed."""
    chunks = _chunks(path)
    items, error, t0 = 0, "", time.perf_counter()
    if impl == "ours":
        from shared.ingest import parse

        carry, pos, mode = b"", 0, parse.Mode.UNKNOWN
        chunk = next(chunks, b"")
        while True:
            following = next(chunks, None)
            buf = carry + chunk
            result = parse.stream(buf, pos, mode, following is None, 32768)
            items += sum(1 for _ in result.pieces)
            carry, pos, mode = buf[result.consumed :], pos + result.consumed, result.mode
            if following is None:
                break
            chunk = following
    else:
        import ijson

        events = ijson.sendable_list()
        coro = ijson.items_coro(events, "records.item")
        try:
            for chunk in chunks:
                coro.send(chunk)
                items += len(events)
                del events[:]
            coro.close()
            items += len(events)
        except Exception as exc:  # ijson raises on what it cannot parse
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:40]}"
    print(
        json.dumps(
            {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": c.peak_rss_mb(),
             "items": items, "error": error}
        )
    )  # fmt: skip


def _limit_memory() -> None:
    """ijson builds deep nesting as Python lists without limit (it took all 24 GB here)."""
    resource.setrlimit(resource.RLIMIT_AS, (PROBE_MEMORY, PROBE_MEMORY))


def run_parsers() -> int:
    impls = ["ours"]
    try:
        import ijson  # noqa: F401

        impls.append("ijson")
    except ImportError:
        print("ijson is not installed: measuring ours only (pip install ijson to compare)")
    print(f"each probe limited to {PROBE_MEMORY >> 30} GiB of address space")
    print(f"{'shape':28} {'impl':6} {'s':>7} {'peak MB':>8} {'items':>9}  note")
    print("-" * 80)
    with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
        for shape, parts in PARSER_SHAPES.items():
            path = str(Path(folder) / "blob.json")
            with open(path, "wb") as out:
                for part in parts():
                    out.write(part)
            for impl in impls:
                done = subprocess.run(
                    [sys.executable, __file__, "--parse-probe", path, "--impl", impl],
                    capture_output=True, text=True, cwd=HERE.parent, timeout=600,
                    preexec_fn=_limit_memory,
                )  # fmt: skip
                if done.returncode != 0:
                    why = done.stderr.strip().splitlines()[-1][:50] if done.stderr.strip() else ""
                    print(f"{shape:28} {impl:6} {'-':>7} {'-':>8} {'-':>9}  "
                          f"exit {done.returncode} {why}")  # fmt: skip
                    continue
                got = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"{shape:28} {impl:6} {got['seconds']:7.2f} {got['peak_rss_mb']:8.0f} "
                    f"{got['items']:9d}  {got['error']}"
                )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small shapes only")
    ap.add_argument("--parsers", action="store_true", help="parser only: ours vs ijson")
    ap.add_argument("--parse-probe", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parse_probe:
        parse_probe(args.parse_probe, args.impl)
        return 0
    return run_parsers() if args.parsers else run_ingest(args.quick)


if __name__ == "__main__":
    sys.exit(main())
