"""From an actor's incidents as detection sees them now to the rows to write, and who to tell.

Pure planning: given the incidents detection derived for one actor and one day, and the rows
stored for them, `plan` says which rows to create, update, re-key or withdraw, and which rows
now owe people a notification. The caller applies the operations as one entity-group
transaction guarded by the actor's head row, so concurrent invocations cannot both decide.

Notification policy (one campaign, one incident): people hear when an incident opens, when it
escalates (a more severe rule, e.g. a sign-in after the attack), and, at most once per
`NOTIFY_INTERVAL_MINUTES`, that it grew by half again since they last heard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from shared.core.domain import MINUTE, Incident, Kind, Severity, Step, minute_of
from shared.notify import messages
from shared.store import layout

OPENED, ESCALATED, UPDATED = "opened", "escalated", "updated"
#: The notice of what active response did about an incident (`shared.respond`).
RESPONDED = "response"
OPEN, WITHDRAWN = "open", "withdrawn"
#: Growth that is worth telling people about again (and at most once per interval).
GROWTH = 1.5
#: Notices a row holds for delivery at most (a backlog of a long attack owes many growth
#: updates at once; beyond this the oldest updates are dropped, never an opening or escalation).
MAX_OWED = 32
#: Longest `Subject` kept in a row (the key holds a digest of the whole value).
MAX_SUBJECT = 4096
#: What detection decides; everything else in a row is delivery bookkeeping.
CONTENT = (
    "Rule",
    "Rules",
    "Severity",
    "FirstSeen",
    "LastSeen",
    "FailureCount",
    "SuccessCount",
    "DistinctUsers",
    "UsersEstimated",
    "Users",
    "ClientIps",
    "TargetVMs",
    "BastionHosts",
    "CompromisedUsers",
    "State",
)
#: Delivery bookkeeping an incident keeps when it is re-keyed, merged or split.
_NOTIFY_STATE = (
    "Response",
    "ResponseSummary",
    "AlertId",
    "CreatedAt",
    "Seq",
    "Pending",
    "PendingSince",
    "DeliveredTo",
    "Attempts",
    "LastError",
    "NotifiedSeverity",
    "NotifiedFailures",
    "NotifiedAt",
    "UpdateDue",
    "DueAt",
    "Owed",
    "ToldSeverity",
    "ToldFailures",
    "ToldAt",
)


@dataclass
class Plan:
    """Transaction operations (the head first) and the rows that owe a notification now, as
    (RowKey, AlertId): the id is the incident's for good, the key moves when its start does."""

    ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    notify: list[tuple[str, str]] = field(default_factory=list)


def status(row: dict[str, Any]) -> str:
    if row.get("Pending"):
        return "pending"
    return "withdrawn" if row.get("State") == WITHDRAWN else "delivered"


def rank(severity: object) -> int:
    try:
        return Severity(str(severity)).rank
    except ValueError:
        return 0


def content(inc: Incident, pk: str, rk: str) -> dict[str, Any]:
    """The row's detection fields for an incident (lists bounded, so any log fits a row)."""
    row: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": rk,
        "Rule": inc.rule,
        "Rules": ",".join(inc.rules),
        "Severity": inc.severity.value,
        "SubjectKind": inc.kind.value,
        "Subject": inc.subject[:MAX_SUBJECT],
        "FirstSeen": inc.first_seen,
        "LastSeen": inc.last_seen,
        "WindowStart": inc.first_seen,
        "WindowEnd": inc.last_seen,
        "FailureCount": inc.failures,
        "SuccessCount": inc.successes,
        "DistinctUsers": inc.distinct_users,
        "UsersEstimated": inc.users_estimated,
        "Users": _names(inc.users),
        "ClientIps": _names(inc.ips),
        "TargetVMs": _names(inc.targets),
        "BastionHosts": _names(inc.hosts),
        "CompromisedUsers": _names(inc.compromised),
        "State": OPEN,
    }
    row["Summary"] = messages.summary(row)
    return row


def _names(values: Sequence[str]) -> str:
    return layout.names_json(list(values))


def plan(
    incidents: Sequence[Incident],
    stored: Sequence[dict[str, Any]],
    head: dict[str, Any] | None,
    head_key: tuple[str, str],
    now: datetime,
    interval: timedelta,
) -> Plan:
    """Operations that make the stored rows of one actor and day match `incidents`."""
    rows = sorted(stored, key=lambda r: (r["FirstSeen"], r["RowKey"]))
    owner: dict[str, int] = {}
    for row in rows:  # a stored row belongs to the first incident it overlaps
        for i, inc in enumerate(incidents):
            if _overlaps(row, inc):
                owner[row["RowKey"]] = i
                break
    out = Plan()
    for i, inc in enumerate(incidents):
        pk, rk = layout.incident_key(inc.kind, inc.subject, inc.first_seen)
        mine = [r for r in rows if owner.get(r["RowKey"]) == i]
        # A split keeps what people were told: the later part inherits, under a new id.
        ancestors = mine or [r for r in rows if _overlaps(r, inc)]
        state = _inherit(ancestors, alert_id(inc), now, keep_id=bool(mine))
        new = {**content(inc, pk, rk), **state}
        told = new["Seq"]
        _decide(new, steps_of(inc), now, interval)
        new["Status"] = status(new)
        same = next((r for r in mine if r["RowKey"] == rk), None)
        if same is None:
            out.ops.append(("create", {**new, "UpdatedAt": now}, {}))
        elif _changed(same, new):
            out.ops.append(("update", {**new, "UpdatedAt": now}, _guard(same)))
        out.ops.extend(("delete", _key(r), _guard(r)) for r in mine if r["RowKey"] != rk)
        if new["Seq"] != told:  # decided here; an inherited debt is its decider's to pay
            out.notify.append((rk, new["AlertId"]))
    for row in rows:
        if row["RowKey"] in owner:
            continue
        if not (row.get("NotifiedSeverity") or row.get("DeliveredTo")):
            out.ops.append(("delete", _key(row), _guard(row)))  # nobody heard of it
        elif row.get("State") != WITHDRAWN:
            gone = {**_key(row), "State": WITHDRAWN, "Pending": "", "UpdateDue": False}
            gone["Status"] = status(gone)
            out.ops.append(("update", {**gone, "UpdatedAt": now}, {**_guard(row), "mode": "merge"}))
    if out.ops:
        version = int((head or {}).get("Version", 0)) + 1
        entity = {"PartitionKey": head_key[0], "RowKey": head_key[1], "Version": version}
        out.ops.insert(0, ("update", entity, _guard(head)) if head else ("create", entity, {}))
    return out


def single(
    kind: Kind,
    subject: str,
    rules: tuple[str, ...],
    severity: Severity,
    first: datetime,
    last: datetime,
    failures: int = 0,
    ips: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
) -> Incident:
    """An incident that is one finding about one subject (a baseline's, a host's), not
    derived from buckets: no account sketch; an account is its own only account."""
    account = kind is Kind.USER
    who = (subject,) if account else ()
    return Incident(kind, subject, first, last, rules, severity, failures, int(account), who,
                    int(account), False, ips, targets, hosts)  # fmt: skip


def settle_one(
    inc: Incident | None,
    old: dict[str, Any] | None,
    key: tuple[str, str],
    now: datetime,
    interval: timedelta,
) -> tuple[list[tuple[str, dict[str, Any], dict[str, Any]]], bool]:
    """Operations that make one row keyed by what it is about (a finding: an account's new
    network, a host's silence) match `inc` (None: it no longer holds); `old` is its stored row,
    wherever it was (a finding moves with its day). Returns (operations, whether it now owes
    a notification). The operations on the new key come first; deleting the old row, which
    may be in another partition, last."""
    ops: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if inc is None:
        if old is None:
            return ops, False
        if not (old.get("NotifiedSeverity") or old.get("DeliveredTo")):
            return [("delete", _key(old), _guard(old))], False  # nobody heard of it
        if old.get("State") == WITHDRAWN:
            return ops, False
        gone = {**_key(old), "State": WITHDRAWN, "Pending": "", "UpdateDue": False}
        gone["Status"] = status(gone)
        return [("update", {**gone, "UpdatedAt": now}, {**_guard(old), "mode": "merge"})], False
    state = _inherit([old] if old is not None else [], alert_id(inc), now, keep_id=True)
    new = {**content(inc, *key), **state}
    told = new["Seq"]
    _decide(new, steps_of(inc), now, interval)
    new["Status"] = status(new)
    moved = old is not None and (old["PartitionKey"], old["RowKey"]) != key
    if old is None or moved:
        ops.append(("upsert", {**new, "UpdatedAt": now}, {}))
    elif _changed(old, new):
        ops.append(("update", {**new, "UpdatedAt": now}, _guard(old)))
    if moved and old is not None:
        ops.append(("delete", _key(old), _guard(old)))
    return ops, new["Seq"] != told


def _overlaps(row: dict[str, Any], inc: Incident) -> bool:
    return bool(row["FirstSeen"] <= inc.last_seen and inc.first_seen <= row["LastSeen"])


def alert_id(inc: Incident) -> str:
    """An incident's name for people and programs: opaque (no log text in it, unlike row keys),
    deterministic, and kept when the incident's start moves."""
    digest = hashlib.sha256(inc.subject.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{inc.kind.value}-{digest}-{inc.first_seen.astimezone(UTC):%Y%m%dT%H%M%S}"


def _inherit(
    rows: Sequence[dict[str, Any]], new_id: str, now: datetime, keep_id: bool
) -> dict[str, Any]:
    """Notification state of the rows an incident continues (the oldest one's id)."""
    if not rows:
        return {
            "AlertId": new_id,
            "CreatedAt": now,
            "Seq": 0,
            "Pending": "",
            "DeliveredTo": "",
            "Attempts": 0,
            "LastError": "",
            "NotifiedSeverity": "",
            "NotifiedFailures": 0,
            "UpdateDue": False,
        }
    oldest = min(rows, key=lambda r: (r.get("CreatedAt") or now, r["RowKey"]))
    state = {k: oldest[k] for k in _NOTIFY_STATE if k in oldest}
    loudest = max(rows, key=lambda r: rank(r.get("NotifiedSeverity")))
    state["NotifiedSeverity"] = loudest.get("NotifiedSeverity", "")
    state["NotifiedFailures"] = max(int(r.get("NotifiedFailures") or 0) for r in rows)
    state["Seq"] = max(int(r.get("Seq") or 0) for r in rows)
    told = [t for t in (_told(r) for r in rows) if t is not None]
    if told:
        rank_, failures, at = (
            max(t[0] for t in told),
            max(t[1] for t in told),
            max(t[2] for t in told),
        )
        state.update(ToldSeverity=_SEVERITY_OF[rank_], ToldFailures=failures, ToldAt=at)
    if not keep_id:
        state["AlertId"] = new_id
    return state


@dataclass(frozen=True)
class Notice:
    """One thing people are told about an incident, as of the event time `at`."""

    event: str
    at: datetime
    severity: Severity
    rules: tuple[str, ...]
    failures: int


Told = tuple[int, int, datetime]  # severity rank, failures, event time of the last notice


def steps_of(inc: Incident) -> tuple[Step, ...]:
    """The incident's timeline; one without (a finding) is one step: as it is now."""
    if inc.steps:
        return inc.steps
    return (Step(minute_of(inc.last_seen) + MINUTE, inc.severity, inc.rules, inc.failures),)


def ledger(
    steps: Sequence[Step], told: Told | None, interval: timedelta
) -> tuple[list[Notice], datetime | None]:
    """The notices owed after `told`, walking the incident's minutes in event time, and the
    event time a growth update falls due, if one is deferred. A function of the records, not
    of when they arrived: a backlog owes at once what live records owed one by one.

    - opened: the first minute the incident is medium or worse (low goes to the digest);
    - escalated: a minute it becomes more severe (a new rule, a flood), told at once, also
      when its records come late, after a later notice;
    - updated: once it grew by half since the last notice and `interval` of event time has
      passed since that notice. Growth sooner falls due then: told by the next minute past
      it, or by the redelivery timer once the clock reaches it and no record came since."""
    out: list[Notice] = []
    last = told
    prev: Step | None = None
    for step in steps:
        rank_ = step.severity.rank
        if last is not None and step.at < last[2]:  # before the last notice: only escalations
            if rank_ > last[0] and rank_ >= Severity.MEDIUM.rank:
                out.append(Notice(ESCALATED, step.at, step.severity, step.rules, step.failures))
                last = (rank_, step.failures, last[2])
            prev = step
            continue
        if last is not None and prev is not None and _grown(prev, last):
            due = last[2] + interval
            if due < step.at and prev.at <= due:
                out.append(Notice(UPDATED, due, prev.severity, prev.rules, prev.failures))
                last = (max(last[0], prev.severity.rank), prev.failures, due)
        event = _event(step, last, interval)
        if event:
            out.append(Notice(event, step.at, step.severity, step.rules, step.failures))
            last = (max(last[0] if last else 0, rank_), step.failures, step.at)
        prev = step
    if last is None or prev is None or not _grown(prev, last):
        return out, None
    return out, last[2] + interval


def _event(step: Step, last: Told | None, interval: timedelta) -> str:
    """What this minute, on or after the last notice, owes people, if anything."""
    rank_ = step.severity.rank
    if rank_ < Severity.MEDIUM.rank:
        return ""
    if last is None:
        return OPENED
    if rank_ > last[0]:
        return ESCALATED
    if _grown(step, last) and step.at - last[2] >= interval:
        return UPDATED
    return ""


def _grown(step: Step, told: Told) -> bool:
    return told[0] >= Severity.MEDIUM.rank and step.failures >= GROWTH * max(told[1], 1)


def _told(row: dict[str, Any]) -> Told | None:
    """What people were last told (decided; delivery may still be under way). Rows from before
    event-time notices: what was delivered, at the time it was."""
    if row.get("ToldSeverity"):
        at = row.get("ToldAt") or row.get("UpdatedAt")
        return rank(row["ToldSeverity"]), int(row.get("ToldFailures") or 0), _utc(at)
    if row.get("NotifiedSeverity") or row.get("Pending"):
        severity = row.get("NotifiedSeverity") or Severity.MEDIUM.value
        at = row.get("NotifiedAt") or row.get("PendingSince") or row.get("UpdatedAt")
        return rank(severity), int(row.get("NotifiedFailures") or 0), _utc(at)
    return None


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.min.replace(tzinfo=UTC)


_SEVERITY_OF = {s.rank: s.value for s in Severity}


def _decide(row: dict[str, Any], steps: Sequence[Step], now: datetime, interval: timedelta) -> None:
    """Owe people what the incident's minutes since the last notice call for (`ledger`), and
    remember when a growth update falls due."""
    notices, due = ledger(steps, _told(row), interval)
    row["UpdateDue"] = due is not None
    if due is not None:
        row["DueAt"] = due
    else:
        row.pop("DueAt", None)
    if notices:
        _owe(row, notices, now)


def _owe(row: dict[str, Any], notices: Sequence[Notice], now: datetime) -> None:
    """Queue `notices` after what the row already owes; a new head starts its delivery afresh.
    `PendingSince` is what redelivery and its horizon go by (not the day of the events: a
    backfill's incident is as fresh as any)."""
    queue = messages.owed(row)
    seq = int(row.get("Seq") or 0)
    for n in notices:
        seq += 1
        queue.append({"event": n.event, "seq": seq, "at": n.at.astimezone(UTC).isoformat(),
                      "severity": n.severity.value, "rules": list(n.rules),
                      "failures": n.failures})  # fmt: skip
    while len(queue) > MAX_OWED:
        drop = next((i for i, q in enumerate(queue[1:-1], 1) if q["event"] == UPDATED), 1)
        del queue[drop]
    # What was told, as `ledger` carries it on: the loudest severity, the latest count, and
    # the latest notice's time (a late escalation tells of an earlier minute, and must not
    # move it back: the minutes in between were decided already).
    last, before = notices[-1], _told(row)
    loudest = max([n.severity.rank for n in notices] + ([before[0]] if before else []))
    at = max(n.at for n in notices) if before is None else max(before[2], *(n.at for n in notices))
    row.update(Seq=seq, Owed=orjson.dumps(queue).decode(), ToldSeverity=_SEVERITY_OF[loudest],
               ToldFailures=last.failures, ToldAt=at)  # fmt: skip
    if not row.get("Pending"):
        row.update(Pending=queue[0]["event"], PendingSince=now, DeliveredTo="", Attempts=0,
                   LastError="")  # fmt: skip


#: What `owe_response` changes on a row (with `Response` and `ResponseSummary`).
RESPONSE_FIELDS = ("Seq", "Owed", "ToldSeverity", "ToldFailures", "ToldAt", "Pending",
                   "PendingSince", "DeliveredTo", "Attempts", "LastError",
                   "ResponseSummary")  # fmt: skip


def owe_response(row: dict[str, Any], now: datetime) -> None:
    """Owe people a `response` notice: what active response did about the incident as it is
    (its event time is the incident's last, so the ledger of growth is not moved by it)."""
    rules = tuple(r for r in str(row.get("Rules") or row["Rule"]).split(",") if r)
    notice = Notice(RESPONDED, layout.utc(row["LastSeen"]), Severity(str(row["Severity"])), rules,
                    int(row.get("FailureCount") or 0))  # fmt: skip
    _owe(row, [notice], now)


def due_update(row: dict[str, Any], now: datetime, interval: timedelta) -> dict[str, Any] | None:
    """The change that owes a deferred growth update, once its event time has come: the
    incident as it is, which is as it was then (no record has come since, or the invocation
    that stored it would have owed the update itself)."""
    if not row.get("UpdateDue"):
        return None
    due = row.get("DueAt")
    if due is None:  # rows from before event-time notices
        last = row.get("NotifiedAt")
        due = (last + interval) if isinstance(last, datetime) else now
    if now < due:
        return None
    keep = ("Seq", "Pending", "Owed", "DeliveredTo", "Attempts", "LastError", "PendingSince",
            "Severity", "Rule", "Rules", "FailureCount", "ToldSeverity", "ToldFailures", "ToldAt",
            "NotifiedSeverity", "NotifiedFailures", "NotifiedAt", "UpdatedAt")  # fmt: skip
    change = {k: row.get(k) for k in keep if k in row}
    rules = tuple(r for r in str(row.get("Rules") or row.get("Rule") or "").split(",") if r)
    severity = Severity(str(row["Severity"]))
    _owe(change, [Notice(UPDATED, due, severity, rules, int(row["FailureCount"]))], now)
    for k in ("Severity", "Rule", "Rules", "FailureCount", "NotifiedSeverity", "NotifiedFailures",
              "NotifiedAt", "UpdatedAt"):  # fmt: skip
        change.pop(k, None)
    change = {**_key(row), **change, "UpdateDue": False}
    change["Status"] = "pending"
    return change


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    fields = (*CONTENT, "Summary", *_NOTIFY_STATE, "Status")
    return any(_norm(old.get(k)) != _norm(new.get(k)) for k in fields)


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=UTC).isoformat()
    return value


def _key(row: dict[str, Any]) -> dict[str, Any]:
    return {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}


def _guard(row: dict[str, Any] | None) -> dict[str, Any]:
    etag = getattr(row, "metadata", {}).get("etag") if row is not None else None
    return {"etag": etag} if etag else {}


def names(row: dict[str, Any], field_name: str) -> list[str]:
    value = orjson.loads(row.get(field_name) or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []


#: Notifications owed or deferred, whatever day their events are on: the whole alerts table,
#: filtered by the service (it holds incidents and findings, not records). Parameters must be
#: followed by a space: the SDK splits the filter on spaces.
OWED_FILTER = "(Status eq @pending and UpdatedAt le @before ) or UpdateDue eq true"
PENDING_FILTER = "Status eq @pending"


def pending_since(row: dict[str, Any]) -> datetime | None:
    """When the row's notification became pending (rows from before `PendingSince`: their
    last update, which is no earlier)."""
    since = row.get("PendingSince") or row.get("UpdatedAt")
    return since if isinstance(since, datetime) else None


def past_horizon(row: dict[str, Any], now: datetime, horizon: timedelta) -> bool:
    """A pending notification retried for longer than the horizon: shown, no longer sent."""
    since = pending_since(row)
    return bool(row.get("Pending")) and since is not None and now - since > horizon
