"""Sessions, not only sign-ins (issue 27, part 3): who was connected to which workload, from
when to when, and for how long.

Bastion's records of one connection share its `TunnelId` ("internal Bastion connection GUID").
A session is the records of one tunnel: its start is the earliest `SessionStartTime` or
sign-in time among them; its end the latest `SessionEndTime`, or the start plus `Duration`
(milliseconds, written "only when the Bastion session ended"), where a record carries one; with
neither it is open. Which records carry the end is not documented with a public sample, so
both are read, in any casing the normalizer accepts, and a record without a tunnel id is a
session of its own (its sign-in alone). A failed sign-in is no session.

Derived from the stored records at query time: the same retention and erasure apply, and no
row of its own is written. The report lists the longest sessions, those still open past
`SESSION_OPEN_LIMIT_HOURS`, and those that began outside `WORKING_HOURS` (UTC). Where active
response has its rights, "open now" comes from Bastion itself (`getActiveSessions`) and is
marked so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import ciso8601

from shared.baselines import agents
from shared.core import text
from shared.respond import matching
from shared.respond.matching import Session as Active
from shared.respond.matching import SignIn
from shared.store import keys, layout

#: The record fields a session is made of.
FIELDS = ["TimeGenerated", "UserName", "UserKey", "ClientIpAddress", "UserAgent", "TargetVMName",
          "TargetResourceId", "TargetVMIPAddress", "Protocol", "TunnelId", "SessionStartTime",
          "SessionEndTime", "Duration", "Outcome", "BastionResourceId", "SourceBlob", "RowKey",
          "UserEmail"]  # fmt: skip
#: Longest a session may last and still be believed (a bad `Duration` is not a year online).
MAX_LENGTH = timedelta(days=31)


@dataclass
class Session:
    tunnel: str
    account: str
    source: str
    client: str
    target: str
    target_id: str
    target_ip: str
    protocol: str
    host_id: str
    start: datetime
    end: datetime | None
    user_name: str = ""
    #: Bastion's own word, where it was asked: True (it lists the session), False, or None.
    open_now: bool | None = None

    @property
    def length(self) -> timedelta | None:
        return None if self.end is None else self.end - self.start

    def json(self) -> dict[str, Any]:
        length = self.length
        return {
            "tunnelId": self.tunnel,
            "account": self.account,
            "sourceIp": self.source,
            "client": self.client,
            "target": self.target,
            "protocol": self.protocol,
            "bastionHost": layout.host_name(self.host_id),
            "start": text.utc(self.start),
            "end": text.utc(self.end) or None,
            "lengthSeconds": None if length is None else int(length.total_seconds()),
            "state": "closed" if self.end is not None else "open",
            "openNow": self.open_now,
            "openNowSource": "bastion" if self.open_now is not None else None,
        }


def build(rows: Iterable[Mapping[str, Any]]) -> list[Session]:
    """The sessions of these records, latest start first."""
    tunnels: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        tunnel = str(r.get("TunnelId") or "").strip()
        alone = f"row:{r.get('PartitionKey', '')}|{r.get('RowKey', '')}"
        tunnels.setdefault(tunnel or alone, []).append(r)
    found = [(key, s) for key, group in tunnels.items() if (s := _session(group)) is not None]
    found.sort(key=lambda ks: (ks[1].start, ks[0]), reverse=True)  # a total order: any input
    return [s for _, s in found]


def _session(group: Sequence[Mapping[str, Any]]) -> Session | None:
    signed = [r for r in group if r.get("Outcome") == "Success"]
    starts = [w for w in (_when(r.get("SessionStartTime")) for r in group) if w is not None]
    starts += [_utc(r["TimeGenerated"]) for r in signed]
    if not starts:
        return None  # failures only: nobody got in
    start = min(starts)
    ends = [e for e in (_when(r.get("SessionEndTime")) for r in group) if e is not None]
    ends += [start + timedelta(milliseconds=int(r["Duration"])) for r in group
             if isinstance(r.get("Duration"), int) and r["Duration"] > 0]  # fmt: skip
    ends = [e for e in ends if start <= e <= start + MAX_LENGTH]
    first = min(signed or group, key=_order)
    account = keys.shown(str(first.get("UserName") or first.get("UserEmail") or ""),
                         str(first.get("UserKey") or ""))  # fmt: skip
    host = layout.host_id_of_blob(str(first.get("SourceBlob") or ""))
    return Session(
        tunnel=str(first.get("TunnelId") or ""),
        account=account,
        source=str(first.get("ClientIpAddress") or ""),
        client=agents.client_of(str(first.get("UserAgent") or "")),
        target=str(first.get("TargetVMName") or first.get("TargetVMIPAddress") or "?"),
        target_id=str(first.get("TargetResourceId") or ""),
        target_ip=str(first.get("TargetVMIPAddress") or ""),
        protocol=str(first.get("Protocol") or ""),
        host_id=host or str(first.get("BastionResourceId") or ""),
        start=start,
        end=max(ends) if ends else None,
        user_name=str(first.get("UserName") or first.get("UserEmail") or ""),
    )


def _order(r: Mapping[str, Any]) -> tuple[datetime, str, str, str]:
    """The first record of a session: the earliest, then by key (records arrive in any order)."""
    return (_utc(r["TimeGenerated"]), str(r.get("PartitionKey", "")), str(r.get("RowKey", "")),
            str(r.get("UserName", "")))  # fmt: skip


def _utc(value: datetime) -> datetime:
    plain: datetime = layout.utc(value)
    return plain


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        found: datetime = ciso8601.parse_datetime(value.strip())
    except ValueError:
        return None
    return found.astimezone(UTC) if found.tzinfo else found.replace(tzinfo=UTC)


def mark_open(found: Sequence[Session], active: Mapping[str, Sequence[Active]]) -> None:
    """Bastion's word on each open session of a host it was asked about (`active`, by host id
    case-folded): open now when one of its active sessions matches, else closed meanwhile."""
    for s in found:
        listed = active.get(s.host_id.casefold())
        if s.end is not None or listed is None:
            continue
        as_sign_in = SignIn(s.host_id, s.user_name, s.target_id, s.target_ip, s.start, s.target)
        s.open_now = any(matching.matches(a, as_sign_in) for a in listed)


def open_past(found: Iterable[Session], now: datetime, limit: timedelta) -> list[Session]:
    """Open sessions that began longer ago than `limit` (and Bastion did not say were over)."""
    return [s for s in found if s.end is None and s.open_now is not False
            and now - s.start > limit]  # fmt: skip


def out_of_hours(found: Iterable[Session], hours: tuple[int, int]) -> list[Session]:
    """Sessions that began outside the working hours `[first, last)` (UTC)."""
    first, last = hours
    return [s for s in found if not first <= s.start.astimezone(UTC).hour < last]


def longest(found: Iterable[Session], n: int = 10) -> list[Session]:
    ended = [s for s in found if s.length is not None]
    return sorted(ended, key=lambda s: (s.length, s.start), reverse=True)[:n]
