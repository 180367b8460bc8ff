"""Which Bastion sessions a compromise may end (issue 27, part 1). Pure: ARM's answers and the
incident's sign-ins in, a plan and its outcome out.

When a CRITICAL incident says an account signed in after a guessing campaign, the attacker may
be on the machine now. Bastion says who is connected (`getActiveSessions`) and ends sessions by
id (`disconnectActiveSessions`, body `{"sessionIds": [...]}`); each active session carries
`sessionId`, `startTime`, `userName`, `protocol`, `targetResourceId`, `targetIpAddress` and
`sessionDurationInMins`, and each id of a disconnect comes back `Disconnected`, `Failed` or
`NotFound` (Azure REST reference, Network, `2025-05-01`).

A session is ended only when it matches one of the incident's sign-ins on all four counts: the
same Bastion host (it is asked per host), the same account (compared as accounts are compared,
`keys.identity`), the same target (resource id, else the target's address) and a start within
`SLACK` of the sign-in. Whatever else is connected is left alone, and an account on the
break-glass list (`BREAK_GLASS_ACCOUNTS`) is never ended. In `dry-run`, nothing is ended and the
plan says which sessions would have been.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import ciso8601

from shared.core import text
from shared.store import keys

#: How far a session's start may lie from the sign-in that opened it.
SLACK = timedelta(minutes=5)
#: Most sessions one reply is read for (a host with more is named in the error).
MAX_SESSIONS = 10_000
OFF, DRY_RUN, ON = "off", "dry-run", "on"
#: What the plan says of one session (or of a sign-in with none), and what became of it.
TO_END, ENDED, WOULD_END, FAILED, NOT_FOUND, SPARED, NONE = (
    "to end", "ended", "would end", "failed", "not found", "spared (break-glass account)",
    "no matching session",
)  # fmt: skip


@dataclass(frozen=True)
class Session:
    """One active session as `getActiveSessions` describes it."""

    session_id: str
    user: str
    target_id: str
    target_ip: str
    protocol: str
    start: datetime | None


@dataclass(frozen=True)
class SignIn:
    """A sign-in the incident says an attacker made (a stored record of it)."""

    host_id: str
    user: str  # the record's userName, verbatim
    target_id: str
    target_ip: str
    time: datetime
    target: str  # how people see the machine


@dataclass(frozen=True)
class Action:
    """What the response did, or would do, about one session (or a sign-in with none)."""

    session_id: str
    account: str
    target: str
    host_id: str
    result: str

    def json(self) -> dict[str, str]:
        """As written on the incident: every value cut to a length a row can hold many of."""
        return {"sessionId": self.session_id[:200], "account": self.account[:200],
                "target": self.target[:200], "host": self.host_id.rsplit("/", 1)[-1][:100],
                "result": self.result}  # fmt: skip


def page(body: Any) -> tuple[list[Any], str | None]:
    """The items and `nextLink` of one page of a Bastion listing. Raises ValueError for a
    body that is not one."""
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        raise ValueError("not a page of a Bastion listing")
    link = body.get("nextLink")
    return list(body["value"]), link if isinstance(link, str) and link else None


def sessions(items: Iterable[Any]) -> list[Session]:
    """The well-formed sessions of `getActiveSessions`; an entry without a usable id is skipped
    (it could not be ended by id anyway)."""
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        sid = item.get("sessionId")
        if not isinstance(sid, str) or not sid.strip() or len(sid) > 200:
            continue
        out.append(Session(sid, _str(item, "userName"), _str(item, "targetResourceId"),
                           _str(item, "targetIpAddress"), _str(item, "protocol"),
                           _time(item.get("startTime"))))  # fmt: skip
    return out


def _str(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    return value.strip() if isinstance(value, str) else ""


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = ciso8601.parse_datetime(value)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def matches(session: Session, sign_in: SignIn) -> bool:
    """The same account, the same target, and a start within `SLACK` of the sign-in."""
    if not sign_in.user or keys.identity(session.user) != keys.identity(sign_in.user):
        return False
    if session.target_id and sign_in.target_id:
        same = session.target_id.casefold() == sign_in.target_id.casefold()
    else:
        same = bool(session.target_ip) and session.target_ip == sign_in.target_ip
    return same and session.start is not None and abs(session.start - sign_in.time) <= SLACK


def plan(
    sign_ins: Sequence[SignIn],
    active: Mapping[str, Sequence[Session]],
    break_glass: frozenset[str],
    mode: str,
) -> list[Action]:
    """For each sign-in, the sessions of its host that match it: to end (`would end` in
    dry-run), or spared for a break-glass account; a sign-in no session matches is said so.
    `active` holds each host's sessions (by host id, case-folded)."""
    out: dict[str, Action] = {}
    missing = []
    for s in sign_ins:
        found = [x for x in active.get(s.host_id.casefold(), ()) if matches(x, s)]
        if not found:
            missing.append(Action("", s.user, s.target, s.host_id, NONE))
        for x in found:
            spared = keys.identity(x.user) in break_glass
            result = SPARED if spared else WOULD_END if mode == DRY_RUN else TO_END
            out.setdefault(x.session_id, Action(x.session_id, x.user, s.target, s.host_id, result))
    told = {(a.account, a.target) for a in out.values()}
    return [*out.values(), *(m for m in missing if (m.account, m.target) not in told)]


def states(items: Iterable[Any]) -> dict[str, str]:
    """Each id of a `disconnectActiveSessions` reply, and what became of it."""
    out = {}
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("sessionId"), str):
            state = item.get("state") or item.get("message") or ""
            out[item["sessionId"]] = str(state)
    return out


def outcome(actions: Sequence[Action], replied: Mapping[str, str]) -> list[Action]:
    """The plan as the disconnect left it: each session ended, failed or not found (an id the
    reply does not name failed)."""
    result = {"disconnected": ENDED, "notfound": NOT_FOUND}
    return [
        replace(a, result=result.get(replied.get(a.session_id, "").casefold(), FAILED))
        if a.result == TO_END
        else a
        for a in actions
    ]


def to_end(actions: Sequence[Action]) -> list[str]:
    return [a.session_id for a in actions if a.result == TO_END]


def summary(mode: str, actions: Sequence[Action], error: str = "") -> str:
    """One line for people: what was done (or would be, or failed, and why)."""
    if error:
        return f"Active response ({mode}) could not act: {error}"
    if not actions:
        return f"Active response ({mode}): no sign-in of the incident to look for"
    parts = []
    for a in actions[:10]:
        who = f"{text.quoted(a.account, 60)} on {text.quoted(a.target, 60)}"
        where = f"via {text.quoted(a.host_id.rsplit('/', 1)[-1], 60)}"
        sid = f"session {text.quoted(a.session_id, 80)} of " if a.session_id else ""
        parts.append(f"{a.result}: {sid}{who} {where}")
    more = f" (+{len(actions) - 10} more)" if len(actions) > 10 else ""
    return f"Active response ({mode}): " + "; ".join(parts) + more
