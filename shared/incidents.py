"""Turn findings into incidents: one alert row per incident, whoever finds it first.

Blob triggers redeliver and instances run in parallel, so the same attack is found many times.
Each (subject, rule) has one pointer row naming its open incident; it only moves under an ETag
check, and alert rows are created create-only, so exactly one finder creates (and delivers) an
alert and everyone else merges counts into it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from . import keys
from .detection import Finding
from .storage import Storage

log = logging.getLogger(__name__)
INCIDENT_PARTITION = "incident"
_ATTEMPTS = 16


def pointer_key(kind: str, subject: str, rule: str) -> str:
    return f"{kind}|{keys.encode(subject)}|{rule}"


def alert_keys(finding: Finding) -> tuple[str, str]:
    """(PartitionKey, RowKey) of the alert for an incident that starts with `finding`."""
    first = finding.first_seen.isoformat(timespec="seconds")
    return first[:10], f"{finding.rule}|{finding.kind}|{keys.encode(finding.subject)}|{first}"


def open_incident_starts(storage: Storage, kind: str, subject: str) -> list[datetime]:
    """FirstSeen of the subject's open incidents, so detection can recount them whole."""
    prefix = f"{kind}|{keys.encode(subject)}|"
    rows = storage.query(
        storage.settings.state_table,
        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
        {"pk": INCIDENT_PARTITION, "lo": prefix, "hi": prefix + "~"},
        select=["FirstSeen", "LastSeen"],
    )
    return [row["FirstSeen"] for row in rows]


def record(storage: Storage, finding: Finding) -> tuple[dict[str, Any], bool]:
    """Store a finding as (part of) an incident; returns the alert row and whether we made it."""
    settings = storage.settings
    quiet = timedelta(minutes=settings.incident_quiet_minutes)
    state = storage.table(settings.state_table)
    rk = pointer_key(finding.kind, finding.subject, finding.rule)
    for _ in range(_ATTEMPTS):
        try:
            pointer: dict[str, Any] | None = state.get_entity(INCIDENT_PARTITION, rk)
        except ResourceNotFoundError:
            pointer = None
        if pointer and (
            finding.first_seen <= pointer["LastSeen"] + quiet
            and finding.last_seen >= pointer["FirstSeen"] - quiet
        ):
            pk, row = pointer["AlertPartition"], pointer["AlertRow"]
            first = min(finding.first_seen, pointer["FirstSeen"])
            last = max(finding.last_seen, pointer["LastSeen"])
        elif pointer and finding.last_seen < pointer["FirstSeen"] - quiet:
            return _upsert_alert(storage, *alert_keys(finding), finding)  # an older incident
        else:
            (pk, row), first, last = alert_keys(finding), finding.first_seen, finding.last_seen
        entity = {
            "PartitionKey": INCIDENT_PARTITION,
            "RowKey": rk,
            "AlertPartition": pk,
            "AlertRow": row,
            "FirstSeen": first,
            "LastSeen": last,
        }
        try:
            if pointer is None:
                state.create_entity(entity)
            elif (first, last, row) != (
                pointer["FirstSeen"],
                pointer["LastSeen"],
                pointer["AlertRow"],
            ):
                state.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=pointer.metadata["etag"],  # type: ignore[attr-defined]
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            continue  # another instance moved the pointer: decide again
        return _upsert_alert(storage, pk, row, finding)
    raise RuntimeError(f"incident pointer {rk} kept changing; giving up for a retry")


def _upsert_alert(
    storage: Storage, pk: str, row: str, finding: Finding
) -> tuple[dict[str, Any], bool]:
    table = storage.table(storage.settings.alerts_table)
    now = datetime.now(UTC)
    fresh = _alert_entity(pk, row, finding, now)
    try:
        table.create_entity(fresh)
        return fresh, True
    except ResourceExistsError:
        pass
    for _ in range(_ATTEMPTS):
        current = table.get_entity(pk, row)
        merged = _merge(current, finding, now)
        if merged is None:
            return dict(current), False
        try:
            table.update_entity(
                merged,
                mode=UpdateMode.MERGE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            continue
        return {**current, **merged}, False
    raise RuntimeError(f"alert {row} kept changing; giving up for a retry")


def _alert_entity(pk: str, row: str, f: Finding, now: datetime) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": row,
        "AlertId": row,
        "Rule": f.rule,
        "Severity": f.severity,
        "SubjectKind": f.kind,
        "Subject": f.subject,
        "FailureCount": f.failures,
        "SuccessCount": f.successes,
        "WindowStart": f.first_seen,
        "WindowEnd": f.last_seen,
        "FirstSeen": f.first_seen,
        "LastSeen": f.last_seen,
        "Status": "pending",
        "DeliveredTo": "",
        "Attempts": 0,
        "LastError": "",
        "CreatedAt": now,
        "UpdatedAt": now,
    }
    entity.update(_lists(f.users, f.ips, f.targets, f.hosts))
    entity["Summary"] = summary(entity)
    return entity


def _lists(
    users: tuple[str, ...], ips: tuple[str, ...], targets: tuple[str, ...], hosts: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "Users": orjson.dumps(users[:20]).decode(),
        "DistinctUsers": len(users),
        "ClientIps": orjson.dumps(ips[:20]).decode(),
        "TargetVMs": orjson.dumps(targets[:20]).decode(),
        "BastionHosts": orjson.dumps(hosts[:20]).decode(),
    }


def _merge(current: dict[str, Any], f: Finding, now: datetime) -> dict[str, Any] | None:
    """Changes that `f` makes to an existing alert, or None if it adds nothing."""

    def union(name: str, new: tuple[str, ...]) -> tuple[str, ...]:
        old = tuple(orjson.loads(current.get(name) or "[]"))
        return old + tuple(v for v in new if v not in old)

    users, ips = union("Users", f.users), union("ClientIps", f.ips)
    targets, hosts = union("TargetVMs", f.targets), union("BastionHosts", f.hosts)
    merged: dict[str, Any] = {
        "PartitionKey": current["PartitionKey"],
        "RowKey": current["RowKey"],
        "FailureCount": max(int(current.get("FailureCount", 0)), f.failures),
        "SuccessCount": max(int(current.get("SuccessCount", 0)), f.successes),
        "FirstSeen": min(current["FirstSeen"], f.first_seen),
        "LastSeen": max(current["LastSeen"], f.last_seen),
        **_lists(users, ips, targets, hosts),
    }
    if all(current.get(k) == v for k, v in merged.items()):
        return None
    merged["Summary"] = summary({**current, **merged})
    merged["UpdatedAt"] = now
    return merged


_RULE_TEXT = {
    "user_brute_force": "Repeated failed Bastion sign-ins for user {subject}",
    "ip_brute_force": "Repeated failed Bastion sign-ins from {subject}",
    "password_spray": "Password spray from {subject}",
    "success_after_failures_user": "Possible compromise: {subject} signed in after failures",
    "success_after_failures_ip": "Possible compromise: sign-in from {subject} after failures",
}


def summary(alert: dict[str, Any]) -> str:
    """One line a person can act on."""
    head = _RULE_TEXT.get(alert["Rule"], alert["Rule"]).format(subject=alert["Subject"] or "?")
    users = orjson.loads(alert.get("Users") or "[]")
    targets = orjson.loads(alert.get("TargetVMs") or "[]")
    ips = orjson.loads(alert.get("ClientIps") or "[]")
    first, last = alert["FirstSeen"], alert["LastSeen"]
    parts = [
        f"{alert['FailureCount']} failures",
        f"{len(users)} user(s)" if alert["SubjectKind"] == "ip" else f"from {', '.join(ips[:3])}",
        f"on {', '.join(targets[:3]) or 'unknown target'}",
        f"{first:%Y-%m-%d %H:%M}-{last:%H:%M} UTC",
    ]
    return f"[{alert['Severity'].upper()}] {head}: " + ", ".join(parts)
