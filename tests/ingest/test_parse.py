"""Splitting blob bytes into records: every format, incremental, bad input. No I/O."""

from __future__ import annotations

import orjson
import pytest

from shared.ingest.parse import BOM, Mode, split

MAX = 32768
R1 = {"time": "2026-11-24T10:00:00Z", "category": "BastionAuditLogs", "n": 1}
R2 = {"time": "2026-11-24T10:00:01Z", "category": "BastionAuditLogs", "n": 2, "s": '{["]}'}
R3 = {"time": "2026-11-24T10:00:02Z", "category": "BastionAuditLogs", "n": 3}


def values(data: bytes, final: bool = True) -> list[object]:
    result = split(data, 0, Mode.UNKNOWN, final, MAX)
    return [p.value if p.error is None else ("error", p.error.split(":")[0]) for p in result.pieces]


def incremental(data: bytes, step: int) -> tuple[list[object], int]:
    """Feed `data` in pieces of `step` bytes, carrying the unconsumed tail like ingest does."""
    out: list[object] = []
    mode, pos, carry = Mode.UNKNOWN, 0, b""
    for i in range(0, len(data), step):
        buf = carry + data[i : i + step]
        last = i + step >= len(data)
        result = split(buf, pos, mode, last, MAX)
        out += [p.value if p.error is None else ("error", p.offset) for p in result.pieces]
        pos, mode, carry = pos + result.consumed, result.mode, buf[result.consumed :]
    return out, pos


def lines(*records: dict[str, object]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


PRETTY = orjson.OPT_INDENT_2
WRAPPED_ODD = b'{"RECORDS" : [' + b",\n".join(orjson.dumps(r) for r in (R1, R2, R3)) + b"]}"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lines(R1, R2, R3), id="json-lines"),
        pytest.param(orjson.dumps({"records": [R1, R2, R3]}), id="wrapper-one-line"),
        pytest.param(orjson.dumps({"records": [R1, R2, R3]}, option=PRETTY), id="wrapper-pretty"),
        pytest.param(orjson.dumps([R1, R2, R3], option=PRETTY), id="array"),
        pytest.param(b"\n".join(orjson.dumps(r, option=PRETTY) for r in (R1, R2, R3)), id="pretty"),
        pytest.param(BOM + lines(R1, R2, R3).replace(b"\n", b"\r\n"), id="bom-crlf"),
        pytest.param(b"\n\n" + lines(R1) + b"\n  \n" + lines(R2, R3) + b"\n", id="blank-lines"),
        pytest.param(lines(R1, R2) + orjson.dumps(R3), id="no-final-newline"),
        pytest.param(WRAPPED_ODD, id="wrapper-odd-case"),
    ],
)  # fmt: skip
def test_every_format_gives_the_same_records(data: bytes) -> None:
    assert values(data) == [R1, R2, R3]


@pytest.mark.parametrize("step", [1, 7, 64, 1000])
@pytest.mark.parametrize(
    "data",
    [
        lines(R1, R2, R3),
        orjson.dumps({"records": [R1, R2, R3]}, option=orjson.OPT_INDENT_2),
        b"\n".join(orjson.dumps(r, option=orjson.OPT_INDENT_2) for r in (R1, R2, R3)),
    ],
    ids=["lines", "wrapper", "pretty"],
)
def test_chunk_boundaries_do_not_change_the_result(data: bytes, step: int) -> None:
    got, consumed = incremental(data, step)
    assert got == [R1, R2, R3]
    assert consumed == len(data)


def test_partial_last_line_waits_for_more_unless_final() -> None:
    data = lines(R1, R2) + b'{"time": "2026-11-24T10:00:02Z", "categ'
    waiting = split(data, 0, Mode.UNKNOWN, False, MAX)
    assert [p.value for p in waiting.pieces] == [R1, R2]
    assert waiting.consumed == len(lines(R1, R2))
    assert values(data, final=True)[-1] == ("error", "truncated")


def test_offsets_are_absolute_positions_of_each_record() -> None:
    data = lines(R1, R2, R3)
    result = split(data[10:], 10, Mode.LINES, True, MAX)  # resume mid-blob at a line start
    first = split(data, 0, Mode.UNKNOWN, True, MAX).pieces
    assert [p.offset for p in first] == [0, len(lines(R1)), len(lines(R1, R2))]
    assert result.pieces[0].error is not None  # resumed at the wrong place: reported, not lost


def test_malformed_line_is_reported_and_the_rest_kept() -> None:
    data = lines(R1) + b'{"time": oops}\n' + b"[1, 2]\n" + b'"just a string"\n' + lines(R3)
    got = values(data)
    assert got[0] == R1 and got[-1] == R3
    assert ("error", "malformed") in got
    assert ("error", "not_an_object") in got
    assert 1 in got and 2 in got  # array elements become pieces; normalize rejects them


def test_oversized_line_is_cut_and_reported_once() -> None:
    big = b'{"x": "' + b"a" * (MAX * 3) + b'"}\n'
    result = split(lines(R1) + big + lines(R3), 0, Mode.UNKNOWN, True, MAX)
    errors = [p for p in result.pieces if p.error]
    assert len(errors) == 1 and errors[0].error.startswith("oversized")
    assert len(errors[0].raw) == MAX
    assert [p.value for p in result.pieces if not p.error] == [R1, R3]


def test_endless_line_is_skipped_across_calls_with_bounded_carry() -> None:
    first = split(lines(R1) + b"x" * (MAX + 10), 0, Mode.UNKNOWN, False, MAX)
    assert first.mode is Mode.SKIP_LINE
    assert first.consumed == len(lines(R1)) + MAX + 10  # nothing is carried
    rest = split(b"y" * 100 + b"\n" + lines(R3), first.consumed, first.mode, True, MAX)
    assert [p.value for p in rest.pieces] == [R3]


@pytest.mark.parametrize("data", [b"", b"   \n\r\n", BOM])
def test_empty_blobs_give_nothing(data: bytes) -> None:
    result = split(data, 0, Mode.UNKNOWN, True, MAX)
    assert result.pieces == [] and result.consumed == len(data)


def test_binary_blob_is_quarantined_not_crashed() -> None:
    data = bytes(range(256)) * 40
    got = values(data)
    assert got and all(v[0] == "error" for v in got)  # type: ignore[index]


def test_unterminated_array_reports_truncated_when_final() -> None:
    data = orjson.dumps([R1, R2])[:-1] + b', {"time": "x'
    assert values(data) == [R1, R2, ("error", "truncated")]
