"""Deliver incident notifications to the storage queue and webhooks; never lose one, never leak
a URL.

An incident row owes people a notification while its `Pending` says so (`opened`, `escalated`,
`updated`; `Seq` numbers them). Channels already served are remembered in `DeliveredTo`, so a
retry only re-sends where it failed; the timer retries what is still pending and sends growth
updates once their interval has passed. Webhook URLs carry their secret in the path: they are
never logged, and errors are recorded by type and status code only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import requests
from azure.data.tables import TableEntity
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.core.settings import Settings
from shared.notify import digest, incidents, messages
from shared.store.tables import Conflict, Storage, etag_of, provisioned

log = logging.getLogger(__name__)
# urllib3 logs request paths when it retries (connectionpool, util.retry); webhook paths are
# secrets. Its children inherit this level, so none of them can write a URL to the logs.
logging.getLogger("urllib3").setLevel(logging.CRITICAL)

SCHEMA = messages.SCHEMA
#: Notifications younger than this are left to the invocation that decided them.
REDELIVERY_GRACE = timedelta(minutes=2)
#: How far back the daily digest looks, at least, for days whose digest failed to send (the
#: digest of a day becomes pending the next morning; `ALERT_RETRY_HOURS` when longer).
DIGEST_RETRY_DAYS = 7
_ATTEMPTS = 8
#: State-table partition of the daily digests (RowKey: the UTC day).
DIGEST_PARTITION = "digest"


def channels(settings: Settings) -> list[tuple[str, str, Callable[[dict[str, Any]], Any]]]:
    """(name, url, payload builder) of each configured webhook."""
    found = [
        ("webhook", settings.webhook_url, messages.message),
        ("teams", settings.teams_webhook_url, messages.teams_card),
        ("slack", settings.slack_webhook_url, messages.slack_message),
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
    """Sends notifications; one per worker process (keeps the HTTP session and queue client)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.settings = storage.settings
        self.session = http_session(self.settings)
        self.interval = timedelta(minutes=self.settings.notify_interval_minutes)
        self._queue: Any = None

    def _send_queue(self, row: dict[str, Any]) -> None:
        self.enqueue(orjson.dumps(messages.message(row)).decode())

    def enqueue(self, body: str) -> None:
        if self._queue is None:
            from azure.storage.queue import TextBase64EncodePolicy

            queue = self.storage.queues.get_queue_client(
                self.settings.alert_queue, message_encode_policy=TextBase64EncodePolicy()
            )
            with provisioned():  # in Azure the template creates it; the app may only send
                queue.create_queue()
            self._queue = queue
        self._queue.send_message(body)

    def post(self, url: str, build: Callable[[dict[str, Any]], Any], row: dict[str, Any]) -> None:
        timeout = self.settings.webhook_timeout_seconds
        response = self.session.post(
            url,
            data=orjson.dumps(build(row)),
            headers={"Content-Type": "application/json"},
            timeout=(min(timeout, 5.0), timeout),
        )
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"HTTP {response.status_code}")

    def deliver_incident(self, pk: str, rk: str, alert_id: str = "") -> bool:
        """Send what the incident row owes, if anything. True if nothing is left pending.

        A row gone meanwhile was re-keyed by another invocation (its start moved), which
        carried the debt over without paying it ("an inherited debt is its decider's"): so
        it is paid on the row of the same `alert_id`, if there is one."""
        row = self.owing(pk, rk, alert_id)
        if row is None:
            return True  # withdrawn and deleted meanwhile: nobody had heard of it
        return self.deliver(row)

    def owing(self, pk: str, rk: str, alert_id: str = "") -> TableEntity | None:
        """The incident's row: where it was decided, or where it moved since (by its id)."""
        row = self.storage.alerts.get(pk, rk)
        if row is None and alert_id:
            row = self._successor({"PartitionKey": pk, "AlertId": alert_id})
        return row

    def _successor(self, row: dict[str, Any]) -> TableEntity | None:
        """The row an incident moved to when its start moved (same `AlertId`), if any."""
        day = date.fromisoformat(row["PartitionKey"])
        for pk in (row["PartitionKey"], (day - timedelta(days=1)).isoformat()):
            for found in self.storage.alerts.query(
                "PartitionKey eq @pk and AlertId eq @id", {"pk": pk, "id": row["AlertId"]}
            ):
                return found
        return None

    def deliver(self, row: TableEntity) -> bool:
        """Send what the row owes, oldest notice first, each to every channel not yet served;
        record each outcome. True if nothing is left pending."""
        for _ in range(incidents.MAX_OWED + 1):
            if not row.get("Pending"):
                return True
            if not self._deliver_head(row):
                return False
        return not row.get("Pending")

    def _deliver_head(self, row: TableEntity) -> bool:
        """The notice at the head of the row's queue, to every channel not yet served."""
        shown = messages.current(row)
        done = set(filter(None, str(row.get("DeliveredTo", "")).split(",")))
        errors = []
        targets: list[tuple[str, Callable[[], None]]] = [("queue", lambda: self._send_queue(shown))]
        for name, url, build in channels(self.settings):
            targets.append((name, functools.partial(self.post, url, build, shown)))
        for name, send in targets:
            if name in done:
                continue
            try:
                send()
            except Exception as exc:  # noqa: BLE001 - any failure leaves the notification pending
                errors.append(f"{name}: {_describe(exc)}")
            else:
                done.add(name)
        complete = all(name in done for name, _ in targets)
        if errors:
            log.warning("alert %s not fully delivered: %s", row["RowKey"], "; ".join(errors))
        else:
            log.info("alert %s (%s) delivered to %s", row["RowKey"], shown["Pending"],
                     ",".join(sorted(done)))  # fmt: skip
        return self._record(row, shown, done, errors, complete) and complete

    def _record(
        self,
        row: TableEntity,
        sent: dict[str, Any],
        done: set[str],
        errors: list[str],
        complete: bool,
    ) -> bool:
        """Write what was delivered, unless the notice was settled elsewhere meanwhile. True if
        it was written (the row then holds the next notice, if any)."""
        table = self.storage.alerts
        now = datetime.now(UTC)
        current = row
        for _ in range(_ATTEMPTS):
            queue = messages.owed(current)
            if not current.get("Pending") or not queue or queue[0]["seq"] != sent["Seq"]:
                return False  # superseded: someone else delivered it or the row moved on
            update = _outcome(current, queue, sent, done, errors, complete, now)
            try:
                etag = table.update(update, etag_of(current))
            except Conflict:
                again = table.get(current["PartitionKey"], current["RowKey"])
                # gone: re-keyed, so record on the row it moved to
                successor = again if again is not None else self._successor(current)
                if successor is None:
                    return False
                current = successor
                continue
            if current is not row:
                row.clear()
                row.update(current)
            row.update(update)
            row.metadata["etag"] = etag
            return True
        log.info("alert %s kept changing while recording its delivery", row["RowKey"])
        return False

    def redeliver_pending(self, now: datetime | None = None) -> tuple[int, int]:
        """Retry pending notifications and send due growth updates; returns (tried, completed).

        Found by when they became pending, not by the day of their events: an incident about
        a backfilled month is owed like any other. One pending for longer than
        `ALERT_RETRY_HOURS` is left alone and listed by `status` instead."""
        now = now or datetime.now(UTC)
        horizon = timedelta(hours=self.settings.alert_retry_hours)
        rows = self.storage.alerts.query(
            incidents.OWED_FILTER, {"pending": "pending", "before": now - REDELIVERY_GRACE}
        )
        tried = completed = expired = 0
        for row in rows:
            if incidents.past_horizon(row, now, horizon):
                expired += 1
                continue
            # A growth update falls due by event time, once no record came for a while (a
            # backlog ingested in slices brings the minutes before it first).
            settled = row["UpdatedAt"] <= now - REDELIVERY_GRACE
            change = incidents.due_update(row, now, self.interval) if settled else None
            if change is not None:
                try:
                    new_etag = self.storage.alerts.update(change, etag_of(row))
                except Conflict:
                    continue  # someone else is handling it
                row.update(change)
                row.metadata["etag"] = new_etag
            elif not row.get("Pending") or not settled:
                continue  # nothing owed, or left to the invocation that decided it
            tried += 1
            completed += self.deliver(row)
        log.info("redelivery: %d notification(s) tried, %d delivered", tried, completed)
        if expired:
            log.warning("%d notification(s) pending beyond ALERT_RETRY_HOURS: see status", expired)
        return tried, completed


class Digests:
    """The daily digest of low findings, once per channel and day, through the deliverer's
    queue and webhooks (a day whose delivery failed is sent again on the next days)."""

    def __init__(self, deliverer: Deliverer) -> None:
        self.deliverer = deliverer
        self.storage, self.settings = deliverer.storage, deliverer.settings

    def send_digests(self, yesterday: str) -> int:
        """Yesterday's digest, and again those of the days before whose delivery failed (the
        timer runs once a day: a webhook down that morning must not lose the day). Returns
        how many findings they held; raises if a channel still failed."""
        horizon = max(DIGEST_RETRY_DAYS, -(-self.settings.alert_retry_hours // 24))
        lo = (date.fromisoformat(yesterday) - timedelta(days=horizon)).isoformat()
        params = {"pk": DIGEST_PARTITION, "lo": lo, "hi": yesterday}
        failed = [str(r["RowKey"]) for r in self.storage.state.seek(params, ["RowKey", "LastError"])
                  if r.get("LastError")]  # fmt: skip
        total, errors = 0, []
        for day in [*failed, yesterday]:
            try:
                total += self.send_digest(day)
            except DeliveryError as exc:
                errors.append(f"{day}: {exc}")
        if errors:
            raise DeliveryError("; ".join(errors))
        return total

    def send_digest(self, day: str) -> int:
        """Send the day's digest of low findings once per channel (queue; webhooks only when
        `DIGEST_WEBHOOKS`); the `digest` row of the state table remembers what was served.
        Returns how many findings it holds."""
        state = self.storage.state
        row = state.get(DIGEST_PARTITION, day)
        done = set(filter(None, str(row.get("DeliveredTo", "")).split(","))) if row else set()
        body = digest.build(day, self.storage.alerts.partition(day))
        targets: list[tuple[str, Callable[[], None]]] = []
        if body is not None:
            targets.append(("queue", lambda: self.deliverer.enqueue(orjson.dumps(body).decode())))
            for name, url, _ in channels(self.settings) if self.settings.digest_webhooks else []:
                build = digest.RENDER[name]
                targets.append((name, functools.partial(self.deliverer.post, url, build, body)))
        errors = []
        for name, send in targets:
            if name not in done:
                try:
                    send()
                except Exception as exc:  # noqa: BLE001 - the next run sends what is left
                    errors.append(f"{name}: {_describe(exc)}")
                else:
                    done.add(name)
        findings = body["findings"] if body else 0
        record = {"PartitionKey": DIGEST_PARTITION, "RowKey": day, "Findings": findings}
        record.update(DeliveredTo=",".join(sorted(done)), LastError="; ".join(errors))
        state.upsert([record])
        if errors:
            raise DeliveryError("digest not fully delivered: " + "; ".join(errors))
        return int(findings)


def _outcome(
    current: dict[str, Any],
    queue: list[dict[str, Any]],
    sent: dict[str, Any],
    done: set[str],
    errors: list[str],
    complete: bool,
    now: datetime,
) -> dict[str, Any]:
    """The row's change once its head notice was tried: channels served, or the next notice."""
    update: dict[str, Any] = {
        "PartitionKey": current["PartitionKey"],
        "RowKey": current["RowKey"],
        "Attempts": int(current.get("Attempts") or 0) + 1,
        "LastError": "; ".join(errors)[:1000],
        "UpdatedAt": now,
    }
    done |= set(filter(None, str(current.get("DeliveredTo") or "").split(",")))
    update["DeliveredTo"] = ",".join(sorted(done))
    if complete:
        rest = queue[1:]
        update.update(NotifiedSeverity=sent["Severity"], NotifiedFailures=sent["FailureCount"],
                      NotifiedAt=now, Owed=orjson.dumps(rest).decode())  # fmt: skip
        update["Pending"] = rest[0]["event"] if rest else ""
        if rest:
            update.update(PendingSince=now, DeliveredTo="", Attempts=0, LastError="")
    update["Status"] = incidents.status({**current, **update})
    return update


class DeliveryError(Exception):
    """A webhook answered with a non-2xx status after all retries."""


def _describe(exc: BaseException) -> str:
    """Error text without URLs (they hold secrets): type name and HTTP status only."""
    if isinstance(exc, DeliveryError):
        return str(exc)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return type(exc).__name__ + (f" (HTTP {status})" if status else "")
