"""Deliver alerts to the storage queue and webhooks; never lose one, never leak a URL.

An alert row stays `pending` until every configured channel took it; the timer function
retries the rest later. Channels already served are remembered in `DeliveredTo`, so a retry only
re-sends where it failed. Webhook URLs carry their secret in the path: they are never logged,
and errors are recorded by type and status code only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import requests
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import UpdateMode
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .settings import Settings
from .storage import Storage

log = logging.getLogger(__name__)
# urllib3 logs request paths when it retries (connectionpool, util.retry); webhook paths are
# secrets. Its children inherit this level, so none of them can write a URL to the logs.
logging.getLogger("urllib3").setLevel(logging.CRITICAL)

SCHEMA = "bastion-audit/alert@1"
#: Alerts younger than this are left to the invocation that created them.
REDELIVERY_GRACE = timedelta(minutes=2)


# -- payloads (pure) ------------------------------------------------------------------------
def _iso(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)


def message(alert: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON body (queue message and generic webhook)."""
    return {
        "schema": SCHEMA,
        "alertId": alert["AlertId"],
        "rule": alert["Rule"],
        "severity": alert["Severity"],
        "subjectKind": alert["SubjectKind"],
        "subject": alert["Subject"],
        "summary": alert["Summary"],
        "failureCount": alert["FailureCount"],
        "successCount": alert.get("SuccessCount", 0),
        "distinctUsers": alert.get("DistinctUsers", 0),
        "users": orjson.loads(alert.get("Users") or "[]"),
        "clientIps": orjson.loads(alert.get("ClientIps") or "[]"),
        "targetVMs": orjson.loads(alert.get("TargetVMs") or "[]"),
        "bastionHosts": orjson.loads(alert.get("BastionHosts") or "[]"),
        "windowStart": _iso(alert["WindowStart"]),
        "windowEnd": _iso(alert["WindowEnd"]),
        "firstSeen": _iso(alert["FirstSeen"]),
        "lastSeen": _iso(alert["LastSeen"]),
    }


def _facts(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("Rule", body["rule"]),
        ("Severity", body["severity"]),
        ("Failures", str(body["failureCount"])),
        ("Users", ", ".join(body["users"][:10]) or "-"),
        ("Source IPs", ", ".join(body["clientIps"][:10]) or "-"),
        ("Targets", ", ".join(body["targetVMs"][:10]) or "-"),
        ("Bastion", ", ".join(body["bastionHosts"][:3]) or "-"),
        ("First seen", body["firstSeen"]),
        ("Last seen", body["lastSeen"]),
        ("Alert id", body["alertId"]),
    ]


def teams_card(alert: dict[str, Any]) -> dict[str, Any]:
    """Adaptive Card in the envelope Teams incoming webhooks (and Workflows) accept."""
    body = message(alert)
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
             "color": "Attention" if body["severity"] == "high" else "Warning",
             "text": body["summary"]},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(body)]},
        ],
    }  # fmt: skip
    return {
        "type": "message",
        "summary": body["summary"],
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def slack_message(alert: dict[str, Any]) -> dict[str, Any]:
    """Block Kit message for Slack incoming webhooks (`text` is the notification fallback)."""
    body = message(alert)
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in _facts(body)]
    return {
        "text": _slack_escape(body["summary"]),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": body["summary"][:150]}},
            {"type": "section", "fields": fields[:10]},
        ],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# -- delivery (I/O) -------------------------------------------------------------------------
def channels(settings: Settings) -> list[tuple[str, str, Callable[[dict[str, Any]], Any]]]:
    """(name, url, payload builder) of each configured webhook."""
    found = [
        ("webhook", settings.webhook_url, message),
        ("teams", settings.teams_webhook_url, teams_card),
        ("slack", settings.slack_webhook_url, slack_message),
    ]
    return [c for c in found if c[1]]


def http_session(settings: Settings) -> requests.Session:
    """Session that retries 429/5xx, resets and timeouts with exponential backoff."""
    retry = Retry(
        total=settings.webhook_max_attempts - 1,
        connect=settings.webhook_max_attempts - 1,
        read=settings.webhook_max_attempts - 1,
        status=settings.webhook_max_attempts - 1,
        backoff_factor=0.5,
        status_forcelist=(408, 429, 500, 502, 503, 504),
        allowed_methods=frozenset({"POST"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


class Deliverer:
    """Sends alerts; one per worker process (keeps the HTTP session and the queue client)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.settings = storage.settings
        self.session = http_session(self.settings)
        self._queue = None

    def _send_queue(self, alert: dict[str, Any]) -> None:
        if self._queue is None:
            from azure.storage.queue import TextBase64EncodePolicy

            queue = self.storage.queues.get_queue_client(
                self.settings.alert_queue, message_encode_policy=TextBase64EncodePolicy()
            )
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            self._queue = queue
        self._queue.send_message(orjson.dumps(message(alert)).decode())

    def _send_webhook(self, url: str, payload: dict[str, Any]) -> None:
        timeout = self.settings.webhook_timeout_seconds
        response = self.session.post(
            url,
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json"},
            timeout=(min(timeout, 5.0), timeout),
        )
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}")

    def deliver(self, alert: dict[str, Any]) -> bool:
        """Send to every channel not yet served; record the outcome. True if all done."""
        done = set(filter(None, str(alert.get("DeliveredTo", "")).split(",")))
        errors = []
        targets: list[tuple[str, Callable[[], None]]] = [("queue", lambda: self._send_queue(alert))]
        for name, url, build in channels(self.settings):
            targets.append(
                (name, lambda url=url, build=build: self._send_webhook(url, build(alert)))
            )
        for name, send in targets:
            if name in done:
                continue
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - any failure leaves the alert pending
                errors.append(f"{name}: {_describe(exc)}")
            else:
                done.add(name)
        complete = all(name in done for name, _ in targets)
        update = {
            "PartitionKey": alert["PartitionKey"],
            "RowKey": alert["RowKey"],
            "DeliveredTo": ",".join(sorted(done)),
            "Status": "delivered" if complete else "pending",
            "Attempts": int(alert.get("Attempts", 0)) + 1,
            "LastError": "; ".join(errors)[:1000],
            "UpdatedAt": datetime.now(UTC),
        }
        table = self.storage.table(self.settings.alerts_table)
        etag = getattr(alert, "metadata", {}).get("etag")
        try:
            if etag:
                table.update_entity(
                    update,
                    mode=UpdateMode.MERGE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            else:
                table.update_entity(update, mode=UpdateMode.MERGE)
        except ResourceModifiedError:
            log.info(
                "alert %s changed while delivering; the next round settles it", alert["RowKey"]
            )
        alert.update(update)
        if errors:
            log.warning("alert %s not fully delivered: %s", alert["RowKey"], "; ".join(errors))
        else:
            log.info("alert %s delivered to %s", alert["RowKey"], update["DeliveredTo"])
        return complete

    def redeliver_pending(self, now: datetime | None = None) -> tuple[int, int]:
        """Retry every pending alert older than the grace period; returns (tried, completed)."""
        now = now or datetime.now(UTC)
        rows = self.storage.query(
            self.settings.alerts_table,
            "Status eq @status and UpdatedAt le @before",
            {"status": "pending", "before": now - REDELIVERY_GRACE},
        )
        tried = completed = 0
        for alert in rows:
            tried += 1
            completed += self.deliver(alert)
        log.info("redelivery: %d pending alert(s) tried, %d delivered", tried, completed)
        return tried, completed


class DeliveryError(Exception):
    """A webhook answered with a non-2xx status after all retries."""


def _describe(exc: BaseException) -> str:
    """Error text without URLs (they hold secrets): type name and HTTP status only."""
    if isinstance(exc, DeliveryError):
        return str(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return type(exc).__name__ + (f" (HTTP {status})" if status else "")
