"""Thin I/O layer over Azure Storage: clients, one typed handle per table, cursors, quarantine.

Everything here either succeeds or raises, so a storage fault fails the invocation and the host
retries it; every write is an upsert with a deterministic key or an ETag-guarded update, so the
retry duplicates nothing. Keys and filters come from `shared.store.layout`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar, cast

import orjson
from azure.core import MatchConditions
from azure.core import __version__ as azure_core_version
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.paging import PageIterator
from azure.core.pipeline import Pipeline, PipelineContext, PipelineRequest, PipelineResponse
from azure.core.pipeline._tools import await_result as _await_result
from azure.core.rest import _http_response_impl
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableEntity,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry
from azure.storage.queue import LinearRetry as QueueRetry
from azure.storage.queue import QueueServiceClient

from shared.core.settings import CONNECTION, LOGS_CONTAINER, Settings
from shared.store import layout, quarantine
from shared.store.layout import CURSOR_PARTITION, cursor_partition

log = logging.getLogger(__name__)

MAX_BATCH = 100  # entity-group transaction limit
MAX_BATCH_BYTES = 3 * 1024 * 1024  # stay well under the 4 MiB payload limit
Op = tuple[str, dict[str, Any], dict[str, Any]]
_Retry = TypeVar("_Retry", LinearRetry, QueueRetry)


@contextlib.contextmanager
def provisioned() -> Iterator[None]:
    """Create-if-missing where the template already created the resource: 'exists' is fine,
    and so is 'not allowed' (least privilege: a role scoped to one table or queue may not
    create it); any other refusal is a real fault."""
    try:
        yield
    except ResourceExistsError:
        pass
    except HttpResponseError as exc:
        if exc.status_code != 403:
            raise
        log.debug("not allowed to create a resource the template provides; using it as is")


#: How long a worker trusts that a `who` row it wrote is still there (`Storage.new_aliases`).
ALIAS_MEMORY_SECONDS = 24 * 3600.0
_ALIASES_KEPT = 100_000


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Conflict(Exception):
    """Someone else changed the row first (HTTP 409/412); re-read and try again."""


class Busy(RuntimeError):
    """Rows kept changing under us (heavy contention): the host's retry is the cure."""


#: Answers that say the request itself was refused (an entity the service will never take);
#: retrying the invocation cannot help, so the caller isolates the item instead.
REFUSED = frozenset({400, 413})


def transient(exc: BaseException) -> bool:
    """Would running the invocation again cure this? Yes for anything but a refused request
    or a bug triggered by content (those fail the item alone, not the blob)."""
    if isinstance(exc, HttpResponseError):
        return exc.status_code not in REFUSED
    return isinstance(exc, (Conflict, Busy, ConnectionError, TimeoutError, OSError)) or (
        type(exc).__module__.startswith(("azure.", "urllib3.", "requests."))
    )


@dataclass(frozen=True)
class Cursor:
    """How far one blob has been read: everything before `offset` is stored."""

    offset: int = 0
    mode: str = "unknown"
    guard: bytes = b""  # digest of the `guard_length` bytes before `offset` (rewrite check)
    guard_length: int = 0
    etag: str | None = None  # the cursor row's ETag (None: no row yet)
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0
    blob_etag: str = ""  # the blob's ETag when it was last read (the sweep skips it unchanged)
    size: int = 0  # the blob's size then
    sealed: int = 0  # size at which a cut last line was taken as final (0: none)
    last_time: datetime | None = None  # the latest record time stored from this blob
    #: Records whose message is no documented outcome, per text (`model.count_others`).
    others: tuple[tuple[str | None, int], ...] = ()
    no_identity: int = 0  # records stored with no user name and no e-mail


def blob_etag(value: object) -> str:
    """A blob's ETag as both a download and a listing give it (one quotes it, one does not)."""
    return str(value or "").strip('"')


def etag_of(row: TableEntity) -> str:
    """The ETag of a row read from the service (every such row has one)."""
    etag = row.metadata.get("etag")
    if not etag:
        raise ValueError("a row without an ETag was not read from the service")
    return str(etag)


def cursor_from(row: TableEntity) -> Cursor:
    return Cursor(
        offset=int(row["Offset"]),
        mode=row["Mode"],
        guard=bytes.fromhex(row.get("Guard", "")),
        guard_length=int(row.get("GuardLength", 0)),
        etag=etag_of(row),
        stored=int(row.get("Stored", 0)),
        quarantined=int(row.get("Quarantined", 0)),
        skipped=int(row.get("Skipped", 0)),
        blob_etag=str(row.get("BlobETag", "")),
        size=int(row.get("Size", 0)),
        sealed=int(row.get("Sealed", 0)),
        last_time=row.get("LastTime"),
        others=_others_from(row.get("Others")),
        no_identity=int(row.get("NoIdentity", 0)),
    )


def _others_from(value: object) -> tuple[tuple[str | None, int], ...]:
    """A cursor's `Others` property (a JSON list of [text or null, count]) read back."""
    if not isinstance(value, str) or not value:
        return ()
    return tuple((t if isinstance(t, str) else None, int(n)) for t, n in orjson.loads(value))


class Table:
    """One table: its name, its client (the table is created on first use in this process; in
    Azure the template creates it, and a role scoped to the table may not create one), and the
    operations the app uses."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.name = name
        self._storage = storage
        self._client: TableClient | None = None

    @property
    def client(self) -> TableClient:
        if self._client is None:
            with self._storage.lock:
                if self._client is None:
                    with provisioned():
                        self._storage.tables.create_table(self.name)
                    self._client = self._storage.tables.get_table_client(self.name)
        return self._client

    def query(
        self, flt: str, parameters: dict[str, Any], select: list[str] | None = None
    ) -> Iterator[TableEntity]:
        """Filtered query; values always go in as parameters, never into the filter text."""
        for row in self.client.query_entities(flt, parameters=parameters, select=select):
            yield _plain(row)

    def page(
        self,
        flt: str,
        parameters: dict[str, Any],
        select: list[str],
        size: int,
        token: Any = None,
    ) -> tuple[list[TableEntity], Any]:
        """One page of at most `size` rows, and the service's token for the next (None: done;
        a short page does not mean the end)."""
        pages = cast(
            "PageIterator[TableEntity]",
            self.client.query_entities(
                flt, parameters=parameters, select=select, results_per_page=size
            ).by_page(continuation_token=token),
        )
        return [_plain(row) for row in next(pages, [])], pages.continuation_token

    def partition(self, pk: str, select: list[str] | None = None) -> Iterator[TableEntity]:
        return self.query(layout.PARTITION, {"pk": pk}, select)

    def seek(
        self, params: dict[str, str], select: list[str] | None = None
    ) -> Iterator[TableEntity]:
        """Rows of one partition with RowKey in [lo, hi) (`layout.SEEK` parameters)."""
        return self.query(layout.SEEK, params, select)

    def get(self, pk: str, rk: str) -> TableEntity | None:
        try:
            return _plain(self.client.get_entity(pk, rk))
        except ResourceNotFoundError:
            return None

    def upsert(self, entities: Sequence[Mapping[str, Any]]) -> None:
        """Upsert in same-partition transactions of <= 100, in parallel (see `Storage.upsert`)."""
        self._storage.upsert((self, entities))

    def transact(self, ops: Sequence[Op]) -> None:
        """One entity-group transaction (same partition, at most 100 operations), all or nothing.

        Operations are (`create` | `update` | `upsert` | `delete`, entity, options); options may
        hold `etag` (then the operation applies only if the row is unchanged) and `mode`
        (`replace`, the default, or `merge`). Raises `Conflict` when a row changed or exists.
        """
        if not ops:
            return
        batch = []
        for op, entity, options in ops:
            kwargs: dict[str, Any] = {}
            if options.get("etag"):
                kwargs["etag"] = options["etag"]
                kwargs["match_condition"] = MatchConditions.IfNotModified
            if op in ("update", "upsert"):
                merge = options.get("mode") == "merge"
                kwargs["mode"] = UpdateMode.MERGE if merge else UpdateMode.REPLACE
            batch.append((op, _wide(entity), kwargs))
        try:
            self.client.submit_transaction(batch)
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):  # gone, exists, changed: look again
                raise Conflict(f"{self.name}: a row changed under us") from exc
            raise

    def update(self, entity: dict[str, Any], etag: str, merge: bool = True) -> str:
        """Update a row only if unchanged since `etag`; its new ETag. Raises `Conflict`."""
        try:
            meta = self.client.update_entity(
                _wide(entity),
                mode=UpdateMode.MERGE if merge else UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise Conflict(self.name) from exc
        return str(meta.get("etag", ""))

    def put(self, entity: dict[str, Any]) -> None:
        self.client.upsert_entity(_wide(entity), mode=UpdateMode.REPLACE)

    def delete(self, pk: str, rk: str) -> None:
        self.client.delete_entity(pk, rk)


class Storage:
    """Clients for one storage account, shared by all invocations of a worker process."""

    def __init__(
        self, settings: Settings, connect_retries: int = 3, services: tuple[Any, ...] = ()
    ) -> None:
        """`connect_retries`: how often a connection that failed before the request was sent
        (refused, no such host) is tried again: 3 in the worker, 0 for a person waiting.
        `services`: (blob, table, queue) service clients to use instead (tests: in memory)."""
        self.settings = settings
        conn = settings.connection  # the SDKs read `UseDevelopmentStorage=true` themselves
        blob_retry = _retry(LinearRetry, connect_retries)
        queue_retry = _retry(QueueRetry, connect_retries)
        if services:
            self.blobs, self.tables, self.queues = cast(
                "tuple[BlobServiceClient, TableServiceClient, QueueServiceClient]", services
            )
        elif conn:
            self.blobs = BlobServiceClient.from_connection_string(conn, retry_policy=blob_retry)
            self.tables = TableServiceClient.from_connection_string(
                conn, retry_connect=connect_retries
            )
            self.queues = QueueServiceClient.from_connection_string(conn, retry_policy=queue_retry)
        else:
            self.blobs, self.tables, self.queues = _identity_clients(
                settings.connection_parts, connect_retries
            )
        self.lock = threading.Lock()
        self._containers: set[str] = set()
        self._pool = ThreadPoolExecutor(settings.write_concurrency, "storage")
        #: `who` rows (`layout.alias_rows`) this worker wrote, by a digest of their RowKey (a
        #: crafted name of a kilobyte costs 16 bytes here), and when (monotonic)
        self._aliases: OrderedDict[bytes, float] = OrderedDict()
        self.events = Table(self, settings.events_table)
        self.index = Table(self, settings.index_table)
        self.state = Table(self, settings.state_table)
        self.alerts = Table(self, settings.alerts_table)

    def new_aliases(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The `who` rows this worker has not written within `ALIAS_MEMORY_SECONDS`: they never
        change, so a person seen every day costs their rows once a day per worker, not once per
        chunk. An erasure deletes them: the erasing worker forgets at once (`forget_aliases`),
        another writes them again within that time at the latest."""
        now = time.monotonic()
        with self.lock:
            return [
                r
                for r in rows
                if now - self._aliases.get(_digest(r["RowKey"]), -1e18) > ALIAS_MEMORY_SECONDS
            ]

    def wrote_aliases(self, rows: Iterable[Mapping[str, Any]]) -> None:
        now = time.monotonic()
        with self.lock:
            for r in rows:
                key = _digest(r["RowKey"])
                self._aliases[key] = now
                self._aliases.move_to_end(key)
            while len(self._aliases) > _ALIASES_KEPT:
                self._aliases.popitem(last=False)

    def forget_aliases(self) -> None:
        with self.lock:
            self._aliases.clear()

    def table(self, name: str) -> Table:
        """The handle of one of the app's tables, by name (tools and tests name them)."""
        for table in (self.events, self.index, self.state, self.alerts):
            if table.name == name:
                return table
        raise KeyError(name)

    def logs(self) -> ContainerClient:
        """The container Azure Monitor writes the Bastion audit logs to (read-only for us)."""
        return self.blobs.get_container_client(LOGS_CONTAINER)

    def container(self, name: str) -> ContainerClient:
        """A container of ours, created on first use in this process."""
        client = self.blobs.get_container_client(name)
        if name not in self._containers:
            with self.lock:
                with provisioned():
                    client.create_container()
                self._containers.add(name)
        return client

    def upsert(
        self, *writes: tuple[Table, Sequence[Mapping[str, Any]]], merge: bool = False
    ) -> None:
        """Upsert (table, entities) pairs in same-partition transactions of <=100, in parallel;
        `merge`: a row's other stored properties stay (writers that add to one row).

        Callers pass each (PartitionKey, RowKey) once per table: a transaction may not hold one
        twice. Raises the first failure (the invocation fails and is retried).
        """
        mode = UpdateMode.MERGE if merge else UpdateMode.REPLACE
        jobs = [(t.client, b, mode) for t, entities in writes for b in _batches(entities)]
        if len(jobs) <= 1 or self.settings.write_concurrency == 1:
            for job in jobs:
                _submit(*job)
            return
        futures = [self._pool.submit(_submit, *job) for job in jobs]
        for future in futures:
            future.result()

    # -- cursors ------------------------------------------------------------------------
    def read_cursor(self, blob_key: str, blob_name: str = "") -> Cursor:
        partition = cursor_partition(blob_name)
        row = self.state.get(partition, blob_key)
        if row is not None:
            return cursor_from(row)
        if partition == CURSOR_PARTITION:
            return Cursor()
        legacy = self.state.get(CURSOR_PARTITION, blob_key)  # before hour partitions
        return Cursor() if legacy is None else replace(cursor_from(legacy), etag=None)

    def cursors(self, hours: Iterable[str]) -> dict[str, Cursor]:
        """The cursors of the hour blobs of these hours (`yyyy-MM-ddTHH`), by blob name."""
        out: dict[str, Cursor] = {}
        for hour in sorted(set(hours)):
            for row in self.state.partition(f"{CURSOR_PARTITION}|{hour}"):
                out[row["BlobName"]] = cursor_from(row)
        return out

    def write_cursor(self, blob_key: str, blob_name: str, old: Cursor, new: Cursor) -> str:
        """Advance a cursor only if nobody else moved it since `old` was read; returns new ETag."""
        row = {
            "PartitionKey": cursor_partition(blob_name),
            "RowKey": blob_key,
            "BlobName": blob_name,
            "Offset": new.offset,
            "Mode": new.mode,
            "Guard": new.guard.hex(),
            "GuardLength": new.guard_length,
            "Stored": new.stored,
            "Quarantined": new.quarantined,
            "Skipped": new.skipped,
            "BlobETag": new.blob_etag,
            "Size": new.size,
            "Sealed": new.sealed,
        }
        if new.last_time is not None:
            row["LastTime"] = new.last_time
        if new.others:
            row["Others"] = orjson.dumps(new.others).decode()
        if new.no_identity:
            row["NoIdentity"] = new.no_identity
        client, entity = self.state.client, _wide(row)
        try:
            if old.etag is None:
                meta = client.create_entity(entity)
            else:
                meta = client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=old.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:  # 409 create, 412 update
            raise Conflict(blob_name) from exc
        return str(meta.get("etag", ""))

    # -- quarantine ---------------------------------------------------------------------
    def quarantine(self, batch: quarantine.Batch) -> None:
        """One JSON Lines blob for a chunk's rejected pieces (see `shared/store/quarantine.py`).

        The name says which pieces it holds, so rewriting it is idempotent and a retry or a
        racing instance that cut the blob elsewhere writes another name, never a smaller
        document over a bigger one.
        """
        if not batch.count:
            return
        self.container(self.settings.quarantine_container).upload_blob(
            batch.name,
            batch.document(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/x-ndjson"),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _identity_clients(
    parts: dict[str, str] | Any, connect_retries: int = 3
) -> tuple[BlobServiceClient, TableServiceClient, QueueServiceClient]:
    """Identity-based connection, as the Functions host reads `<name>__*` settings."""
    from azure.identity import DefaultAzureCredential  # only needed in Azure

    account = parts.get("accountName", "")
    if not (account or parts.get("blobServiceUri")):
        raise RuntimeError(
            f"No storage connection: set {CONNECTION} (a connection string) or "
            f"{CONNECTION}__accountName / {CONNECTION}__blobServiceUri, "
            f"{CONNECTION}__queueServiceUri and {CONNECTION}__tableServiceUri"
        )

    def uri(kind: str) -> str:
        return parts.get(f"{kind}ServiceUri") or f"https://{account}.{kind}.core.windows.net"

    client_id = parts.get("clientId") if parts.get("credential") == "managedidentity" else None
    credential = DefaultAzureCredential(managed_identity_client_id=client_id)
    blob_retry = _retry(LinearRetry, connect_retries)
    queue_retry = _retry(QueueRetry, connect_retries)
    return (
        BlobServiceClient(uri("blob"), credential=credential, retry_policy=blob_retry),
        TableServiceClient(uri("table"), credential=credential, retry_connect=connect_retries),
        QueueServiceClient(uri("queue"), credential=credential, retry_policy=queue_retry),
    )


def _retry(kind: type[_Retry], connect_retries: int) -> _Retry:
    """Blob and queue retries close to the tables' schedule: 3 retries, 2 s apart (give or
    take 1). The storage SDKs' default (15, 18 and 24 s plus jitter) made one refused
    connection cost 90 s before the CLI said so; the host retries a failed invocation anyway."""
    return kind(backoff=2, retry_total=3, retry_connect=connect_retries, random_jitter_range=1)


def _batches(entities: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    by_partition: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for entity in entities:
        by_partition[entity["PartitionKey"]].append(entity)
    for group in by_partition.values():
        batch: list[Mapping[str, Any]] = []
        size = 0
        for entity in group:
            weight = _weight(entity)
            if batch and (len(batch) == MAX_BATCH or size + weight > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(entity)
            size += weight
        if batch:
            yield batch


def _weight(entity: Mapping[str, Any]) -> int:
    """Upper bound of an entity's wire size (UTF-16 strings plus per-property overhead)."""
    return sum(2 * len(v) + 64 if isinstance(v, str) else 64 for v in entity.values())


def _submit(
    client: TableClient, batch: list[Mapping[str, Any]], mode: UpdateMode = UpdateMode.REPLACE
) -> None:
    if len(batch) == 1:
        client.upsert_entity(_wide(batch[0]), mode=mode)
        return
    client.submit_transaction([("upsert", _wide(e), {"mode": mode}) for e in batch])


# -- the SDK's batch parts, in the calling thread ----------------------------------------------
def _prepare_parts(request: Any) -> None:
    """azure-core's `Pipeline._prepare_multipart_mixed_request`, without a thread pool."""
    info = request.multipart_mixed_info
    if not info:
        return
    parts, policies, options = info[0], info[1], info[3]
    for part in parts:
        if part.multipart_mixed_info:  # a changeset: its own parts first
            _prepare_parts(part)
        pipeline_request = PipelineRequest(part, PipelineContext(None, **options))
        for policy in policies:
            _await_result(policy.on_request, pipeline_request)


def _read_parts(response: Any) -> list[Any]:
    """azure-core's `_parts_helper` (a batch response's parts), without a thread pool."""
    if not str(response.content_type or "").startswith("multipart/mixed"):
        raise ValueError("You can't get parts if the response is not multipart/mixed")
    parts: list[Any] = response._get_raw_parts()
    info = response.request.multipart_mixed_info
    for part in parts if info else ():
        context = PipelineContext(None)
        pipeline_request = PipelineRequest(part.request, context)
        pipeline_response = PipelineResponse(part.request, part, context=context)
        for policy in info[1]:
            _await_result(policy.on_response, pipeline_request, pipeline_response)
    return parts


def serial_batch_parts() -> bool:
    """Run the per-part policies of a Tables batch (one: the date and version headers) in the
    calling thread. azure-core starts a thread pool for every batch request and another for
    every response to run them, which costs more than the parts: a quarter of a growing
    blob's ingest time (docs/performance.md). Writes are parallel already, across partitions
    (`Storage.upsert`). Applied only to the azure-core version pinned in requirements.txt,
    whose code these two functions follow; on another, the SDK's own way stays. True if
    applied."""
    if azure_core_version != _SERIAL_PARTS_FOR:
        return False
    Pipeline._prepare_multipart_mixed_request = staticmethod(_prepare_parts)  # type: ignore[method-assign]
    setattr(_http_response_impl, "_parts_helper", _read_parts)  # noqa: B010 - module global
    return True


_SERIAL_PARTS_FOR = "1.41.0"
SERIAL_BATCH_PARTS = serial_batch_parts()


# -- whole numbers past Int32 ----------------------------------------------------------------
_INT32 = range(-(2**31), 2**31)


def _wide(entity: Mapping[str, Any]) -> Mapping[str, Any]:
    """Whole numbers past Int32 as Int64: the Tables SDK refuses a plain int of 2^31 or more,
    and a blob past 2 GiB (its size, an offset in it) would fail every invocation of it, so
    an attacker who floods one hour's blob would blind the rest of it."""
    if all(type(v) is not int or v in _INT32 for v in entity.values()):
        return entity
    return {k: EntityProperty(v, EdmType.INT64) if type(v) is int and v not in _INT32 else v
            for k, v in entity.items()}  # fmt: skip


def _plain(row: TableEntity) -> TableEntity:
    """Int64 values read back as the plain ints they were written as (`_wide`)."""
    for name, value in row.items():
        if isinstance(value, EntityProperty):
            row[name] = value.value
    return row
