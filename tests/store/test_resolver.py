"""A person by name or e-mail: what one types resolves to every account whose records carry it
(issue 23, part 4), for `activity` (CLI and HTTP), the report and erasure; ambiguity is shown."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import orjson
import pytest

from devtools import samples
from shared import cli
from shared.answer import queries
from shared.core.settings import LOGS_CONTAINER
from shared.ingest import chunks
from shared.ingest.loop import Pipeline
from shared.keep import expiry, policy
from shared.store import keys, layout

RANGE = {"from": "2026-11-23T09:00:00Z", "to": "2026-11-23T12:00:00Z"}
CLI_RANGE = ["--from", RANGE["from"], "--to", RANGE["to"]]
ALICE_EVENTS, BOB_EVENTS = 7, 5  # alice: 3 ordinary, 1 sprayed, 3 on the dev host


# -- the rule (pure) ------------------------------------------------------------------------
def test_aliases_are_the_email_the_bare_name_and_local_parts() -> None:
    assert keys.aliases("CONTOSO\\Bob", "Bob@Contoso.com", "contoso\\bob") == [
        "bob",
        "bob@contoso.com",
    ]
    assert keys.aliases("alice", "alice@contoso.com", "alice") == ["alice@contoso.com"]
    assert keys.aliases("", "nina@contoso.com", "nina@contoso.com") == ["nina"]
    assert keys.aliases("Ann@Fabrikam.com", "", "ann@fabrikam.com") == ["ann"]
    assert keys.aliases("", "", "") == []
    assert keys.alias_via("bob", "contoso\\bob") == "name"
    assert keys.alias_via("bob@contoso.com", "contoso\\bob") == "e-mail"
    assert keys.alias_via("nina", "nina@contoso.com") == "local part"


def _event(name: str, email: str) -> dict[str, Any]:
    return {"UserName": name, "UserEmail": email, "UserKey": keys.user_key(name, email)}


def test_alias_rows_are_one_per_alias_and_account_whatever_the_order() -> None:
    events = [_event("CONTOSO\\bob", "bob@contoso.com"), _event("contoso\\BOB", "")] * 3
    rows = list(layout.alias_rows(events))  # type: ignore[arg-type]
    again = list(layout.alias_rows(reversed(events)))  # type: ignore[arg-type]
    assert sorted(r["RowKey"] for r in rows) == sorted(r["RowKey"] for r in again)
    assert {r["RowKey"] for r in rows} == {"bob|contoso%5Cbob", "bob@contoso.com|contoso%5Cbob"}
    assert all(r["PartitionKey"] == layout.ALIASES for r in rows)
    seek = layout.alias_seek("  BOB ")
    assert seek["lo"] <= "bob|ëlise" < seek["hi"] and not seek["lo"] <= "bob2|x" < seek["hi"]


def test_two_domains_with_one_bare_name_are_shown_as_ambiguous() -> None:
    found = layout.resolution("Bob", [{"Account": "fabrikam\\bob"}, {"Account": "contoso\\bob"}])
    assert found.accounts == ("bob", "contoso\\bob", "fabrikam\\bob") and found.ambiguous
    assert "is ambiguous" in found.note() and "fabrikam\\bob (name)" in found.note()
    one = layout.resolution("bob@contoso.com", [{"Account": "contoso\\bob"}])
    assert one.widened and not one.ambiguous
    assert one.matched() == [
        {"account": "bob@contoso.com", "via": "as typed"},
        {"account": "contoso\\bob", "via": "e-mail"},
    ]
    assert not layout.resolution("dave", []).widened


def test_an_erasure_of_several_accounts_holding_records_must_be_asked_for() -> None:
    two = layout.resolution("bob", [{"Account": "contoso\\bob"}, {"Account": "fabrikam\\bob"}])
    with pytest.raises(policy.Ambiguous, match="--all-matches"):
        policy.accounts_to_erase(two, False, False)
    assert policy.accounts_to_erase(two, False, True) == two.accounts
    one = layout.resolution("bob", [{"Account": "contoso\\bob"}])
    assert policy.accounts_to_erase(one, False, False) == ("bob", "contoso\\bob")
    with pytest.raises(policy.Ambiguous):  # `bob` holds records of its own: another person?
        policy.accounts_to_erase(one, True, False)


# -- through storage ------------------------------------------------------------------------
@pytest.fixture
def run(
    sample_store: tuple[dict[str, str], Pipeline], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str]]:
    for key, value in sample_store[0].items():
        monkeypatch.setenv(key, value)

    def invoke(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return cli.main(list(argv), out), out.getvalue()

    return invoke


def test_cli_activity_finds_a_person_by_email_and_by_bare_name(
    run: Callable[..., tuple[int, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run("activity", "--user", "alice@contoso.com", *CLI_RANGE, "--format", "csv")
    rows = out.splitlines()[1:]
    assert code == 0 and len(rows) == ALICE_EVENTS and all(",alice," in r for r in rows)
    assert "matched 2 accounts: alice@contoso.com (as typed), alice (e-mail)" in (
        capsys.readouterr().err
    )
    code, out = run("activity", "--user", "bob", *CLI_RANGE)
    lines = out.splitlines()
    assert code == 0 and lines[0] == 'matched: "bob" matched 2 accounts: bob (as typed), ' + (
        "contoso\\bob (name)"
    )
    assert lines[-1] == f"({BOB_EVENTS} rows)" and "CONTOSO\\bob" in lines[3]
    code, out = run("activity", "--user", "CONTOSO\\BOB", *CLI_RANGE)
    assert code == 0 and not out.startswith("matched") and f"({BOB_EVENTS} rows)" in out
    code, out = run("activity", "--user", "dave", *CLI_RANGE)
    assert code == 0 and not out.startswith("matched") and "(6 rows)" in out


def test_cli_activity_merges_accounts_in_time_order(
    sample_store: tuple[dict[str, str], Pipeline],
) -> None:
    """Two accounts of one person: one answer in time order, paged without loss."""
    storage = sample_store[1].storage
    q = queries.parse_activity({"user": "bob", **RANGE})
    q = queries.ActivityQuery(q.start, q.end, "bob", limit=2, accounts=("contoso\\bob", "alice"))
    seen, token = [], None
    while True:
        page = queries.activity(storage, replace(q, continuation=token))
        seen += page.items
        token = page.continuation
        if token is None:
            break
    assert len(seen) == ALICE_EVENTS + BOB_EVENTS
    assert [i["time"] for i in seen] == sorted(i["time"] for i in seen)
    assert len({(i["time"], i["clientPort"]) for i in seen}) == len(seen)


@pytest.fixture
def call(
    indexed_app: dict[str, Any],
    app_env: Callable[..., Pipeline],
    sample_store: tuple[dict[str, str], Pipeline],
) -> Callable[..., func.HttpResponse]:
    env = sample_store[0]
    app_env(**{k: env[k] for k in ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")},
            API_AUTH="none")  # fmt: skip

    def invoke(name: str, **params: str) -> func.HttpResponse:
        route = name.removeprefix("http_")
        request = func.HttpRequest(method="GET", url=f"/api/{route}", params=params, body=b"")
        return indexed_app[name].get_user_function()(request)

    return invoke


def test_http_activity_says_which_accounts_matched(call: Callable[..., func.HttpResponse]) -> None:
    body = orjson.loads(call("http_activity", user="bob@contoso.com", **RANGE).get_body())
    assert len(body["items"]) == BOB_EVENTS and {i["userKey"] for i in body["items"]} == {
        "contoso\\bob"
    }
    assert body["matchedAccounts"] == [
        {"account": "bob@contoso.com", "via": "as typed"},
        {"account": "contoso\\bob", "via": "e-mail"},
    ]
    assert body["ambiguous"] is False
    literal = orjson.loads(call("http_activity", user="svc-deploy", **RANGE).get_body())
    assert "matchedAccounts" not in literal and len(literal["items"]) == 7
    by_vm = orjson.loads(call("http_activity", user="bob", vm="win-jump-01", **RANGE).get_body())
    assert len(by_vm["items"]) == BOB_EVENTS and by_vm["matchedAccounts"][1]["via"] == "name"


def test_report_for_a_person_lists_its_accounts(call: Callable[..., func.HttpResponse]) -> None:
    page = call("http_report", user="alice@contoso.com", **RANGE).get_body().decode()
    assert '<p id="person">' in page and "alice (e-mail)" in page
    assert "LINUX-WEB-01" in page and "svc-deploy" not in page
    assert "password_spray" in page  # the spray named alice
    everyone = call("http_report", **RANGE).get_body().decode()
    assert 'id="person"' not in everyone and "svc-deploy" in everyone


@pytest.fixture
def fresh(make_pipeline: Callable[..., Pipeline], blob_prefix: str) -> Iterator[Pipeline]:
    p = make_pipeline()
    logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not logs.exists():
        logs.create_container()
    for name, data in samples.build()[0].items():
        logs.upload_blob(blob_prefix + name, data, overwrite=True)
        p.ingest(logs.get_blob_client(blob_prefix + name))
    yield p


def test_erasure_by_email_reaches_the_account_and_its_aliases(fresh: Pipeline) -> None:
    s = fresh.storage
    eraser = expiry.Eraser(s)
    removed = eraser.erase("Alice@Contoso.com")
    assert removed["events"] == ALICE_EVENTS and removed["aliases"] == 1
    assert eraser.found.others == ("alice",)
    assert not list(s.index.seek(layout.alias_seek("alice@contoso.com")))
    assert not list(s.events.query(policy.PK_RANGE, policy.event_range("alice")))
    with pytest.raises(policy.NoSuchAccount):  # a second run: nothing left under the name
        expiry.Eraser(s).erase("alice@contoso.com")


def test_erasure_refuses_two_accounts_unless_asked(
    fresh: Pipeline, app_env: Callable[..., Pipeline], indexed_app: dict[str, Any]
) -> None:
    """`bob` (a local account with records) and `CONTOSO\\bob` may be two people."""
    rec = samples.record(datetime(2026, 11, 23, 9, 5, tzinfo=UTC), "bob", samples.OK, "10.1.1.1")
    logs = fresh.storage.blobs.get_container_client(LOGS_CONTAINER)
    name = "extra/y=2026/m=11/d=23/h=09/PT1H.json"
    logs.upload_blob(name, orjson.dumps(rec) + b"\n", overwrite=True)
    fresh.ingest(logs.get_blob_client(name))
    s = fresh.storage
    app_env(**{k: getattr(s.settings, k.lower()) for k in
               ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")},
            API_AUTH="none")  # fmt: skip
    erase = indexed_app["http_erase"].get_user_function()

    def post(**params: str) -> func.HttpResponse:
        return erase(func.HttpRequest(method="POST", url="/api/erase", params=params, body=b""))

    refused = post(user="bob")
    assert refused.status_code == 409
    answer = orjson.loads(refused.get_body())
    assert [m["account"] for m in answer["matchedAccounts"]] == ["bob", "contoso\\bob"]
    assert cli.main(["erase", "--user", "bob"], io.StringIO()) == 2
    out = io.StringIO()
    assert cli.main(["erase", "--user", "bob", "--exact"], out) == 0  # the local bob alone
    assert out.getvalue().startswith("erased: ") and " events=1 " in out.getvalue()
    done = post(user="bob")  # the local bob is gone: CONTOSO\bob is the one left
    assert done.status_code == 200
    answer = orjson.loads(done.get_body())
    assert answer["removed"]["events"] == BOB_EVENTS
    assert answer["matchedAccounts"][1] == {"account": "contoso\\bob", "via": "name"}


def test_backfill_lets_old_records_be_found_by_email(fresh: Pipeline) -> None:
    """Records stored before the `who` rows: found by their literal account only, then by
    e-mail once `aliases` has run."""
    s = fresh.storage
    for row in list(s.index.partition(layout.ALIASES, ["PartitionKey", "RowKey"])):
        s.index.delete(row["PartitionKey"], row["RowKey"])
    end = datetime(2026, 11, 23, 12, tzinfo=UTC)
    q = queries.ActivityQuery(end - timedelta(hours=3), end, "bob@contoso.com")
    assert list(queries.activity_rows(s, q)) == []
    assert chunks.backfill_aliases(s) >= 10
    assert len(list(queries.activity_rows(s, q))) == BOB_EVENTS
    assert len(list(queries.activity_rows(s, queries.ActivityQuery(q.start, end, "nina")))) == 1


def test_backfill_lets_old_records_be_found_by_machine(fresh: Pipeline) -> None:
    """Index rows stored before `TargetVMKey` (issue 25): `--vm` finds them once `aliases` has
    given them the key; a second run finds nothing to do."""
    s = fresh.storage
    span = {"lo": layout.IP_PREFIX, "hi": layout.IP_PREFIX + "~"}
    old = [r for r in s.index.query("PartitionKey ge @lo and PartitionKey lt @hi", span)
           if r.get("TargetVMKey")]  # fmt: skip
    s.upsert((s.index, [{k: v for k, v in r.items() if k != "TargetVMKey"} for r in old]))
    end = datetime(2026, 11, 23, 12, tzinfo=UTC)
    q = queries.ActivityQuery(end - timedelta(hours=3), end, vm="win-jump-01")
    assert list(queries.activity_rows(s, q)) == []
    assert chunks.backfill_vm_keys(s) == len(old)
    assert len(list(queries.activity_rows(s, q))) >= BOB_EVENTS
    assert chunks.backfill_vm_keys(s) == 0


def test_a_worker_writes_who_rows_once_and_again_after_it_erased_them(fresh: Pipeline) -> None:
    """`who` rows are remembered by the worker that wrote them (issue 25: not rewritten with
    every chunk); the worker that erases a person forgets, so their later records are found
    by e-mail again."""
    logs = fresh.storage.blobs.get_container_client(LOGS_CONTAINER)
    at = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)

    def store(n: int) -> int:
        name = f"later{n}/y=2026/m=11/d=23/h=09/PT1H.json"
        rec = samples.record(at + timedelta(seconds=n), "alice", samples.OK, "10.1.1.1")
        logs.upload_blob(name, orjson.dumps(rec) + b"\n", overwrite=True)
        written = []
        upsert = fresh.storage.upsert

        def spy(*writes: Any, merge: bool = False) -> None:
            written.extend(e for t, rows in writes for e in rows if e["PartitionKey"] == "who")
            upsert(*writes, merge=merge)

        fresh.storage.upsert = spy  # type: ignore[method-assign]
        try:
            fresh.ingest(logs.get_blob_client(name))
        finally:
            fresh.storage.upsert = upsert  # type: ignore[method-assign]
        return len(written)

    assert store(1) == 0  # the sample data's ingest wrote alice's rows already
    expiry.Eraser(fresh.storage).erase("alice")
    assert store(2) > 0
    q = queries.ActivityQuery(at, at + timedelta(minutes=1), "alice@contoso.com")
    assert len(list(queries.activity_rows(fresh.storage, q))) == 1


def test_erasure_of_all_matches_takes_every_account(fresh: Pipeline) -> None:
    rec = samples.record(datetime(2026, 11, 23, 9, 5, tzinfo=UTC), "bob", samples.OK, "10.1.1.1")
    logs = fresh.storage.blobs.get_container_client(LOGS_CONTAINER)
    name = "extra/y=2026/m=11/d=23/h=09/PT1H.json"
    logs.upload_blob(name, orjson.dumps(rec) + b"\n", overwrite=True)
    fresh.ingest(logs.get_blob_client(name))
    eraser = expiry.Eraser(fresh.storage)
    with pytest.raises(policy.Ambiguous):
        eraser.erase("bob")
    removed = eraser.erase("bob", all_matches=True)
    assert removed["events"] == 1 + BOB_EVENTS and eraser.found.others == ("contoso\\bob",)
    left = {r["Account"] for r in fresh.storage.index.partition(layout.ALIASES, ["Account"])}
    assert not left & {"bob", "contoso\\bob"}
