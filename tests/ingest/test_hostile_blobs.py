"""Hostile blob shapes: bounded memory and linear time in every format, quarantine per chunk,
bounded caches (issue 12). Pure parser tests first (no I/O), then the blob trigger on Azurite.

Sizes are small where the property does not depend on size (max_record 1 KiB, values a few
times longer) and realistic (16 MiB, 4 MiB chunks, 32 KiB records) once per shape.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from devtools import samples
from shared.core.domain import Piece
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline
from shared.ingest.parse import Mode, split, stream
from shared.store import keys, quarantine

MAX = 1024
R1 = {"time": "2026-11-24T10:00:00Z", "category": "BastionAuditLogs", "n": 1}
R3 = {"time": "2026-11-24T10:00:02Z", "category": "BastionAuditLogs", "n": 3}
J1, J3 = orjson.dumps(R1), orjson.dumps(R3)
MiB = 1024 * 1024


def chunked(data: bytes, step: int, max_record: int = MAX) -> tuple[list[Piece], list[Mode]]:
    """Feed `data` in `step`-byte reads as ingest does; the pieces and the mode after each."""
    pieces: list[Piece] = []
    modes: list[Mode] = []
    mode, pos, carry = Mode.UNKNOWN, 0, b""
    for i in range(0, len(data), step):
        buf = carry + data[i : i + step]
        result = stream(buf, pos, mode, i + step >= len(data), max_record)
        pieces += result.pieces
        assert len(buf) - result.consumed <= max_record + step, "carried more than a record"
        pos, mode, carry = pos + result.consumed, result.mode, buf[result.consumed :]
        assert Mode(mode.value) is mode or Mode(mode.value) == mode  # survives the cursor
        modes.append(mode)
    assert pos == len(data)
    return pieces, modes


def kinds(pieces: list[Piece]) -> list[object]:
    return [p.value if p.error is None else p.error.split(":")[0] for p in pieces]


def same(piece: Piece) -> tuple[object, ...]:
    """What must not depend on chunking (a JSON Lines "oversized" may say "N" or ">N" bytes)."""
    return piece.offset, piece.error and piece.error.split(":")[0], piece.raw, piece.value


def same_in_any_chunks(data: bytes, max_record: int = MAX) -> list[Piece]:
    whole = split(data, 0, Mode.UNKNOWN, True, max_record).pieces
    for step in (1, 7, 100, max_record - 1, max_record + 1, 4096):
        got, _ = chunked(data, step, max_record)
        assert [same(p) for p in got] == [same(p) for p in whole], step
    return whole


# -- every hostile shape, every bracket format ------------------------------------------------
def wrap(fmt: str, *items: bytes) -> bytes:
    if fmt == "array":
        return b"[" + b",\n".join(items) + b"]"
    if fmt == "wrapper":
        return b'{"records": [' + b", ".join(items) + b"]}"
    # concat: objects back to back, the first pretty-printed (so the blob is not JSON Lines)
    return b"\n".join(orjson.dumps(R1, option=orjson.OPT_INDENT_2) if i == J1 else i for i in items)


FORMATS = ["array", "wrapper", "concat"]
HUGE = 5 * MAX  # "huge" at max_record = 1 KiB: the properties do not depend on the size


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("string", b'"' + b"a" * HUGE + b'"'),
        ("escaped-quotes", b'"' + b'\\"' * HUGE + b'"'),
        ("backslashes", b'"' + b"\\\\" * HUGE + b'"'),
        ("brackets-in-string", b'"' + b"[{" * HUGE + b'"'),
        ("string-in-record", b'{"a": "' + b"x]}" * HUGE + b'"}'),
        ("scalar", b"1" * HUGE),
        ("deep-nesting", b"[" * HUGE + b"]" * HUGE),
        ("deep-mixed", b'{"a":[' * HUGE + b"1" + b"]}" * HUGE),
    ],
)
def test_an_oversized_value_is_reported_once_and_skipped(fmt: str, name: str, value: bytes):
    pieces = same_in_any_chunks(wrap(fmt, J1, value, J3))
    assert kinds(pieces) == [R1, "oversized", R3]
    assert pieces[1].raw == value[:MAX]


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_up_to_a_record_long_are_kept_exactly(fmt: str) -> None:
    fits = b'{"s": "' + b"a" * (MAX - 9) + b'"}'
    assert len(fits) == MAX
    assert kinds(same_in_any_chunks(wrap(fmt, J1, fits, J3))) == [R1, orjson.loads(fits), R3]
    over = fits[:-2] + b'a"}'
    assert kinds(same_in_any_chunks(wrap(fmt, J1, over, J3))) == [R1, "oversized", R3]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [MAX // 2, HUGE])
def test_an_unterminated_string_at_the_end(fmt: str, size: int) -> None:
    data = wrap(fmt, J1, b'{"a": "' + b"x" * size)[: -2 if fmt == "wrapper" else None]
    pieces = same_in_any_chunks(data)
    assert kinds(pieces) == [R1, "truncated" if size < MAX else "oversized"]


def test_an_unterminated_value_waits_for_the_next_append() -> None:
    """Not final: a short unfinished value is carried; a long one is reported and skipped, and
    the mode says where inside it the scan stands."""
    short = split(b"[" + J1 + b', {"a": "xx', 0, Mode.UNKNOWN, False, MAX)
    assert kinds(short.pieces) == [R1] and short.mode is Mode.ARRAY
    assert short.consumed == 1 + len(J1) + 2  # up to the unfinished value
    long = split(b"[" + J1 + b', {"a": [["' + b"x" * HUGE, 0, Mode.UNKNOWN, False, MAX)
    assert kinds(long.pieces) == [R1, "oversized"] and long.mode == "array+v3s"
    rest = split(b'x\\"]"]]}, ' + J3 + b"]", long.consumed, long.mode, True, MAX)
    assert kinds(rest.pieces) == [R3] and rest.mode is Mode.DONE


@pytest.mark.parametrize(
    ("head", "tail", "mode"),
    [
        (b'"', b"", "array+s"),
        (b'"', b"\\", "array+e"),
        (b'"', b"\\\\", "array+s"),
        (b'{"a": "', b"\\", "array+v1e"),
        (b'{"a": [1, {"b": "', b'", ', "array+v3"),
        (b'{"a": [1, {"b": "', b'", "c', "array+v3s"),
        (b"1", b"", "array+x"),
    ],
)
def test_skip_state_survives_the_cursor_at_any_byte(head: bytes, tail: bytes, mode: str) -> None:
    data = b"[" + head + b"z" * HUGE + tail
    result = split(data, 0, Mode.UNKNOWN, False, MAX)
    assert kinds(result.pieces) == ["oversized"] and result.mode == mode
    assert Mode(result.mode.value) == mode


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "array+", "array+v0", "array+v-1", "array+v" + "9" * 40, "lines ", "ARRAY",
     "array+v1x", "concat+q", "skip\n", None, 12, "x" * 10_000],
)  # fmt: skip
def test_a_corrupt_or_forged_mode_reads_as_unknown(text: Any) -> None:
    mode = Mode(text)
    assert mode is Mode.UNKNOWN
    split(b"[" + J1 + b"]", 50, mode, True, MAX)  # parses from there, never raises


@pytest.mark.slow  # megabytes of hostile items each: `make test` runs it
@pytest.mark.parametrize("fmt", [*FORMATS, "lines"])
def test_millions_of_tiny_items_are_streamed_not_listed(fmt: str) -> None:
    """100,000 `{}` (about 300 KB) as pieces made one at a time: memory stays flat."""
    n = 100_000
    data = b"{}\n" * n if fmt == "lines" else wrap(fmt, *([b"{}"] * n))
    tracemalloc.start()
    try:
        result = stream(data, 0, Mode.UNKNOWN, True, 32768)
        count = sum(1 for _ in result.pieces)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == n and result.consumed == len(data)
    assert peak < 2 * MiB, f"{peak / MiB:.1f} MiB held while streaming {n} pieces"


def test_stream_says_how_far_only_after_every_piece() -> None:
    result = stream(b"[" + J1 + b"]", 0, Mode.UNKNOWN, True, MAX)
    with pytest.raises(RuntimeError):
        _ = result.consumed
    assert kinds(list(result.pieces)) == [R1] and result.mode is Mode.DONE


def test_a_stray_bracket_between_objects_is_one_byte_of_garbage() -> None:
    """It used to make the scanner wait for more bytes forever (carrying the rest)."""
    pieces = same_in_any_chunks(wrap("concat", J1, b"]", J3))
    assert kinds(pieces) == [R1, "not_an_object", R3]


# -- realistic sizes: 4 MiB reads, 32 KiB records --------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b'"' + b"a" * (16 * MiB) + b'"', id="16MiB-string"),
        pytest.param(b'{"a": "' + b'\\"' * (8 * MiB) + b'"}', id="16MiB-escaped-quotes"),
        pytest.param(b"7" * (24 * MiB), id="24MiB-scalar"),
    ],
)
def test_realistic_huge_values_in_4mib_reads(value: bytes) -> None:
    data = b'{"records": [' + J1 + b"," + value + b"," + J3 + b"]}"
    tracemalloc.start()
    try:
        pieces, modes = chunked(data, 4 * MiB, 32768)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kinds(pieces) == [R1, "oversized", R3] and len(pieces[1].raw) == 32768
    assert any("+" in m for m in modes)  # skipped across reads, with the state in the mode
    # The reads themselves (a 4 MiB chunk plus the carried bytes) are the only big allocations.
    assert peak < 10 * MiB, f"peak {peak / MiB:.1f} MiB"


# -- caches -----------------------------------------------------------------------------------
CACHE_PROBE = textwrap.dedent(
    """
    import gc, json, os
    from devtools import samples
    from shared.store import keys
    from shared.store import layout
    from shared.ingest import normalize
    from shared.core import domain
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    rec = samples.record(samples.START, "alice", samples.FAIL, "10.0.0.1")
    normalize.normalize(rec, "b", 0, 0)
    gc.collect()
    before = rss()
    for i in range(5000):
        long = f"{i:06d}" + "x" * 30_000
        r = json.loads(json.dumps(rec))
        r["properties"]["targetResourceId"] = "/VIRTUALMACHINES/" + long
        r["properties"]["message"] = "Login Failed " + long
        r["resourceId"] = r["resourceId"] + long
        e = normalize.normalize(r, "b", i, 0)
        list(layout.index_rows([e]))
        normalize.ip_key(long), normalize.vm_name(long), keys.encode(long), keys.identity(long)
    gc.collect()
    print(json.dumps({"before": before, "after": rss()}))
    """
)


@pytest.mark.slow  # a subprocess normalizing 5,000 records of 30 kB
def test_caches_do_not_keep_long_log_strings() -> None:
    """5,000 records with distinct 30 KB VM names, messages and resource ids (and the same
    strings through every cached helper): the process's RSS comes back near where it was."""
    out = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, check=True, cwd="."
    )
    got = orjson.loads(out.stdout.strip().splitlines()[-1])
    assert got["after"] - got["before"] < 50, got


def test_short_values_are_still_cached() -> None:
    keys.encode("alice")
    assert keys._encode_short.cache_info().currsize >= 1
    assert keys.encode("x" * 1000) == keys._encode("x" * 1000)


# -- quarantine through the blob trigger ------------------------------------------------------
@pytest.mark.azurite
def test_tiny_rejects_make_one_quarantine_document_per_chunk(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """`{"records":[{},{},...]}`: 300,000 items that normalize rejects, read in 64 KiB chunks.
    One bounded document per chunk, every item counted, and each one findable."""
    pipeline = app_env(READ_CHUNK_BYTES="65536")
    n = 300_000
    good = orjson.dumps(samples.record(samples.START, "alice", samples.OK, "10.0.0.1"))
    data = b'{"records":[' + good + b"," + b",".join([b"{}"] * n) + b"," + good + b"]}"
    name = blob_prefix + "y=2026/m=11/d=23/h=09/m=00/PT1H.json"
    logs.upload_blob(name, data)
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))

    cursor = pipeline.storage.read_cursor(keys.blob_key(LOGS_CONTAINER, name), name)
    assert (cursor.offset, cursor.stored + cursor.skipped, cursor.quarantined) == (len(data), 2, n)
    container = pipeline.storage.blobs.get_container_client(pipeline.settings.quarantine_container)
    docs = {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()}
    chunks = -(-len(data) // 65536)
    assert 1 <= len(docs) <= chunks, "quarantine writes must grow with chunks, not items"
    lines = [line for doc in docs.values() for line in quarantine.read(doc)]
    assert sum(line.get("Count", 1) for line in lines) == n
    assert all(len(doc) < 4 * MiB for doc in docs.values())
    assert {line["Reason"].split(":")[0] for line in lines} == {"wrong_category"}
    first = min(line["SourceOffset"] for line in lines)
    last = max(line.get("LastOffset", line["SourceOffset"]) for line in lines)
    assert data[first : first + 2] == b"{}" and data[last : last + 3] == b"{},"
    assert all(name in doc_name for doc_name in docs)


@pytest.mark.azurite
def test_rejects_keep_their_text_until_the_document_is_full(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    """Few rejects: each its own line with its text (cut at 4 KiB, marked)."""
    big = b'{"category": "x", "pad": "' + b"p" * 10_000 + b'"}'
    data = b"not json\n" + big + b"\n" + b"[1]\n"
    name = blob_prefix + "PT1H.json"
    logs.upload_blob(name, data)
    summary = pipeline.ingest(logs.get_blob_client(name))
    assert (summary.read, summary.quarantined) == (3, 3)
    container = pipeline.storage.blobs.get_container_client(pipeline.settings.quarantine_container)
    (doc,) = [container.download_blob(b.name).readall() for b in container.list_blobs()]
    lines = quarantine.read(doc)
    assert [line["SourceOffset"] for line in lines] == [0, 9, 9 + len(big) + 1]
    assert lines[0]["Raw"] == "not json" and "RawCut" not in lines[0]
    assert lines[1]["RawCut"] is True and len(lines[1]["Raw"]) == quarantine.RAW_PER_PIECE
    assert lines[1]["RawBytes"] == len(orjson.dumps(orjson.loads(big)))  # as parsed
    assert lines[2]["Reason"].startswith("not_an_object") and lines[2]["Raw"] == "1"
