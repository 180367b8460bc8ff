"""Issue 16 through the app's own triggers against Azurite: baselines and their findings (in any
order, replayed), host silence and the diagnostic check (health timer), the daily digest."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from test_alerts import Hook
from test_campaigns import incidents, lines, queue
from test_diagnostics import BASTION, OURS, FakeArm, audit, body, checker, setting

from devtools import samples
from shared import functions
from shared.ingest.loop import Pipeline
from shared.notify.delivery import DeliveryError
from shared.store import layout

pytestmark = pytest.mark.azurite
DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
OFFICE, THIEF = "203.0.113.10", "102.44.7.9"
TIMER = TimerRequest(past_due=False)


def blobs_of(prefix: str, records: list[dict[str, Any]]) -> dict[str, bytes]:
    """One blob per host and hour, as Azure Monitor writes them."""
    by_blob: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        when = datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
        host = r["resourceId"].rsplit("/", 1)[1]
        name = prefix + samples.blob_path(host, when.replace(minute=0, second=0, microsecond=0))
        by_blob.setdefault(name, []).append(r)
    return {name: lines(rs) for name, rs in by_blob.items()}


def ingest(app: dict[str, Any], logs: Any, blobs: dict[str, bytes], order: list[str]) -> None:
    for name in order:
        logs.upload_blob(name, blobs[name], overwrite=True)
        app["ingest_blob"].get_user_function()(logs.get_blob_client(name))


def history(start: datetime, days: int, user: str = "alice") -> list[dict[str, Any]]:
    """Working days: the office network, 09/12/15 h, one machine."""
    return [
        samples.record(start + timedelta(days=d, hours=h, minutes=d), user, samples.OK, OFFICE,
                       vm="LINUX-WEB-01", port=1000 * d + h)
        for d in range(days) for h in (9, 12, 15)
    ]  # fmt: skip


def stolen(when: datetime) -> list[dict[str, Any]]:
    """A first sign-in from a new network at night to a machine never used."""
    return [samples.record(when, "alice", samples.OK, THIEF, vm="WIN-NEW-09", port=4444)]


def profile(p: Pipeline, user: str = "alice") -> list[tuple[Any, ...]]:
    rows = p.storage.index.partition(layout.profile_partition(user))
    fields = ("RowKey", "First", "FirstKey", "Ip", "Target", "FindingDay", "FindingSig")
    return sorted(tuple(r.get(f) for f in fields) for r in rows)


def findings(p: Pipeline) -> list[tuple[Any, ...]]:
    fields = ("RowKey", "Subject", "Rules", "Severity", "FirstSeen", "ClientIps", "TargetVMs")
    return [tuple(r[f] for f in fields) for r in incidents(p)]


def test_stolen_credentials_raise_one_finding_in_any_order(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """Eight days of habit, then a sign-in from a new network at 02:10 to a new machine: one
    medium finding, told once. Shuffled, sliced and replayed: the same baseline and finding."""
    blobs = blobs_of(blob_prefix, history(DAY0, 8) + stolen(DAY0 + timedelta(days=9, hours=2)))
    p = app_env()
    ingest(indexed_app, logs, blobs, sorted(blobs))
    want_profile, want = profile(p), findings(p)
    assert [(f[1], f[2], f[3]) for f in want] == [
        ("alice", "new_source_success,off_hours,first_time_target", "medium")
    ]
    assert [m["rule"] for m in queue(p)] == ["new_source_success"]

    order = sorted(blobs)
    random.Random(7).shuffle(order)  # the theft first, history after: a backfill
    order = [n for n in order if THIEF.encode() in blobs[n]] + order
    q = app_env()
    ingest(indexed_app, logs, blobs, order)
    for name in order[:5]:  # and replays
        q.ingest(logs.get_blob_client(name))
    assert profile(q) == want_profile
    assert findings(q) == want
    assert [m["rule"] for m in queue(q)] == ["new_source_success"]


def test_a_new_network_alone_and_a_young_account_raise_nothing(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    home = samples.record(DAY0 + timedelta(days=9, hours=12), "alice", samples.OK, "82.1.2.3",
                          vm="LINUX-WEB-01")  # fmt: skip
    early = stolen(DAY0 + timedelta(days=3, hours=2))  # three days of history: still learning
    blobs = blobs_of(blob_prefix, [*history(DAY0, 8), home])
    young = blobs_of(blob_prefix + "young/", history(DAY0, 3, "bob") + early)
    p = app_env()
    ingest(indexed_app, logs, {**blobs, **young}, sorted({**blobs, **young}))
    assert incidents(p) == [] and queue(p) == []
    assert any(r[0].startswith("net|") for r in profile(p)), "the home network is learned"


def test_slow_guessing_is_caught_through_the_trigger(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """One failure every five minutes for three hours (never five in fifteen minutes), from one
    address and from many: one incident each, whatever the blob order."""
    start = DAY0 + timedelta(days=9, hours=20)
    slow = [samples.record(start + timedelta(minutes=5 * i), "carol", samples.FAIL, "45.1.2.3",
                           port=i) for i in range(36)]  # fmt: skip
    spread = [samples.record(start + timedelta(minutes=7 * i), "dave", samples.FAIL,
                             f"198.19.{i}.{i + 1}", port=i) for i in range(20)]  # fmt: skip
    blobs = blobs_of(blob_prefix, slow + spread)
    order = sorted(blobs, reverse=True)
    p = app_env()
    ingest(indexed_app, logs, blobs, order)
    rules = {(r["Subject"], r["Rule"]) for r in incidents(p)}
    assert ("carol", "slow_brute_force_user") in rules
    assert ("dave", "distributed_slow_user") in rules
    assert len(incidents(p)) == 2


def test_health_timer_reports_a_silent_host_once(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """A host that wrote records every hour for eight days, and none for the last six hours:
    one `host_silent` incident, told once however often the timer runs."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=h) for h in range(6, 8 * 24)]
    records = [
        samples.record(h + timedelta(minutes=20), "svc-backup", samples.OK, "20.1.2.3",
                       host="BASTION-QUIET", port=i)
        for i, h in enumerate(hours)
    ]  # fmt: skip
    by_day: dict[str, list[dict[str, Any]]] = {}
    for r in records:  # one blob a day keeps the test short; the hours come from the records
        by_day.setdefault(r["time"][:10], []).append(r)
    midnight = "T00:00+00:00"
    blobs = {
        blob_prefix + samples.blob_path("BASTION-QUIET", datetime.fromisoformat(day + midnight)):
        lines(rs) for day, rs in by_day.items()
    }  # fmt: skip
    p = app_env()
    ingest(indexed_app, logs, blobs, sorted(blobs))
    for _ in range(2):
        indexed_app["check_health"].get_user_function()(TIMER)
    found = [r for r in incidents(p) if r["SubjectKind"] == "host"]
    assert [(r["Subject"], r["Rule"], r["Severity"]) for r in found] == [
        ("BASTION-QUIET", "host_silent", "medium")
    ]
    assert found[0]["FirstSeen"] == hours[0] + timedelta(hours=1)
    assert [m["rule"] for m in queue(p)] == ["host_silent"]


def test_health_timer_checks_the_diagnostic_setting_over_arm(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    arm: FakeArm,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Present: nothing. Removed: one high incident, told once. An API error: no incident."""
    p = app_env(BASTION_RESOURCE_IDS=BASTION, LOGS_STORAGE_ACCOUNT_ID=OURS)
    functions.services().detector.health.checker = checker(arm)
    run = indexed_app["check_health"].get_user_function()
    arm.answer(BASTION, 200, body(setting("to-us", [audit()], storageAccountId=OURS)))
    run(TIMER)
    assert incidents(p) == []
    arm.answer(BASTION, 200, body())
    run(TIMER)
    run(TIMER)
    found = [(r["Subject"], r["Rule"], r["Severity"]) for r in incidents(p)]
    assert found == [("bas-hub", "diagnostic_setting_changed", "high")]
    assert [m["rule"] for m in queue(p)] == ["diagnostic_setting_changed"]

    q = app_env(BASTION_RESOURCE_IDS=BASTION, LOGS_STORAGE_ACCOUNT_ID=OURS)
    functions.services().detector.health.checker = checker(arm)
    arm.answer(BASTION, 500, {"error": {"code": "InternalServerError", "message": "x"}})
    with caplog.at_level("WARNING"):
        indexed_app["check_health"].get_user_function()(TIMER)
    assert incidents(q) == [] and queue(q) == []
    assert "500" in caplog.text


def test_digest_sends_the_days_low_findings_once(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
) -> None:
    """A first sign-in to a new machine from a new network, in working hours: low, so nobody is
    paged; the next morning's digest lists it once (queue and, when asked, Teams)."""
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday -= timedelta(days=1)
    new_vm = samples.record(yesterday + timedelta(hours=10), "alice", samples.OK, "82.1.2.3",
                            vm="WIN-NEW-09")  # fmt: skip
    blobs = blobs_of(blob_prefix, [*history(yesterday - timedelta(days=9), 8), new_vm])
    p = app_env(ALERT_TEAMS_WEBHOOK_URL=hook.url("/teams"), DIGEST_WEBHOOKS="true")
    ingest(indexed_app, logs, blobs, sorted(blobs))
    assert [(r["Rule"], r["Severity"]) for r in incidents(p)] == [("new_source_success", "low")]
    assert queue(p) == [] and hook.bodies == []  # low pages nobody
    for _ in range(2):
        indexed_app["send_digest"].get_user_function()(TIMER)
    sent = queue(p)
    assert [(m["schema"], m["findings"]) for m in sent] == [("bastion-audit/digest@1", 1)]
    assert sent[0]["accounts"][0]["subject"] == "alice"
    assert "to a machine it never used" in sent[0]["accounts"][0]["findings"][0]["line"]
    assert len(hook.bodies) == 1 and hook.bodies[0]["type"] == "message"


def test_a_digest_whose_webhook_failed_is_sent_the_next_morning(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    hook: Hook,
) -> None:
    """The webhook is down when the digest goes: the queue has it, the timer fails; the next
    morning's run sends that day's digest to the webhook, and nothing twice to the queue."""
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday -= timedelta(days=1)
    new_vm = samples.record(yesterday + timedelta(hours=10), "alice", samples.OK, "82.1.2.3",
                            vm="WIN-NEW-09")  # fmt: skip
    blobs = blobs_of(blob_prefix, [*history(yesterday - timedelta(days=9), 8), new_vm])
    p = app_env(ALERT_TEAMS_WEBHOOK_URL=hook.url("/teams"), DIGEST_WEBHOOKS="true",
                WEBHOOK_MAX_ATTEMPTS="1")  # fmt: skip
    ingest(indexed_app, logs, blobs, sorted(blobs))
    hook.script = [503]
    with pytest.raises(DeliveryError):
        indexed_app["send_digest"].get_user_function()(TIMER)
    assert hook.bodies == [] and len(queue(p)) == 1
    functions.on_digest(now=datetime.now(UTC) + timedelta(days=1))  # the next morning
    assert [b["summary"][:8] for b in hook.bodies] == ["[DIGEST]"]
    assert queue(p) == []  # the queue had it already
