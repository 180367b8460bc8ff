"""Who connected to what: activity and alert queries over the stored tables.

`parse_activity` / `parse_alerts` (pure) turn request parameters (HTTP query or CLI options, as
text) into a validated query and raise `BadQuery` with a message a person can act on;
`activity` / `alerts` (I/O) run one page of it. Every value goes to the service as a query
parameter, never into the filter text, so `x' or PartitionKey ne '` is just a strange name.

What each activity query costs (one page; `limit` rows at most, `MAX_LIMIT` by default):

* `user` (with or without `ip`, `outcome`): one RowKey seek in the index's `who` partition
  (`resolve`: the accounts the name reaches), then one PartitionKey range query per account on
  the events table, `<account>|<first hour>` .. `<account>|<last hour>~`. Reads only those hour
  partitions, which come back in time order (several accounts are merged, each read at most
  `limit + 1` rows a page); other filters are evaluated by the service inside that range.
* `vm` (with or without `user`, `ip`, `outcome`): one RowKey-range seek per day on the index
  table: partition `vm|<day>`, rows `<vm>|<event RowKey>` (index rows copy the fields a result
  shows), so a day costs one request whether or not the VM was used that day.
* `ip` (with or without `outcome`): the same over the `ip|<day>` partitions.
* none of them (only a time range, maybe an outcome): every event has a row in its day's IP
  index partition `ip|<day>`, so this reads those day partitions whole (one query per day),
  filtered by time; it costs what the days hold, not the whole table. Allowed for at most
  `MAX_SCAN_DAYS`; each page re-reads from the last page's day and keeps only the `limit`
  earliest rows after it (memory stays O(limit)).

Ranges are half-open `[from, to)` in UTC, at most `MAX_DAYS`. Paging: the continuation token is
opaque (URL-safe base64 of JSON) and bound to the query that produced it.

`alerts` reads the alerts table's day partitions (`PartitionKey` = first-seen day) in range:
one range query per page, a few rows per day.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import heapq
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import ciso8601
import orjson
from azure.core.exceptions import ResourceNotFoundError

from shared.answer import sessions
from shared.core import domain, text
from shared.core.settings import Settings
from shared.ingest import normalize
from shared.notify.messages import message as alert_message
from shared.store import keys, layout, quarantine
from shared.store.tables import Storage, Table

MAX_DAYS = 31
MAX_SCAN_DAYS = 7
MAX_LIMIT = 1000
DEFAULT_SPAN = timedelta(hours=24)
STATUSES = ("pending", "delivered", "withdrawn")
#: The properties an activity result shows: what index rows copy, so every mode answers alike.
FIELDS = [*layout.INDEX_FIELDS]
REPORT_FIELDS = [
    "TimeGenerated",
    "UserName",
    "UserKey",
    "ClientIpAddress",
    "ClientIpKey",
    "TargetVMName",
    "Outcome",
]


class BadQuery(ValueError):
    """The parameters cannot make a query; the message says why (shown to the caller)."""


@dataclass(frozen=True)
class ActivityQuery:
    start: datetime
    end: datetime  # exclusive
    user: str | None = None
    vm: str | None = None
    ip: str | None = None
    outcome: str | None = None
    limit: int = MAX_LIMIT
    continuation: str | None = None
    #: The accounts `user` resolved to (`resolved`); empty: the literal one only.
    accounts: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        return "vm" if self.vm else "user" if self.user else "ip" if self.ip else "scan"

    def fingerprint(self) -> str:
        """Identifies the question (not the page), so a token is not reused for another."""
        parts = [self.start.isoformat(), self.end.isoformat(), self.user, self.vm, self.ip]
        parts.append(self.outcome)
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


@dataclass(frozen=True)
class AlertQuery:
    start: datetime
    end: datetime  # exclusive
    status: str | None = None
    limit: int = MAX_LIMIT
    continuation: str | None = None

    def fingerprint(self) -> str:
        parts = ["alerts", self.start.isoformat(), self.end.isoformat(), self.status]
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


@dataclass
class Page:
    items: list[dict[str, Any]]
    continuation: str | None
    matched: layout.Resolution | None = None  # a `user` that reached more than its literal

    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"items": self.items, "continuation": self.continuation}
        if self.matched is not None and self.matched.widened:
            body["matchedAccounts"] = self.matched.matched()
            body["ambiguous"] = self.matched.ambiguous
        return body


# -- parsing (pure) -------------------------------------------------------------------------
#: Times a query may name: Table Storage keeps no date before 1601, and a day of headroom at the
#: end keeps every sum the queries make (`to` + a bucket, an hour) inside `datetime`.
EARLIEST = datetime(1601, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_DIGITS = re.compile(r"[0-9]{1,9}")


def parse_time(text: str, name: str) -> datetime:
    """ISO 8601 date or date-time; without an offset it is UTC. Between `EARLIEST` and
    `LATEST` once in UTC, so `0001-01-01T00:00+05:00` is a 400, not an overflow."""
    try:
        when = ciso8601.parse_datetime(text.strip())
    except (ValueError, OverflowError):
        raise BadQuery(
            f"{name} {text[:40]!r} is not an ISO 8601 date or time "
            "(e.g. 2026-11-23 or 2026-11-23T09:30:00Z)"
        ) from None
    try:
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except OverflowError:
        when = EARLIEST - timedelta(days=1) if when.year < 5000 else LATEST + timedelta(days=1)
    if not EARLIEST <= when <= LATEST:
        raise BadQuery(
            f"{name} {text[:40]!r} is out of range (from {EARLIEST.date()} to {LATEST.date()} UTC)"
        )
    return when


def parse_range(
    params: Mapping[str, str | None], now: datetime, max_days: int
) -> tuple[datetime, datetime]:
    """`from`/`to` (defaults: the 24 hours before `to`, `to` = now), checked and bounded."""
    raw_from, raw_to = _param(params, "from"), _param(params, "to")
    end = parse_time(raw_to, "to") if raw_to else now
    start = parse_time(raw_from, "from") if raw_from else max(end - DEFAULT_SPAN, EARLIEST)
    if start >= end:
        raise BadQuery(f"from ({text.utc(start)}) must be before to ({text.utc(end)})")
    if end - start > timedelta(days=max_days):
        raise BadQuery(
            f"the range from {text.utc(start)} to {text.utc(end)} is longer than {max_days} days"
        )
    return start, end


def parse_limit(params: Mapping[str, str | None]) -> int:
    """A whole number in ASCII digits (`"²".isdigit()` and `int("٣")` are no guide)."""
    raw = _param(params, "limit")
    if not raw:
        return MAX_LIMIT
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw[:20]!r}")
    return int(raw)


def parse_activity(params: Mapping[str, str | None], now: datetime | None = None) -> ActivityQuery:
    """Validate `user, vm, ip, from, to, outcome, limit, continuation` (all text, all optional)."""
    now = now or datetime.now(UTC)
    user, vm, ip = (_param(params, n).strip() or None for n in ("user", "vm", "ip"))
    raw_outcome = _param(params, "outcome").strip()
    outcome = None
    if raw_outcome:
        names = {o.value.casefold(): o.value for o in domain.Outcome}
        outcome = names.get(raw_outcome.casefold())
        if outcome is None:
            raise BadQuery(
                f"outcome must be one of {', '.join(o.value for o in domain.Outcome)}, "
                f"got {raw_outcome[:40]!r}"
            )
    scan = not (user or vm or ip)
    start, end = parse_range(params, now, MAX_SCAN_DAYS if scan else MAX_DAYS)
    query = ActivityQuery(start, end, user, vm, ip, outcome, parse_limit(params))
    token = _param(params, "continuation") or None
    if token:
        _decode_token(token, query.fingerprint())  # reject a bad one now, not mid-query
    return ActivityQuery(start, end, user, vm, ip, outcome, query.limit, token)


def parse_alerts(params: Mapping[str, str | None], now: datetime | None = None) -> AlertQuery:
    """Validate `status, from, to, limit, continuation`; the range is of first-seen times."""
    now = now or datetime.now(UTC)
    status = _param(params, "status").strip().casefold() or None
    if status is not None and status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}, got {status[:40]!r}")
    start, end = parse_range(params, now, 366)
    query = AlertQuery(start, end, status, parse_limit(params))
    token = _param(params, "continuation") or None
    if token:
        _decode_token(token, query.fingerprint())
    return AlertQuery(start, end, status, query.limit, token)


def _param(params: Mapping[str, str | None], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def encode_token(fingerprint: str, state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"q": fingerprint, **state})).decode()


def _decode_token(token: str, fingerprint: str) -> dict[str, Any]:
    try:
        state = orjson.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise BadQuery("continuation is not a token this service issued") from None
    if not isinstance(state, dict) or state.get("q") != fingerprint:
        raise BadQuery("continuation belongs to a different query (same filters and range needed)")
    table_token, after = state.get("t"), state.get("after")
    segment = state.get("s", 0)
    if not (
        type(segment) is int
        and 0 <= segment <= 100 * MAX_DAYS
        and (table_token is None or _strings(table_token, dict))
        and (after is None or (_strings(after, list) and len(after) == 3))
    ):
        raise BadQuery("continuation is not a token this service issued")
    if after:
        parse_time(after[0], "continuation")
    return state


def _strings(value: object, kind: type) -> bool:
    if not isinstance(value, kind):
        return False
    items = value.values() if isinstance(value, dict) else value
    return all(isinstance(v, str) for v in cast("Iterable[object]", items))


# -- rows -> results (pure) -----------------------------------------------------------------
def activity_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON shape of one event (the same from the events table and from index rows)."""
    when = row.get("TimeGenerated")
    return {
        "time": text.utc(when),
        "user": keys.shown(row.get("UserName", ""), row.get("UserKey", "")),
        "userKey": row.get("UserKey", ""),
        "clientIp": row.get("ClientIpAddress", ""),
        "clientPort": row.get("ClientPort"),
        "targetVM": row.get("TargetVMName", ""),
        "targetVMIp": row.get("TargetVMIPAddress", ""),
        "targetResourceId": row.get("TargetResourceId", ""),
        "protocol": row.get("Protocol", ""),
        "outcome": row.get("Outcome", ""),
        "message": row.get("Message", ""),
        "bastionHost": row.get("BastionHostName", ""),
    }


def alert_item(row: Mapping[str, Any]) -> dict[str, Any]:
    """The documented alert message plus delivery state."""
    body = alert_message(dict(row))
    body.pop("schema", None)
    body["status"] = row.get("Status", "")
    body["deliveredTo"] = [c for c in str(row.get("DeliveredTo", "")).split(",") if c]
    return body


def activity_filter(q: ActivityQuery) -> tuple[str, str, list[dict[str, Any]]]:
    """(table kind, OData filter with @parameters, one parameter set per segment).

    Segments are read in order: one per account of a user (a PartitionKey range; several are
    merged by time), one per day partition of the index for an IP (a RowKey-range seek each),
    for a VM or a scan (the day's partition, filtered by the service; merged by time).
    """
    first, last = keys.hour_of(q.start.isoformat()), keys.hour_of(_last_instant(q.end))
    clauses = ["TimeGenerated ge @start", "TimeGenerated lt @end"]
    params: dict[str, Any] = {"start": q.start, "end": q.end}
    accounts = q.accounts or (keys.user_key(q.user or "", ""),)
    if q.user and q.mode != "user":
        names = [f"u{i}" for i in range(len(accounts))]
        # ( and ) stand apart: the SDK finds @parameters between spaces
        clauses.append("( " + " or ".join(f"UserKey eq @{n}" for n in names) + " )")
        params |= dict(zip(names, accounts, strict=True))
    if q.ip and q.mode != "ip":
        clauses.append("ClientIpKey eq @ip")
        params["ip"] = normalize.ip_key(q.ip)
    if q.outcome:
        clauses.append("Outcome eq @outcome")
        params["outcome"] = q.outcome
    if q.mode == "vm":  # one filtered read of each day's IP partition (no row per machine)
        clauses.append("TargetVMKey eq @vm")
        params["vm"] = (q.vm or "").casefold()
    if q.mode in ("scan", "vm"):  # every event has a row in its day's IP partition
        flt = " and ".join(["PartitionKey eq @pk", *clauses])
        return (
            "index",
            flt,
            [{**params, "pk": layout.IP_PREFIX + d} for d in keys.days(first, last)],
        )
    if q.mode == "user":  # one PartitionKey range per account (`activity` merges them)
        flt = " and ".join(["PartitionKey ge @lo", "PartitionKey lt @hi", *clauses])
        ranges = [keys.hour_range(account, first, last) for account in accounts]
        return "events", flt, [{**params, "lo": lo, "hi": hi} for lo, hi in ranges]
    rk = keys.subject_prefix(normalize.ip_key(q.ip or ""))
    flt = " and ".join(["PartitionKey eq @pk", "RowKey gt @lo", "RowKey lt @hi", *clauses])
    segments = [
        {**params, "pk": layout.IP_PREFIX + day, "lo": rk, "hi": rk + "~"}
        for day in keys.days(first, last)
    ]
    return "index", flt, segments


def _last_instant(end: datetime) -> str:
    return (end - timedelta(microseconds=1)).isoformat()


def earliest_after(
    rows: Iterable[dict[str, Any]], after: list[str] | None, n: int, time_field: str
) -> list[dict[str, Any]]:
    """The `n` earliest rows whose (time, PartitionKey, RowKey) sorts after `after`."""

    def key(row: dict[str, Any]) -> list[str]:
        return [row[time_field].isoformat(), row["PartitionKey"], row["RowKey"]]

    wanted = (r for r in rows if after is None or key(r) > after)
    return heapq.nsmallest(n, wanted, key=key)


# -- queries (I/O) --------------------------------------------------------------------------
def resolve(storage: Storage, typed: str) -> layout.Resolution:
    """The accounts a typed name, e-mail or `DOMAIN\\name` reaches: one RowKey seek in the
    index's `who` partition (`layout.alias_rows`). Records stored before those rows existed
    are found by their literal account until `python -m shared aliases` backfills them."""
    rows = storage.index.seek(layout.alias_seek(typed), ["Account"])
    found = layout.resolution(typed, rows)
    if len(found.others) > layout.MAX_ACCOUNTS:
        raise BadQuery(
            f"{text.plain(typed, 80)!r} matches {len(found.others)} accounts (more than "
            f"{layout.MAX_ACCOUNTS}): name one exactly (DOMAIN\\name or its e-mail)"
        )
    return found


def resolved(storage: Storage, q: ActivityQuery) -> tuple[ActivityQuery, layout.Resolution | None]:
    """The query with its `user` resolved to accounts (unchanged without a user)."""
    if not q.user:
        return q, None
    found = resolve(storage, q.user)
    return replace(q, accounts=found.accounts), found


def activity(storage: Storage, q: ActivityQuery) -> Page:
    """One page (at most `q.limit` events, in time order) and the token for the next one."""
    found = None
    if q.user and not q.accounts:
        q, found = resolved(storage, q)
    fingerprint = q.fingerprint()
    state = _decode_token(q.continuation, fingerprint) if q.continuation else {}
    kind, flt, segments = activity_filter(q)
    table = storage.events if kind == "events" else storage.index
    select = [*FIELDS, "PartitionKey", "RowKey"]
    read = _Read(table, flt, segments, select, q.limit, state, fingerprint)
    if q.mode in ("scan", "vm"):
        return replace(_scan_page(read), matched=found)
    if q.mode == "user" and len(segments) > 1:
        return replace(_merged_page(read), matched=found)
    return replace(_segment_page(read), matched=found)


@dataclass(frozen=True)
class _Read:
    """One page's read: the table, its filter and key ranges, the columns, how many rows, and
    where the page before stopped (`state`, valid for the query's `fingerprint` only)."""

    table: Table
    flt: str
    segments: list[dict[str, Any]]
    select: list[str]
    limit: int
    state: dict[str, Any]
    fingerprint: str


def _segment_page(r: _Read) -> Page:
    """Segments one after the other, the service's token within one."""
    table, flt, segments, select, limit = r.table, r.flt, r.segments, r.select, r.limit
    state, fingerprint = r.state, r.fingerprint
    items: list[dict[str, Any]] = []
    segment, token = int(state.get("s", 0)), state.get("t")
    while segment < len(segments) and len(items) < limit:
        rows, token = table.page(flt, segments[segment], select, limit - len(items), token)
        items.extend(activity_item(row) for row in rows)
        if not token:  # this segment is done (short pages happen: then ask for the rest)
            segment, token = segment + 1, None
    if segment >= len(segments):
        return Page(items, None)
    return Page(items, encode_token(fingerprint, {"s": segment, "t": token}))


def _scan_page(r: _Read) -> Page:
    table, flt, segments, select, limit = r.table, r.flt, r.segments, r.select, r.limit
    state, fingerprint = r.state, r.fingerprint
    after = state.get("after")
    if after:  # skip what earlier pages showed without reading past it again
        since = parse_time(after[0], "continuation")
        segments = [
            {**params, "start": max(params["start"], since)}
            for params in segments
            if params["pk"][len(layout.IP_PREFIX) :] >= since.date().isoformat()
        ]
    found = (row for params in segments for row in table.query(flt, params, select))
    return _ordered_page(found, after, limit, "TimeGenerated", fingerprint, activity_item)


def _merged_page(r: _Read) -> Page:
    """Several accounts' events in time order: each account's hour partitions come back in
    time order, so a page merges them and reads at most `limit + 1` rows of each."""
    table, flt, segments, select, limit = r.table, r.flt, r.segments, r.select, r.limit
    state, fingerprint = r.state, r.fingerprint
    after = state.get("after")
    if after:  # start each range at the hour of the last row shown
        since = parse_time(after[0], "continuation")
        hour = keys.hour_of(since.isoformat())
        segments = [{**p, "start": max(p["start"], since),
                     "lo": max(p["lo"], p["lo"].rsplit("|", 1)[0] + "|" + hour)}
                    for p in segments]  # fmt: skip

    def key(row: dict[str, Any]) -> list[str]:
        return [row["TimeGenerated"].isoformat(), row["PartitionKey"], row["RowKey"]]

    streams = [table.query(flt, params, select) for params in segments]
    merged = (row for row in heapq.merge(*streams, key=key) if after is None or key(row) > after)
    return _ordered_page(itertools.islice(merged, limit + 1), after, limit, "TimeGenerated",
                         fingerprint, activity_item)  # fmt: skip


def _ordered_page(
    rows: Iterable[dict[str, Any]],
    after: list[str] | None,
    limit: int,
    time_field: str,
    fingerprint: str,
    item: Callable[[dict[str, Any]], dict[str, Any]],
) -> Page:
    """The `limit` earliest rows after `after`, and a token that resumes after the last one."""
    rows = earliest_after(rows, after, limit + 1, time_field)
    more, rows = len(rows) > limit, rows[:limit]
    token = None
    if more and rows:
        last = rows[-1]
        state = {"after": [last[time_field].isoformat(), last["PartitionKey"], last["RowKey"]]}
        token = encode_token(fingerprint, state)
    return Page([item(r) for r in rows], token)


def activity_rows(storage: Storage, q: ActivityQuery) -> Iterator[dict[str, Any]]:
    """Every event of a query, page after page (for the CLI and exports)."""
    if q.user and not q.accounts:
        q = resolved(storage, q)[0]
    return _all_pages(activity, storage, q)


def alerts(storage: Storage, q: AlertQuery) -> Page:
    """Alerts first seen in `[start, end)`, oldest first, one page."""
    fingerprint = q.fingerprint()
    state = _decode_token(q.continuation, fingerprint) if q.continuation else {}
    clauses = [
        "PartitionKey ge @lo",
        "PartitionKey le @hi",
        "FirstSeen ge @start",
        "FirstSeen lt @end",
    ]
    params: dict[str, Any] = {
        "lo": q.start.date().isoformat(),
        "hi": _last_instant(q.end)[:10],
        "start": q.start,
        "end": q.end,
    }
    if q.status:
        clauses.append("Status eq @status")
        params["status"] = q.status
    rows = storage.alerts.query(" and ".join(clauses), params)
    return _ordered_page(rows, state.get("after"), q.limit, "FirstSeen", fingerprint, alert_item)


# -- sessions (issue 27, part 3) -----------------------------------------------------------------
#: Most accounts whose records one sessions query reads (a busy week names fewer).
MAX_SESSION_ACCOUNTS = 2000
Ask = Callable[[str], list[Any]]


@dataclass(frozen=True)
class SessionQuery:
    start: datetime
    end: datetime
    user: str | None
    limit: int


def parse_sessions(params: Mapping[str, str | None], now: datetime | None = None) -> SessionQuery:
    """Validate `user, from, to, limit` (all optional); the range is of the sessions' records."""
    user = _param(params, "user").strip() or None
    start, end = parse_range(params, now or datetime.now(UTC), MAX_DAYS if user else MAX_SCAN_DAYS)
    return SessionQuery(start, end, user, parse_limit(params))


def session_list(storage: Storage, q: SessionQuery, ask: Ask | None = None) -> dict[str, Any]:
    """The sessions whose records fall in the range, latest first: those of the accounts the
    user resolves to, else of every account that signed in (one read of each day's index
    partition, then each account's hour partitions). With `ask` (Bastion's active sessions of
    a host, where active response has its rights), open sessions say what Bastion says."""
    found = sessions.build(session_rows(storage, q))
    asked = _ask_open(found, ask) if ask is not None else None
    return {
        "items": [s.json() for s in found[: q.limit]],
        "total": len(found),
        "open": sum(1 for s in found if s.end is None),
        "openNowFrom": asked,
    }


def session_rows(storage: Storage, q: SessionQuery) -> Iterator[dict[str, Any]]:
    accounts: Sequence[str]
    if q.user:
        accounts = resolve(storage, q.user).accounts
    else:
        seen = (str(r.get("UserKey") or "") for r in report_events(storage, q.start, q.end)
                if r.get("Outcome") == domain.Outcome.SUCCESS.value)  # fmt: skip
        accounts = sorted(filter(None, set(seen)))[:MAX_SESSION_ACCOUNTS]
    return person_events(storage, accounts, q.start, q.end, sessions.FIELDS)


def _ask_open(found: list[sessions.Session], ask: Ask) -> str:
    """Ask Bastion about each host with open sessions; what it could say (`bastion`, or why not)."""
    active: dict[str, list[Any]] = {}
    errors = []
    for host in sorted({s.host_id for s in found if s.end is None and s.host_id}):
        try:
            active[host.casefold()] = ask(host)
        except Exception as exc:  # noqa: BLE001 - a question Bastion could not answer is said
            errors.append(f"{layout.host_name(host)}: {type(exc).__name__}")
    sessions.mark_open(found, active)
    return "bastion" + (f" (not asked: {'; '.join(errors)})" if errors else "")


@contextlib.contextmanager
def sessions_asker(settings: Settings) -> Iterator[Ask | None]:
    """Bastion's active sessions of a host, where active response has the right to ask (None
    elsewhere); its ARM client is closed when the answer is made."""
    if settings.active_response == "off":
        yield None
        return
    from shared.hosts.arm import credential
    from shared.respond.bastion import Sessions

    with Sessions(credential(settings), settings.arm_endpoint, retries=0) as client:
        yield client.active


def coverage_items(storage: Storage) -> list[dict[str, Any]]:
    """Every Bastion host of the covered subscriptions as the health timer last found it: the
    uncovered first (`COVERAGE_SUBSCRIPTIONS`; empty when the check is off)."""
    rows = list(storage.state.partition(layout.COVERAGE))
    labels = layout.host_labels(str(r.get("HostId") or "") for r in rows)
    items = [
        {
            "host": labels.get(str(r.get("HostId") or ""), str(r.get("Host") or "")),
            "hostId": str(r.get("HostId") or ""),
            "subscription": str(r.get("Subscription") or ""),
            "sku": str(r.get("Sku") or ""),
            "verdict": str(r.get("Verdict") or ""),
            "covered": r.get("Verdict") == "covered",
            "detail": text.plain(str(r.get("Detail") or ""), 300),
            "since": text.utc(r.get("Since")) or None,
            "checkedAt": text.utc(r.get("CheckedAt")) or None,
        }
        for r in rows
    ]
    return sorted(items, key=lambda i: (i["covered"], i["host"].casefold(), i["hostId"]))


def alert_rows(storage: Storage, q: AlertQuery) -> Iterator[dict[str, Any]]:
    """Every alert of a query, page after page."""
    return _all_pages(alerts, storage, q)


def _all_pages(
    run: Callable[[Storage, Any], Page], storage: Storage, q: ActivityQuery | AlertQuery
) -> Iterator[dict[str, Any]]:
    while True:
        page = run(storage, q)
        yield from page.items
        if not page.continuation:
            return
        q = replace(q, continuation=page.continuation)


def report_events(storage: Storage, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
    """Events in `[start, end)` for the report: each day's IP index partition, read whole."""
    for day in keys.days(start.isoformat(), _last_instant(end)):
        yield from storage.index.query(
            "PartitionKey eq @pk and TimeGenerated ge @start and TimeGenerated lt @end",
            {"pk": layout.IP_PREFIX + day, "start": start, "end": end},
            REPORT_FIELDS,
        )


def person_events(
    storage: Storage,
    accounts: Iterable[str],
    start: datetime,
    end: datetime,
    select: list[str] = REPORT_FIELDS,
) -> Iterator[dict[str, Any]]:
    """A person's events in `[start, end)` for the report and the sessions: each account's
    hour partitions (one PartitionKey range query per account, as `activity --user`)."""
    for account in accounts:
        params = layout.account_window(account, start, end)
        yield from storage.events.query(layout.ACCOUNT_WINDOW, params, select)


def names_any(item: Mapping[str, Any], accounts: Iterable[str]) -> bool:
    """Whether an alert (`alert_item` shape) is about one of these accounts or lists one."""
    wanted = set(accounts)
    names = [*item.get("users", ()), *item.get("compromisedUsers", ())]
    if item.get("subjectKind") == "user":
        names.append(item.get("subject", ""))
    return any(keys.identity(str(n)) in wanted for n in names)


def quarantine_items(
    storage: Storage,
    start: datetime,
    end: datetime,
    blob_prefix: str = "",
    by_source_hour: bool = False,
) -> Iterator[dict[str, Any]]:
    """Quarantined pieces: of documents written in `[start, end)`, or (`by_source_hour`, for
    the report) of source blobs whose hour overlaps it; when, why, where, and a safe excerpt."""
    container = storage.blobs.get_container_client(storage.settings.quarantine_container)
    try:
        listed = list(container.list_blobs(name_starts_with=blob_prefix))
    except ResourceNotFoundError:
        return  # nothing was ever quarantined
    for item in sorted(listed, key=lambda b: (b.last_modified, b.name)):
        if by_source_hour:
            name_hour = layout.hour_of_blob(item.name)
            if not name_hour:
                continue
            hour = datetime.fromisoformat(name_hour + ":00+00:00")
            if not (start - timedelta(hours=1) < hour < end):
                continue
        elif not start <= item.last_modified < end:
            continue
        for doc in quarantine.read(container.download_blob(item.name).readall()):
            yield {
                "time": str(doc.get("QuarantinedAt", ""))[:19].replace("T", " ") + "Z",
                "reason": str(doc.get("Reason", "")),
                "sourceBlob": str(doc.get("SourceBlob", "")),
                "blob": short_blob(str(doc.get("SourceBlob", ""))),
                "offset": doc.get("SourceOffset"),
                "index": doc.get("SourceIndex"),
                "count": doc.get("Count", 1),
                "excerpt": text.plain(str(doc.get("Raw", "")), 80),
            }


def short_blob(name: str) -> str:
    """`BASTION-PROD 2026-11-23T09` for an hour blob of a Bastion host (tables are for people;
    the JSON keeps the whole name)."""
    hour, host = layout.hour_of_blob(name), layout.host_of_blob(name)
    return f"{host} {hour}" if hour and host else name
