"""Activity and alert queries against Azurite with the sample logs ingested: answers match the
samples, hostile filter values match only themselves, and paging neither loses nor repeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools import samples
from shared.answer import queries
from shared.ingest import normalize, parse
from shared.ingest.loop import Pipeline
from shared.store import keys

pytestmark = pytest.mark.azurite
FROM, TO = "2026-11-23T09:00:00Z", "2026-11-23T12:00:00Z"


@pytest.fixture(scope="module")
def store(sample_store: tuple[dict[str, str], Pipeline]) -> Pipeline:
    return sample_store[1]


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    """The valid sample records, normalized (what the tables must answer from)."""
    blobs, _ = samples.build()
    out = []
    for data in blobs.values():
        for piece in parse.split(data, 0, parse.Mode.UNKNOWN, True, 32768).pieces:
            if piece.error is None:
                try:
                    out.append(normalize.normalize(piece.value, "x", 0, 0))
                except normalize.Rejected:
                    continue
    return out


def run(store: Pipeline, **params: str) -> list[dict[str, Any]]:
    query = queries.parse_activity({"from": FROM, "to": TO, **params})
    return list(queries.activity_rows(store.storage, query))


def expected(events: list[dict[str, Any]], match: Any) -> list[str]:
    return sorted(e["TimeGenerated"].isoformat() for e in events if match(e))


def times(rows: list[dict[str, Any]]) -> list[str]:
    return [queries.parse_time(r["time"], "t").isoformat() for r in rows]


def test_all_samples_without_filter_in_time_order(store: Pipeline) -> None:
    rows = run(store)
    _, exp = samples.build()
    assert len(rows) == exp.records
    assert times(rows) == sorted(times(rows))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"user": "alice"}, lambda e: e["UserKey"] == "alice"),
        ({"user": "ALICE"}, lambda e: e["UserKey"] == "alice"),
        ({"user": "contoso\\bob"}, lambda e: e["UserKey"] == "contoso\\bob"),
        ({"user": "h#x?r"}, lambda e: e["UserKey"] == "h#x?r"),
        ({"user": "nina@contoso.com"}, lambda e: e["UserKey"] == "nina@contoso.com"),
        ({"vm": "linux-db-01"}, lambda e: e["TargetVMName"] == "LINUX-DB-01"),
        ({"ip": samples.OFFICE_NAT}, lambda e: e["ClientIpKey"] == samples.OFFICE_NAT),
        ({"ip": "2001:DB8:85A3::8A2E:370:7334"}, lambda e: e["UserKey"] == "zoë"),
        ({"outcome": "failure"}, lambda e: e["Outcome"] == "Failure"),
        (
            {"vm": "WIN-JUMP-01", "user": "dave", "outcome": "Failure"},
            lambda e: e["UserKey"] == "dave" and e["Outcome"] == "Failure",
        ),
        (
            {"user": "alice", "ip": samples.SPRAY_IP},
            lambda e: e["UserKey"] == "alice" and e["ClientIpKey"] == samples.SPRAY_IP,
        ),
        (
            {"ip": samples.OFFICE_NAT, "outcome": "Success"},
            lambda e: e["ClientIpKey"] == samples.OFFICE_NAT and e["Outcome"] == "Success",
        ),
    ],
)
def test_filters_match_the_samples(
    store: Pipeline, events: list[dict[str, Any]], params: dict[str, str], match: Any
) -> None:
    rows = run(store, **params)
    assert rows
    assert times(rows) == expected(events, match)


def test_time_range_is_half_open_and_exact(store: Pipeline, events: list[dict[str, Any]]) -> None:
    rows = run(store, **{"from": "2026-11-23T09:30:05Z", "to": "2026-11-23T10:01:00Z"})
    lo = datetime(2026, 11, 23, 9, 30, 5, tzinfo=UTC)
    hi = datetime(2026, 11, 23, 10, 1, tzinfo=UTC)
    assert times(rows) == expected(events, lambda e: lo <= e["TimeGenerated"] < hi)
    user_rows = run(
        store, user="admin", **{"from": "2026-11-23T09:57:10Z", "to": "2026-11-23T10:01:10Z"}
    )
    assert [r["time"][11:19] for r in user_rows] == ["09:57:10", "09:57:20", "10:01:00"]


@pytest.mark.parametrize(
    "hostile",
    [
        "x' or PartitionKey ne '",
        "' or '1' eq '1",
        "alice' or UserKey ne 'x",
        "alice|2026-11-23T09",
        "*",
        "%",
    ],
)
@pytest.mark.parametrize("field", ["user", "vm", "ip"])
def test_injection_attempts_match_only_themselves(
    store: Pipeline, field: str, hostile: str
) -> None:
    assert run(store, **{field: hostile}) == []
    assert run(store, vm="LINUX-WEB-01") != []
    secondary = {"user": hostile} if field != "user" else {"ip": hostile}
    assert run(store, vm="LINUX-WEB-01", **secondary) == []  # as a filter, not a key
    assert run(store, outcome="Success", **{field: hostile}) == []


def test_paging_returns_each_event_once(store: Pipeline) -> None:
    for params in ({}, {"user": "alice"}, {"vm": "win-jump-01"}, {"ip": samples.OFFICE_NAT}):
        everything = run(store, **params)
        seen: list[dict[str, Any]] = []
        token = None
        pages = 0
        while True:
            query = queries.parse_activity(
                {"from": FROM, "to": TO, "limit": "3", "continuation": token, **params}
            )
            page = queries.activity(store.storage, query)
            assert len(page.items) <= 3
            seen.extend(page.items)
            pages += 1
            token = page.continuation
            if not token:
                break
        assert seen == everything, params
        assert pages >= len(everything) // 3


def test_continuation_must_belong_to_the_query(store: Pipeline) -> None:
    query = queries.parse_activity({"from": FROM, "to": TO, "limit": "2", "user": "alice"})
    token = queries.activity(store.storage, query).continuation
    assert token
    with pytest.raises(queries.BadQuery, match="different query"):
        queries.parse_activity({"from": FROM, "to": TO, "user": "bob", "continuation": token})
    for bad in ("not-base64!", "e30=", queries.encode_token(query.fingerprint(), {"t": [1]})):
        with pytest.raises(queries.BadQuery):
            queries.parse_activity(
                {"from": FROM, "to": TO, "limit": "2", "user": "alice", "continuation": bad}
            )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "yesterday"}, "ISO 8601"),
        ({"from": TO, "to": FROM}, "before"),
        ({"from": "2026-01-01", "to": "2026-03-01", "user": "a"}, "longer than 31 days"),
        ({"from": "2026-01-01", "to": "2026-01-09"}, "longer than 7 days"),
        ({"outcome": "maybe"}, "outcome must be one of"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
def test_bad_parameters(params: dict[str, str], message: str) -> None:
    with pytest.raises(queries.BadQuery, match=message):
        queries.parse_activity(params)


def test_defaults_to_the_last_day() -> None:
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    q = queries.parse_activity({}, now)
    assert (q.start, q.end, q.mode) == (now - timedelta(hours=24), now, "scan")


def test_filters_use_parameters_only() -> None:
    hostile = "x' or PartitionKey ne '"
    q = queries.parse_activity({"user": hostile, "ip": hostile, "to": TO})
    _, flt, segments = queries.activity_filter(q)
    assert "'" not in flt and hostile not in flt
    assert segments[0]["lo"].startswith(keys.encode(hostile.casefold()) + "|")
    vm = queries.parse_activity({"vm": hostile, "to": TO})
    _, flt, segments = queries.activity_filter(vm)
    assert "'" not in flt and all(s["vm"] == hostile.casefold() for s in segments)


def test_alerts_by_status_and_range(store: Pipeline) -> None:
    _, exp = samples.build()
    q = queries.parse_alerts({"from": "2026-11-23", "to": "2026-11-24"})
    items = list(queries.alert_rows(store.storage, q))
    assert {(a["rule"], a["subject"]) for a in items} == set(exp.alerts)
    assert [a["firstSeen"] for a in items] == sorted(a["firstSeen"] for a in items)
    assert all(a["status"] == "delivered" and a["summary"] for a in items)
    q = queries.parse_alerts({"status": "pending", "from": "2026-11-23", "to": "2026-11-24"})
    assert list(queries.alert_rows(store.storage, q)) == []
    q = queries.parse_alerts({"from": "2026-11-23T10:00Z", "to": "2026-11-23T11:00Z"})
    assert {a["subject"] for a in queries.alert_rows(store.storage, q)} == {samples.SPRAY_IP}
    paged = queries.parse_alerts({"from": "2026-11-23", "to": "2026-11-24", "limit": "2"})
    first = queries.alerts(store.storage, paged)
    assert len(first.items) == 2 and first.continuation
    rest = queries.alerts(
        store.storage,
        queries.parse_alerts(
            {
                "from": "2026-11-23",
                "to": "2026-11-24",
                "limit": "2",
                "continuation": first.continuation,
            }
        ),
    )
    assert first.items + rest.items == items and rest.continuation is None
    with pytest.raises(queries.BadQuery, match="status"):
        queries.parse_alerts({"status": "open"})
