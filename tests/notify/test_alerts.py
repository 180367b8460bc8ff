"""Alerts against Azurite and a real HTTP server on 127.0.0.1: created once under redelivery and
concurrency, delivered to queue and webhooks, retried, kept pending, redelivered later."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import time_machine
from azure.functions.timer import TimerRequest

from devtools import samples
from shared.answer import status
from shared.ingest.loop import Pipeline
from shared.notify import delivery

pytestmark = pytest.mark.azurite


class Hook:
    """A webhook receiver whose answers the test scripts: a list of status codes or 'hang'."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.script: list[int | str] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = hook.script.pop(0) if hook.script else 200
                if answer == "hang":
                    time.sleep(3)
                    return
                if answer == 200:
                    hook.bodies.append(orjson.loads(body))
                self.send_response(int(answer))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook/SECRET-TOKEN") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


def burst(prefix: str, n: int = 6, user: str = "admin", minute: int = 0) -> dict[str, bytes]:
    """A brute force split over two hour blobs (10:58.. and 11:00..)."""
    start = datetime(2026, 11, 24, 10, 58, tzinfo=UTC) + timedelta(minutes=minute)
    records = [
        samples.record(
            start + timedelta(seconds=30 * i), user, samples.FAIL, "198.51.100.9", port=i
        )
        for i in range(n)
    ]
    first = [r for r in records if r["time"] < "2026-11-24T11"]
    second = [r for r in records if r["time"] >= "2026-11-24T11"]
    return {
        prefix + "h=10/PT1H.json": b"".join(orjson.dumps(r) + b"\n" for r in first),
        prefix + "h=11/PT1H.json": b"".join(orjson.dumps(r) + b"\n" for r in second),
    }


def alert_rows(p: Pipeline) -> list[dict[str, Any]]:
    """Incident rows (not the per-actor head rows, which have no `FirstSeen`)."""
    rows = p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
    return [r for r in rows if "FirstSeen" in r]


def queue_messages(p: Pipeline) -> list[dict[str, Any]]:
    queue = p.storage.queues.get_queue_client(p.settings.alert_queue)
    return [orjson.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]


def ingest_all(
    p: Pipeline, logs: Any, blobs: dict[str, bytes], order: list[str] | None = None
) -> None:
    for name, data in blobs.items():
        logs.upload_blob(name, data, overwrite=True)
    for name in order or list(blobs):
        p.ingest(logs.get_blob_client(name))


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "newer-blob-first"])
def test_attack_across_blobs_is_one_incident_whatever_the_order(
    make_pipeline: Callable[..., Pipeline], logs: Any, blob_prefix: str, reverse: bool
) -> None:
    p = make_pipeline()
    blobs = burst(blob_prefix)
    ingest_all(p, logs, blobs, sorted(blobs, reverse=reverse))
    rows = alert_rows(p)
    # One campaign, one incident: the account's brute force is folded into the IP's incident.
    assert [(r["Rule"], r["Subject"], r["Users"]) for r in rows] == [
        ("ip_brute_force", "198.51.100.9", '["admin"]')
    ]
    assert rows[0]["FailureCount"] == 6
    assert rows[0]["Status"] == "delivered" and rows[0]["DeliveredTo"] == "queue"
    messages = queue_messages(p)
    assert [(m["rule"], m["event"], m["notification"]) for m in messages] == [
        ("ip_brute_force", "opened", 1)
    ]
    assert messages[0]["schema"] == delivery.SCHEMA and messages[0]["failureCount"] == 6


def test_redelivered_blobs_do_not_alert_again(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    blobs = burst(blob_prefix)
    ingest_all(pipeline, logs, blobs)
    for _ in range(2):  # cursor lost: everything is read and detected again
        for row in pipeline.storage.state.query("PartitionKey eq @pk", {"pk": "cursor"}):
            pipeline.storage.state.client.delete_entity(row)
        ingest_all(pipeline, logs, blobs)
    assert len(alert_rows(pipeline)) == 1
    assert len(queue_messages(pipeline)) == 1


def test_ongoing_attack_updates_its_incident_and_a_later_one_is_new(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    ingest_all(pipeline, logs, burst(blob_prefix + "a/", n=6))
    ingest_all(pipeline, logs, burst(blob_prefix + "b/", n=6, minute=10))  # continues
    rows = alert_rows(pipeline)
    assert len(rows) == 1 and rows[0]["FailureCount"] == 12
    assert rows[0]["WindowEnd"] == rows[0]["LastSeen"] > rows[0]["FirstSeen"]
    assert rows[0]["UpdateDue"]  # it doubled: people hear of it once the interval has passed
    ingest_all(pipeline, logs, burst(blob_prefix + "c/", n=6, minute=180))  # after quiet time
    assert len(alert_rows(pipeline)) == 2
    assert [m["event"] for m in queue_messages(pipeline)] == ["opened", "opened"]


def test_concurrent_instances_create_one_alert_per_incident(
    make_pipeline: Callable[..., Pipeline], logs: Any, blob_prefix: str
) -> None:
    first = make_pipeline()
    tables = ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")
    names = {k: getattr(first.settings, k.lower()) for k in tables}
    names["ALERT_QUEUE"] = first.settings.alert_queue
    instances = [first, *(make_pipeline(**names) for _ in range(5))]
    blobs = burst(blob_prefix, n=10)
    for name, data in blobs.items():
        logs.upload_blob(name, data, overwrite=True)
    barrier = threading.Barrier(len(instances) * len(blobs))
    errors: list[BaseException] = []

    def run(p: Pipeline, name: str) -> None:
        barrier.wait()
        try:
            p.ingest(logs.get_blob_client(name))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p, n)) for p in instances for n in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = alert_rows(first)
    assert [r["Rule"] for r in rows] == ["ip_brute_force"]
    assert len(queue_messages(first)) == 1


def test_a_debt_carried_to_a_re_keyed_row_is_paid_by_its_decider(
    pipeline: Pipeline, logs: Any, blob_prefix: str
) -> None:
    """Invocation A decides a notice; before it delivers, B's earlier records move the
    incident's start, so B re-keys the row and carries the debt over without paying it (it did
    not decide it). A finds its row gone: it pays on the row of the same incident id (this
    race lost a notice in a parallel run)."""
    ingest_all(pipeline, logs, burst(blob_prefix))
    (row,) = alert_rows(pipeline)
    table = pipeline.storage.alerts
    notice = {"event": "updated", "seq": 2, "at": "2026-11-24T11:05:00+00:00",
              "severity": row["Severity"], "rules": [row["Rule"]], "failures": 9}  # fmt: skip
    owed = {"Seq": 2, "Owed": orjson.dumps([notice]).decode(), "Pending": "updated"}
    moved = {**row, **owed, "RowKey": row["RowKey"] + "-earlier", "DeliveredTo": ""}
    gone = {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}
    table.transact([("create", moved, {}), ("delete", gone, {})])

    assert pipeline.detector.deliverer.deliver_incident(
        row["PartitionKey"], row["RowKey"], row["AlertId"]
    )
    assert [m["event"] for m in queue_messages(pipeline)] == ["opened", "updated"]
    (paid,) = alert_rows(pipeline)
    assert paid["RowKey"] == moved["RowKey"] and not paid["Pending"]
    assert paid["DeliveredTo"] == "queue"


def test_webhooks_receive_generic_teams_and_slack_payloads(
    make_pipeline: Callable[..., Pipeline], logs: Any, blob_prefix: str, hook: Hook
) -> None:
    p = make_pipeline(
        ALERT_WEBHOOK_URL=hook.url("/generic"),
        ALERT_TEAMS_WEBHOOK_URL=hook.url("/teams"),
        ALERT_SLACK_WEBHOOK_URL=hook.url("/slack"),
    )
    ingest_all(p, logs, burst(blob_prefix))
    assert len(hook.bodies) == 3
    generic = [b for b in hook.bodies if b.get("schema") == delivery.SCHEMA]
    teams = [b for b in hook.bodies if b.get("type") == "message"]
    slack = [b for b in hook.bodies if "blocks" in b]
    assert len(generic) == len(teams) == len(slack) == 1
    card = teams[0]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard"
    assert slack[0]["text"] and slack[0]["blocks"][0]["type"] == "header"
    assert {r["DeliveredTo"] for r in alert_rows(p)} == {"queue,slack,teams,webhook"}


def test_server_errors_and_timeouts_are_retried(
    make_pipeline: Callable[..., Pipeline], logs: Any, blob_prefix: str, hook: Hook
) -> None:
    p = make_pipeline(ALERT_WEBHOOK_URL=hook.url(), WEBHOOK_TIMEOUT_SECONDS="1")
    hook.script = [500, "hang", 503]  # then 200s
    ingest_all(p, logs, burst(blob_prefix))
    assert len(hook.bodies) == 1
    assert all(r["Status"] == "delivered" for r in alert_rows(p))


def test_dead_endpoint_leaves_alert_pending_and_redelivery_sends_it(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = Hook()
    dead_url = dead.url()
    dead.server.shutdown()
    dead.server.server_close()  # nothing listens there any more
    p = app_env(ALERT_WEBHOOK_URL=dead_url, WEBHOOK_MAX_ATTEMPTS="2")
    caplog.set_level("DEBUG")
    ingest_all(p, logs, burst(blob_prefix))
    rows = alert_rows(p)
    assert [r["Status"] for r in rows] == ["pending"]
    assert all(r["DeliveredTo"] == "queue" and "ConnectionError" in r["LastError"] for r in rows)
    assert "SECRET-TOKEN" not in caplog.text and "SECRET-TOKEN" not in str(rows)

    # The endpoint comes back (same settings name, new address), and the timer runs later.
    p2 = app_env(ALERT_WEBHOOK_URL=hook.url(), ALERTS_TABLE=p.settings.alerts_table,
                 ALERT_QUEUE=p.settings.alert_queue)  # fmt: skip
    tried, done = p2.detector.deliverer.redeliver_pending(
        now=datetime.now(UTC) + timedelta(minutes=5)
    )
    assert (tried, done) == (1, 1)
    assert len(hook.bodies) == 1
    assert all(r["Status"] == "delivered" for r in alert_rows(p2))
    assert len(queue_messages(p2)) == 1  # the queue was not sent twice
    indexed_app["redeliver_alerts"].get_user_function()(TimerRequest(past_due=False))
    assert len(hook.bodies) == 1  # nothing pending any more


def lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def failures_at(prefix: str, start: datetime, n: int = 6) -> dict[str, bytes]:
    """A brute force of `n` failures from one address, in one hour blob, from `start`."""
    records = [
        samples.record(
            start + timedelta(seconds=20 * i), "admin", samples.FAIL, "198.51.100.9", port=i
        )
        for i in range(n)
    ]
    return {prefix + f"{start:y=%Y/m=%m/d=%d/h=%H}/m=00/PT1H.json": lines(records)}


def test_backfilled_incident_is_retried_until_delivered_and_listed_past_the_horizon(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
) -> None:
    """An incident about 30-day-old events (a backfill, a catch-up after an outage) is owed like
    any other: found by when its notification became pending, not by the day of its events.
    Past ALERT_RETRY_HOURS it is no longer sent, and `status` lists it."""
    dead = Hook()
    dead_url = dead.url()
    dead.server.shutdown()
    dead.server.server_close()
    p = app_env(ALERT_WEBHOOK_URL=dead_url, WEBHOOK_MAX_ATTEMPTS="1", ALERT_RETRY_HOURS="72")
    month_ago = (datetime.now(UTC) - timedelta(days=30)).replace(minute=10, second=0)
    ingest_all(p, logs, failures_at(blob_prefix + "a/", month_ago))
    [row] = alert_rows(p)
    assert row["Status"] == "pending" and row["DeliveredTo"] == "queue"
    collected = status.collect(p.storage, p.storage.logs()).json()
    assert collected["pendingAlerts"] == 1 and collected["alertsPastRetryHorizon"] == []

    # The endpoint is back; the timer runs (through the indexed app) five minutes later.
    back = {"ALERTS_TABLE": p.settings.alerts_table, "ALERT_QUEUE": p.settings.alert_queue}
    p2 = app_env(ALERT_WEBHOOK_URL=hook.url(), **back)
    timer = indexed_app["redeliver_alerts"].get_user_function()
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=5), tick=True):
        timer(TimerRequest(past_due=False))
    assert [b["alertId"] for b in hook.bodies] == [row["AlertId"]]
    assert [r["Status"] for r in alert_rows(p2)] == ["delivered"]
    assert len(queue_messages(p2)) == 1

    # Another backfilled incident fails, and keeps failing past the horizon: not sent, listed.
    p3 = app_env(ALERT_WEBHOOK_URL=dead_url, WEBHOOK_MAX_ATTEMPTS="1", **back)
    ingest_all(p3, logs, failures_at(blob_prefix + "b/", month_ago - timedelta(days=1)))
    stuck = next(r for r in alert_rows(p3) if r["Status"] == "pending")
    p4 = app_env(ALERT_WEBHOOK_URL=hook.url(), **back)
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=73), tick=True):
        timer(TimerRequest(past_due=False))
        collected = status.collect(p4.storage, p4.storage.logs()).json()
    assert len(hook.bodies) == 1, "past the horizon: not sent any more"
    assert collected["pendingAlerts"] == 1
    [listed] = collected["alertsPastRetryHorizon"]
    assert listed["alertId"] == stuck["AlertId"] and listed["event"] == "opened"
    assert "ConnectionError" in listed["lastError"]
