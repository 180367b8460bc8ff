"""Table Storage in memory, behind the Tables SDK's client interface (tests and the demo's speed,
not its wire).

Entities go in through the SDK's own serializer and parameter substitution and come back
through its own deserializer, so types, ETags and metadata are what a real `TableClient`
returns; the service's part is played here: the OData filter (`eq ne gt ge lt le`, `and or
not`, parentheses, typed literals) evaluated as the service does (a missing property or a
comparison across types is false), results in (PartitionKey, RowKey) order, pages of at most
1,000 with continuation tokens, entity-group transactions all or nothing, ETag conditions
(412), create of an existing row (409), update of a missing one (404), the limits on keys and
values (400). `tests/store/test_table_contract.py` runs one suite against this and against Azurite;
it stands in for Azurite only where that suite says they agree.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import EntityProperty, TableEntity, TableTransactionError, UpdateMode
from azure.data.tables._deserialize import _convert_to_entity
from azure.data.tables._serialize import _add_entity_properties, _parameter_filter_substitution
from azure.storage.blob import BlobType

MAX_PAGE = 1000
MAX_BATCH = 100
MAX_STRING = 32 * 1024  # UTF-16 code units (64 KiB)
MAX_ENTITY = 1024 * 1024
MAX_PROPERTIES = 252  # besides PartitionKey, RowKey and Timestamp
FORBIDDEN_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_clock = itertools.count()


def _error(cls: type[HttpResponseError], status: int, code: str, **kwargs: Any) -> Exception:
    exc = cls(message=f"{code}", **kwargs)
    exc.status_code = status
    exc.error_code = code  # type: ignore[assignment]
    return exc


def _etag() -> tuple[str, str]:
    """A new (ETag, Timestamp) pair: unique, and ordered as writes were."""
    stamp = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(microseconds=next(_clock))
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return f"W/\"datetime'{text.replace(':', '%3A')}'\"", text


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _refusal(wire: Mapping[str, Any]) -> str:
    """Why the service would refuse this (serialized) entity, '' if it takes it."""
    for name in ("PartitionKey", "RowKey"):
        key = wire.get(name)
        if not isinstance(key, str) or FORBIDDEN_KEY.search(key) or _utf16(key) > 512:
            return "InvalidInput"
    names = [n for n in wire if not n.endswith("@odata.type")]
    if len(names) - 2 > MAX_PROPERTIES:
        return "TooManyProperties"
    size = 0
    for name in names:
        value = wire[name]
        if isinstance(value, str):
            if _utf16(value) > MAX_STRING:
                return "PropertyValueTooLarge"
            size += 2 * _utf16(value)
        else:
            size += 8
        size += 2 * len(name) + 8
    return "EntityTooLarge" if size > MAX_ENTITY else ""


# -- the filter ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<typed>(?:datetime|guid|X)'(?:[^']|'')*')"
    r"|(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?L?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
Predicate = Callable[[Mapping[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    text = text.strip()
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None or m.end() == at:
            raise _error(HttpResponseError, 400, "InvalidInput")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        at = m.end()
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def _literal(kind: str, text: str) -> Any:
    if kind == "string":
        return text[1:-1].replace("''", "'")
    if kind == "number":
        return float(text) if "." in text or "e" in text.lower() else int(text.rstrip("L"))
    if kind == "typed":
        prefix, body = text.split("'", 1)
        body = body[:-1].replace("''", "'")
        if prefix == "datetime":
            return datetime.fromisoformat(body.replace("Z", "+00:00")).astimezone(UTC)
        return bytes.fromhex(body) if prefix == "X" else body
    if text in ("true", "false"):
        return text == "true"
    raise _error(HttpResponseError, 400, "InvalidInput")


def _compare(value: Any, op: str, literal: Any) -> bool:
    """As the service compares: a missing value or values of different types: false."""
    if isinstance(value, EntityProperty):
        value = value.value
    if value is None:
        return False
    kinds = (bool, str, datetime, bytes)
    same = next((k for k in kinds if isinstance(value, k)), None)
    if same is None:  # a number
        if isinstance(literal, bool) or not isinstance(literal, int | float):
            return False
    elif not isinstance(literal, same) or (same is not bool and isinstance(literal, bool)):
        return False
    if same is bool and op not in ("eq", "ne"):
        return False
    return {
        "eq": value == literal,
        "ne": value != literal,
        "gt": value > literal,
        "ge": value >= literal,
        "lt": value < literal,
        "le": value <= literal,
    }[op]


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise _error(HttpResponseError, 400, "InvalidInput")
        self.at += 1
        return self.tokens[self.at - 1]

    def either(self) -> Predicate:
        return self._joined("or", self.both, any)

    def both(self) -> Predicate:
        return self._joined("and", self.unary, all)

    def _joined(
        self, word: str, part: Callable[[], Predicate], combine: Callable[[Iterable[bool]], bool]
    ) -> Predicate:
        """`part (word part)*`: one predicate, combined with `any` (or) or `all` (and)."""
        parts = [part()]
        while self.peek() == word:
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else (lambda e: combine(p(e) for p in parts))

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        if self.peek() == "(":
            self.take()
            inner = self.either()
            if self.take()[1] != ")":
                raise _error(HttpResponseError, 400, "InvalidInput")
            return inner
        _, name = self.take()
        _, op = self.take()
        if op not in _OPS:
            raise _error(HttpResponseError, 400, "InvalidInput")
        literal = _literal(*self.take())
        return lambda e: _compare(e.get(name), op, literal)


_KEY_CLAUSE = re.compile(r"(PartitionKey|RowKey) (eq|ge|gt|lt|le) '((?:[^']|'')*)'(?: and |$)")


@lru_cache(maxsize=256)
def _key_filter(text: str) -> Callable[[tuple[str, str]], bool]:
    """The filter's leading conditions on the keys, for the keys alone (a speed-up only:
    every row they let through is still tested whole). None of it past a top-level `or`."""
    depth = 0
    for word in text.split():
        depth += word.count("(") - word.count(")")
        if word == "or" and depth == 0:
            return lambda k: True
    tests: list[tuple[int, str, str]] = []
    at = 0
    while m := _KEY_CLAUSE.match(text, at):
        tests.append((0 if m.group(1) == "PartitionKey" else 1, m.group(2),
                      m.group(3).replace("''", "'")))  # fmt: skip
        at = m.end()
    return lambda k: all(_compare(k[i], op, value) for i, op, value in tests)


@lru_cache(maxsize=256)
def _predicate(text: str) -> Predicate:
    parser = _Parser(_tokens(text))
    found = parser.either()
    if parser.at != len(parser.tokens):
        raise _error(HttpResponseError, 400, "InvalidInput")
    return found


# -- pages ---------------------------------------------------------------------------------------
class _Pages:
    """`ItemPaged.by_page()`: pages of rows, and the token of the next (None: the last)."""

    def __init__(self, rows: list[TableEntity], size: int, token: Any) -> None:
        start = 0
        if token:
            after = (token["PartitionKey"], token["RowKey"])
            start = next(
                (i for i, r in enumerate(rows) if (r._pk, r._rk) >= after),  # type: ignore[attr-defined]
                len(rows),
            )
        self.rows, self.size, self.start = rows, size, start
        self.continuation_token: Any = token
        self.done = False

    def __iter__(self) -> Iterator[list[TableEntity]]:
        return self

    def __next__(self) -> list[TableEntity]:
        if self.done:
            raise StopIteration
        page = self.rows[self.start : self.start + self.size]
        self.start += len(page)
        if self.start < len(self.rows):
            nxt = self.rows[self.start]
            self.continuation_token = {"PartitionKey": nxt._pk, "RowKey": nxt._rk}  # type: ignore[attr-defined]
        else:
            self.continuation_token, self.done = None, True
        return page


class _Paged:
    """`ItemPaged`: iterate the rows, or `by_page`."""

    def __init__(self, rows: list[TableEntity], size: int) -> None:
        self.rows, self.size = rows, size

    def __iter__(self) -> Iterator[TableEntity]:
        return iter(self.rows)

    def by_page(self, continuation_token: Any = None) -> _Pages:
        return _Pages(self.rows, self.size, continuation_token)


# -- the service ---------------------------------------------------------------------------------
def _selected(entity: TableEntity, select: Iterable[str] | None) -> TableEntity:
    """Only the properties asked for (`$select`: the keys too only when named)."""
    if select:
        keep = set(select)
        for name in [n for n in entity if n not in keep]:
            del entity[name]
    return entity


class MemoryTableClient:
    """One table: the `TableClient` methods the app and its tests use."""

    def __init__(self, name: str, store: _Table) -> None:
        self.table_name = name
        self._rows = store.rows  # (pk, rk) -> what the service stores (serialized, with ETag)
        self._lock = store.lock  # one per table, whichever client holds it

    # reads
    def _read(self, wire: Mapping[str, Any], select: Iterable[str] | None) -> TableEntity:
        entity = _convert_to_entity(wire)
        entity._pk, entity._rk = wire["PartitionKey"], wire["RowKey"]  # type: ignore[attr-defined]
        return _selected(entity, select)

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> TableEntity:
        wire = self._rows.get((partition_key, row_key))
        if wire is None:
            raise _error(ResourceNotFoundError, 404, "ResourceNotFound")
        return self._read(wire, kwargs.get("select"))

    def query_entities(
        self,
        query_filter: str,
        *,
        parameters: dict[str, Any] | None = None,
        select: list[str] | str | None = None,
        results_per_page: int | None = None,
        **kwargs: Any,
    ) -> _Paged:
        text = _parameter_filter_substitution(parameters, query_filter)
        return self._list(_predicate(text), select, results_per_page, _key_filter(text))

    def list_entities(
        self, *, select: list[str] | str | None = None, results_per_page: int | None = None
    ) -> _Paged:
        return self._list(lambda e: True, select, results_per_page)

    def _list(
        self,
        keep: Predicate,
        select: list[str] | str | None,
        size: int | None,
        by_key: Callable[[tuple[str, str]], bool] = lambda k: True,
    ) -> _Paged:
        with self._lock:
            wires = [self._rows[k] for k in sorted(filter(by_key, self._rows))]
        names = [select] if isinstance(select, str) else select
        out = [_selected(e, names) for e in (self._read(w, None) for w in wires) if keep(e)]
        return _Paged(out, min(size or MAX_PAGE, MAX_PAGE))

    # writes
    def _serialize(
        self, entity: Mapping[str, Any], status_cls: type[HttpResponseError]
    ) -> dict[str, Any]:
        wire = _add_entity_properties(entity)
        problem = _refusal(wire)
        if problem:
            raise _error(status_cls, 400, problem)
        return wire

    def _store(
        self, wire: dict[str, Any], old: Mapping[str, Any] | None, merge: bool
    ) -> dict[str, str]:
        etag, stamp = _etag()
        body: dict[str, Any] = {}
        if merge and old is not None:
            body = {k: v for k, v in old.items() if not k.startswith("odata.") and k != "Timestamp"}
        for name in wire:  # a property written again takes its new type (or none)
            body.pop(name + "@odata.type", None)
        body.update(wire)
        body.update({"odata.etag": etag, "Timestamp": stamp})
        self._rows[(wire["PartitionKey"], wire["RowKey"])] = body
        return {"etag": etag, "date": stamp}

    def _check(self, old: Mapping[str, Any] | None, etag: str | None, match: Any) -> None:
        if match == MatchConditions.IfNotModified and etag and etag != "*":
            if old is None:
                raise _error(ResourceNotFoundError, 404, "ResourceNotFound")
            if old["odata.etag"] != etag:
                raise _error(ResourceModifiedError, 412, "UpdateConditionNotSatisfied")

    def upsert_entity(
        self, entity: Mapping[str, Any], mode: UpdateMode = UpdateMode.MERGE, **kwargs: Any
    ) -> dict[str, str]:
        wire = self._serialize(entity, HttpResponseError)
        with self._lock:
            old = self._rows.get((wire["PartitionKey"], wire["RowKey"]))
            return self._store(wire, old, mode == UpdateMode.MERGE)

    def create_entity(self, entity: Mapping[str, Any], **kwargs: Any) -> dict[str, str]:
        wire = self._serialize(entity, HttpResponseError)
        with self._lock:
            if (wire["PartitionKey"], wire["RowKey"]) in self._rows:
                raise _error(ResourceExistsError, 409, "EntityAlreadyExists")
            return self._store(wire, None, False)

    def update_entity(
        self,
        entity: Mapping[str, Any],
        mode: UpdateMode = UpdateMode.MERGE,
        *,
        etag: str | None = None,
        match_condition: Any = None,
        **kwargs: Any,
    ) -> dict[str, str]:
        wire = self._serialize(entity, HttpResponseError)
        with self._lock:
            old = self._rows.get((wire["PartitionKey"], wire["RowKey"]))
            if old is None:
                raise _error(ResourceNotFoundError, 404, "ResourceNotFound")
            self._check(old, etag, match_condition)
            return self._store(wire, old, mode == UpdateMode.MERGE)

    def delete_entity(
        self, *args: Any, etag: str | None = None, match_condition: Any = None, **kwargs: Any
    ) -> None:
        if len(args) == 1:
            pk, rk = args[0]["PartitionKey"], args[0]["RowKey"]
        else:
            pk, rk = args[0], args[1]
        with self._lock:
            old = self._rows.get((pk, rk))
            if old is None:
                return  # as the SDK does: deleting what is gone is done
            self._check(old, etag, match_condition)
            del self._rows[(pk, rk)]

    def submit_transaction(self, operations: Iterable[Any], **kwargs: Any) -> list[dict[str, str]]:
        ops = [(op[0], op[1], op[2] if len(op) > 2 else {}) for op in operations]
        keys = [(e["PartitionKey"], e["RowKey"]) for _, e, _ in ops]
        if (
            not ops
            or len(ops) > MAX_BATCH
            or len({k[0] for k in keys}) > 1
            or len(set(keys)) < len(keys)
        ):
            raise _error(TableTransactionError, 400, "InvalidInput")
        with self._lock:
            saved = dict(self._rows)
            out = []
            try:
                for index, (op, entity, options) in enumerate(ops):
                    out.append(self._apply(index, str(op), entity, options))
            except BaseException:
                self._rows.clear()
                self._rows.update(saved)
                raise
            return out

    def _apply(
        self, index: int, op: str, entity: Mapping[str, Any], options: Mapping[str, Any]
    ) -> dict[str, str]:
        key = (entity["PartitionKey"], entity["RowKey"])
        old = self._rows.get(key)

        def fail(status: int, code: str) -> Exception:
            return _error(TableTransactionError, status, f"{index}:{code}", index=index)

        if op == "delete":
            if old is None:
                raise fail(404, "ResourceNotFound")
            if options.get("etag") and old["odata.etag"] != options["etag"]:
                raise fail(412, "UpdateConditionNotSatisfied")
            del self._rows[key]
            return {}
        wire = _add_entity_properties(entity)
        if _refusal(wire):
            raise fail(400, _refusal(wire))
        merge = options.get("mode", UpdateMode.MERGE) == UpdateMode.MERGE
        if op == "create":
            if old is not None:
                raise fail(409, "EntityAlreadyExists")
            return self._store(wire, None, False)
        if op == "update":
            if old is None:
                raise fail(404, "ResourceNotFound")
            if options.get("etag") and old["odata.etag"] != options["etag"]:
                raise fail(412, "UpdateConditionNotSatisfied")
        return self._store(wire, old, merge)

    def close(self) -> None:
        pass


class _Table:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.RLock()


class MemoryTableService:
    """`TableServiceClient`: tables by name, created on demand as the app does."""

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}
        self._lock = threading.Lock()

    def create_table(self, table_name: str, **kwargs: Any) -> MemoryTableClient:
        with self._lock:
            if table_name in self._tables:
                raise _error(ResourceExistsError, 409, "TableAlreadyExists")
            self._tables[table_name] = _Table()
        return self.get_table_client(table_name)

    def get_table_client(self, table_name: str, **kwargs: Any) -> MemoryTableClient:
        with self._lock:
            store = self._tables.setdefault(table_name, _Table())
        return MemoryTableClient(table_name, store)

    def delete_table(self, table_name: str, **kwargs: Any) -> None:
        with self._lock:
            self._tables.pop(table_name, None)

    def close(self) -> None:
        pass


# -- queues and blobs, as far as the runners' tests go -------------------------------------------
class MemoryQueue:
    """`QueueClient`: messages kept in order, encoded by the client's policy as the SDK does."""

    def __init__(self, messages: list[str], encode: Callable[[str], str] | None) -> None:
        self.messages, self.encode = messages, encode

    def create_queue(self, **kwargs: Any) -> None:
        pass

    def send_message(self, content: str, **kwargs: Any) -> Any:
        self.messages.append(self.encode(content) if self.encode else content)
        return SimpleNamespace(content=content)

    def peek_messages(self, max_messages: int = 1, **kwargs: Any) -> list[Any]:
        return [SimpleNamespace(content=m) for m in self.messages[:max_messages]]

    def get_queue_properties(self, **kwargs: Any) -> Any:
        return SimpleNamespace(approximate_message_count=len(self.messages))


class MemoryQueueService:
    """`QueueServiceClient`: queues by name."""

    def __init__(self) -> None:
        self.queues: dict[str, list[str]] = {}

    def get_queue_client(
        self, queue: str, message_encode_policy: Callable[[str], str] | None = None, **kw: Any
    ) -> MemoryQueue:
        return MemoryQueue(self.queues.setdefault(queue, []), message_encode_policy)

    def close(self) -> None:
        pass


@dataclass
class MemoryBlob:
    """The parts of `BlobClient` that ingest uses; `visible` bytes exist so far (an append
    blob grows by raising it)."""

    data: bytes
    visible: int = -1
    append: bool = False
    blob_name: str = "resourceId=/X/y=2026/m=11/d=23/h=09/m=00/PT1H.json"
    container_name: str = "insights-logs-bastionauditlogs"
    last_modified: datetime = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    present: bool = True

    def __post_init__(self) -> None:
        if self.visible < 0:
            self.visible = len(self.data)

    def exists(self) -> bool:
        return self.present

    def get_blob_properties(self) -> Any:
        kind = BlobType.APPENDBLOB if self.append else BlobType.BLOCKBLOB
        etag = f'"{self.visible}"'  # changes when the blob grows, as a real ETag does
        return SimpleNamespace(
            size=self.visible, blob_type=kind, last_modified=self.last_modified, etag=etag
        )

    def download_blob(self, offset: int = 0, length: int | None = None) -> Any:
        """A ranged GET: 416 at or past the end, else the bytes and the blob's properties."""
        if offset >= self.visible:
            raise _error(HttpResponseError, 416, "InvalidRange")
        end = self.visible if length is None else min(offset + length, self.visible)
        chunk = self.data[offset:end]
        props = self.get_blob_properties()
        props.content_range = f"bytes {offset}-{offset + len(chunk) - 1}/{self.visible}"
        return SimpleNamespace(readall=lambda: chunk, properties=props)


class MemoryContainer:
    """`ContainerClient`: uploads, listing and reads of whole blobs."""

    def __init__(self, name: str, blobs: dict[str, bytes]) -> None:
        self.container_name, self.blobs = name, blobs

    def create_container(self, **kwargs: Any) -> None:
        pass

    def upload_blob(self, name: str, data: bytes | str, **kwargs: Any) -> None:
        if name in self.blobs and not kwargs.get("overwrite"):
            raise _error(ResourceExistsError, 409, "BlobAlreadyExists")
        self.blobs[name] = data.encode() if isinstance(data, str) else bytes(data)

    def list_blobs(self, name_starts_with: str = "", **kwargs: Any) -> list[Any]:
        return [SimpleNamespace(name=n, size=len(self.blobs[n]))
                for n in sorted(self.blobs) if n.startswith(name_starts_with)]  # fmt: skip

    def get_blob_client(self, name: str) -> MemoryBlob:
        data = self.blobs.get(name)
        return MemoryBlob(data or b"", blob_name=name, container_name=self.container_name,
                          present=data is not None)  # fmt: skip

    def download_blob(self, name: str, **kwargs: Any) -> Any:
        return self.get_blob_client(name).download_blob()

    def delete_blob(self, name: str, **kwargs: Any) -> None:
        if self.blobs.pop(name, None) is None:
            raise _error(ResourceNotFoundError, 404, "BlobNotFound")


class MemoryBlobService:
    """`BlobServiceClient`: containers by name."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, bytes]] = {}

    def get_container_client(self, container: str) -> MemoryContainer:
        return MemoryContainer(container, self.containers.setdefault(container, {}))

    def close(self) -> None:
        pass


def services() -> tuple[MemoryBlobService, MemoryTableService, MemoryQueueService]:
    """Blob, table and queue services in memory, for `shared.store.tables.Storage(services=...)`."""
    return MemoryBlobService(), MemoryTableService(), MemoryQueueService()
