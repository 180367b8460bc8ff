"""Backlogs do not hide an attack: the same records ingested as they happened (minute by minute,
the clock at each minute, the redelivery timer running) and as one backlog a month later give
the same notifications, apart from when they are delivered. Through the indexed blob trigger
and timer, against Azurite; the test controls the clock (time-machine)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from azure.functions.timer import TimerRequest
from test_campaigns import host_blob, lines, queue

from devtools import samples
from shared.ingest.loop import Pipeline

pytestmark = pytest.mark.azurite
ATTACKER = "198.51.100.77"
#: What people are told, without delivery times.
Told = tuple[str, str, str, int, tuple[str, ...]]


def attack(start: datetime) -> list[dict[str, Any]]:
    """A trickle of 5 failures over 5 minutes, 20 s later a flood of 300 in 30 s, then 5 a
    minute for 90 minutes: opened (5), escalated by the flood (high_volume_ip), and one growth
    update an hour of event time after the escalation."""
    trickle = [start + timedelta(minutes=i, seconds=40) for i in range(5)]
    flood = [trickle[-1] + timedelta(seconds=20 + i / 10) for i in range(300)]
    steady = [start + timedelta(minutes=6 + i // 5, seconds=12 * (i % 5)) for i in range(450)]
    return [
        samples.record(t, "admin", samples.FAIL, ATTACKER, port=i % 60000)
        for i, t in enumerate([*trickle, *flood, *steady])
    ]


def told(p: Pipeline) -> list[Told]:
    return [
        (m["alertId"], m["event"], m["severity"], m["failureCount"], tuple(m["rules"]))
        for m in queue(p)
    ]


def by_hour(records: list[dict[str, Any]]) -> dict[datetime, list[dict[str, Any]]]:
    out: dict[datetime, list[dict[str, Any]]] = {}
    for r in records:
        hour = datetime.fromisoformat(r["time"]).replace(minute=0, second=0, microsecond=0)
        out.setdefault(hour, []).append(r)
    return out


def as_it_happened(
    p: Pipeline, app: dict[str, Any], logs: Any, prefix: str, records: list[dict[str, Any]]
) -> None:
    """Each minute's records appended to their hour's blob 30 s after the minute ends, the
    trigger fired, and the redelivery timer run every five minutes of the clock."""
    trigger = app["ingest_blob"].get_user_function()
    timer = app["redeliver_alerts"].get_user_function()
    minutes: dict[datetime, list[dict[str, Any]]] = {}
    for r in records:
        at = datetime.fromisoformat(r["time"]).replace(second=0, microsecond=0)
        minutes.setdefault(at, []).append(r)
    first, last = min(minutes), max(minutes) + timedelta(hours=2)
    created: set[str] = set()
    clock = first
    while clock <= last:
        with time_machine.travel(clock + timedelta(minutes=1, seconds=30), tick=False):
            if clock in minutes:
                hour = clock.replace(minute=0)
                client = logs.get_blob_client(host_blob(logs, prefix, "BASTION-LIVE", hour))
                if client.blob_name not in created:
                    client.create_append_blob()
                    created.add(client.blob_name)
                client.append_block(lines(minutes[clock]))
                trigger(client)
            if clock.minute % 5 == 0:
                timer(TimerRequest(past_due=False))
        clock += timedelta(minutes=1)


def as_one_backlog(
    p: Pipeline, app: dict[str, Any], logs: Any, prefix: str, records: list[dict[str, Any]]
) -> None:
    """Every hour's blob written at once, a month late; the timer runs minutes later."""
    trigger = app["ingest_blob"].get_user_function()
    late = datetime.fromisoformat(records[-1]["time"]) + timedelta(days=30)
    with time_machine.travel(late, tick=False):
        for hour, rows in sorted(by_hour(records).items()):
            name = host_blob(logs, prefix, "BASTION-LATE", hour)
            logs.upload_blob(name, lines(rows))
            trigger(logs.get_blob_client(name))
    with time_machine.travel(late + timedelta(minutes=5), tick=False):
        app["redeliver_alerts"].get_user_function()(TimerRequest(past_due=False))


@pytest.mark.slow  # about 200 invocations
def test_a_backlog_tells_what_live_records_told(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    start = (datetime.now(UTC) - timedelta(days=3)).replace(hour=9, minute=55, second=0,
                                                            microsecond=0)  # fmt: skip
    records = attack(start)
    live = app_env()
    as_it_happened(live, indexed_app, logs, blob_prefix + "live/", records)
    heard_live = told(live)
    late = app_env()
    as_one_backlog(late, indexed_app, logs, blob_prefix + "late/", records)
    heard_late = told(late)

    assert heard_late == heard_live
    events = [(event, severity, failures) for _, event, severity, failures, _ in heard_live]
    assert events == [("opened", "medium", 5), ("escalated", "high", 305),
                      ("updated", "high", 605)]  # fmt: skip
    assert heard_live[1][4][0] == "high_volume_ip"
