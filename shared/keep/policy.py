"""What retention and erasure remove, decided without I/O. Pure code (`retain.py` does it).

Retention works a UTC day at a time. Every kept thing lives under keys that name its day, so an
expired day is a handful of known partitions and partition ranges (see `shared.store.layout`):

- events class (`RETENTION_DAYS`): the events of day D, found through the `ip|D` index partition
  (every event has a row there, holding its event keys); the `ip|D`, `vm|D` and `det|D`
  partitions; the `fail|D..` hours; each host's activity rows of D; the cursors of D's hour
  blobs (`cursor|D..`) whose blob is gone; detection retries older than the cut-off;
- alerts class (`ALERT_RETENTION_DAYS`): the alerts partition D (incidents, findings, heads);
- quarantine class (`QUARANTINE_RETENTION_DAYS`): each host folder's quarantine blobs of D.

A watermark row per class in the state table (`retention`, `<class>`) says through which day
everything is gone, so a daily run removes just the day that expired since the last one: its cost
follows the data expiring, not the data kept. The first run starts at the oldest day stored.

Erasure of a person: the name resolves to accounts (`layout.Resolution`), each erased alone. An
account's events are a PartitionKey range (`<account>|` .. `<account>|~`);
what derives from them (index rows, failure rows, detection buckets) is keyed from the events
themselves, so it is removed before them; alerts keep their row with the account replaced by a
marker (`[erased <day>]`) and a note of the erasure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from shared.core import text
from shared.core.domain import Kind
from shared.core.settings import Settings
from shared.notify import messages
from shared.store import keys, layout

EVENTS, ALERTS, QUARANTINE = "events", "alerts", "quarantine"
CLASSES = (QUARANTINE, ALERTS, EVENTS)  # the events class last: its cursors find quarantine
WATERMARK_PARTITION = "retention"
#: Partition ranges: [lo, hi) over PartitionKey (values as parameters, never in the text).
PK_RANGE = layout.PK_RANGE
#: Baseline rows no sign-in used since `@keep` (a day), and rows whose first sighting is older
#: than `@first` (a time): retention by last use (`shared.keep.expiry`).
UNUSED_SINCE = "PartitionKey ge @lo and PartitionKey lt @hi and Last lt @keep"
FIRST_BEFORE = "PartitionKey ge @lo and PartitionKey lt @hi and First lt @first"
#: Alert partitions are days: every one sorts between these.
ALERT_DAYS = ("0", ":")
#: Prefixes of the index partitions a day owns whole, and of its hour partitions.
DAY_PARTITIONS = (layout.IP_PREFIX, layout.VM_PREFIX, layout.DET_PREFIX)
ERASED_PREFIX = "~erased-"


@dataclass(frozen=True)
class Policy:
    """Days kept per class (0: for ever)."""

    events: int
    alerts: int
    quarantine: int

    @classmethod
    def of(cls, s: Settings) -> Policy:
        return cls(s.retention_days, s.alert_retention_days, s.quarantine_retention_days)

    def days(self, kind: str) -> int:
        return int(getattr(self, kind))


def first_kept(days: int, now: datetime) -> str | None:
    """The oldest day kept: all of every earlier day is more than `days` days old.
    None when the class is kept for ever."""
    if days <= 0:
        return None
    return (now.astimezone(UTC) - timedelta(days=days)).date().isoformat()


def next_day(day: str, step: int = 1) -> str:
    return (date.fromisoformat(day) + timedelta(days=step)).isoformat()


def expiring(keep_from: str | None, through: str | None, oldest: str | None) -> list[str]:
    """The days to remove now, oldest first: after the watermark `through` (else from the
    oldest day stored) up to the day before `keep_from`."""
    if keep_from is None:
        return []
    start = next_day(through) if through else oldest
    if not start or start >= keep_from:
        return []
    return keys.days(start, next_day(keep_from, -1))


def watermark(kind: str, through: str, removed: Mapping[str, int]) -> dict[str, Any]:
    return {"PartitionKey": WATERMARK_PARTITION, "RowKey": kind, "Through": through,
            "Removed": orjson.dumps(dict(removed)).decode()}  # fmt: skip


def day_of_partition(pk: str) -> str:
    """The day of a dated partition (`ip|D`, `fail|DTHH`, `cursor|DTHH`, `D`), '' if none."""
    tail = pk.rsplit("|", 1)[-1][:10]
    try:
        return date.fromisoformat(tail).isoformat()
    except ValueError:
        return ""


def day_range(prefix: str, day: str) -> dict[str, str]:
    """`PK_RANGE` parameters of the hour partitions `<prefix><day>THH`."""
    return {"lo": prefix + day, "hi": prefix + day + "~"}


def host_day(host_key: str, day: str) -> dict[str, str]:
    """`layout.SEEK` parameters of a host's active hours in one day (host registry RowKey)."""
    return {"pk": layout.HOST_PREFIX + host_key, "lo": day, "hi": day + "~"}


def quarantine_prefix(folder: str, day: str) -> str:
    """Quarantine documents are named after their source blob: a host folder's day."""
    d = date.fromisoformat(day)
    return f"{folder}y={d:%Y}/m={d:%m}/d={d:%d}/"


# -- erasure ------------------------------------------------------------------------------------
def account(name: str) -> str:
    """The account an erasure is about, by the identity rule ingest uses (`keys.user_key`)."""
    key = keys.identity(name)
    if not key:
        raise ValueError("name the account to erase (--user / ?user=): it is empty")
    return key


class Ambiguous(ValueError):
    """The name reaches more than one stored account: erasing them all must be asked for."""

    def __init__(self, found: layout.Resolution) -> None:
        super().__init__(
            f"{found.note()}; erase them all with --all-matches (all=true), or only the "
            "account of that very name with --exact (exact=true)"
        )
        self.found = found


class NoSuchAccount(LookupError):
    """Nothing is stored under the name: no account, no alias (or it was erased already)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such account: {text.cut(name, 200)!r} (nothing is stored under it)")


def redact_quarantine(
    lines: Iterable[dict[str, Any]], needles: Iterable[str], mark: str
) -> tuple[list[dict[str, Any]], int]:
    """A quarantine document's lines with every text that names the person (any of `needles`,
    without case) replaced by the erasure mark; the accounting (blob, offset, index, reason
    code) stays, so what was rejected is still known. Returns the lines and how many changed."""
    folded = {form.casefold() for n in needles if n for form in _forms(n)}
    out, changed = [], 0
    for line in lines:
        hit = False
        for field in ("Raw", "Reason"):
            value = line.get(field)
            if isinstance(value, str) and any(n in value.casefold() for n in folded):
                line = {**line, field: mark}
                hit = True
        changed += hit
        out.append(line)
    return out, changed


def _forms(name: str) -> tuple[str, ...]:
    """How a name appears in raw record text: as written and JSON-escaped (a backslash
    doubled, a non-ASCII letter as `\\uXXXX`); a name of one or two characters only as a
    whole JSON string (`"al"`), or it would take every text it is part of."""
    escaped = orjson.dumps(name).decode()[1:-1]
    ascii_ = json.dumps(name)[1:-1]
    forms = {name, escaped, ascii_}
    if len(name) < 3:
        return tuple(f'"{f}"' for f in forms)
    return tuple(forms)


def accounts_to_erase(
    found: layout.Resolution, literal_stored: bool, all_matches: bool
) -> tuple[str, ...]:
    """The accounts an erasure of a typed name removes: the literal one (a no-op when nothing
    is stored under it) and the others the name reaches. More than one account that holds
    records (two domains' `bob`, a shared `root` beside a person's own account) is refused
    unless `all_matches`: one person's erasure must not take another's evidence."""
    holding = len(found.others) + (1 if literal_stored else 0)
    if holding > 1 and not all_matches:
        raise Ambiguous(found)
    return found.accounts


def event_range(user: str) -> dict[str, str]:
    """`PK_RANGE` parameters of every event partition of an account (`<account>|<hour>`)."""
    prefix = keys.subject_prefix(user)
    return {"lo": prefix, "hi": prefix + "~"}


def marker(today: str) -> str:
    return f"[erased {today}]"


def derived_keys(events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(PartitionKey, RowKey) of the index rows an account's events made: `ip|` rows and the
    account's `fail|<hour>` rows (the IPs' failure rows are other people's too)."""
    out = []
    for row in layout.index_rows(events):  # type: ignore[arg-type]
        if row["PartitionKey"].startswith(layout.FAIL_PREFIX) and row["Kind"] != "user":
            continue
        out.append((row["PartitionKey"], row["RowKey"]))
    return out


#: The `vm|<day>` rows earlier versions wrote for an account's events (one filtered read a day).
LEGACY_VM_ROWS = "PartitionKey eq @pk and EventPartitionKey ge @lo and EventPartitionKey lt @hi"


def legacy_vm_rows(user: str, day: str) -> dict[str, str]:
    """`LEGACY_VM_ROWS` parameters: an account's rows of one day in `vm|<day>`."""
    lo, hi = keys.hour_range(user, f"{day}T00", f"{day}T23")
    return {"pk": layout.VM_PREFIX + day, "lo": lo, "hi": hi}


def user_buckets(user: str, day: str) -> dict[str, str]:
    """`layout.SEEK` parameters of an account's detection buckets of one day."""
    prefix = layout.actor_prefix(Kind.USER, user)
    return {"pk": layout.bucket_partition(day), "lo": prefix, "hi": prefix + "~"}


def ip_buckets(ip: str, day: str) -> dict[str, str]:
    """`layout.SEEK` parameters of an IP's buckets (and marks) of one day."""
    prefix = layout.actor_prefix(Kind.IP, ip)
    return {"pk": layout.bucket_partition(day), "lo": prefix, "hi": prefix + "~"}


def _names(raw: object, user: str, mark: str) -> tuple[list[str], bool]:
    try:
        names = orjson.loads(str(raw or "[]"))
    except orjson.JSONDecodeError:
        return [], False
    if not isinstance(names, list):
        return [], False
    out = [mark if isinstance(n, str) and keys.identity(n) == user else n for n in names]
    return out, out != names


def redact_bucket(row: Mapping[str, Any], user: str, mark: str) -> dict[str, Any] | None:
    """An IP's bucket or mark with the account's name replaced (merge), 'delete' for the
    account's own marks, None when it does not name the account."""
    if layout.is_mark(dict(row)) and keys.identity(str(row.get("User", ""))) == user:
        return {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "delete": True}
    change: dict[str, Any] = {}
    for name in ("Users", "Winners"):
        names, changed = _names(row.get(name), user, mark)
        if changed:
            change[name] = layout.names_json(names)
    if not change:
        return None
    return {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], **change}


def _owned(row_key: str, user: str) -> str:
    """The RowKey prefix that names the account in an alerts row's key ('' when none)."""
    enc = keys.encode(user)
    prefix = layout.actor_prefix(Kind.USER, user)
    if row_key.startswith(prefix):
        return prefix
    if row_key.startswith(layout.FINDING_PREFIX):
        parts = row_key.split("|")
        if len(parts) > 3 and parts[2] == enc:
            return "|".join(parts[:3]) + "|"
    return ""


def redact_alert(
    row: Mapping[str, Any], user: str, mark: str, token: str
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Transaction operations (one partition) that take the account out of an alerts row:
    its head rows go, rows keyed by it are re-keyed (`~erased-<token>`), others rewritten.
    [] when the row does not name the account (so a re-run changes nothing)."""
    pk, rk = str(row["PartitionKey"]), str(row["RowKey"])
    owned = _owned(rk, user)
    if owned and rk.endswith("|" + layout.HEAD):
        return [("delete", {"PartitionKey": pk, "RowKey": rk}, {})]
    new = dict(row)
    changed = bool(owned)
    if str(new.get("SubjectKind", "")) == "user" and keys.identity(str(new.get("Subject"))) == user:
        new["Subject"], changed = mark, True
    for name in ("Users", "CompromisedUsers"):
        names, hit = _names(new.get(name), user, mark)
        if hit:
            new[name], changed = layout.names_json(names), True
    if not changed:
        return []
    note = f"{mark}: an account was erased from this alert"
    new["Erasure"] = "; ".join(filter(None, (str(row.get("Erasure") or ""), note)))[:1000]
    if {"Rule", "Severity", "SubjectKind", "FailureCount", "FirstSeen", "LastSeen"} <= new.keys():
        new["Summary"] = messages.summary(new)
    if not owned:
        return [("update", new, {"etag": _etag(row)})]
    parts = rk[len(owned) - 1 :]  # `|<first seen>` or `|<network>`
    new["RowKey"] = owned[: -len(keys.encode(user)) - 1] + ERASED_PREFIX + token + parts
    return [("delete", {"PartitionKey": pk, "RowKey": rk}, {"etag": _etag(row)}),
            ("upsert", new, {})]  # fmt: skip


def _etag(row: Mapping[str, Any]) -> str:
    meta = getattr(row, "metadata", None) or {}
    return str(meta.get("etag") or "")
