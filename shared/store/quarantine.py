"""The rejected pieces of one chunk, as one JSON Lines document. Pure code.

One document per chunk that had rejects, so quarantine writes grow with chunks, not with items,
and its size is bounded whatever the chunk holds:

- the first `DETAIL_LINES` rejected pieces get a line each: source blob, offset, index, reason,
  and up to `RAW_PER_PIECE` bytes of their text (`RawCut: true` when cut), until the document
  holds `RAW_PER_DOC` bytes of text; after that, lines keep offsets and reasons without text;
- every later rejected piece is counted in one summary line per reason code: `Count`, the first
  (`SourceOffset`, `SourceIndex`) and the last (`LastOffset`, `LastIndex`) of them.

The document is named after the first and last rejected piece it holds. The rejects between two
offsets of a blob are always the same, so the same name always means the same content: a retried
chunk overwrites its document, and a chunk cut elsewhere (a retry after the blob grew, two
instances racing) writes another name instead of clobbering a document that covers more.
(A piece can then be listed twice; `SourceBlob`, `SourceOffset`, `SourceIndex` identify it.)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from shared.core.domain import Piece

DETAIL_LINES = 10_000
RAW_PER_PIECE = 4096
RAW_PER_DOC = 1024 * 1024
#: Longest reason kept (a reason holds at most a short excerpt of the record).
MAX_REASON = 500


class Batch:
    """Collects the rejects of one chunk; `count` is how many pieces were rejected."""

    __slots__ = (
        "_doc",
        "_first",
        "_last",
        "_lines",
        "_raw",
        "_reason",
        "_run",
        "_summary",
        "count",
        "source_blob",
        "stamp",
    )

    def __init__(self, source_blob: str, now: datetime | None = None) -> None:
        self.source_blob = source_blob
        self.stamp = (now or datetime.now(UTC)).isoformat()
        self.count = 0
        self._first: Piece | None = None
        self._last: Piece | None = None
        self._doc = bytearray()  # the detail lines (one buffer: orjson's bytes are 4 KiB each)
        self._lines = 0
        self._raw = 0
        #: reason code -> [first piece, its reason, count, last piece]
        self._summary: dict[str, list[Any]] = {}
        self._reason = ""  # the reason of the last summarized piece, and its entry
        self._run: list[Any] = []

    def __len__(self) -> int:
        return self.count

    def add(self, piece: Piece, reason: str) -> None:
        """Record one rejected piece (its text is taken from `raw`, else re-serialized)."""
        self.count += 1
        self._last = piece
        if self._lines < DETAIL_LINES:
            if self._first is None:
                self._first = piece
            self._doc += orjson.dumps(self._detail(piece, reason))
            self._doc += b"\n"
            self._lines += 1
            return
        if reason is not self._reason:  # runs of one reason are the common case
            code = reason.split(":", 1)[0][:100]
            self._reason = reason
            self._run = self._summary.setdefault(code, [piece, reason, 0, piece])
        run = self._run
        run[2] += 1
        run[3] = piece

    def _line(self, piece: Piece, reason: str) -> dict[str, Any]:
        return {
            "SourceBlob": self.source_blob,
            "SourceOffset": piece.offset,
            "SourceIndex": piece.item,
            "Reason": reason[:MAX_REASON],
            "RawBytes": 0,
            "Raw": "",
            "QuarantinedAt": self.stamp,
        }

    def _detail(self, piece: Piece, reason: str) -> dict[str, Any]:
        line = self._line(piece, reason)
        if self._raw >= RAW_PER_DOC:
            line["RawCut"] = True
            return line
        raw = piece.raw or _serialized(piece.value)
        keep = min(len(raw), RAW_PER_PIECE, RAW_PER_DOC - self._raw)
        self._raw += keep
        line["RawBytes"] = len(raw)
        line["Raw"] = raw[:keep].decode("utf-8", errors="replace")
        if keep < len(raw):
            line["RawCut"] = True
        return line

    @property
    def name(self) -> str:
        """`<source blob>/<first offset>-<last offset>.jsonl` (offsets zero-padded to 12)."""
        first = self._first.offset if self._first else 0
        last = self._last.offset if self._last else 0
        return f"{self.source_blob}/{first:012d}-{last:012d}.jsonl"

    def document(self) -> bytes:
        """The JSON Lines text: detail lines in blob order, then the summary lines."""
        summary = b"".join(
            orjson.dumps(
                {
                    **self._line(first, reason),
                    "Count": count,
                    "LastOffset": last.offset,
                    "LastIndex": last.item,
                }
            )
            + b"\n"
            for first, reason, count, last in self._summary.values()
        )
        return bytes(self._doc) + summary


def _serialized(value: object) -> bytes:
    """The text of a value normalize rejected (its offset finds the original)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255; it reads 1024)
        return b"(nested too deep to show: see the source blob at this offset)"


def read(document: bytes) -> list[dict[str, Any]]:
    """The lines of a quarantine document (for people, the demo and tests)."""
    return [orjson.loads(line) for line in document.splitlines() if line.strip()]
