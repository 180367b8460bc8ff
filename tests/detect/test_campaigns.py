"""Alerting an attacker cannot blind, flood or mislead: the hostile cases of issue 11, each
through the app's indexed blob trigger against Azurite (webhooks on a real local server)."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.timer import TimerRequest
from test_alerts import Hook

from devtools import samples
from shared.detect import runner
from shared.ingest.loop import Pipeline
from shared.store import layout
from shared.store.tables import Table

pytestmark = pytest.mark.azurite
DAY = datetime(2026, 11, 24, tzinfo=UTC)
ATTACKER = "198.51.100.66"
NAT = "203.0.113.10"


def lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in sorted(records, key=lambda r: r["time"]))


def incidents(p: Pipeline) -> list[dict[str, Any]]:
    rows = p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
    return sorted(
        (r for r in rows if "FirstSeen" in r), key=lambda r: (r["FirstSeen"], r["RowKey"])
    )


def view(p: Pipeline) -> list[tuple[Any, ...]]:
    """What an incident says, without delivery bookkeeping or row keys."""
    fields = ("SubjectKind", "Subject", "Rules", "Severity", "FirstSeen", "LastSeen",
              "FailureCount", "SuccessCount", "DistinctUsers", "Users", "CompromisedUsers",
              "State")  # fmt: skip
    return [tuple(r[f] for f in fields) for r in incidents(p)]


def queue(p: Pipeline) -> list[dict[str, Any]]:
    """The alert queue's messages ([] when nothing was ever sent: no queue yet)."""
    q = p.storage.queues.get_queue_client(p.settings.alert_queue)
    out: list[dict[str, Any]] = []
    while True:
        try:
            batch = list(q.receive_messages(max_messages=32, visibility_timeout=600))
        except ResourceNotFoundError:
            return out
        got = [orjson.loads(base64.b64decode(m.content)) for m in batch]
        if not got:
            return out
        out += got


def host_blob(logs: Any, prefix: str, host: str, hour: datetime) -> str:
    return prefix + samples.blob_path(host, hour)


def test_huge_case_folding_names_cannot_blind_alerting(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """Six failures with ~2,000-character names that grow when case-folded, from one IP,
    beside a real brute force on root in the same blob: every write stays within Table limits,
    the blob is not poisoned and both incidents are raised."""
    p = app_env()
    start = DAY + timedelta(hours=9)
    names = ["\ufb03" * 2040, "\u0390" * 1020, "ß" * 2000, "İ" * 2040, "\ufb03" * 2039, "x" * 2048]
    records = [
        samples.record(start + timedelta(seconds=10 * i), name, samples.FAIL, "192.0.2.1", port=i,
                       email="")
        for i, name in enumerate(names)
    ]  # fmt: skip
    records += [
        samples.record(start + timedelta(minutes=5, seconds=10 * i), "root", samples.FAIL,
                       ATTACKER, port=100 + i)
        for i in range(6)
    ]  # fmt: skip
    name = host_blob(logs, blob_prefix, "BASTION-HUGE", start)
    logs.upload_blob(name, lines(records))
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))
    found = {(r["Subject"], r["Rule"]) for r in incidents(p)}
    assert found == {("192.0.2.1", "password_spray"), (ATTACKER, "ip_brute_force")}
    spray = next(r for r in incidents(p) if r["Subject"] == "192.0.2.1")
    assert len(spray["Users"]) < 32 * 1024 and spray["DistinctUsers"] == 6
    assert all(len(str(v)) < 32 * 1024 for r in incidents(p) for v in r.values())


def campaign(accounts: int, per_account: int, minutes: int) -> list[dict[str, Any]]:
    total = accounts * per_account
    start = DAY + timedelta(hours=10)
    return [
        samples.record(start + timedelta(seconds=60 * minutes * i / total),
                       f"acct{i % accounts:03d}", samples.FAIL, ATTACKER, port=i % 60000)
        for i in range(total)
    ]  # fmt: skip


def test_one_campaign_is_one_incident_and_few_notifications(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
) -> None:
    """One IP against 60 accounts, ingested as it grows, ending in a sign-in: one incident (the
    accounts folded into it, listed, not notified one by one), opened then escalated."""
    p = app_env(ALERT_TEAMS_WEBHOOK_URL=hook.url("/teams"))
    records = campaign(accounts=60, per_account=8, minutes=40)
    win = samples.record(DAY + timedelta(hours=10, minutes=41), "acct007", samples.OK, ATTACKER)
    data = [orjson.dumps(r) + b"\n" for r in [*records, win]]
    name = host_blob(logs, blob_prefix, "BASTION-CAMPAIGN", DAY + timedelta(hours=10))
    client = logs.get_blob_client(name)
    client.create_append_blob()
    trigger = indexed_app["ingest_blob"].get_user_function()
    for k in range(6):  # six appends, the last one with the sign-in
        client.append_block(b"".join(data[k * len(data) // 6 : (k + 1) * len(data) // 6]))
        trigger(client)
    rows = incidents(p)
    assert [(r["SubjectKind"], r["Subject"]) for r in rows] == [("ip", ATTACKER)]
    (row,) = rows
    assert row["FailureCount"] == 480 and row["DistinctUsers"] == 60
    assert row["Severity"] == "critical" and row["CompromisedUsers"] == '["acct007"]'
    assert set(row["Rules"].split(",")) >= {"password_spray", "ip_brute_force"}
    events = [m["event"] for m in queue(p)]
    assert events == ["opened", "escalated"]
    assert len(hook.bodies) == 2  # the Teams channel heard exactly as much


def test_a_long_campaigns_step_reads_what_it_adds_not_its_history(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 25: one IP against 60 accounts, 12 appends through the indexed trigger. The rows a
    step reads stay what its new records need: they used to grow with the attack (every
    account read its buckets three hours around, and a window of events before, each step)."""
    p = app_env()
    data = [orjson.dumps(r) + b"\n" for r in campaign(accounts=60, per_account=30, minutes=50)]
    client = logs.get_blob_client(
        host_blob(logs, blob_prefix, "BASTION-LONG", DAY + timedelta(hours=10))
    )
    client.create_append_blob()
    trigger = indexed_app["ingest_blob"].get_user_function()
    read = [0]
    query = Table.query

    def counted(self: Table, *args: Any, **kwargs: Any) -> Any:
        for row in query(self, *args, **kwargs):
            read[0] += 1
            yield row

    monkeypatch.setattr(Table, "query", counted)
    steps = []
    for k in range(12):
        client.append_block(b"".join(data[k * len(data) // 12 : (k + 1) * len(data) // 12]))
        read[0] = 0
        trigger(client)
        steps.append(read[0])
    # 453 .. 653 rows (the address's buckets of the day grow by a minute's); before: .. 3,923
    assert steps[-1] <= 1.6 * steps[1], steps
    assert [(r["SubjectKind"], r["FailureCount"]) for r in incidents(p)] == [("ip", 1800)]


def test_a_trickle_cannot_swallow_a_later_attack(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """Five failures every 55 minutes keep an incident open; seven hours later a 60-failure
    attack from the same address is announced, not merged silently."""
    p = app_env(INCIDENT_MAX_HOURS="6")
    trigger = indexed_app["ingest_blob"].get_user_function()
    start = DAY + timedelta(hours=1)
    records = [
        samples.record(start + timedelta(minutes=55 * k, seconds=20 * i), "svc", samples.FAIL,
                       ATTACKER, port=10 * k + i)
        for k in range(8) for i in range(5)
    ]  # fmt: skip
    attack_at = start + timedelta(hours=7, minutes=30)
    records += [
        samples.record(attack_at + timedelta(seconds=5 * i), f"u{i % 20}", samples.FAIL, ATTACKER,
                       port=1000 + i)
        for i in range(60)
    ]  # fmt: skip
    by_hour: dict[datetime, list[dict[str, Any]]] = {}
    for r in records:
        hour = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).replace(minute=0, second=0)
        by_hour.setdefault(hour, []).append(r)
    for hour in sorted(by_hour):
        name = host_blob(logs, blob_prefix, "BASTION-TRICKLE", hour)
        logs.upload_blob(name, lines(by_hour[hour]))
        trigger(logs.get_blob_client(name))
    rows = incidents(p)
    assert len(rows) >= 2
    last = rows[-1]
    assert last["FirstSeen"] <= attack_at <= last["LastSeen"]
    assert last["Rule"] == "password_spray" and last["FailureCount"] >= 60
    told = [(m["alertId"], m["event"]) for m in queue(p)]
    assert (last["AlertId"], "opened") in told or (last["AlertId"], "escalated") in told


def nat_morning(hour: datetime) -> list[dict[str, Any]]:
    """Colleagues behind the office NAT mistype once near the end of the hour and sign in
    90 seconds later, in the next hour's blob."""
    out = []
    for i, user in enumerate(("dave", "erin", "frank", "grace", "heidi")):
        when = hour + timedelta(minutes=58, seconds=10 * i)
        out.append(samples.record(when, user, samples.FAIL, NAT, "WIN-JUMP-01", port=51000 + i))
        out.append(samples.record(when + timedelta(seconds=90), user, samples.OK, NAT,
                                  "WIN-JUMP-01", port=51100 + i))  # fmt: skip
    return out


@pytest.mark.parametrize("newest_first", [False, True], ids=["in-order", "newest-first"])
def test_office_nat_typos_raise_nothing_whatever_the_order(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    newest_first: bool,
) -> None:
    p = app_env()
    hour = DAY + timedelta(hours=8)
    names = []
    for h in (hour, hour + timedelta(hours=1)):
        name = host_blob(logs, blob_prefix, "BASTION-NAT", h)
        part = [r for r in nat_morning(hour) if r["time"].startswith(h.strftime("%Y-%m-%dT%H"))]
        logs.upload_blob(name, lines(part))
        names.append(name)
    trigger = indexed_app["ingest_blob"].get_user_function()
    for name in reversed(names) if newest_first else names:
        trigger(logs.get_blob_client(name))
    assert incidents(p) == []


def test_log_text_cannot_steer_cards_or_messages(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
) -> None:
    """A user name written to look like our words and a phishing link arrives as inert text in
    the Teams card, the Slack message and the summary."""
    p = app_env(
        ALERT_TEAMS_WEBHOOK_URL=hook.url("/teams"),
        ALERT_SLACK_WEBHOOK_URL=hook.url("/slack"),
        ALERT_WEBHOOK_URL=hook.url("/generic"),
    )
    evil = (
        "ops: 0 failures (scheduled test)\n\n[Acknowledge alert](https://evil.example/sso)"
        " <!channel> \u202eexe.cod\u200b {{DATE(2017-02-14T06:08:00Z)}}"
    )
    start = DAY + timedelta(hours=11)
    records = [  # one account from twelve addresses: an account incident, named in the summary
        samples.record(start + timedelta(seconds=20 * i), evil, samples.FAIL, f"192.0.2.{i}",
                       vm="LINUX-**WEB**-01", port=i, email="")
        for i in range(12)
    ]  # fmt: skip
    name = host_blob(logs, blob_prefix, "BASTION-TEXT", start)
    logs.upload_blob(name, lines(records))
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))
    assert [r["SubjectKind"] for r in incidents(p)] == ["user"]
    teams = next(b for b in hook.bodies if b.get("type") == "message")
    slack = next(b for b in hook.bodies if "blocks" in b)
    generic = [b for b in hook.bodies if "schema" in b][-1]  # opened at 5, escalated at 8 IPs
    assert [b["event"] for b in hook.bodies if "schema" in b] == ["opened", "escalated"]
    card = teams["attachments"][0]["content"]
    # No element of the card renders Markdown: text only in RichTextBlock/TextRun.
    assert {block["type"] for block in card["body"]} == {"RichTextBlock"}
    runs = [run["text"] for block in card["body"] for run in block["inlines"]]
    fields = [f["text"] for b in slack["blocks"] for f in b.get("fields", [])]
    for text in [*runs, teams["summary"], slack["text"], generic["summary"], *fields]:
        assert "https://" not in text and "](http" not in text
        assert "\u202e" not in text and "\u200b" not in text and "\n" not in text
        assert "<!channel>" not in text and "{{" not in text
    assert all(
        part["type"] == "plain_text"
        for block in slack["blocks"]
        for part in [block.get("text", {}), *block.get("fields", [])]
        if part
    )
    summary = generic["summary"]
    assert summary.startswith('[HIGH] Distributed password guessing against user "ops: 0')  # 12 IPs
    assert "\\(scheduled test\\)\\\\x0a\\\\x0a\\[acknowledge" in summary  # inert, readable
    assert "LINUX-\\*\\*WEB\\*\\*-01" in summary
    shown = "".join(runs)  # the whole name, as characters (TextRuns render no Markdown)
    assert "(scheduled test)\\x0a\\x0a[acknowledge alert](hxx" in shown
    assert generic["subject"] == records[0]["properties"]["userName"].casefold() or generic[
        "subject"
    ].startswith("ops")  # programs still get the value itself
    assert queue(p)[-1]["summary"] == summary


def population(seed: int) -> dict[str, bytes]:
    """Two hours of three hosts: ordinary sign-ins, NAT typos, and planted attacks (a brute
    force across the hour boundary, a spray, a campaign ending in a sign-in, a distributed
    attack on one account) as hour blobs."""
    rng = random.Random(seed)
    start = DAY + timedelta(hours=14)
    records: list[tuple[str, dict[str, Any]]] = []
    hosts = ["BASTION-A", "BASTION-B", "BASTION-C"]
    for i in range(240):
        when = start + timedelta(seconds=rng.randrange(7200))
        user = f"user{rng.randrange(40)}"
        records.append(
            (
                rng.choice(hosts),
                samples.record(when, user, samples.OK, f"82.165.{i % 40}.7", port=i),
            )
        )
    for k in range(12):
        when = start + timedelta(minutes=10 * k + 3)
        u = f"user{k}"
        records.append(("BASTION-A", samples.record(when, u, samples.FAIL, NAT, port=3000 + k)))
        records.append(
            (
                "BASTION-A",
                samples.record(when + timedelta(seconds=50), u, samples.OK, NAT, port=3100 + k),
            )
        )
    for i in range(8):  # brute force across 15:00, split over two hosts
        when = start + timedelta(minutes=57, seconds=30 * i)
        records.append(
            (
                hosts[i % 2],
                samples.record(when, "admin", samples.FAIL, "198.51.100.23", port=4000 + i),
            )
        )
    for i in range(7):  # spray
        when = start + timedelta(minutes=20, seconds=35 * i)
        records.append(
            (
                "BASTION-B",
                samples.record(when, f"victim{i}", samples.FAIL, "45.83.64.7", port=5000 + i),
            )
        )
    for i in range(40):  # campaign with a sign-in at the end
        when = start + timedelta(minutes=70, seconds=15 * i)
        records.append(
            (
                "BASTION-C",
                samples.record(when, f"acct{i % 10}", samples.FAIL, ATTACKER, port=6000 + i),
            )
        )
    records.append(
        (
            "BASTION-C",
            samples.record(start + timedelta(minutes=81), "acct3", samples.OK, ATTACKER, port=6999),
        )
    )
    for i in range(12):  # one account from twelve addresses
        when = start + timedelta(minutes=100, seconds=40 * i)
        records.append(
            (
                hosts[i % 3],
                samples.record(when, "root", samples.FAIL, f"203.0.113.{100 + i}", port=7000 + i),
            )
        )
    blobs: dict[str, list[dict[str, Any]]] = {}
    for host, r in records:
        hour = datetime.fromisoformat(r["time"].replace("Z", "+00:00")).replace(
            minute=0, second=0, microsecond=0
        )
        blobs.setdefault(samples.blob_path(host, hour), []).append(r)
    return {name: lines(rs) for name, rs in blobs.items()}  # fmt: skip


@pytest.fixture(scope="module")
def reference(emulator: Any) -> list[tuple[Any, ...]]:
    """The incidents of the population replayed in time order, blob by blob."""
    from devtools import azurite
    from shared.core.settings import LOGS_CONTAINER, Settings

    p = Pipeline(Settings.from_env(azurite.isolated_env(emulator.connection_string)))
    logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not logs.exists():
        logs.create_container()
    blobs = population(1)
    for name in sorted(blobs, key=lambda n: (n.split("/y=")[1], n)):
        logs.upload_blob("ref/" + name, blobs[name], overwrite=True)
        p.ingest(logs.get_blob_client("ref/" + name))
    got = view(p)
    p.storage.close()
    return got


@pytest.mark.parametrize("order", ["reversed", "shuffled", "sliced"])
def test_replays_in_any_order_give_the_same_incidents(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    reference: list[tuple[Any, ...]],
    order: str,
) -> None:
    p = app_env()
    trigger = indexed_app["ingest_blob"].get_user_function()
    blobs = population(1)
    names = sorted(blobs, key=lambda n: (n.split("/y=")[1], n))
    if order == "reversed":
        names.reverse()
    elif order == "shuffled":
        random.Random(3).shuffle(names)
    if order == "sliced":  # each blob grows in several appends, ingested after each
        rng = random.Random(5)
        clients = {}
        for name in names:
            clients[name] = logs.get_blob_client(blob_prefix + name)
            clients[name].create_append_blob()
        pending = {n: blobs[n].splitlines(keepends=True) for n in names}
        while any(pending.values()):
            name = rng.choice([n for n in names if pending[n]])
            take = rng.randint(1, 7)
            clients[name].append_block(b"".join(pending[name][:take]))
            pending[name] = pending[name][take:]
            trigger(clients[name])
    else:
        for name in names:
            logs.upload_blob(blob_prefix + name, blobs[name])
            trigger(logs.get_blob_client(blob_prefix + name))
    assert view(p) == reference
    kinds = {(v[0], v[1]) for v in reference}
    assert kinds == {
        ("ip", "198.51.100.23"),
        ("ip", "45.83.64.7"),
        ("ip", ATTACKER),
        ("user", "root"),
    }


def test_one_failing_actor_does_not_stop_the_others(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (or an entity the service refuses) for one address: the others are detected, the
    invocation succeeds, the failed one is queued, and the timer detects it later."""
    p = app_env()
    original = runner.Evaluation._actor_once

    def broken(self: runner.Evaluation, task: runner.Task, *args: Any) -> Any:
        if task.actor.subject == "192.0.2.13":
            raise ValueError("content that trips a bug")
        return original(self, task, *args)

    start = DAY + timedelta(hours=12)
    records = [
        samples.record(start + timedelta(seconds=10 * i), "admin", samples.FAIL, ip, port=i)
        for ip in ("192.0.2.13", ATTACKER)
        for i in range(6)
    ]
    name = host_blob(logs, blob_prefix, "BASTION-ISOLATE", start)
    logs.upload_blob(name, lines(records))
    with monkeypatch.context() as m:
        m.setattr(runner.Evaluation, "_actor_once", broken)
        indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))
        # The broken address's attack is still seen: as the account's own incident.
        assert sorted(r["Subject"] for r in incidents(p)) == sorted([ATTACKER, "admin"])
    queued = list(p.storage.state.query("PartitionKey eq @pk",
                                  {"pk": layout.RETRY_PARTITION}))  # fmt: skip
    assert [r["Subject"] for r in queued] == ["192.0.2.13"]
    indexed_app["redeliver_alerts"].get_user_function()(TimerRequest(past_due=False))
    live = [r["Subject"] for r in incidents(p) if r["State"] == "open"]
    assert sorted(live) == sorted(["192.0.2.13", ATTACKER])  # admin's now folded into its IP's
    assert not list(p.storage.state.query("PartitionKey eq @pk",
                                    {"pk": layout.RETRY_PARTITION}))  # fmt: skip


def test_the_sweep_goes_on_past_a_blob_that_fails(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = app_env()
    now = datetime.now(UTC)
    good, bad = (
        host_blob(logs, blob_prefix, host, now.replace(minute=0, second=0, microsecond=0))
        for host in ("BASTION-GOOD", "BASTION-BAD")
    )
    for name in (good, bad):
        logs.upload_blob(
            name,
            lines([samples.record(now - timedelta(minutes=5), "alice", samples.OK, "10.0.0.1")]),
        )
    original = Pipeline.ingest

    def flaky(self: Pipeline, blob: Any, now: datetime | None = None) -> Any:
        if blob.blob_name == bad:
            raise ValueError("this blob trips a bug")
        return original(self, blob, now)

    monkeypatch.setattr(Pipeline, "ingest", flaky)
    with pytest.raises(Exception, match="1 of"):
        indexed_app["sweep_recent_blobs"].get_user_function()(TimerRequest(past_due=False))
    stored = {r["SourceBlob"] for r in p.storage.events.query("PartitionKey ge @lo", {"lo": ""})}
    assert good in stored and bad not in stored
