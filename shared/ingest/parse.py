"""Split the bytes of a resource-log blob into JSON records, incrementally.

Azure Monitor writes JSON Lines into append blobs (since 2018-11); older blobs hold one
`{"records": [...]}` object, and people also feed us JSON arrays or pretty-printed objects
written back to back. The format is decided once from the start of the blob and kept in the
cursor, so each invocation resumes exactly where the previous one stopped.

Pure code: no I/O. Whatever the content, nothing here holds more than the buffer it is given
(one read chunk plus a carried partial record) and `max_record` bytes of any one value, and the
time is linear in the bytes:

- JSON Lines: a line longer than `max_record` is reported once (its first `max_record` bytes)
  and the rest of it is dropped up to its newline (mode `skip`).
- The bracket formats (wrapper, array, objects back to back): a value (object, array, string or
  bare scalar) is scanned with possessive regular expressions, which never backtrack and keep
  no memory per repetition, and never beyond `max_record` bytes: a longer value is reported
  once and skipped to its end, across any number of chunks. Where that scan stands inside the
  value (depth, inside a string, after a backslash) is part of the mode string, so a resumed
  invocation continues at any byte.

Pieces come out one at a time (`stream`), so millions of tiny items never exist as a list.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import ClassVar, cast

import orjson

from shared.core.domain import Piece

BOM = b"\xef\xbb\xbf"
_WRAPPER = re.compile(rb'\{\s*"records"\s*:\s*\[', re.IGNORECASE)
# Text that may still turn into the wrapper's opening once more bytes arrive.
_WRAPPER_START = re.compile(
    rb'\{\s*(?:"(?:r(?:e(?:c(?:o(?:r(?:d(?:s(?:"\s*(?::\s*)?)?)?)?)?)?)?)?)?)?', re.IGNORECASE
)

# -- scanning the bracket formats ------------------------------------------------------------
# Every repetition is possessive (`*+`, `++`): no backtracking, and CPython's engine keeps no
# state per iteration of a possessive group. (`"(?:[^"\\]|\\.)*"` needs ~120 bytes of memory
# per byte of string; the unrolled possessive form below needs none and runs at ~200-400 MB/s.)
_GAP = re.compile(rb"[ \t\r\n,]*+")  # whitespace and commas between values
_BLANK = re.compile(rb"[ \t\r\n]*+")
_STRING_BODY = rb'[^"\\]*+(?:\\.[^"\\]*+)*+'  # up to the closing quote (or a final backslash)
_STRING_REST = re.compile(_STRING_BODY, re.DOTALL)
_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_OPENERS = re.compile(rb"[\[{]*+")
_CLOSERS = re.compile(rb"[\]}]*+")
_SCALAR = re.compile(rb"[^,\] \t\r\n]++")  # a bare number, literal or garbage word
#: `match` of a pattern that matches the empty string never returns None; typed so.
_Always = Callable[..., "re.Match[bytes]"]
_gap, _blank = cast(_Always, _GAP.match), cast(_Always, _BLANK.match)
_string_rest = cast(_Always, _STRING_REST.match)
_openers, _closers = cast(_Always, _OPENERS.match), cast(_Always, _CLOSERS.match)
_SCALAR_END = frozenset(b",] \t\r\n")
_FLAT = rb'[^"\[\]{}]++'
_STRING = rb'"' + _STRING_BODY + rb'"'


def _nested_value(depth: int) -> bytes:
    """A bracketed value nested at most `depth` deep (brackets are not paired by kind: orjson
    checks the text afterwards). Matches a record in one C call; deeper ones take `_scan`."""
    inner = b"(?:" + _FLAT + b"|" + _STRING + b")*+"
    value = b""
    for _ in range(depth):
        value = rb"[\[{]" + inner + rb"[\]}]"
        inner = b"(?:" + _FLAT + b"|" + _STRING + b"|" + value + b")*+"
    return value


_VALUE = re.compile(_nested_value(4), re.DOTALL)


class Mode(str):
    """How the rest of the blob is read; persisted in the cursor as this (short) string.

    Fixed modes: `unknown` (nothing read yet), `lines` (JSON Lines), `skip` (JSON Lines, inside
    an oversized line: drop bytes up to the next newline), `concat` (objects back to back,
    possibly pretty-printed), `array` (inside a top-level array or the wrapper's records),
    `done` (past the end of the array: the rest is ignored).

    While the bracket formats skip the rest of an oversized value, the mode also says where the
    scan stands in it: `array+v3` (three brackets deep), `array+v3s` (inside a string there),
    `array+v3e` (right after a backslash in that string), `array+s` / `array+e` (a bare string),
    `array+x` (a bare scalar); the same with `concat+`.

    Any other text (a corrupt or forged cursor) reads as `unknown`, never raises: the format is
    detected again at the cursor's position, and what does not parse there is quarantined.
    """

    __slots__ = ()
    UNKNOWN: ClassVar[Mode]
    LINES: ClassVar[Mode]
    SKIP_LINE: ClassVar[Mode]
    CONCAT: ClassVar[Mode]
    ARRAY: ClassVar[Mode]
    DONE: ClassVar[Mode]

    def __new__(cls, text: object = "unknown") -> Mode:
        if not isinstance(text, str):
            return _FIXED["unknown"]
        fixed = _FIXED.get(text)
        if fixed is not None:
            return fixed
        if len(text) <= 32 and _SKIPPING.fullmatch(text):
            return str.__new__(cls, text)
        return _FIXED["unknown"]

    @property
    def value(self) -> str:
        """The text to persist."""
        return str(self)


_FIXED: dict[str, Mode] = {}
for _name, _attr in (
    ("unknown", "UNKNOWN"),
    ("lines", "LINES"),
    ("skip", "SKIP_LINE"),
    ("concat", "CONCAT"),
    ("array", "ARRAY"),
    ("done", "DONE"),
):
    _FIXED[_name] = str.__new__(Mode, _name)
    setattr(Mode, _attr, _FIXED[_name])
_SKIPPING = re.compile(r"(array|concat)\+(?:v([1-9][0-9]{0,17})([se]?)|([sex]))")
#: Skip state inside an oversized value: (depth, in a string, after a backslash); or _SCALAR_SKIP.
_State = tuple[int, bool, bool]
_SCALAR_SKIP: _State = (-1, False, False)


def _encode(base: Mode, state: _State) -> Mode:
    depth, in_string, escaped = state
    if state == _SCALAR_SKIP:
        where = "x"
    elif depth == 0:
        where = "e" if escaped else "s"
    else:
        where = f"v{depth}" + ("e" if escaped else "s" if in_string else "")
    return Mode(f"{base}+{where}")


def _decode(mode: Mode) -> tuple[Mode, _State | None]:
    """(base mode, skip state or None) of a bracket-format mode."""
    if mode is Mode.ARRAY or mode is Mode.CONCAT:
        return mode, None
    match = _SKIPPING.fullmatch(mode)
    if match is None:  # unreachable: Mode() only makes valid modes
        return Mode.CONCAT, None
    base, depth, flag, where = match.groups()
    if depth:
        return Mode(base), (int(depth), flag != "", flag == "e")
    if where == "x":
        return Mode(base), _SCALAR_SKIP
    return Mode(base), (0, True, where == "e")


@dataclass(frozen=True, slots=True)
class Split:
    """Result of splitting one buffer: the pieces, how many bytes they used, the next mode."""

    pieces: list[Piece]
    consumed: int
    mode: Mode


class Stream:
    """The pieces of one buffer, made while they are iterated (`pieces`, once).

    `consumed` and `mode` are known when `pieces` has been iterated to its end; asking before
    raises, since stopping early would drop records.
    """

    __slots__ = ("_consumed", "_mode", "pieces")

    def __init__(self, buf: bytes, start: int, mode: Mode, final: bool, max_record: int) -> None:
        self._consumed = -1
        self._mode = mode
        self.pieces: Iterator[Piece] = self._run(buf, start, mode, final, max_record)

    def _run(
        self, buf: bytes, start: int, mode: Mode, final: bool, max_record: int
    ) -> Iterator[Piece]:
        self._consumed, self._mode = yield from _split(buf, start, mode, final, max_record)

    @property
    def consumed(self) -> int:
        if self._consumed < 0:
            raise RuntimeError("iterate every piece before asking how far they reach")
        return self._consumed

    @property
    def mode(self) -> Mode:
        self.consumed  # noqa: B018 - the same check
        return self._mode


def stream(buf: bytes, start: int, mode: Mode, final: bool, max_record: int) -> Stream:
    """Split `buf` (the blob's bytes from absolute offset `start`) into pieces, lazily.

    Only whole records are consumed; a partial last record is left for the next call unless
    `final` says the blob will not grow any more, in which case it is reported as truncated.
    """
    return Stream(buf, start, Mode(mode), final, max_record)


def split(buf: bytes, start: int, mode: Mode, final: bool, max_record: int) -> Split:
    """`stream`, with the pieces in a list (for small buffers: tests, tools)."""
    result = stream(buf, start, mode, final, max_record)
    pieces = list(result.pieces)
    return Split(pieces, result.consumed, result.mode)


_Pieces = Generator[Piece, None, tuple[int, Mode]]


def _split(buf: bytes, start: int, mode: Mode, final: bool, max_record: int) -> _Pieces:
    pos = 0
    if mode is Mode.UNKNOWN:
        detected = _detect(buf, start == 0, final, max_record)
        if detected is None:
            return 0, mode
        mode, pos = detected
        if mode is Mode.UNKNOWN:
            return pos, mode
    if mode is Mode.SKIP_LINE:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return len(buf), Mode.DONE if final else Mode.SKIP_LINE
        pos, mode = nl + 1, Mode.LINES
    if mode is Mode.LINES:
        return (yield from _split_lines(buf, pos, start, final, max_record))
    if mode is Mode.DONE:
        return len(buf), Mode.DONE
    return (yield from _split_scan(buf, pos, start, mode, final, max_record))


def _detect(buf: bytes, at_start: bool, final: bool, max_record: int) -> tuple[Mode, int] | None:
    """The format, and where its first record starts; None: undecided, consume nothing yet;
    (UNKNOWN, n): only whitespace so far, consume it and decide later."""
    if at_start and not final and len(buf) < len(BOM) and BOM.startswith(buf):
        return None  # a BOM cut by the end of the first append
    pos = len(BOM) if at_start and buf.startswith(BOM) else 0
    pos = _blank(buf, pos).end()
    if pos == len(buf):
        return (Mode.LINES, pos) if final else (Mode.UNKNOWN, pos)
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


def _split_lines(buf: bytes, pos: int, start: int, final: bool, max_record: int) -> _Pieces:
    end = buf.rfind(b"\n", pos) + 1  # everything before `end` is whole lines
    loads = orjson.loads
    same_raw: bytes | None = None  # identical lines share one parsed value (see _split_scan)
    same_value: object = None
    if end > pos:
        offset = start + pos
        reader = io.BytesIO(buf)  # one line at a time: never a list of them all
        reader.seek(pos)
        for line in reader:
            if line[-1] != 0x0A:  # the unfinished tail, handled below
                break
            size = len(line)
            if size - 1 > max_record:
                yield Piece(offset, 0, None, line[:max_record], f"oversized: {size - 1} bytes")
            else:
                stripped = line.strip()
                if stripped == same_raw:  # the same line again: the same (shared) value
                    yield Piece(offset, 0, same_value, b"")
                elif stripped:
                    try:
                        value = loads(stripped)
                    except orjson.JSONDecodeError as exc:
                        yield Piece(offset, 0, None, stripped, f"malformed: {exc}")
                    else:
                        if value.__class__ is dict and "records" not in value:
                            same_raw, same_value = stripped, value
                            yield Piece(offset, 0, value, b"")
                        else:
                            yield from _expand(value, offset, stripped)
            offset += size
        pos = end
    tail = buf[pos:]
    if len(tail) > max_record:  # an endless line: report it once and drop it up to its newline
        yield Piece(start + pos, 0, None, tail[:max_record], f"oversized: >{max_record} bytes")
        return len(buf), Mode.DONE if final else Mode.SKIP_LINE
    if final and tail.strip():
        try:
            value = loads(tail.strip())
        except orjson.JSONDecodeError:
            yield Piece(start + pos, 0, None, tail.strip(), "truncated: incomplete last line")
        else:
            yield from _expand(value, start + pos, tail.strip())
        pos = len(buf)
    elif final:
        pos = len(buf)
    return pos, Mode.LINES


def _expand(value: object, offset: int, raw: bytes) -> Iterator[Piece]:
    """A line normally holds one record; a one-line wrapper or array holds many."""
    if isinstance(value, dict):
        inner = value.get("records") if "records" in value else None
        if not (isinstance(inner, list) and "category" not in value):
            yield Piece(offset, 0, value, b"")
            return
        value = inner
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield Piece(offset, i, item, b"")
    else:
        yield Piece(offset, 0, None, raw, "not_an_object: a line must hold a JSON object")


class _Same:
    """What the scanner saw last, so repeats cost a comparison: millions of identical items
    (`{},{},...`) share one parsed value, and ingest reuses its verdict for each copy."""

    __slots__ = ("by_line", "raw", "scalar", "value")

    def __init__(self) -> None:
        self.raw: bytes | None = None
        self.value: object = None
        self.scalar = b"\xff"  # never a whole scalar before a delimiter is seen
        self.by_line = True  # one record per line until a line says otherwise


_UNPARSED = object()
_NO_STATE: _State = (0, False, False)
_WAIT: _State = tuple([-2, False, False])  # type: ignore[assignment]  # a unique object


def _split_scan(
    buf: bytes, pos: int, start: int, mode: Mode, final: bool, max_record: int
) -> _Pieces:
    """Values of the bracket formats, each held to at most `max_record` bytes."""
    n = len(buf)
    base, state = _decode(mode)
    if state is not None:  # still inside an oversized value that was reported already
        pos, state = _skip(buf, pos, state)
        if state is not None:
            return n, Mode.DONE if final else _encode(base, state)
    array, gap, same = base is Mode.ARRAY, _gap, _Same()
    while True:
        pos = gap(buf, pos).end()
        if pos >= n:
            return pos, base
        first = buf[pos]
        if array and first == 0x5D:  # "]" closes the records: ignore the rest
            return n, Mode.DONE
        limit = pos + max_record  # a value ending after this is oversized
        stop = n if n < limit else limit
        if first != 0x7B and first != 0x5B and first != 0x22:  # a bare scalar
            pos, left = yield from _bare_scalar(buf, pos, start, limit, final, max_record, same)
            if left is not None:
                return (pos, base) if left is _WAIT else (n, _after(base, left, final))
            continue
        end, state_at, parsed = _value_end(buf, pos, stop, first, same)
        if end < 0:  # no end within `stop`
            if stop < limit:  # the buffer ends within a record's length: wait, or truncated
                if not final:
                    return pos, base
                yield Piece(start + pos, 0, None, buf[pos:], "truncated: incomplete last record")
                return n, Mode.DONE
            yield Piece(start + pos, 0, None, buf[pos:limit], f"oversized: over {max_record} bytes")
            pos, left = _skip(buf, limit, state_at)
            if left is not None:
                return n, _after(base, left, final)
            continue
        if parsed is not _UNPARSED:
            yield Piece(start + pos, 0, parsed, b"")
        elif first == 0x22:
            yield Piece(start + pos, 0, None, buf[pos:end], "not_an_object")
        else:
            yield _parsed(buf[pos:end], start + pos, same)
        pos = end


def _after(base: Mode, left: _State, final: bool) -> Mode:
    """The mode after an oversized value the buffer ends inside of."""
    return Mode.DONE if final else _encode(base, left)


def _value_end(
    buf: bytes, pos: int, stop: int, first: int, same: _Same
) -> tuple[int, _State, object]:
    """Where the bracketed value or bare string at `pos` ends (-1: not before `stop`, with
    the scanner's state there), and its value when finding the end parsed it."""
    if first == 0x22:  # a bare string
        scanned = _scan(buf, pos + 1, stop, 0, True, False)
        return scanned[0], scanned[1:], _UNPARSED
    raw = same.raw
    if raw is not None and buf.startswith(raw, pos) and pos + len(raw) <= stop:
        return pos + len(raw), _NO_STATE, same.value  # the last value's text again
    if same.by_line:  # one record per line (the wrapper as Azure wrote it): orjson finds its end
        nl = buf.find(b"\n", pos, stop)
        line = buf[pos:nl].rstrip(b", \t\r") if nl > 0 else b""
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            same.by_line = False  # not this layout: use the scanner for the rest of the buffer
        else:  # valid JSON text starting with a bracket ends where its brackets close
            return pos + len(line), _NO_STATE, parsed
    match = _VALUE.match(buf, pos, stop)  # a record, in one C call
    if match is not None:
        return match.end(), _NO_STATE, _UNPARSED
    scanned = _scan(buf, pos, stop, 0, False, False)
    return scanned[0], scanned[1:], _UNPARSED


def _parsed(raw: bytes, offset: int, same: _Same) -> Piece:
    """The piece of a bracketed value's text (the same text again: the same shared value)."""
    if raw == same.raw:
        return Piece(offset, 0, same.value, b"")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Piece(offset, 0, None, raw, f"malformed: {exc}")
    same.raw, same.value = raw, value
    return Piece(offset, 0, value, b"")


def _bare_scalar(
    buf: bytes, pos: int, start: int, limit: int, final: bool, max_record: int, same: _Same
) -> Generator[Piece, None, tuple[int, _State | None]]:
    """A bare number, literal or garbage word (not a record): it ends at a comma, "]" or
    whitespace. Returns where to go on, and `_WAIT` to wait for more bytes or the state
    of an oversized scalar the buffer ends inside of (None: carry on)."""
    n = len(buf)
    end = pos + len(same.scalar)
    if end < n and buf[end] in _SCALAR_END and buf.startswith(same.scalar, pos):
        yield Piece(start + pos, 0, None, same.scalar, "not_an_object")  # the same again
        return end, None
    match = _SCALAR.match(buf, pos, min(n, limit + 1))
    end = match.end() if match else pos + 1  # a stray "]" between objects: one byte
    if end <= limit and end == n and not final:
        return pos, _WAIT  # it may go on in the next append
    if end > limit:
        yield Piece(start + pos, 0, None, buf[pos:limit], f"oversized: over {max_record} bytes")
        return _skip(buf, end, _SCALAR_SKIP)
    same.scalar = buf[pos:end]
    yield Piece(start + pos, 0, None, same.scalar, "not_an_object")
    return end, None


def _skip(buf: bytes, pos: int, state: _State) -> tuple[int, _State | None]:
    """Drop the rest of an oversized value: (where it ends, None), or (len(buf), state)."""
    n = len(buf)
    if state == _SCALAR_SKIP:
        match = _SCALAR.match(buf, pos)
        end = match.end() if match else pos
        return (n, state) if end >= n else (end, None)
    end, depth, in_string, escaped = _scan(buf, pos, n, *state)
    return (n, (depth, in_string, escaped)) if end < 0 else (end, None)


def _scan(
    buf: bytes, pos: int, stop: int, depth: int, in_string: bool, escaped: bool
) -> tuple[int, int, bool, bool]:
    """Find the end of a value from a known state, looking no further than `stop`.

    Returns (end, 0, False, False) when the value ends before `stop`, else (-1, depth,
    in_string, escaped) as they stand at `stop`. Depth 0 inside a string is a bare string.
    Linear: one C-level search per string and per bracket.
    """
    structural, string_rest = _STRUCTURAL.search, _string_rest
    openers, closers = _openers, _closers
    while True:
        if in_string:
            if escaped:
                if pos >= stop:
                    return -1, depth, True, True
                pos += 1
                escaped = False
            pos = string_rest(buf, pos, stop).end()
            if pos >= stop:
                return -1, depth, True, False
            if buf[pos] == 0x5C:  # a backslash right before `stop`: its escaped byte is next
                return -1, depth, True, True
            pos += 1  # the closing quote
            in_string = False
            if depth == 0:
                return pos, 0, False, False
        match = structural(buf, pos, stop)
        if match is None:
            return -1, depth, False, False
        pos = match.end()
        c = buf[pos - 1]
        if c == 0x22:
            in_string = True
        elif c == 0x5B or c == 0x7B:  # a run of openers in one step (deep nesting)
            run = openers(buf, pos, stop).end()
            depth += 1 + run - pos
            pos = run
        else:  # a run of closers: the value ends at the one that brings the depth to 0
            run = closers(buf, pos, stop).end()
            if 1 + run - pos >= depth:
                return pos - 1 + depth, 0, False, False
            depth -= 1 + run - pos
            pos = run
