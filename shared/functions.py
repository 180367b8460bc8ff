"""Bodies of the Azure Functions, kept out of `function_app.py` so tests can call them.

Clients are built on first use and shared by all invocations of the worker process; building
them at import time would make indexing need storage.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from azure.storage.blob import BlobClient

from shared.core.settings import Settings
from shared.ingest.loop import Summary
from shared.keep.expiry import Expirer
from shared.services import Services
from shared.store.tables import Storage

log = logging.getLogger(__name__)
#: The Azure SDK logs every request and response at INFO (`azure.core.pipeline.policies.
#: http_logging_policy`): 24-208 lines a blob, 32 an idle sweep, each a billed line in
#: Application Insights. The filter must be here, in the worker: it hands the host every record
#: at or above the Python logger's level under the function's own category
#: (`Function.<name>.User`), so `host.json`'s `logLevel`, which knows only categories, could
#: silence our lines with the SDK's but not the SDK's alone. Warnings and errors still go.
#: Never lowers a stricter level (`urllib3` stays CRITICAL: it logs webhook paths, `alerting`).
QUIET = ("azure",)
for _name in QUIET:
    _logger = logging.getLogger(_name)
    if _logger.level < logging.WARNING:  # NOTSET (0) included
        _logger.setLevel(logging.WARNING)


@lru_cache(maxsize=1)
def storage() -> Storage:
    """What the HTTP handlers need: the storage clients, nothing else."""
    return Storage(Settings.load())


@lru_cache(maxsize=1)
def services() -> Services:
    return Services.build(storage())


def reset() -> None:
    """Forget the worker's clients (tests change the settings between cases)."""
    if services.cache_info().currsize:
        services().detector.close()
    if storage.cache_info().currsize:
        storage().close()
    services.cache_clear()
    storage.cache_clear()


def on_blob(client: BlobClient) -> Summary:
    """Blob trigger: a log blob was created or grew. Raises on storage faults (host retries)."""
    return services().pipeline.ingest(client)


def on_sweep(past_due: bool = False) -> list[Summary]:
    """Timer: pick up appends that raised no event (Event Grid fires on creation only)."""
    if past_due:
        log.info("sweep timer is past due; running now")
    s = services()
    return s.sweeper.run(s.storage.logs(), datetime.now(UTC)).summaries


def on_health(past_due: bool = False) -> list[str]:
    """Timer: look for Bastion hosts gone silent, check their diagnostic settings."""
    if past_due:
        log.info("health timer is past due; running now")
    return services().health.run()


def on_digest(past_due: bool = False, now: datetime | None = None) -> int:
    """Timer: the previous UTC day's low-severity findings, once, to the queue (and the
    webhooks when `DIGEST_WEBHOOKS`); days whose delivery failed are sent again."""
    if past_due:
        log.info("digest timer is past due; running now")
    day = ((now or datetime.now(UTC)) - timedelta(days=1)).date().isoformat()
    return services().digests.send_digests(day)


def on_redeliver() -> tuple[int, int]:
    """Timer: send notifications still pending or due, detect again for actors whose
    detection failed alone, and respond to compromises an invocation could not."""
    s = services()
    s.detector.retry_failed()
    sent = s.deliverer.redeliver_pending()
    s.responder.sweep()
    return sent


def on_retention(past_due: bool = False) -> dict[str, int]:
    """Timer: delete what is older than its retention (README, "Retention and erasure")."""
    if past_due:
        log.info("retention timer is past due; running now")
    removed = Expirer(storage()).run()
    log.info("retention removed %s", dict(removed) or "nothing")
    return dict(removed)
