"""Where things live in the tables: partition and row keys, the rows derived from events, and
the filters that read them back. Pure code; every other module asks this one.

Events (events table): `<encoded user key>|<yyyy-MM-ddTHH>`, RowKey `<UTC time>Z-<digest>`.

Index table: per event, one row in `ip|<day>`, keyed `<encoded ip>|<event RowKey>` and copying
the fields a result shows (`INDEX_FIELDS`, and `TargetVMKey`, the machine's name casefolded), so
an IP question is one RowKey-range seek per day, a machine question one filtered read of the
day's partition, and one invocation's index rows share a few partitions (earlier versions also
wrote a `vm|<day>` row per event: one row per record more, for one question only);
`fail|<hour>` lists the users and IPs that failed in that hour, and the minutes (`M07`: a
property each writer merges in); `who` holds one row per (alias,
account), `<encoded alias>|<encoded account>` (`alias_rows`), so what a person types resolves
to accounts with one RowKey seek (`resolution`).

Cursors (state table): `cursor|<yyyy-MM-ddTHH>` for hour blobs (the sweep reads a few hours in
one query each; retention drops old hours whole), `cursor` for any other blob name.

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

import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson

from shared.core import text
from shared.core.domain import Bucket, Kind, Mark, Outcome
from shared.store import keys
from shared.store.entities import EventRow

IP_PREFIX, VM_PREFIX, FAIL_PREFIX = "ip|", "vm|", "fail|"
#: A `fail|<hour>` row's property for a minute its subject failed in (`M00`..`M59`).
FAIL_MINUTE = "M{:02d}"
INDEX_FIELDS = (
    "TimeGenerated",
    "UserName",
    "UserKey",
    "ClientIpAddress",
    "ClientIpKey",
    "ClientPort",
    "TargetVMName",
    "TargetResourceId",
    "TargetVMIPAddress",
    "Protocol",
    "Message",
    "Outcome",
    "BastionHostName",
    "UserAgent",  # detection tells a person retrying from somebody guessing by it
)
CURSOR_PARTITION = "cursor"
#: Actors whose detection failed alone, for the retry timer (state table).
RETRY_PARTITION = "detect-retry"
#: The hour folders Azure Monitor writes: `.../y=YYYY/m=MM/d=DD/h=HH/...`.
HOUR_PATH = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/")
#: The filters every reader uses (values always go in as parameters).
PARTITION = "PartitionKey eq @pk"
SEEK = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
PK_RANGE = "PartitionKey ge @lo and PartitionKey lt @hi"
#: One account's events in `[start, end)`: its hour partitions, then the time (`account_window`).
ACCOUNT_WINDOW = PK_RANGE + " and TimeGenerated ge @start and TimeGenerated lt @end"

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
    if b.retried:
        entity["R"] = b.retried
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
        minute=utc(row["Minute"]),
        failures=int(row.get("F", 0)),
        before_success=int(row.get("Fb", 0)),
        successes=int(row.get("S", 0)),
        first_failure=utc(row.get("T0")),
        last_failure=utc(row.get("T1")),
        first_success=utc(row.get("S0")),
        last_success=utc(row.get("S1")),
        users=orjson.loads(row.get("Users") or "[]"),
        user_hashes=list(struct.unpack(f">{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])),
        success_users=orjson.loads(row.get("Winners") or "[]"),
        ips=[(ip, int(n)) for ip, n in orjson.loads(row.get("Ips") or "[]")],
        targets=orjson.loads(row.get("Targets") or "[]"),
        hosts=orjson.loads(row.get("Hosts") or "[]"),
        retried=int(row.get("R", 0)),
    )


def mark_from(row: dict[str, Any], ip: str) -> Mark:
    return Mark(
        ip=ip,
        minute=utc(row["Minute"]),
        user=row["User"],
        time=utc(row["Time"]),
        targets=tuple(orjson.loads(row.get("Targets") or "[]")),
        hosts=tuple(orjson.loads(row.get("Hosts") or "[]")),
    )


def utc(value: Any) -> Any:
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


def days_from(first: str, last: str) -> list[str]:
    """The days `first`..`last` (ISO dates), both included."""
    lo = datetime.fromisoformat(first).replace(tzinfo=UTC)
    return days_between(lo, datetime.fromisoformat(last).replace(tzinfo=UTC))


def day_runs(days: Iterable[str]) -> list[tuple[str, str]]:
    """Sorted ISO days as runs of consecutive days: (first, last) each."""
    runs: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if runs and days_from(runs[-1][1], day)[1:] == [day]:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def day_partitions(first: str, last: str) -> dict[str, str]:
    """`PK_RANGE` parameters for the day partitions `first`..`last` of the alerts table."""
    return {"lo": first, "hi": last + "~"}


# -- baselines and findings --------------------------------------------------------------------
PROFILE_PREFIX = "prof|"
FINDING_PREFIX = "find|"


def profile_partition(user: str) -> str:
    """An account's baseline: one partition of the index table (see `shared.baselines.habits`)."""
    return PROFILE_PREFIX + keys.encode(user)


def finding_key(user: str, net: str) -> str:
    """RowKey of an account's new-network finding in its day's alerts partition (`net` is
    the baseline's encoded network)."""
    return f"{FINDING_PREFIX}new_source_success|{keys.encode(user)}|{net}"


# -- host activity -----------------------------------------------------------------------------
HOSTS = "hosts"  # one row per Bastion host seen (index table)
HOST_PREFIX = "host|"


def host_key(host_id: str) -> str:
    """A host's key: its resource ID, case-folded (two hosts of one name in two subscriptions
    or resource groups are two hosts). Rows written before issue 23 used the bare name, which
    cannot collide with an ID (an ID starts with '/')."""
    return keys.encode(host_id.casefold())


def host_partition(host_id: str) -> str:
    """A host's active hours: one row per UTC hour with records (`yyyy-MM-ddTHH`)."""
    return HOST_PREFIX + host_key(host_id)


def host_hour_entity(host_id: str, hour: str) -> dict[str, Any]:
    return {"PartitionKey": host_partition(host_id), "RowKey": hour,
            "Host": host_name(host_id)}  # fmt: skip


def host_entity(host_id: str, folder: str) -> dict[str, Any]:
    return {"PartitionKey": HOSTS, "RowKey": host_key(host_id), "Host": host_name(host_id),
            "HostId": host_id, "Folder": folder}  # fmt: skip


def host_name(host_id: str) -> str:
    """The name part of a host's resource ID (the ID itself if it has no '/')."""
    return host_id.rstrip("/").rpartition("/")[2]


def host_labels(host_ids: Iterable[str]) -> dict[str, str]:
    """How people see each host: its name, or, where two hosts share the name, the name with
    its subscription (shortened while that tells them apart) and resource group."""
    by_name: dict[str, list[str]] = {}
    for host_id in sorted(set(host_ids)):
        by_name.setdefault(host_name(host_id).casefold(), []).append(host_id)
    out: dict[str, str] = {}
    for same in by_name.values():
        if len(same) == 1:
            out[same[0]] = host_name(same[0])
            continue
        short = {h: _host_label(h, 4) for h in same}
        full = len(set(short.values())) < len(same)
        out.update({h: _host_label(h, 0) for h in same} if full else short)
    return out


def _host_label(host_id: str, digits: int) -> str:
    parts = host_id.split("/")
    upper = [p.upper() for p in parts]

    def after(word: str) -> str:
        return parts[upper.index(word) + 1] if word in upper[:-1] else "?"

    sub = after("SUBSCRIPTIONS")
    sub = sub[:digits] + "\u2026" if digits and len(sub) > digits else sub
    return f"{host_name(host_id)} (sub {sub}, {after('RESOURCEGROUPS')})"


def host_folder(blob_name: str) -> str:
    """The folder of a host's hour blobs (`.../BASTIONHOSTS/<host>/`), '' if not one."""
    cut = blob_name.find("/y=")
    return blob_name[: cut + 1] if cut > 0 and hour_of_blob(blob_name) else ""


def silence_key(host: str, since: datetime) -> str:
    return f"{FINDING_PREFIX}host_silent|{keys.encode(host.casefold())}|{since:%Y-%m-%dT%H}"


def diagnostic_key(host: str, verdict: str) -> str:
    return f"{FINDING_PREFIX}diagnostic_setting_changed|{keys.encode(host.casefold())}|{verdict}"


#: One row per Bastion host of the covered subscriptions (state table): its last verdict.
COVERAGE = "coverage"


def coverage_entity(
    host_id: str,
    subscription: str,
    sku: str,
    verdict: str,
    detail: str,
    since: datetime,
    checked: datetime,
) -> dict[str, Any]:
    """A host's coverage: the verdict, since when its host has been covered or not, and when
    it was last asked."""
    return {"PartitionKey": COVERAGE, "RowKey": host_key(host_id), "HostId": host_id,
            "Host": host_name(host_id), "Subscription": subscription, "Sku": sku,
            "Verdict": verdict, "Detail": detail, "Since": since, "CheckedAt": checked}  # fmt: skip


def coverage_key(host_id: str, news: str, since: datetime) -> str:
    """The alert row of a host's coverage news (`uncovered`, `covered`) that began at `since`."""
    return (
        f"{FINDING_PREFIX}coverage|{keys.encode(host_id.casefold())}|{news}|{since:%Y-%m-%dT%H%M}"
    )


# -- events and their index rows --------------------------------------------------------------
def account_window(account: str, start: datetime, end: datetime) -> dict[str, Any]:
    """The parameters of `ACCOUNT_WINDOW`: the account's hour partitions that hold `[start,
    end)` (one PartitionKey range query, as `activity --user` reads)."""
    last = (end - timedelta(microseconds=1)).isoformat()
    lo, hi = keys.hour_range(account, keys.hour_of(start.isoformat()), keys.hour_of(last))
    return {"lo": lo, "hi": hi, "start": start, "end": end}


def time_key(when: datetime) -> str:
    """The leading part of event RowKeys at `when` (they start with the UTC time)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")[:26]


def index_rows(events: Iterable[EventRow]) -> Iterator[dict[str, Any]]:
    """The index rows for stored events (each key once, as a transaction requires)."""
    fails: dict[tuple[str, str, str], set[int]] = {}
    for e in events:
        hour = e["PartitionKey"].rsplit("|", 1)[1]
        day = hour[:10]
        fields = cast("Mapping[str, Any]", e)
        row = {name: fields[name] for name in INDEX_FIELDS if name in fields}
        row["EventPartitionKey"] = e["PartitionKey"]
        row["EventRowKey"] = event_key = e["RowKey"]
        ip_prefix = keys.subject_prefix(e["ClientIpKey"])
        if e["TargetVMName"]:
            row["TargetVMKey"] = e["TargetVMName"].casefold()
        yield {**row, "PartitionKey": IP_PREFIX + day, "RowKey": ip_prefix + event_key}
        if e["Outcome"] == Outcome.FAILURE.value:
            minute = e["TimeGenerated"].minute
            if keys.identified(e["UserKey"]):  # no identity: no account to detect over
                fails.setdefault((hour, "user", e["UserKey"]), set()).add(minute)
            fails.setdefault((hour, "ip", e["ClientIpKey"]), set()).add(minute)
    for (hour, kind, subject), minutes in sorted(fails.items()):
        yield {
            "PartitionKey": FAIL_PREFIX + hour,
            "RowKey": f"{kind}|{keys.encode(subject)}",
            "Kind": kind,
            "Subject": subject,
            **dict.fromkeys(map(FAIL_MINUTE.format, sorted(minutes)), True),
        }


def failed_minutes(row: Mapping[str, Any]) -> set[int] | None:
    """The minutes of its hour a `fail|<hour>` row says its subject failed in; None: any (a
    row from before the minutes were kept). Writers merge their minutes into the row."""
    minutes = {int(k[1:]) for k in row if k.startswith("M") and k[1:].isdigit() and row[k]}
    return minutes or None


# -- identities: what a person types -> the accounts their records are stored under ---------
ALIASES = "who"
#: More accounts than this for one name is no longer a person: name one of them exactly.
MAX_ACCOUNTS = 20


def alias_rows(events: Iterable[EventRow]) -> Iterator[dict[str, Any]]:
    """One `who` row per (alias, account) of stored events, each once (`keys.aliases`):
    RowKey `<encoded alias>|<encoded account>`, so a name's accounts are one RowKey seek and
    re-storing records rewrites the same rows."""
    seen: set[tuple[str, str]] = set()
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        pair = (e.get("UserName", ""), e.get("UserEmail", ""))
        if pair in seen:
            continue
        seen.add(pair)
        account = e["UserKey"]
        for term in keys.aliases(*pair, account) if account else ():
            rk = f"{keys.encode(term)}|{keys.encode(account)}"
            rows[rk] = {"PartitionKey": ALIASES, "RowKey": rk, "Account": account}
    yield from rows.values()


def alias_seek(typed: str) -> dict[str, str]:
    """`SEEK` parameters of the `who` rows of what a person typed (`}` follows `|`)."""
    prefix = keys.encode(keys.identity(typed))
    return {"pk": ALIASES, "lo": prefix + "|", "hi": prefix + "}"}


@dataclass(frozen=True)
class Resolution:
    """The accounts a typed name reaches: the literal one (the identity rule) and those whose
    records carry it as an e-mail, a bare name or a local part (`others`, sorted)."""

    typed: str
    literal: str
    others: tuple[str, ...] = ()

    @property
    def accounts(self) -> tuple[str, ...]:
        return (self.literal, *self.others)

    @property
    def widened(self) -> bool:
        """More than the literal account was reached: the answer must say which."""
        return bool(self.others)

    @property
    def ambiguous(self) -> bool:
        """Two or more other accounts (two domains with one bare name, a shared account such
        as `root` beside a person's own): shown, never silently merged or dropped."""
        return len(self.others) > 1

    def matched(self) -> list[dict[str, str]]:
        return [{"account": self.literal, "via": "as typed"}] + [
            {"account": a, "via": keys.alias_via(self.literal, a)} for a in self.others
        ]

    def note(self) -> str:
        """One line for people: which accounts the name matched, and why."""
        listed = ", ".join(f"{text.plain(m['account'], 80)} ({m['via']})" for m in self.matched())
        what = "is ambiguous: it matched" if self.ambiguous else "matched"
        return f'"{text.plain(self.typed, 80)}" {what} {len(self.accounts)} accounts: {listed}'


def resolution(typed: str, rows: Iterable[Mapping[str, Any]]) -> Resolution:
    """The accounts of what a person typed, from its `who` rows (`alias_seek`)."""
    literal = keys.identity(typed)
    others = sorted({str(r["Account"]) for r in rows} - {literal, ""})
    return Resolution(typed, literal, tuple(others))


def index_seek(
    prefix: str, subject: str, day: str, lo: datetime | None = None, hi: datetime | None = None
) -> dict[str, str]:
    """`SEEK` parameters for a subject's index rows of one day (`ip|` or `vm|`), optionally
    only those whose event time is in [lo, hi)."""
    rk = keys.subject_prefix(subject)
    return {
        "pk": prefix + day,
        "lo": rk + (time_key(lo) if lo else ""),
        "hi": rk + (time_key(hi) if hi else "~"),
    }


# -- cursors -----------------------------------------------------------------------------------
def cursor_partition(blob_name: str) -> str:
    hour = hour_of_blob(blob_name)
    return f"{CURSOR_PARTITION}|{hour}" if hour else CURSOR_PARTITION


def hour_of_blob(blob_name: str) -> str:
    """`yyyy-MM-ddTHH` of an hour blob's folders, '' for any other name."""
    match = HOUR_PATH.search("/" + blob_name)
    return "" if not match else "{}-{}-{}T{}".format(*match.groups())


def host_id_of_blob(blob_name: str) -> str:
    """The resource ID of the Bastion host a blob (or host folder) is under, from its folders
    (`/SUBSCRIPTIONS/<sub>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.NETWORK/BASTIONHOSTS/<host>`,
    the last `SUBSCRIPTIONS` before the host), else '': the host's key, not its name."""
    parts = blob_name.split("/")
    upper = [p.upper() for p in parts]
    if "BASTIONHOSTS" not in upper[:-1] or not parts[upper.index("BASTIONHOSTS") + 1]:
        return ""
    end = upper.index("BASTIONHOSTS") + 2
    start = max((i for i in range(end) if upper[i] == "SUBSCRIPTIONS"), default=end - 2)
    return "/" + "/".join(parts[start:end])


def host_of_blob(blob_name: str) -> str:
    """The Bastion host folder a blob is under (`.../BASTIONHOSTS/<host>/...`), else ''."""
    parts = blob_name.split("/")
    upper = [p.upper() for p in parts]
    if "BASTIONHOSTS" in upper:
        i = upper.index("BASTIONHOSTS")
        if i + 1 < len(parts):
            return parts[i + 1]
    return ""
