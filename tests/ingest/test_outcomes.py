"""Issue 23, parts 2 and 3: outcomes read from the messages Bastion documents, and records
with no identity. Through the indexed blob trigger against Azurite, then `status` (CLI and
`GET /api/status`) and the report, as an operator would look."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest
from test_campaigns import incidents, lines

from devtools import samples
from shared import cli
from shared.answer import report, status
from shared.ingest import normalize
from shared.ingest.loop import Pipeline
from shared.store import keys, layout
from shared.store.entities import EventRow

UNREACHABLE = "Connection failed: target VM unreachable"
ATTACKER = "198.51.100.77"


def last_hour() -> datetime:
    """The hour before this one: inside `status`'s 24 hours, and over (a final blob)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def burst(message: str, n: int = 8, user: str = "root", **kw: Any) -> list[dict[str, Any]]:
    """`n` records 20 s apart from one address, in the last hour."""
    start = last_hour() + timedelta(minutes=10)
    return [
        samples.record(start + timedelta(seconds=20 * i), user, message, ATTACKER, port=40000 + i,
                       **kw)
        for i in range(n)
    ]  # fmt: skip


def ingest(
    indexed_app: dict[str, Any], logs: Any, prefix: str, host: str, records: list[dict[str, Any]]
) -> str:
    name = prefix + samples.blob_path(host, last_hour())
    logs.upload_blob(name, lines(records), overwrite=True)
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))
    return name


def cli_status() -> dict[str, Any]:
    out = io.StringIO()
    assert cli.main(["status", "--format", "json"], out) == 0
    return dict(orjson.loads(out.getvalue()))


def api_status(indexed_app: dict[str, Any]) -> dict[str, Any]:
    request = func.HttpRequest(method="GET", url="/api/status", params={}, body=b"")
    response = indexed_app["http_status"].get_user_function()(request)
    assert response.status_code == 200
    return dict(orjson.loads(response.get_body()))


def host_of(body: dict[str, Any], host: str) -> dict[str, Any]:
    return next(dict(h) for h in body["hosts"] if h["host"] == host)


@pytest.mark.azurite
def test_connection_failed_raises_nothing_and_is_counted_in_status(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """Eight "Connection failed: ..." from one address are no guessed password: no incident,
    no `fail|` row; stored as Other, and `status` names the message (CLI, API and table)."""
    p = app_env(API_AUTH="none")
    records = [*burst(UNREACHABLE), *burst("Session terminated by administrator", n=2)]
    ingest(indexed_app, logs, blob_prefix, "BASTION-OUTCOMES", records)
    assert incidents(p) == []
    hour = layout.FAIL_PREFIX + f"{last_hour():%Y-%m-%dT%H}"
    assert list(p.storage.index.partition(hour)) == []
    stored = list(p.storage.events.query("PartitionKey ge @lo", {"lo": ""}))
    assert len(stored) == 10 and {e["Outcome"] for e in stored} == {"Other"}
    for body in (cli_status(), api_status(indexed_app)):
        host = host_of(body, "BASTION-OUTCOMES")
        assert host["stored24h"] == 10 and host["other24h"] == 10
        assert body["otherMessages24h"] == [
            {"message": UNREACHABLE, "count": 8},
            {"message": "Session terminated by administrator", "count": 2},
        ]
        assert body["otherMessagesUnlisted24h"] == 0
    out = io.StringIO()
    assert cli.main(["status"], out) == 0
    assert f'other message, 24h: 8 x "{UNREACHABLE}"' in out.getvalue()


@pytest.mark.azurite
def test_login_failed_in_capitals_with_spaces_still_counts(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """The documented messages are compared trimmed and case-folded: "LOGIN FAILED " x8 is
    a brute force, and is counted as no Other."""
    p = app_env(API_AUTH="none")
    ingest(indexed_app, logs, blob_prefix, "BASTION-CAPITALS", burst("LOGIN FAILED "))
    assert {(r["SubjectKind"], r["Subject"], r["Rule"]) for r in incidents(p)} == {
        ("ip", ATTACKER, "ip_brute_force")
    }
    host = host_of(cli_status(), "BASTION-CAPITALS")
    assert host["stored24h"] == 8 and host["other24h"] == 0


@pytest.mark.azurite
def test_identity_less_records_raise_ip_incidents_but_no_account_incident(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """No user name and no e-mail: the account `(NO IDENTITY)`, shown `(no identity)`. The
    address's brute force and its sign-in after it are raised; no account incident, no
    baseline, no `fail|` account row; `status` counts them per host."""
    p = app_env(API_AUTH="none")
    records = burst(samples.FAIL, user="", email="")
    records.append(samples.record(last_hour() + timedelta(minutes=14), "", samples.OK, ATTACKER,
                                  port=41000, email=""))  # fmt: skip
    records += burst(samples.OK, n=1, user="alice")  # named, for the share
    ingest(indexed_app, logs, blob_prefix, "BASTION-ANON", records)
    rows = incidents(p)
    assert {r["SubjectKind"] for r in rows} == {"ip"}
    (ip,) = rows
    assert ip["Subject"] == ATTACKER and ip["Severity"] == "critical"
    assert orjson.loads(ip["Users"]) == [keys.NO_IDENTITY]
    stored = list(p.storage.events.query("PartitionKey ge @lo", {"lo": ""}))
    assert sum(e["UserKey"] == keys.NO_IDENTITY for e in stored) == 9
    assert list(p.storage.index.partition(layout.profile_partition(keys.NO_IDENTITY))) == []
    hour = layout.FAIL_PREFIX + f"{last_hour():%Y-%m-%dT%H}"
    assert {r["Kind"] for r in p.storage.index.partition(hour)} == {"ip"}
    for body in (cli_status(), api_status(indexed_app)):
        host = host_of(body, "BASTION-ANON")
        assert host["noIdentity24h"] == 9 and host["stored24h"] == 10
    out = io.StringIO()
    assert cli.main(["activity", "--ip", ATTACKER, "--format", "json"], out) == 0
    shown = {(i["user"], i["userKey"]) for i in orjson.loads(out.getvalue())}
    assert shown == {("(no identity)", keys.NO_IDENTITY), ("alice", "alice")}


@pytest.mark.azurite
def test_a_retried_invocation_counts_nothing_twice(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counts move with the cursor, in its one ETag-guarded write: an invocation that
    failed before it is retried from where the cursor stood, and appends add only theirs."""
    p = app_env(API_AUTH="none")
    real, calls = p.storage.write_cursor, []

    def flaky(*args: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("storage went away before the cursor moved")
        return real(*args)

    monkeypatch.setattr(p.storage, "write_cursor", flaky)
    records = [*burst(UNREACHABLE, n=3), *burst(samples.FAIL, n=2, user="", email="")]
    with pytest.raises(ConnectionError):
        ingest(indexed_app, logs, blob_prefix, "BASTION-RETRY", records)
    name = ingest(indexed_app, logs, blob_prefix, "BASTION-RETRY", records)  # the host's retry
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))  # and again
    host = host_of(cli_status(), "BASTION-RETRY")
    assert (host["stored24h"], host["other24h"], host["noIdentity24h"]) == (5, 3, 2)


def test_other_messages_are_bounded_per_blob_and_neutralised() -> None:
    """A blob names at most `MAX_OTHER_TEXTS` texts (the rest counted together), each cut;
    `status` shows them through `text.plain` (no link, no bidi trick)."""
    base = {"Outcome": "Other", "UserKey": "x"}
    rows = [{**base, "Message": f"odd {i} " + "y" * 300} for i in range(30)]
    rows.append({**base, "Message": "Login Failed"})  # stored as Other only if it is Other
    rows[-1]["Outcome"] = "Failure"
    counts = normalize.count_others((), [EventRow(**r) for r in rows])  # type: ignore[typeddict-item]
    named = [t for t, _ in counts if t is not None]
    assert len(named) == normalize.MAX_OTHER_TEXTS and dict(counts)[None] == 10
    assert all(len(t) == normalize.MAX_OTHER_CHARS for t in named)
    again = normalize.count_others(counts, [EventRow(**rows[0])])  # type: ignore[typeddict-item]
    assert dict(again)[named[0]] == 2 and len(again) == len(counts)
    shown = status.other_messages(Counter({"see https://evil.example/\u202egnp.exe": 3, None: 4}))
    assert shown["otherMessages24h"] == [
        {"message": "see hxxps[:]//evil.example/\\u202egnp.exe", "count": 3}
    ]
    assert shown["otherMessagesUnlisted24h"] == 4


def test_no_identity_key_cannot_come_from_a_name() -> None:
    """`identity` folds every ASCII letter to lower case, whatever else the name holds."""
    for name in ("(NO IDENTITY)", "(no identity)", " (No Identity) ", "(NO IDENTITY)\u200b",
                 "(NO IDENTITY)é", "\u212a(NO IDENTITY)", ""):  # fmt: skip
        assert keys.user_key(name, "") != keys.NO_IDENTITY or not name.strip()
    assert keys.user_key("", "") == keys.user_key(" \u200b", "") == keys.NO_IDENTITY
    assert not keys.identified(keys.NO_IDENTITY) and not keys.identified("")
    assert keys.shown("  ", keys.NO_IDENTITY) == "(no identity)"
    assert keys.shown("CONTOSO\\bob", "contoso\\bob") == "CONTOSO\\bob"


def test_report_names_other_messages_and_identity_less_records_per_host() -> None:
    start = datetime(2026, 11, 23, 9, tzinfo=UTC)
    event = {"TimeGenerated": start, "ClientIpAddress": ATTACKER, "ClientIpKey": ATTACKER,
             "TargetVMName": "LINUX-WEB-01", "BastionHostName": "BASTION-PROD"}  # fmt: skip
    events = [
        {**event, "UserName": "", "UserKey": keys.NO_IDENTITY, "Outcome": "Failure",
         "Message": "Login Failed"},
        {**event, "UserName": "bob", "UserKey": "bob", "Outcome": "Other",
         "Message": "Session terminated by <b>administrator</b>"},
    ]  # fmt: skip
    data = report.aggregate(events, [], start, start + timedelta(hours=1))
    assert data.others == [("Session terminated by <b>administrator</b>", 1)]
    assert data.no_identity == [("BASTION-PROD", 1, 2)]
    page = report.render(data)
    assert "Session terminated by &lt;b&gt;administrator&lt;/b&gt;" in page
    assert "<b>administrator" not in page
    assert "(no identity)" in page and ">50%<" in page
