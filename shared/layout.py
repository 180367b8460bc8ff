"""Where things live in the tables: partition and row keys, and the rows detection keeps.

Detection buckets live in the index table, one partition per UTC day (`det|<day>`), one row per
actor and minute: `<kind>|<encoded subject>|<HH:MM>`; a compromise folded into an IP's incident
is a mark row `ip|<encoded ip>|<HH:MM>|c|<encoded user>` beside that IP's buckets. So an actor's
day is one range read, and one invocation's buckets share a partition (few transactions).

Incidents live in the alerts table, one partition per UTC day of the incident's start:
`<kind>|<encoded subject>|<first seen, seconds>`, plus one head row per actor and day
(`<kind>|<encoded subject>|~`, no `FirstSeen`) that every change of that actor's incidents
updates in the same transaction, so two writers never both decide. Pure code.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from . import keys, text
from .detection import Bucket, Kind, Mark

DET_PREFIX = "det|"
HEAD = "~"
#: Per day in the alerts table: rewritten with every change of an IP's incidents that day.
COVER = "~cover"
#: A listed name longer than this is cut (lists are for people; counts stay exact).
MAX_NAME = 256


def day_of(when: datetime) -> str:
    return when.astimezone(UTC).date().isoformat()


def actor_prefix(kind: Kind, subject: str) -> str:
    return f"{kind.value}|{keys.encode(subject)}|"


# -- buckets ------------------------------------------------------------------------------------
def bucket_partition(day: str) -> str:
    return DET_PREFIX + day


def bucket_key(kind: Kind, subject: str, minute: datetime) -> tuple[str, str]:
    return bucket_partition(day_of(minute)), f"{actor_prefix(kind, subject)}{minute:%H:%M}"


def mark_key(mark: Mark) -> tuple[str, str]:
    pk, rk = bucket_key(Kind.IP, mark.ip, mark.minute)
    return pk, f"{rk}|c|{keys.encode(mark.user)}"


def names_json(values: list[str] | tuple[str, ...]) -> str:
    """A JSON list of names, each cut to `MAX_NAME` (so a list can never outgrow a property)."""
    return orjson.dumps([text.cut(v, MAX_NAME) for v in values]).decode()


def bucket_entity(kind: Kind, subject: str, b: Bucket) -> dict[str, Any]:
    pk, rk = bucket_key(kind, subject, b.minute)
    entity: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": rk,
        "Minute": b.minute,
        "F": b.failures,
        "Fb": b.before_success,
        "S": b.successes,
        "Users": names_json(b.users),
        "Winners": names_json(b.success_users),
        "Ips": orjson.dumps([[ip[:MAX_NAME], n] for ip, n in b.ips]).decode(),
        "Targets": names_json(b.targets),
        "Hosts": names_json(b.hosts),
    }
    for name, value in (
        ("T0", b.first_failure),
        ("T1", b.last_failure),
        ("S0", b.first_success),
        ("S1", b.last_success),
    ):
        if value is not None:
            entity[name] = value
    if b.user_hashes:
        entity["Hashes"] = struct.pack(f">{len(b.user_hashes)}Q", *b.user_hashes)
    return entity


def mark_entity(mark: Mark) -> dict[str, Any]:
    pk, rk = mark_key(mark)
    return {
        "PartitionKey": pk,
        "RowKey": rk,
        "Minute": mark.minute,
        "User": mark.user[:MAX_NAME],
        "Time": mark.time,
        "Targets": names_json(mark.targets),
        "Hosts": names_json(mark.hosts),
    }


def is_mark(row: dict[str, Any]) -> bool:
    return "|c|" in row["RowKey"]


def bucket_from(row: dict[str, Any]) -> Bucket:
    raw = row.get("Hashes") or b""
    return Bucket(
        minute=_utc(row["Minute"]),
        failures=int(row.get("F", 0)),
        before_success=int(row.get("Fb", 0)),
        successes=int(row.get("S", 0)),
        first_failure=_utc(row.get("T0")),
        last_failure=_utc(row.get("T1")),
        first_success=_utc(row.get("S0")),
        last_success=_utc(row.get("S1")),
        users=orjson.loads(row.get("Users") or "[]"),
        user_hashes=list(struct.unpack(f">{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])),
        success_users=orjson.loads(row.get("Winners") or "[]"),
        ips=[(ip, int(n)) for ip, n in orjson.loads(row.get("Ips") or "[]")],
        targets=orjson.loads(row.get("Targets") or "[]"),
        hosts=orjson.loads(row.get("Hosts") or "[]"),
    )


def mark_from(row: dict[str, Any], ip: str) -> Mark:
    return Mark(
        ip=ip,
        minute=_utc(row["Minute"]),
        user=row["User"],
        time=_utc(row["Time"]),
        targets=tuple(orjson.loads(row.get("Targets") or "[]")),
        hosts=tuple(orjson.loads(row.get("Hosts") or "[]")),
    )


def _utc(value: Any) -> Any:
    """Table datetimes come back as TablesEntityDatetime (a datetime subclass): plain UTC."""
    if value is None:
        return None
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def minute_range(kind: Kind, subject: str, lo: datetime, hi: datetime) -> tuple[str, str, str]:
    """(partition, first RowKey, last RowKey) of an actor's buckets from `lo` to `hi` (one day)."""
    prefix = actor_prefix(kind, subject)
    return bucket_partition(day_of(lo)), f"{prefix}{lo:%H:%M}", f"{prefix}{hi:%H:%M}~"


# -- incidents ----------------------------------------------------------------------------------
def incident_key(kind: Kind, subject: str, first_seen: datetime) -> tuple[str, str]:
    first = first_seen.astimezone(UTC)
    return day_of(first), f"{actor_prefix(kind, subject)}{first:%Y-%m-%dT%H:%M:%S}"


def head_key(kind: Kind, subject: str, day: str) -> tuple[str, str]:
    return day, actor_prefix(kind, subject) + HEAD


def days_between(lo: datetime, hi: datetime) -> list[str]:
    out, day = [], lo.astimezone(UTC).date()
    while day <= hi.astimezone(UTC).date():
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out
