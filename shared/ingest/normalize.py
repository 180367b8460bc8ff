"""Normalize one raw `BastionAuditLogs` record into a flat Table entity.

Property names follow the Log Analytics table `MicrosoftAzureBastionAuditLogs`, so queries and
habits carry over. Field names are matched without case (exports and hand-made files vary);
properties we do not know are kept, as JSON in `Extra`, rather than dropped. Pure code.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, cast

import ciso8601
import orjson

from shared.core.domain import Outcome
from shared.store import keys
from shared.store.entities import EventRow

CATEGORY = "bastionauditlogs"
#: Longest user name + e-mail (and client IP text) we store; real ones are far shorter, and
#: NFC can triple the length of the `UserKey` made from them (a few characters decompose).
MAX_IDENTITY_CHARS = 2048
#: A Table string property holds 64 KiB of UTF-16: 32K BMP characters.
MAX_EXTRA_CHARS = 32 * 1024
_UTC = UTC
#: The caches below are keyed by strings from the log, which may be 32 KiB each: only values
#: up to these lengths are cached (Azure resource ids are at most a few hundred characters), so
#: each cache holds at most maxsize x (key + value) bytes: 8,192 x ~1 KiB for IPs, 4,096 x
#: ~4 KiB for target VMs, 256 x ~4 KiB for Bastion hosts. Longer values are computed anew.
_SHORT = keys.CACHE_KEY_CHARS
_RESOURCE_ID = 512


class Rejected(ValueError):
    """The record cannot be stored; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# Raw property name (as Azure writes it) -> entity property name.
_TEXT_PROPS = {
    "userName": "UserName",
    "userEmail": "UserEmail",
    "userAgent": "UserAgent",
    "clientIpAddress": "ClientIpAddress",
    "protocol": "Protocol",
    "targetResourceId": "TargetResourceId",
    "targetVMIPAddress": "TargetVMIPAddress",
    "message": "Message",
    "resourceType": "ResourceType",
    "tunnelId": "TunnelId",
    "subscriptionId": "TargetSubscriptionId",
    "sessionEndTime": "SessionEndTime",
}
_TEXT_KEYS = tuple(_TEXT_PROPS)
_TEXT_NAMES = tuple(_TEXT_PROPS.values())
_EMPTY_TEXTS = ("",) * len(_TEXT_KEYS)
_ONLY_STR = {str}
_INT_PROPS = {"clientPort": "ClientPort", "duration": "Duration"}
_TIME_PROPS = {"sessionStartTime": "SessionStartTime"}
_TOP = ("time", "resourceId", "operationName", "category", "location", "level", "properties")
#: Top-level fields the docs show that repeat other fields or are pipeline internals.
_DROPPED = ("FluentdIngestTimestamp", "Region", "CustomerSubscriptionId")
_KNOWN_PROPS = frozenset((*_TEXT_PROPS, *_INT_PROPS, *_TIME_PROPS))
_KNOWN_TOP = frozenset((*_TOP, *_DROPPED))
# Lower-case spellings, including the Log Analytics column names, -> canonical raw name.
_PROP_ALIASES = {k.lower(): k for k in _KNOWN_PROPS} | {
    v.lower(): k for k, v in (_TEXT_PROPS | _INT_PROPS | _TIME_PROPS).items()
}
_TOP_ALIASES = {k.lower(): k for k in _KNOWN_TOP} | {
    "timegenerated": "time",
    "type": "category",
    "_resourceid": "resourceId",
}


def normalize(value: object, source_blob: str, offset: int, index: int) -> EventRow:
    """Entity for one record, keys included; raises `Rejected` for records we must not store."""
    top, props, extra = _shape(value)
    when, stamp = _when(top)
    get = props.get
    texts = list(map(get, _TEXT_KEYS, _EMPTY_TEXTS))
    if set(map(type, texts)) != _ONLY_STR:
        texts = [_text(v, k) for v, k in zip(texts, _TEXT_KEYS, strict=True)]
    entity: dict[str, Any] = dict(zip(_TEXT_NAMES, texts, strict=True))
    (user_name, user_email, _, ip, _, target, _, message, *_) = texts
    port, duration = _numbers(get, entity)
    resource_id = top.get("resourceId", "")
    if resource_id.__class__ is not str:
        resource_id = _text(resource_id, "resourceId")
    operation = _text(top.get("operationName"), "operationName")
    if len(user_name) + len(user_email) > MAX_IDENTITY_CHARS:  # NFC may triple it
        raise Rejected("bad_field", "userName/userEmail too long")
    if len(ip) > MAX_IDENTITY_CHARS:
        raise Rejected("bad_field", "clientIpAddress too long")
    user = keys.user_key(user_name, user_email)
    entity.update(
        {
            "TimeGenerated": when,
            "OperationName": operation,
            "Location": _text(top.get("location"), "location"),
            "Level": _text(top.get("level"), "level"),
            "BastionResourceId": resource_id,
            **_resource_parts(resource_id),
            "TargetVMName": vm_name(target),
            "Outcome": outcome(message).value,
            "UserKey": user,
            "ClientIpKey": ip_key(ip),
            "SourceBlob": source_blob,
            "SourceOffset": offset,
            "SourceIndex": index,
        }
    )
    if extra:
        entity["Extra"] = _extra_text(extra)
    identity = "\x1f".join(
        (stamp, resource_id, operation, str(port), str(duration), *texts)
    ).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(identity, digest_size=10).hexdigest()
    entity["PartitionKey"] = keys.partition_key(user, stamp[:13])
    entity["RowKey"] = keys.row_key(stamp, digest)
    return cast(EventRow, entity)


def _shape(value: object) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The record's top level and properties under their documented names, and whatever
    else it holds (kept as `Extra`). Exports put the properties at the top level."""
    if not isinstance(value, dict):
        raise Rejected("not_an_object", type(value).__name__)
    fast = value.keys() <= _KNOWN_TOP
    top = value if fast else _canonical(value, _TOP_ALIASES)
    props = top.get("properties")
    flat = props is None
    if flat:
        props = _canonical({k: v for k, v in top.items() if k not in _KNOWN_TOP}, _PROP_ALIASES)
    elif not isinstance(props, dict):
        raise Rejected("bad_field", "properties is not an object")
    elif not props.keys() <= _KNOWN_PROPS:
        fast = False
        props = _canonical(props, _PROP_ALIASES)
    extra = None if fast else _extras({} if flat else top, props)
    return top, props, extra


def _when(top: dict[str, Any]) -> tuple[datetime, str]:
    """The record's time, checked to be a Bastion audit record's: as a datetime, and as
    fixed-width UTC text (sorts as text)."""
    category = top.get("category")
    if not isinstance(category, str) or category.casefold() not in (
        CATEGORY,
        "microsoftazurebastionauditlogs",
    ):
        raise Rejected("wrong_category", repr(category)[:100])
    when = _time(top.get("time"), "time")
    raw: str = top["time"]  # text: `_time` checked it
    # Azure writes `...:SS.fffZ`: slicing it is 5x faster than formatting.
    if len(raw) == 24 and raw[10] == "T" and raw[19] == "." and raw[23] == "Z":
        return when, raw[:23] + "000+00:00"
    return when, when.isoformat(timespec="microseconds")


def _numbers(get: Callable[[str], Any], entity: dict[str, Any]) -> tuple[int | None, int | None]:
    """Port, duration and session start into `entity`; (port, duration) for the identity."""
    port = get("clientPort")
    if port is not None:
        if port.__class__ is not int:
            port = _int(port, "clientPort")
        if port is not None:
            if not 0 <= port <= 65535:
                raise Rejected("bad_field", f"clientPort {port} out of range")
            entity["ClientPort"] = port
    duration = get("duration")
    if duration is not None:
        duration = _int(duration, "duration")
        if duration is not None:
            entity["Duration"] = duration
    start = get("sessionStartTime")
    if start is not None and start != "":
        entity["SessionStartTime"] = _time(start, "sessionStartTime")
    return port, duration


def _extra_text(extra: dict[str, Any]) -> str:
    try:
        text = orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # read 1024 deep, orjson writes 255: must not escape
        raise Rejected("bad_field", "unknown properties nested too deep") from None
    if len(text) > MAX_EXTRA_CHARS and len(text.encode("utf-16-le")) > 2 * MAX_EXTRA_CHARS:
        raise Rejected("bad_field", "unknown properties too large for one Table property")
    return text


#: The messages Bastion documents, trimmed and case-folded, and what each means. Any other
#: message is `Other`: stored and counted for people (`status`, the report), never taken as a
#: sign-in or a failure, so "Connection failed: target VM unreachable" is no guessed password.
OUTCOMES = {
    "successfully connected.": Outcome.SUCCESS,
    "login failed": Outcome.FAILURE,
}
#: An `Other` message is counted per text cut to this many characters, at most
#: `MAX_OTHER_TEXTS` texts per blob (the rest counted together under `None`).
MAX_OTHER_CHARS = 120
MAX_OTHER_TEXTS = 20


def outcome(message: str) -> Outcome:
    """The outcome `OUTCOMES` gives the message (trimmed, case-folded); `Other` otherwise."""
    return _outcome(message) if len(message) <= _SHORT else _outcome.__wrapped__(message)


@lru_cache(maxsize=1024)
def _outcome(message: str) -> Outcome:
    return OUTCOMES.get(message.strip().casefold(), Outcome.OTHER)


def other_text(message: str) -> str:
    """The text an `Other` message is counted under: trimmed and cut (shown neutralised); a
    lone surrogate as `\\udcxx`, so the count can be written as JSON."""
    cut = message.strip()[:MAX_OTHER_CHARS]
    return cut if cut.isascii() else cut.encode("utf-8", "backslashreplace").decode("utf-8")


def count_others(
    counts: Iterable[tuple[str | None, int]], rows: Iterable[EventRow]
) -> tuple[tuple[str | None, int], ...]:
    """`counts` plus the `Other` messages of `rows`, per text; a text beyond the first
    `MAX_OTHER_TEXTS` is counted under `None`, so a flood of new texts stays one row's worth."""
    out = dict(counts)
    for row in rows:
        if row["Outcome"] != Outcome.OTHER.value:
            continue
        key: str | None = other_text(row["Message"])
        if key not in out and sum(k is not None for k in out) >= MAX_OTHER_TEXTS:
            key = None
        out[key] = out.get(key, 0) + 1
    return tuple(out.items())


def ip_key(address: str) -> str:
    """Canonical text of an IP (so `::ffff:1.2.3.4`, `2001:DB8::1` group properly)."""
    return _ip_key(address) if len(address) <= _SHORT else _ip_key.__wrapped__(address)


@lru_cache(maxsize=8192)
def _ip_key(address: str) -> str:
    text = address.strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text.casefold()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def vm_name(resource_id: str) -> str:
    """`LINUX-KEY` from `.../VIRTUALMACHINES/LINUX-KEY`; `SCALESET/3` for a VMSS instance."""
    if len(resource_id) <= _RESOURCE_ID:
        return _vm_name(resource_id)
    return _vm_name.__wrapped__(resource_id)


@lru_cache(maxsize=4096)
def _vm_name(resource_id: str) -> str:
    parts = [p for p in resource_id.split("/") if p]
    lowered = [p.casefold() for p in parts]
    if "virtualmachinescalesets" in lowered:
        i = lowered.index("virtualmachinescalesets")
        name = parts[i + 1] if i + 1 < len(parts) else ""
        if i + 3 < len(parts) and lowered[i + 2] == "virtualmachines":
            name += "/" + parts[i + 3]
        return name
    return parts[-1] if parts else ""


def _resource_parts(resource_id: str) -> dict[str, str]:
    """Subscription, group and host name from a Bastion resource id (callers must not mutate)."""
    if len(resource_id) <= _RESOURCE_ID:
        return _bastion_parts(resource_id)
    return _bastion_parts.__wrapped__(resource_id)


@lru_cache(maxsize=256)
def _bastion_parts(resource_id: str) -> dict[str, str]:
    parts = [p for p in resource_id.split("/") if p]
    lowered = [p.casefold() for p in parts]

    def after(word: str) -> str:
        return parts[lowered.index(word) + 1] if word in lowered[:-1] else ""

    return {
        "SubscriptionId": after("subscriptions"),
        "ResourceGroup": after("resourcegroups"),
        "BastionHostName": after("bastionhosts"),
    }


def _canonical(raw: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """Re-key a dict to canonical names; first spelling wins, unknown keys stay as they are."""
    out: dict[str, Any] = {}
    for key, val in raw.items():
        name = aliases.get(key.lower(), key) if isinstance(key, str) else str(key)
        out.setdefault(name, val)
    return out


def _extras(top: dict[str, Any], props: dict[str, Any]) -> dict[str, Any] | None:
    extra = {k: v for k, v in top.items() if k not in _KNOWN_TOP}
    extra.update((f"properties.{k}", v) for k, v in props.items() if k not in _KNOWN_PROPS)
    return extra or None


def _text(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    raise Rejected("bad_field", f"{name} is a {type(value).__name__}")


def _int(value: object, name: str) -> int | None:
    if value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip()[:12])
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise Rejected("bad_field", f"{name} is not an integer")
    if not -(2**63) <= number < 2**63:
        raise Rejected("bad_field", f"{name} out of range")
    return number


def _time(value: object, name: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise Rejected("bad_time", f"{name} missing" if value in (None, "") else f"{name} not text")
    try:
        when = ciso8601.parse_datetime(value)
        when = when.replace(tzinfo=_UTC) if when.tzinfo is None else when.astimezone(_UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted to UTC
        raise Rejected("bad_time", f"{name} {value[:40]!r} is not a usable time") from None
    if not 2000 <= when.year <= 2999:
        raise Rejected("bad_time", f"{name} {value[:40]!r} out of range")
    return when
