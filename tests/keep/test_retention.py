"""Retention and erasure (issue 17): the pure rules, then the timer, the erasure, the HTTP route
and crashes half-way, against Azurite."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import azure.functions as func
import orjson
import pytest
from azure.functions.timer import TimerRequest
from reliability_support import quarantine_lines
from test_http_auth import principal

from devtools import samples
from shared import cli
from shared.answer import queries
from shared.baselines import agents
from shared.core.settings import LOGS_CONTAINER, Settings, SettingsError
from shared.ingest.loop import Pipeline
from shared.keep import expiry, policy
from shared.store import keys, layout
from shared.store.tables import Storage

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
Dump = dict[str, dict[tuple[str, str], dict[str, Any]]]


# -- the pure rules ---------------------------------------------------------------------------
def test_a_day_expires_only_once_all_of_it_is_older_than_the_retention() -> None:
    assert policy.first_kept(5, NOW) == "2026-11-25"
    assert policy.first_kept(0, NOW) is None  # kept for ever
    assert policy.expiring("2026-11-25", "2026-11-23", None) == ["2026-11-24"]
    assert policy.expiring("2026-11-25", "2026-11-24", "2020-01-01") == []
    assert policy.expiring("2026-11-25", None, "2026-11-21") == [
        "2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"]  # fmt: skip
    assert policy.expiring("2026-11-25", None, None) == []
    assert policy.expiring(None, None, "2020-01-01") == []


def test_retention_settings() -> None:
    s = Settings.from_env({"RETENTION_DAYS": "30", "ALERT_RETENTION_DAYS": "0"})
    assert policy.Policy.of(s) == policy.Policy(30, 0, 30)
    for bad in ("1", "-3", "x"):
        with pytest.raises(SettingsError, match="RETENTION_DAYS"):
            Settings.from_env({"RETENTION_DAYS": bad})


def test_an_alert_keeps_its_row_with_a_marker_in_place_of_the_account() -> None:
    row = {"PartitionKey": "2026-11-23", "RowKey": "ip|45.83.64.7|2026-11-23T10:20:00",
           "Rule": "password_spray", "Severity": "high", "SubjectKind": "ip",
           "Subject": "45.83.64.7",
           "Users": '["Alice","root"]', "CompromisedUsers": "[]", "FailureCount": 7,
           "DistinctUsers": 2, "FirstSeen": NOW, "LastSeen": NOW}  # fmt: skip
    (op,) = policy.redact_alert(row, "alice", "[erased 2026-11-30]", "t")
    assert op[0] == "update" and op[1]["Users"] == '["[erased 2026-11-30]","root"]'
    assert "erased" in op[1]["Erasure"] and op[1]["RowKey"] == row["RowKey"]
    own = {**row, "RowKey": "user|alice|2026-11-23T10:20:00", "SubjectKind": "user",
           "Subject": "alice", "Users": '["alice"]'}  # fmt: skip
    delete, put = policy.redact_alert(own, "alice", "[erased 2026-11-30]", "t")
    assert delete[0] == "delete" and put[1]["RowKey"] == "user|~erased-t|2026-11-23T10:20:00"
    assert "alice" not in orjson.dumps({k: v for k, v in put[1].items() if k != "FirstSeen"
                                        and k != "LastSeen"}).decode()  # fmt: skip
    head = {"PartitionKey": "2026-11-23", "RowKey": "user|alice|~"}
    assert policy.redact_alert(head, "alice", "m", "t")[0][0] == "delete"
    assert policy.redact_alert(row, "bob", "m", "t") == []


def test_quarantined_text_is_redacted_in_every_form_a_name_takes_there() -> None:
    """Raw text is JSON as Bastion wrote it: `DOMAIN\\name` with its backslash doubled, an
    accented name maybe as `\\u00e9`; a two-letter account only as a whole string, or it
    would take `alan`'s line too."""
    raw = [r'{"userName": "CONTOSO\\aléx"}', r'{"userName": "CONTOSO\\al\u00e9x"}',
           '{"userName": "al"}', '{"userName": "alan"}']  # fmt: skip
    lines = [{"Raw": text, "Reason": "bad"} for text in raw]
    out, changed = policy.redact_quarantine(lines, ["CONTOSO\\aléx", "al"], "[erased]")
    assert changed == 3 and [line["Raw"] for line in out][-1] == '{"userName": "alan"}'


# -- against Azurite ----------------------------------------------------------------------------
def dump(storage: Storage) -> Dump:
    out: Dump = {}
    tables = (storage.events, storage.index, storage.state, storage.alerts)
    for name, table in zip(("events", "index", "state", "alerts"), tables, strict=True):
        rows = {}
        for row in table.client.list_entities():
            rk = re.sub(r"~erased-[0-9a-f]+", "~erased-X", row["RowKey"])
            rows[(row["PartitionKey"], rk)] = {k: v for k, v in row.items()
                                               if k not in ("Timestamp",)}  # fmt: skip
        out[name] = rows
    return out


def mentions(row: dict[str, Any], key: tuple[str, str], word: str) -> bool:
    pattern = re.compile(rf"(?<![\w.]){re.escape(word)}(?!\w)", re.I)
    return any(pattern.search(str(v)) for v in (*key, *row.values()))


def ingest(p: Pipeline, blobs: dict[str, bytes], prefix: str) -> None:
    logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not logs.exists():
        logs.create_container()
    for name, data in blobs.items():
        logs.upload_blob(prefix + name, data, overwrite=True)
        p.ingest(logs.get_blob_client(prefix + name))


def days_blobs(now: datetime) -> dict[str, bytes]:
    """Records on days 9, 6, 5, 4 and 1 back; with RETENTION_DAYS=5 days before `keep` go,
    including the last minute before it, and its first minute stays. Each day has a brute
    force (an alert) and a bad line (quarantine)."""
    keep = datetime.fromisoformat(policy.first_kept(5, now) or "").replace(tzinfo=UTC)
    times = [keep - timedelta(days=k, hours=-10) for k in (4, 1)]
    times += [keep - timedelta(seconds=30), keep + timedelta(seconds=30)]
    times += [keep + timedelta(days=1, hours=10), keep + timedelta(days=4, hours=10)]
    blobs: dict[str, bytes] = {}
    for t in times:
        hour = t.replace(minute=0, second=0, microsecond=0)
        recs = [
            samples.record(t, "carol", samples.OK, "82.165.10.4", port=1),
            samples.record(t, "dan", samples.OK, "82.165.10.5", "WIN-APP-02", port=2),
        ]
        recs += [samples.record(t + timedelta(seconds=i), "root", samples.FAIL, "192.0.2.7",
                                port=10 + i) for i in range(6)]  # fmt: skip
        body = b"".join(orjson.dumps(r) + b"\n" for r in recs) + b'{"broken\n'
        blobs[samples.blob_path("BASTION-RET", hour)] = body
    return blobs


def _day(pk: str) -> str:
    return policy.day_of_partition(pk)


def test_a_blob_backfilled_after_its_days_expired_is_gone_after_the_next_run(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], blob_prefix: str
) -> None:
    """The watermark said "through day D", and records of day D or before stored after that
    run (a backfill, a late append) stayed for ever. Every run now looks for the oldest day
    stored and goes back to it; a late blob older than the quarantine's retention writes no
    quarantine at all (its rejects are still counted)."""
    p = app_env(RETENTION_DAYS="30", ALERT_RETENTION_DAYS="30", QUARANTINE_RETENTION_DAYS="30")
    now = datetime.now(UTC)
    fresh = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    old = fresh - timedelta(days=90)
    expire = indexed_app["expire_old_data"].get_user_function()

    def blob(at: datetime, user: str) -> dict[str, bytes]:
        recs = [samples.record(at + timedelta(minutes=1, seconds=i), user, samples.FAIL,
                               "192.0.2.90", port=100 + i) for i in range(6)]  # fmt: skip
        body = b"".join(orjson.dumps(r) + b"\n" for r in recs) + b'{"userName": "' + user.encode()
        return {samples.blob_path("BASTION-LATE", at): body + b"\n"}

    ingest(p, blob(fresh, "fresh-user"), blob_prefix)
    expire(TimerRequest(past_due=False))
    ingest(p, blob(old, "late-user"), blob_prefix)
    s = p.storage
    assert any(mentions(r, k, "late-user") for t in dump(s).values() for k, r in t.items())
    assert not any("late-user" in str(line) for line in quarantine_lines(p).values())
    expire(TimerRequest(past_due=False))
    after = dump(s)
    for name, rows in after.items():
        for key, row in rows.items():
            assert not mentions(row, key, "late-user"), (name, key, row)
    assert any(mentions(r, k, "fresh-user") for k, r in after["events"].items())


def test_a_first_run_out_of_time_is_finished_by_the_next(
    app_env: Callable[..., Pipeline], blob_prefix: str
) -> None:
    """A first run over a long history stops at its budget (the host ends a function at 10
    minutes) and the next run goes on from the watermarks; nothing is lost or left."""
    p = app_env(RETENTION_DAYS="30", ALERT_RETENTION_DAYS="30", QUARANTINE_RETENTION_DAYS="30")
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    blobs = {}
    for back in (300, 200, 100, 0):
        at = today - timedelta(days=back)
        rec = samples.record(at + timedelta(minutes=1), f"u{back}", samples.OK, "192.0.2.5")
        blobs[samples.blob_path("BASTION-YEAR", at)] = orjson.dumps(rec) + b"\n"
    ingest(p, blobs, blob_prefix)
    s = p.storage
    assert expiry.Expirer(s).run(budget=0.0)["events"] == 0  # out of time before the first day
    assert len(_events(dump(s))) == 4
    done = expiry.Expirer(s).run()
    assert done["events"] == 3 and [r["UserName"] for r in _events(dump(s)).values()] == ["u0"]


def test_baselines_go_by_last_use_and_forget_old_times(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], blob_prefix: str
) -> None:
    """RETENTION_DAYS=30: a network last used 60 days ago is forgotten (new again), an account
    seen only then is named by no row but alerts, and no baseline row keeps a time older than
    the retention; the fresh account's baseline still knows its usual network and client."""
    p = app_env(RETENTION_DAYS="30", ALERT_RETENTION_DAYS="30", QUARANTINE_RETENTION_DAYS="30")
    fresh = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    old = fresh - timedelta(days=60)
    edge = samples.USER_AGENT

    def one(at: datetime, user: str, ip: str) -> dict[str, bytes]:
        rec = samples.record(at + timedelta(minutes=5), user, samples.OK, ip, port=7, agent=edge)
        return {samples.blob_path("BASTION-LAST", at): orjson.dumps(rec) + b"\n"}

    ingest(p, {**one(old, "erin", "198.51.100.9"), **one(old + timedelta(hours=1), "gone-user",
                                                       "198.51.100.10")}, blob_prefix)  # fmt: skip
    ingest(p, one(fresh, "erin", "203.0.113.10"), blob_prefix)
    s = p.storage
    logs = s.logs()
    for blob in logs.list_blobs(name_starts_with=blob_prefix):  # the source's own lifecycle
        if "/d=" in blob.name and layout.hour_of_blob(blob.name) < f"{fresh:%Y-%m-%d}":
            logs.delete_blob(blob.name)
    indexed_app["expire_old_data"].get_user_function()(TimerRequest(past_due=False))
    after = dump(s)
    keep = datetime.fromisoformat(policy.first_kept(30, datetime.now(UTC)) or "")
    line = keep.replace(tzinfo=UTC) - timedelta(days=1)  # one day's slack
    for name in ("events", "index", "state"):
        for key, row in after[name].items():
            assert not mentions(row, key, "gone-user"), (name, key, row)
            if key[0] == policy.WATERMARK_PARTITION:
                continue
            old = [v for v in row.values() if isinstance(v, datetime) and v < line]
            assert not old, (name, key, row)
    assert [r["UserName"] for r in after["events"].values()] == ["erin"]  # today's record
    prof = {k: r for k, r in after["index"].items() if k[0].startswith(layout.PROFILE_PREFIX)}
    assert prof and all(k[0] == layout.profile_partition("erin") for k in prof)
    for row in prof.values():
        for value in row.values():
            if isinstance(value, datetime):
                assert value >= keep.replace(tzinfo=UTC) - timedelta(days=1), row
    from shared.baselines import habits
    from shared.baselines.profiler import Profiler

    rows = Profiler.rows(cast(Profiler, SimpleNamespace(storage=s)), "erin")
    later = fresh + timedelta(minutes=30)
    usual = habits.Sighting(later, "k", "203.0.113.10", "LINUX-WEB-01", "B",
                              agents.client_of(edge))  # fmt: skip
    assert habits.known(rows, usual)
    assert not habits.known(rows, replace(usual, ip="198.51.100.9"))  # 60 days unused: new
    assert habits.armed(rows, later, timedelta(days=7))  # known from before the window


def test_the_timer_removes_what_expired_and_nothing_younger(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], blob_prefix: str
) -> None:
    p = app_env(RETENTION_DAYS="5", ALERT_RETENTION_DAYS="5", QUARANTINE_RETENTION_DAYS="5")
    now = datetime.now(UTC)
    keep = policy.first_kept(5, now) or ""
    blobs = days_blobs(now)
    ingest(p, blobs, blob_prefix)
    logs, s = p.storage.logs(), p.storage
    gone_blob = next(n for n in blobs if "/d=" in n and _hour(n) < keep)
    logs.delete_blob(blob_prefix + gone_blob)  # its cursor goes; the other old ones stay
    before = dump(s)
    young = {
        k
        for k, r in _events(before).items()
        if r["TimeGenerated"] >= datetime.fromisoformat(keep).replace(tzinfo=UTC)
    }
    assert young and len(young) < len(_events(before))
    query = queries.parse_activity({"ip": "82.165.10.4", "from": (now - timedelta(days=12))
                                    .isoformat(), "to": now.isoformat()}, now)  # fmt: skip
    assert len(list(queries.activity_rows(s, query))) == 6

    indexed_app["expire_old_data"].get_user_function()(TimerRequest(past_due=False))

    after = dump(s)
    assert set(_events(after)) == young
    for name, rows in after.items():
        for (pk, rk), _row in rows.items():
            day = _day(pk) if not pk.startswith("host|") else rk[:10]
            assert not day or day >= keep or pk.startswith("cursor|"), (name, pk, rk)
    cursors = {r["BlobName"] for (pk, _), r in _state(after).items() if pk.startswith("cursor|")}
    assert blob_prefix + gone_blob not in cursors
    assert {n for n in cursors if _hour(n) < keep}  # blobs still there keep their cursor
    assert sum(_day(pk) >= keep for pk, _ in _alerts(after)) == sum(
        _day(pk) >= keep for pk, _ in _alerts(before))  # fmt: skip
    quarantined = [b.name for b in s.container(s.settings.quarantine_container).list_blobs(
        name_starts_with=blob_prefix)]  # fmt: skip
    assert quarantined and all(_hour(n) >= keep for n in quarantined)
    # Queries across the boundary answer the kept part, exactly.
    assert len(list(queries.activity_rows(s, query))) == 3
    user = queries.parse_activity({"user": "carol", "from": (now - timedelta(days=12))
                                   .isoformat(), "to": now.isoformat()}, now)  # fmt: skip
    assert len(list(queries.activity_rows(s, user))) == 3
    # The next run has nothing to do.
    assert not {k: v for k, v in expiry.Expirer(s).run().items() if v}
    assert dump(s).keys() == after.keys()


def _hour(name: str) -> str:
    """The day of a (source or quarantine) blob's hour folder."""
    return layout.hour_of_blob(name)[:10]


def _events(d: Dump) -> dict[tuple[str, str], dict[str, Any]]:
    return d["events"]


def _state(d: Dump) -> dict[tuple[str, str], dict[str, Any]]:
    return d["state"]


def _alerts(d: Dump) -> dict[tuple[str, str], dict[str, Any]]:
    return d["alerts"]


class Crash(RuntimeError):
    pass


def crash_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    real = expiry.Deleter.delete
    count = iter(range(calls))

    def delete(self: expiry.Deleter, table: Any, keys: Any) -> int:
        if next(count, None) is None:
            raise Crash("the worker died")
        return real(self, table, keys)

    monkeypatch.setattr(expiry.Deleter, "delete", delete)


def test_a_retention_run_that_crashed_is_finished_by_the_next(
    make_pipeline: Callable[..., Pipeline], blob_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    blobs = days_blobs(now)
    clean, crashed = (make_pipeline(RETENTION_DAYS="5", ALERT_RETENTION_DAYS="5",
                                    QUARANTINE_RETENTION_DAYS="5") for _ in range(2))  # fmt: skip
    for p in (clean, crashed):
        ingest(p, blobs, blob_prefix)
    expiry.Expirer(clean.storage).run(now)
    with monkeypatch.context() as m:
        crash_after(m, 5)
        with pytest.raises(Crash):
            expiry.Expirer(crashed.storage).run(now)
    expiry.Expirer(crashed.storage).run(now)
    a, b = dump(clean.storage), dump(crashed.storage)
    assert [set(t) for t in a.values()] == [set(t) for t in b.values()]


@pytest.fixture
def two_stores(
    make_pipeline: Callable[..., Pipeline], blob_prefix: str
) -> Iterator[tuple[Pipeline, Pipeline]]:
    blobs, _ = samples.build()
    stores = (make_pipeline(), make_pipeline())
    for p in stores:
        ingest(p, blobs, blob_prefix)
    yield stores


def test_erasure_removes_the_person_everywhere_and_leaves_others_alone(
    two_stores: tuple[Pipeline, Pipeline],
) -> None:
    s = two_stores[0].storage
    before = dump(s)
    assert any(mentions(r, k, "alice") for t in before.values() for k, r in t.items())
    removed = expiry.Eraser(s).erase("ALICE")
    assert removed["events"] == 7 and removed["alerts_redacted"] >= 1 and removed["baseline"]
    after = dump(s)
    for name, rows in after.items():
        for key, row in rows.items():
            assert not mentions(row, key, "alice"), (name, key, row)
            if key in before[name] and not mentions(before[name][key], key, "alice"):
                assert row == before[name][key], (name, key)  # others: untouched
        for key, row in before[name].items():
            if not mentions(row, key, "alice"):
                assert key in rows, (name, key)
    spray = next(r for r in _alerts(after).values() if r.get("Rule") == "password_spray")
    assert "[erased " in spray["Users"] and "erased" in spray["Erasure"]
    assert "bob" in _events(after).__repr__()
    with pytest.raises(policy.NoSuchAccount):  # idempotent: nothing is left to erase
        expiry.Eraser(s).erase("alice")
    assert dump(s) == after


def test_erasure_removes_the_machine_rows_earlier_versions_wrote(
    two_stores: tuple[Pipeline, Pipeline],
) -> None:
    """Versions before issue 25 wrote a `vm|<day>` row per event; erasing a person removes
    theirs (one filtered read a day) and leaves other people's."""
    s = two_stores[0].storage
    legacy = []
    for row in s.index.client.list_entities():
        if row["PartitionKey"].startswith(layout.IP_PREFIX) and row.get("TargetVMKey"):
            day = row["PartitionKey"][len(layout.IP_PREFIX) :]
            rk = keys.subject_prefix(row["TargetVMKey"]) + row["EventRowKey"]
            legacy.append({**row, "PartitionKey": layout.VM_PREFIX + day, "RowKey": rk})
    s.upsert((s.index, legacy))
    expiry.Eraser(s).erase("alice")
    left = [r for r in s.index.client.list_entities() if r["PartitionKey"].startswith("vm|")]
    assert left and len(left) == sum(1 for r in legacy if r["UserKey"] != "alice")


def test_erasure_by_email_and_by_name_remove_the_same_rows_and_quarantined_text(
    two_stores: tuple[Pipeline, Pipeline], blob_prefix: str
) -> None:
    """The README's example, `erase --user alice@contoso.com`, on the sample data (alice signs
    in as `alice`, her rows carry the e-mail), does what `erase --user alice` does, and takes
    her name out of quarantined raw text too (the piece stays listed: offset, reason)."""
    broken = b'{"time": "2026-11-23T09:00:00Z", "properties": {"userName": "alice", "userEm'
    other = b'{"time": "2026-11-23T09:00:01Z", "properties": {"userName": "carol"'
    for p in two_stores:
        ingest(p, {samples.blob_path("BASTION-PROD", NOW - timedelta(hours=5)): broken + b"\n",
                   samples.blob_path("BASTION-PROD", NOW - timedelta(hours=4)): other + b"\n"},
               blob_prefix)  # fmt: skip
        assert any("alice" in str(line.get("Raw")) for line in quarantine_lines(p).values())
    listed = len(quarantine_lines(two_stores[0]))
    by_mail = expiry.Eraser(two_stores[0].storage).erase("alice@contoso.com", now=NOW)
    by_name = expiry.Eraser(two_stores[1].storage).erase("alice", now=NOW)
    assert by_mail == by_name and by_mail["events"] == 7 and by_mail["quarantine_redacted"] == 1
    a, b = (dump(p.storage) for p in two_stores)
    assert [set(t) for t in a.values()] == [set(t) for t in b.values()]
    for p in two_stores:
        lines = list(quarantine_lines(p).values())
        assert not any(mentions(line, ("", ""), "alice") for line in lines)
        assert any("carol" in str(line.get("Raw")) for line in lines)  # others' text stays
        assert len(lines) == listed  # every rejected piece is still accounted for


def test_an_erasure_that_crashed_is_finished_by_the_next(
    two_stores: tuple[Pipeline, Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, crashed = (p.storage for p in two_stores)
    expiry.Eraser(clean).erase("svc-deploy")
    for calls in (1, 3):
        with monkeypatch.context() as m:
            crash_after(m, calls)
            with pytest.raises(Crash):
                expiry.Eraser(crashed).erase("svc-deploy")
    expiry.Eraser(crashed).erase("svc-deploy")
    a, b = dump(clean), dump(crashed)
    assert [set(t) for t in a.values()] == [set(t) for t in b.values()]
    for key, row in _alerts(a).items():
        other = _alerts(b)[key]
        for field in ("Subject", "Users", "CompromisedUsers", "Summary"):
            assert row.get(field) == other.get(field), (key, field)
        assert not mentions(other, key, "svc-deploy")


def test_the_erase_route_needs_the_eraser_role(
    indexed_app: dict[str, Any],
    app_env: Callable[..., Pipeline],
    make_pipeline: Callable[..., Pipeline],
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = make_pipeline()
    ingest(p, samples.build()[0], blob_prefix)
    names = {k: getattr(p.storage.settings, k.lower()) for k in
             ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")}  # fmt: skip
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    app_env(**names)
    erase = indexed_app["http_erase"].get_user_function()

    def call(*roles: str) -> func.HttpResponse:
        headers = {"X-MS-CLIENT-PRINCIPAL": principal(*roles)}
        return erase(func.HttpRequest(method="POST", url="/api/erase", params={"user": "dave"},
                                      headers=headers, body=b""))  # fmt: skip

    assert call("BastionAudit.Read").status_code == 403
    done = call("BastionAudit.Erase")
    assert done.status_code == 200
    assert orjson.loads(done.get_body())["removed"]["events"] == 6
    again = call("BastionAudit.Erase")
    assert again.status_code == 404 and orjson.loads(again.get_body())["error"] == "not_found"
    raw = orjson.loads(indexed_app["http_erase"].get_raw_bindings()[0])
    assert raw["route"] == "erase" and raw["methods"] == ["POST"]


def test_the_command_line_prints_what_it_erased(
    app_env: Callable[..., Pipeline], make_pipeline: Callable[..., Pipeline], blob_prefix: str
) -> None:
    p = make_pipeline()
    ingest(p, samples.build()[0], blob_prefix)
    app_env(**{k: getattr(p.storage.settings, k.lower()) for k in
               ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")})  # fmt: skip
    out = io.StringIO()
    assert cli.main(["erase", "--user", "Frank"], out) == 0
    line = out.getvalue().strip()
    assert line.startswith("erased: ") and " events=6 " in line and "index=" in line, line
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli.main(["erase", "--user", "frank"], out) == 1  # erased already: none left
        assert cli.main(["erase", "--user", "nobody@contoso.com"], out) == 1
    assert out.getvalue() == "" and err.getvalue().count("no such account") == 2
    assert len(err.getvalue().splitlines()) == 2
    assert cli.main(["erase", "--user", "  "], io.StringIO()) == 2
    out = io.StringIO()
    assert cli.main(["retain"], out) == 0 and out.getvalue().startswith("removed: ")
    assert out.getvalue().splitlines()[1].startswith("days examined: ")


def test_a_retention_run_says_what_it_removed_apart_from_the_days_it_looked_at() -> None:
    """`removed: days_events=158 days_quarantine=308` read as destruction when nothing was."""
    walked = cli.retain_report({"days_events": 158, "days_quarantine": 308, "events": 0})
    assert walked == ["removed: nothing", "days examined: events 158, quarantine 308"]
    done = cli.retain_report({"days_events": 1, "events": 246, "index": 700, "cursors": 0})
    assert done == ["removed: events=246 index=700", "days examined: events 1"]
    assert cli.retain_report({})[1].startswith("days examined: none")
