"""Issue 27, part 3: sessions, not only sign-ins. Pure grouping by tunnel first; then records with
start and end fields go through the indexed blob trigger into Azurite and come back through
`GET /api/sessions`, `python -m shared sessions` and the report, as people would ask."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_campaigns import lines

from devtools import samples
from shared import cli
from shared.answer import queries, report, sessions
from shared.ingest.loop import Pipeline
from shared.keep.expiry import Eraser
from shared.respond.matching import Session as Active

DAY = datetime(2026, 11, 23, tzinfo=UTC)
RANGE = {"from": "2026-11-23T00:00Z", "to": "2026-11-24T00:00Z"}
VM = (f"/SUBSCRIPTIONS/{samples.SUBSCRIPTION}/RESOURCEGROUPS/RG-WORKLOADS/PROVIDERS/"
      "MICROSOFT.COMPUTE/VIRTUALMACHINES/LINUX-WEB-01")  # fmt: skip


def with_session(record: dict[str, Any], **props: Any) -> dict[str, Any]:
    record["properties"].update(props)
    return record


def tunnel(record: dict[str, Any], tunnel_id: str) -> dict[str, Any]:
    record["properties"]["tunnelId"] = tunnel_id
    return record


def rec(
    at: datetime,
    user: str,
    message: str,
    ip: str,
    port: int,
    tunnel_id: str,
    vm: str = "LINUX-WEB-01",
    **props: Any,
) -> dict[str, Any]:
    record = samples.record(at, user, message, ip, vm=vm, port=port)
    record["properties"].update(tunnelId=tunnel_id, **props)
    return record


def fixture() -> list[dict[str, Any]]:
    """Five tunnels: ended by an end record, ended by a duration, open, failures only, and a
    sign-in at night; plus a sign-in with no tunnel id."""
    at = DAY + timedelta(hours=10)
    end = {"sessionStartTime": at.isoformat(), "sessionEndTime": "2026-11-23T10:45:30Z"}
    return [
        rec(at, "alice", samples.OK, "203.0.113.10", 1, "t-ended"),
        rec(at + timedelta(minutes=45, seconds=30), "alice", "Session ended", "203.0.113.10", 1,
            "t-ended", **end),
        rec(at + timedelta(hours=1), "bob", samples.OK, "203.0.113.11", 2, "t-duration",
            vm="WIN-APP-02", duration=600_000),
        rec(at + timedelta(hours=2), "carol", samples.OK, "203.0.113.12", 3, "t-open"),
        rec(at + timedelta(hours=3), "mallory", samples.FAIL, "198.51.100.7", 4, "t-fail"),
        rec(DAY + timedelta(hours=2), "dave", samples.OK, "203.0.113.13", 5, "t-night"),
        rec(at + timedelta(hours=4), "erin", samples.OK, "203.0.113.14", 6, ""),
    ]  # fmt: skip


# -- pure -----------------------------------------------------------------------------------------
def rows() -> list[dict[str, Any]]:
    """The fixture as stored rows (the fields the normalizer writes)."""
    outcome = {samples.OK: "Success", samples.FAIL: "Failure"}
    out = []
    for i, r in enumerate(fixture()):
        p = r["properties"]
        row = {
            "RowKey": str(i),
            "TimeGenerated": datetime.fromisoformat(r["time"].replace("Z", "+00:00")),
            "UserName": p["userName"],
            "UserKey": p["userName"],
            "ClientIpAddress": p["clientIpAddress"],
            "UserAgent": p["userAgent"],
            "TargetVMName": p["targetResourceId"].rsplit("/", 1)[1],
            "TargetResourceId": p["targetResourceId"],
            "TunnelId": p["tunnelId"],
            "Outcome": outcome.get(p["message"], "Other"),
            "SessionEndTime": p.get("sessionEndTime", ""),
            "Protocol": p["protocol"],
        }
        if "sessionStartTime" in p:
            row["SessionStartTime"] = datetime.fromisoformat(p["sessionStartTime"])
        if "duration" in p:
            row["Duration"] = p["duration"]
        out.append(row)
    return out


def test_sessions_by_tunnel_have_their_lengths_and_an_unended_one_is_open() -> None:
    found = {s.tunnel or s.account: s for s in sessions.build(rows())}
    assert set(found) == {"t-ended", "t-duration", "t-open", "t-night", "erin"}  # no failures
    assert found["t-ended"].length == timedelta(minutes=45, seconds=30)
    assert found["t-duration"].length == timedelta(minutes=10)
    assert found["t-open"].end is None and found["t-open"].json()["state"] == "open"
    assert found["t-ended"].json()["lengthSeconds"] == 2730
    assert sessions.longest(found.values())[0].tunnel == "t-ended"
    assert [s.tunnel for s in sessions.out_of_hours(found.values(), (7, 19))] == ["t-night"]
    late = sessions.open_past(found.values(), DAY + timedelta(hours=23), timedelta(hours=12))
    assert {s.tunnel for s in late} == {"t-night"}  # t-open began 11 hours before


def test_bastion_says_which_open_sessions_are_still_open() -> None:
    found = sessions.build(rows())
    host = found[0].host_id
    carol = next(s for s in found if s.tunnel == "t-open")
    active = [Active("x", "carol", carol.target_id, "", "ssh", carol.start + timedelta(seconds=3))]
    sessions.mark_open(found, {host.casefold(): active})
    states = {s.tunnel: s.open_now for s in found if s.end is None}
    assert states["t-open"] is True and states["t-night"] is False
    assert next(s for s in found if s.tunnel == "t-ended").open_now is None  # ended: not asked


def test_a_bad_end_or_duration_is_not_believed() -> None:
    start = DAY + timedelta(hours=9)
    base = {"RowKey": "1", "TimeGenerated": start, "UserName": "a", "UserKey": "a",
            "Outcome": "Success", "TunnelId": "t"}  # fmt: skip
    for extra in ({"SessionEndTime": "not a time"}, {"Duration": -5},
                  {"Duration": 10**12}, {"SessionEndTime": "2026-11-22T00:00:00Z"}):  # fmt: skip
        (only,) = sessions.build([{**base, **extra}])
        assert only.end is None, extra


_TIMES = st.datetimes(min_value=datetime(2026, 11, 23), max_value=datetime(2026, 11, 24),
                      timezones=st.just(UTC))  # fmt: skip
_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "RowKey": st.text(max_size=4),
            "TimeGenerated": _TIMES,
            "UserName": st.text(max_size=20),
            "UserKey": st.text(max_size=20),
            "TunnelId": st.sampled_from(["", "a", "b", "c"]),
            "Outcome": st.sampled_from(["Success", "Failure", "Other"]),
        },
        optional={
            "SessionStartTime": _TIMES,
            "SessionEndTime": st.one_of(st.text(max_size=30), _TIMES.map(datetime.isoformat)),
            "Duration": st.integers(min_value=-(2**40), max_value=2**40),
        },
    ),
    max_size=30,
    unique_by=lambda r: r["RowKey"],  # as in a partition
)


#: Examples for the property (`make unit` scales property budgets down, as the others).
EXAMPLES = max(20, int(200 * float(os.environ.get("RELIABILITY_BUDGET_SCALE", "1"))))


@settings(max_examples=EXAMPLES, deadline=None)
@given(_ROWS, st.randoms())
def test_sessions_do_not_depend_on_the_order_of_the_records(
    rows: list[dict[str, Any]], rnd: Any
) -> None:
    """Whatever the records say (any end text, any duration), in any order: the same sessions,
    none ending before it began or lasting past `MAX_LENGTH`, and no failure alone is one."""
    found = [s.json() for s in sessions.build(rows)]
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert [s.json() for s in sessions.build(shuffled)] == found
    for s in sessions.build(rows):
        assert s.end is None or timedelta(0) <= s.end - s.start <= sessions.MAX_LENGTH


# -- through the app -------------------------------------------------------------------------
@pytest.fixture
def stored(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> Pipeline:
    p = app_env(API_AUTH="none")
    by_hour: dict[datetime, list[dict[str, Any]]] = {}
    for r in fixture():
        when = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        by_hour.setdefault(when.replace(minute=0, second=0, microsecond=0), []).append(r)
    for hour, records in by_hour.items():
        name = blob_prefix + samples.blob_path("BASTION-PROD", hour)
        logs.upload_blob(name, lines(records), overwrite=True)
        indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))
    return p


def api(app: dict[str, Any], **params: str) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url="/api/sessions", params=params, body=b"")
    response: func.HttpResponse = app["http_sessions"].get_user_function()(request)
    return response


def test_the_route_the_command_and_the_report_show_the_sessions(
    stored: Pipeline, indexed_app: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = orjson.loads(api(indexed_app, **RANGE).get_body())
    got = {i["tunnelId"] or i["account"]: (i["state"], i["lengthSeconds"]) for i in body["items"]}
    assert got == {"t-ended": ("closed", 2730), "t-duration": ("closed", 600),
                   "t-open": ("open", None), "t-night": ("open", None),
                   "erin": ("open", None)}  # fmt: skip
    assert body["total"] == 5 and body["open"] == 3 and body["openNowFrom"] is None
    alice = orjson.loads(api(indexed_app, user="ALICE", **RANGE).get_body())["items"]
    assert [(i["account"], i["target"], i["sourceIp"]) for i in alice] == [
        ("alice", "LINUX-WEB-01", "203.0.113.10")
    ]
    assert api(indexed_app, limit="0", **RANGE).status_code == 400
    too_long = {"from": "2026-11-01T00:00Z", "to": "2026-11-24T00:00Z"}
    assert api(indexed_app, **too_long).status_code == 400

    out = io.StringIO()
    argv = ["sessions", "--from", RANGE["from"], "--to", RANGE["to"], "--format", "json"]
    assert cli.main(argv, out) == 0
    assert orjson.loads(out.getvalue())["total"] == 5

    page = report.build(stored.storage, DAY, DAY + timedelta(days=1))
    for needle in ("Longest sessions", "0:45:30", "Begun outside working hours", "dave"):
        assert needle in page


def test_an_erased_person_has_no_sessions_left(
    stored: Pipeline, indexed_app: dict[str, Any]
) -> None:
    """Sessions are read from the records, so erasure (and retention) apply as they are."""
    Eraser(stored.storage).erase("alice", exact=True)
    alice = orjson.loads(api(indexed_app, user="alice", **RANGE).get_body())
    assert alice["items"] == [] and alice["total"] == 0
    everyone = orjson.loads(api(indexed_app, **RANGE).get_body())
    assert "alice" not in {i["account"] for i in everyone["items"]} and everyone["total"] == 4


def test_open_now_comes_from_bastion_where_it_may_be_asked(
    stored: Pipeline, indexed_app: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def ask(host: str) -> list[Active]:
        asked.append(host)
        return [Active("live", "carol", VM, "", "ssh", DAY + timedelta(hours=12, seconds=1))]

    monkeypatch.setattr(queries, "sessions_asker", lambda settings: contextlib.nullcontext(ask))
    body = orjson.loads(api(indexed_app, **RANGE).get_body())
    now = {i["tunnelId"] or i["account"]: i["openNow"]
           for i in body["items"] if i["state"] == "open"}  # fmt: skip
    assert body["openNowFrom"] == "bastion" and len(asked) == 1
    assert now["t-open"] is True and now["t-night"] is False
