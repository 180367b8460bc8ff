"""Issue 25.3: what an invocation sends the host's log (Application Insights bills per GB).

The Python worker hands the host every record at or above the root logger's level, under the
function's category; the host's default level is Information. So the count is taken the same
way: every record of level INFO or above that reaches the root logger during one call of each
function's body, through the indexed app with real binding objects, against Azurite."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from test_campaigns import lines

from devtools import samples
from shared.ingest.loop import Pipeline

#: Most lines one invocation may send the host at its default level.
MOST = 5
TIMERS = ("sweep_recent_blobs", "redeliver_alerts", "check_health", "send_digest",
          "expire_old_data")  # fmt: skip
ROUTES = {"http_activity": "GET", "http_alerts": "GET", "http_sessions": "GET",
          "http_report": "GET", "http_status": "GET", "http_erase": "POST"}  # fmt: skip


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _lines(call: Callable[[], Any]) -> list[str]:
    """What one call logs at the host's default level (INFO and above, from any logger)."""
    counter, root = _Count(), logging.getLogger()
    level = root.level
    root.addHandler(counter)
    root.setLevel(logging.INFO)
    try:
        call()
    finally:
        root.removeHandler(counter)
        root.setLevel(level)
    return [f"{r.name}: {r.getMessage()[:120]}" for r in counter.records]


@pytest.mark.azurite
def test_every_invocation_logs_a_few_lines_at_the_hosts_level(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], logs: Any, blob_prefix: str
) -> None:
    """Before: a blob 24-208 lines, `GET /api/status` 84, the idle sweep 32 (mostly the
    Azure SDK's request and response lines)."""
    app_env(API_AUTH="none")
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    records = [samples.record(hour + timedelta(minutes=i), "dana", samples.OK, "203.0.113.7",
                              port=41000 + i) for i in range(20)]  # fmt: skip
    name = blob_prefix + samples.blob_path("BASTION-LOGS", hour)
    logs.upload_blob(name, lines(records), overwrite=True)
    blob = indexed_app["ingest_blob"].get_user_function()
    said = {"ingest_blob": _lines(lambda: blob(logs.get_blob_client(name)))}
    for timer in TIMERS:
        body = indexed_app[timer].get_user_function()
        if timer == "sweep_recent_blobs":  # the logs container is shared: read what is new once
            body(TimerRequest(past_due=False))  # (one line per blob it reads), then it is idle
        said[timer] = _lines(lambda body=body: body(TimerRequest(past_due=False)))
    for route, method in ROUTES.items():
        body = indexed_app[route].get_user_function()
        params = {"user": "nobody-here"} if route in ("http_erase", "http_activity") else {}
        request = func.HttpRequest(method=method, url=f"/api/{route[5:]}", params=params,
                                   body=b"")  # fmt: skip
        said[route] = _lines(lambda body=body, request=request: body(request))
    loud = {k: v for k, v in said.items() if len(v) > MOST}
    assert not loud, loud
    assert len(said["ingest_blob"]) >= 1  # the blob's one line: records, stored, ... seconds
    assert len(said["sweep_recent_blobs"]) <= 1  # idle: at most one line
    assert logging.getLogger("urllib3").level >= logging.WARNING  # never made chattier
