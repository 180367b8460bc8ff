"""Split the bytes of a resource-log blob into JSON records, incrementally.

Azure Monitor writes JSON Lines into append blobs (since 2018-11); older blobs hold one
`{"records": [...]}` object, and people also feed us JSON arrays or pretty-printed objects
written back to back. The format is decided once from the start of the blob and kept in the
cursor, so each invocation resumes exactly where the previous one stopped, at a record boundary.
Pure code: no I/O, and nothing here ever holds more than one chunk plus one partial record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import orjson

BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"
_WRAPPER = re.compile(rb'\{\s*"records"\s*:\s*\[', re.IGNORECASE)
# Text that may still turn into the wrapper's opening once more bytes arrive.
_WRAPPER_START = re.compile(
    rb'\{\s*(?:"(?:r(?:e(?:c(?:o(?:r(?:d(?:s(?:"\s*(?::\s*)?)?)?)?)?)?)?)?)?)?', re.IGNORECASE
)
# A JSON string (escapes honoured), a bracket, or a lone quote (= string not finished yet).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]|"', re.DOTALL)
_SCALAR = re.compile(rb"[^,\]\s]+")
#: In the bracket-scanning formats (legacy wrapper, arrays, pretty-printed objects) a value
#: has to be held whole to find its end; one larger than this ends the parse of the blob, and
#: the rest of the blob is quarantined as one piece (its offset says where to look).
SCAN_LIMIT = 64 * 1024 * 1024


class Mode(StrEnum):
    """How the rest of the blob is read; persisted in the cursor between invocations."""

    UNKNOWN = "unknown"  # nothing read yet
    LINES = "lines"  # JSON Lines
    SKIP_LINE = "skip"  # JSON Lines, inside an oversized line: drop bytes up to the next newline
    CONCAT = "concat"  # objects back to back, possibly pretty-printed
    ARRAY = "array"  # inside a top-level JSON array (or the "records" array of the wrapper)
    DONE = "done"  # past the end of the array: the rest is ignored


class Piece(NamedTuple):
    """One record's worth of input: its parsed value, or the reason it could not be parsed.

    A NamedTuple because one is made per record: it costs a third of a frozen dataclass.
    """

    offset: int  # absolute byte offset in the blob where the record's text starts
    index: int  # position inside a line that held several records (a one-line wrapper)
    value: object
    raw: bytes  # the text, kept for quarantine (only on error; b"" otherwise)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Split:
    """Result of splitting one buffer: the pieces, how many bytes they used, the next mode."""

    pieces: list[Piece]
    consumed: int
    mode: Mode


def split(buf: bytes, start: int, mode: Mode, final: bool, max_record: int) -> Split:
    """Split `buf` (the blob's bytes from absolute offset `start`) into pieces.

    Only whole records are consumed; a partial last record is left for the next call unless
    `final` says the blob will not grow any more, in which case it is reported as truncated.
    """
    pieces: list[Piece] = []
    pos = 0
    if mode is Mode.UNKNOWN:
        detected = _detect(buf, final, max_record)
        if detected is None:
            return Split(pieces, 0, mode)
        mode, pos = detected
    if mode is Mode.SKIP_LINE:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return Split(pieces, len(buf), Mode.DONE if final else Mode.SKIP_LINE)
        pos, mode = nl + 1, Mode.LINES
    if mode is Mode.LINES:
        return _split_lines(buf, pos, start, final, max_record, pieces)
    if mode in (Mode.CONCAT, Mode.ARRAY):
        return _split_scan(buf, pos, start, mode, final, max_record, pieces)
    return Split(pieces, len(buf), Mode.DONE)


def _detect(buf: bytes, final: bool, max_record: int) -> tuple[Mode, int] | None:
    if not final and len(buf) < len(BOM) and BOM.startswith(buf):
        return None  # a BOM cut by the end of the first append
    pos = len(BOM) if buf.startswith(BOM) else 0
    while pos < len(buf) and buf[pos] in _WS:
        pos += 1
    if pos == len(buf):
        return (Mode.LINES, pos) if final else None
    head = buf[pos : pos + 256]
    if head[:1] == b"[":
        return Mode.ARRAY, pos + 1
    match = _WRAPPER.match(head)
    if match:
        return Mode.ARRAY, pos + match.end()
    if not final and _WRAPPER_START.fullmatch(head) and len(head) < 256:
        return None
    if head[:1] != b"{":
        return Mode.LINES, pos  # not JSON at all: every line will be quarantined
    # Decided from the first `max_record` bytes only, so chunking never changes the answer.
    nl = buf.find(b"\n", pos, pos + max_record + 1)
    if nl < 0:
        if len(buf) - pos > max_record:
            return Mode.LINES, pos  # a first line longer than a record: quarantined as such
        if not final:
            return None
    line = buf[pos : nl if nl >= 0 else len(buf)]
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return Mode.CONCAT, pos
    return Mode.LINES, pos


def _split_lines(
    buf: bytes, pos: int, start: int, final: bool, max_record: int, pieces: list[Piece]
) -> Split:
    end = buf.rfind(b"\n", pos) + 1  # everything before `end` is whole lines
    append = pieces.append
    loads = orjson.loads
    if end > pos:
        offset = start + pos
        for line in buf[pos:end].split(b"\n"):
            size = len(line) + 1
            if len(line) > max_record:
                append(Piece(offset, 0, None, line[:max_record], f"oversized: {len(line)} bytes"))
            else:
                stripped = line.strip()
                if stripped:
                    try:
                        value = loads(stripped)
                    except orjson.JSONDecodeError as exc:
                        append(Piece(offset, 0, None, stripped, f"malformed: {exc}"))
                    else:
                        if value.__class__ is dict and "records" not in value:
                            append(Piece(offset, 0, value, b""))
                        else:
                            _expand(value, offset, stripped, append)
            offset += size
        pos = end
    tail = buf[pos:]
    if len(tail) > max_record:  # an endless line: report it once and drop it up to its newline
        append(Piece(start + pos, 0, None, tail[:max_record], f"oversized: >{max_record} bytes"))
        return Split(pieces, len(buf), Mode.DONE if final else Mode.SKIP_LINE)
    if final and tail.strip():
        try:
            value = loads(tail.strip())
        except orjson.JSONDecodeError:
            append(Piece(start + pos, 0, None, tail.strip(), "truncated: incomplete last line"))
        else:
            _expand(value, start + pos, tail.strip(), append)
        pos = len(buf)
    elif final:
        pos = len(buf)
    return Split(pieces, pos, Mode.LINES)


def _expand(value: object, offset: int, raw: bytes, append: Callable[[Piece], None]) -> None:
    """A line normally holds one record; a one-line wrapper or array holds many."""
    if isinstance(value, dict):
        inner = value.get("records") if "records" in value else None
        if not (isinstance(inner, list) and "category" not in value):
            append(Piece(offset, 0, value, b""))
            return
        value = inner
    if isinstance(value, list):
        for i, item in enumerate(value):
            append(Piece(offset, i, item, b""))
    else:
        append(Piece(offset, 0, None, raw, "not_an_object: a line must hold a JSON object"))


def _split_scan(
    buf: bytes,
    pos: int,
    start: int,
    mode: Mode,
    final: bool,
    max_record: int,
    pieces: list[Piece],
) -> Split:
    """Bracket-matching scanner for the formats whose records span lines."""
    n = len(buf)
    while True:
        while pos < n and (buf[pos] in _WS or (buf[pos] == 0x2C)):  # whitespace and commas
            pos += 1
        if pos >= n:
            return Split(pieces, pos, mode)
        first = buf[pos]
        if mode is Mode.ARRAY and first == 0x5D:  # "]" closes the records: ignore the rest
            return Split(pieces, n, Mode.DONE)
        if first in b"{[":
            end = _value_end(buf, pos)
            if end is None:
                if final or n - pos > SCAN_LIMIT:
                    why = (
                        "truncated: incomplete last record"
                        if final
                        else f"oversized: a value over {SCAN_LIMIT} bytes; rest of blob not parsed"
                    )
                    pieces.append(Piece(start + pos, 0, None, buf[pos : pos + max_record], why))
                    return Split(pieces, n, Mode.DONE)
                return Split(pieces, pos, mode)
        else:
            token = _TOKEN.match(buf, pos) if first == 0x22 else _SCALAR.match(buf, pos)
            end = token.end() if token else n
            unfinished = first == 0x22 and token is not None and end - pos == 1  # lone quote
            if (token is None or end == n or unfinished) and not final:
                return Split(pieces, pos, mode)
            if unfinished:
                end = n
            raw = buf[pos:end]
            pieces.append(Piece(start + pos, 0, None, raw[:max_record], "not_an_object"))
            pos = end
            continue
        raw = buf[pos:end]
        if len(raw) > max_record:
            pieces.append(
                Piece(start + pos, 0, None, raw[:max_record], f"oversized: {len(raw)} bytes")
            )
        else:
            try:
                pieces.append(Piece(start + pos, 0, orjson.loads(raw), b""))
            except orjson.JSONDecodeError as exc:
                pieces.append(Piece(start + pos, 0, None, raw, f"malformed: {exc}"))
        pos = end


def _value_end(buf: bytes, pos: int) -> int | None:
    """End offset of the bracketed value starting at `pos`, or None if it is not complete."""
    depth = 0
    for match in _TOKEN.finditer(buf, pos):
        tok = match.group()
        c = tok[0]
        if c == 0x22:  # a string; a lone quote means the string is not finished
            if len(tok) == 1:
                return None
            continue
        if c in b"{[":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return match.end()
    return None
