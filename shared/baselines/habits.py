"""Per-account baselines and the findings they support. Pure code.

For each account the app remembers its first successful sign-in, and the first successful
sign-in from each source network (IPv4 /24, IPv6 /48), with each client (browser family and OS,
`agents`), to each target machine and in each hour of the day (UTC). Every value is a
*first sighting*: a minimum over events, ties broken by the event's key. Folding the same
events again, or in any order, gives the same baseline, so a replay, an out-of-order blob or
a backfill changes nothing it should not.

A finding is a function of the baseline (and of the failures stored just before a sign-in),
evaluated again whenever either changes:

- `new_source_success`: the first sign-in from a network, once the account is *armed* (its
  first sign-in lies at least `arm` before: a new deployment, a new hire, learn quietly), with
  at least one piece of context (a new network alone is a home, a hotel, a new lease):
  `off_hours` (inside the account's night: the longest run of hours of the day, at least
  `NIGHT`, with no sign-in before, an hour away from its edges), `first_time_target` (the
  account's first sign-in to that machine) and `failures_before` (more failed sign-ins from
  that address in the window before than typos explain, fewer than the threshold: more is the
  compromise rule's incident). One piece is low, two medium, three high.

Detection asks the baseline one more question (`known`): was a sign-in after failures made from
a network and with a client the account had signed in from before, to a machine it had used?
Then the failures read as a person who forgot a password, not as somebody guessing.

Each row also keeps the last UTC day a sign-in used it (`Last`): retention removes a row not
used within `RETENTION_DAYS` (a network unused that long is new again, and a person who left is
forgotten), and forgets the time of a first sighting older than that (`BEFORE`: "before the
retention window", still known).

An account keeps at most `MAX_ROWS` rows; beyond that nothing new is learned and nothing new is
found (an account with thousands of networks has no baseline worth the name).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from shared.core.domain import Severity
from shared.store import keys

ACCOUNT = "acct"
NET, TARGET, HOUR, CLIENT = "net|", "vm|", "hr|", "ua|"
#: Shortest run of never-used hours of the day that counts as an account's night.
NIGHT = 6
MAX_ROWS = 2000
#: The first sighting of a row whose time retention forgot: seen before the retention window.
BEFORE = datetime(1970, 1, 1, tzinfo=UTC)
#: Row fields of a first sighting (the finding pointer lives on network rows).
FIELDS = ("First", "FirstKey", "Ip", "Target", "Host", "Client")
#: Severity by how many context rules hold beside the new network: one is low (the digest
#: tells people), two make it medium (stolen credentials: a new network, at an hour the
#: account never works, to a machine it never touched), three high.
_LEVELS = (Severity.LOW, Severity.LOW, Severity.MEDIUM, Severity.HIGH)


@dataclass(frozen=True, slots=True)
class Sighting:
    """A successful sign-in, as the baseline needs it (`ip` is the canonical `ClientIpKey`)."""

    time: datetime
    key: str  # the event's RowKey
    ip: str
    target: str = ""
    host: str = ""
    client: str | None = None  # `clients.client_of` its agent; None: not recorded (old rows)


@dataclass(frozen=True, slots=True)
class Finding:
    """A first sign-in from a network of an armed account, with its context."""

    net: str  # the network row's key
    time: datetime
    severity: Severity
    context: tuple[str, ...]  # names of the context rules that hold, in a fixed order
    ip: str
    target: str
    host: str
    failures: int

    @property
    def rules(self) -> tuple[str, ...]:
        return ("new_source_success", *self.context)

    @property
    def signature(self) -> str:
        """What people are told about it: a change of any of this is a change of the row
        (the failure count too: failures that arrive after the sign-in raise it)."""
        parts = (self.time.isoformat(), self.severity.value, *self.rules, self.ip)
        return "|".join((*parts, str(self.failures)))


def network(ip: str) -> str:
    """The network a source address belongs to: its /24 (IPv4) or /48 (IPv6); anything that
    is not an address stands for itself."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def row_keys(s: Sighting) -> list[str]:
    """The baseline rows one sign-in can set: the account's, its network's, its target's (if
    named) and its hour of the day's."""
    out = [ACCOUNT, NET + keys.encode(network(s.ip)), f"{HOUR}{s.time.hour:02d}"]
    if s.target:
        out.append(TARGET + keys.encode(s.target.casefold()))
    if s.client is not None:
        out.append(CLIENT + keys.encode(s.client))
    return out


def known(rows: Mapping[str, Sighting], s: Sighting, trusted: bool = False) -> bool:
    """Had the account signed in before `s` from its network (or is it `trusted`: the
    organisation's own egress), with its client and (if named) to its machine? A sign-in whose
    client was not recorded is not known."""
    if s.client is None:
        return False
    for rk in row_keys(s):
        if rk == ACCOUNT or rk.startswith(HOUR) or (trusted and rk.startswith(NET)):
            continue
        first = rows.get(rk)
        if first is None or (first.time, first.key) >= (s.time, s.key):
            return False
    return True


#: `Last` is rewritten when it is this much older than a new use, not on every day of use: a
#: row used daily then costs a write a week, not a write a day (issue 25). Retention allows for
#: it (`stale_before`).
LAST_STEP = timedelta(days=7)


def refresh(last: str, day: str) -> bool:
    """Is a row whose `Last` is `last` ('': none) rewritten for a use on `day`?"""
    return last < (date.fromisoformat(day) - LAST_STEP).isoformat() if last else True


def stale_before(keep_from: str) -> str:
    """Rows whose `Last` is before this day were last used before `keep_from` (`Last` may lag
    a use by up to `LAST_STEP`): what retention removes."""
    return (date.fromisoformat(keep_from) - LAST_STEP).isoformat()


def last_days(new: Iterable[Sighting]) -> dict[str, str]:
    """Row -> the latest UTC day (`YYYY-MM-DD`) the new sign-ins use it (a maximum: any order
    of folding gives the same)."""
    out: dict[str, str] = {}
    for s in new:
        day = s.time.date().isoformat()
        for rk in row_keys(s):
            if out.get(rk, "") < day:
                out[rk] = day
    return out


def fold(rows: Mapping[str, Sighting], new: Iterable[Sighting]) -> dict[str, Sighting]:
    """Rows (by RowKey) whose first sighting the new sign-ins create or move earlier."""
    changed: dict[str, Sighting] = {}
    for s in sorted(new, key=lambda x: (x.time, x.key)):
        for rk in row_keys(s):
            current = changed.get(rk) or rows.get(rk)
            if current is not None and (current.time, current.key) <= (s.time, s.key):
                continue
            if current is None and len(rows) + len(changed) >= MAX_ROWS:
                continue  # full: learn nothing new
            changed[rk] = s
    return changed


def armed(rows: Mapping[str, Sighting], when: datetime, arm: timedelta) -> bool:
    first = rows.get(ACCOUNT)
    return first is not None and when - first.time >= arm


def off_hours(rows: Mapping[str, Sighting], when: datetime) -> bool:
    """Is `when` in the account's night, as its sign-ins before `when` draw it?"""
    seen = [h for h in range(24) if _before(rows.get(f"{HOUR}{h:02d}"), when)]
    if not seen:
        return False
    longest, start = 0, 0  # the longest circular run of unseen hours, and where it starts
    for i, h in enumerate(seen):
        nxt = seen[(i + 1) % len(seen)]
        run = (nxt - h - 1) % 24 if len(seen) > 1 else 23
        if run > longest:
            longest, start = run, (h + 1) % 24
    if longest < NIGHT:
        return False
    inside = (when.hour - start) % 24
    return 1 <= inside <= longest - 2  # an hour away from either edge


def _before(seen: Sighting | None, when: datetime) -> bool:
    return seen is not None and seen.time < when


def findings(
    rows: Mapping[str, Sighting],
    failures: Callable[[Sighting], int],
    arm: timedelta,
    threshold: int,
    typos: int = 2,
) -> dict[str, Finding]:
    """The account's `new_source_success` findings, by network row key. `failures(first)`
    counts failed sign-ins from its address in the window before (called for candidates).

    A new network alone is no finding: a first session from home, a hotel or a new lease is
    the commonest benign event there is. It becomes one with a second signal (an hour the
    account never works, a machine it never used, failures before), more signals, higher."""
    out: dict[str, Finding] = {}
    for rk, first in rows.items():
        if not rk.startswith(NET) or not armed(rows, first.time, arm):
            continue
        context = []
        if off_hours(rows, first.time):
            context.append("off_hours")
        target = rows.get(TARGET + keys.encode(first.target.casefold())) if first.target else None
        if target is not None and (target.time, target.key) >= (first.time, first.key):
            context.append("first_time_target")
        n = failures(first)
        if n >= threshold:
            continue  # the compromise rule's incident says it better
        if n > typos:  # a typo or two before a sign-in is what people do
            context.append("failures_before")
        if not context:
            continue
        severity = _LEVELS[min(len(context), len(_LEVELS) - 1)]
        out[rk] = Finding(rk, first.time, severity, tuple(context), first.ip, first.target,
                          first.host, n)  # fmt: skip
    return out
