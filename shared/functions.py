"""Bodies of the Azure Functions, kept out of `function_app.py` so tests can call them.

The pipeline (clients, HTTP session) is built on first use and shared by all invocations of
the worker process; building it at import time would make indexing need storage.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from azure.storage.blob import BlobClient

from .ingest import Pipeline, Summary
from .settings import LOGS_CONTAINER, Settings
from .sweep import Sweeper

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def pipeline() -> Pipeline:
    return Pipeline(Settings.load())


@lru_cache(maxsize=1)
def sweeper() -> Sweeper:
    """Remembers the Bastion hosts' folders between sweeps of this worker."""
    p = pipeline()
    return Sweeper(p.storage, p.ingest, timedelta(hours=p.settings.sweep_lookback_hours))


def on_blob(client: BlobClient) -> Summary:
    """Blob trigger: a log blob was created or grew. Raises on storage faults (host retries)."""
    return pipeline().ingest(client)


def on_sweep(past_due: bool = False) -> list[Summary]:
    """Timer: pick up appends that raised no event (Event Grid fires on creation only)."""
    if past_due:
        log.info("sweep timer is past due; running now")
    container = pipeline().storage.blobs.get_container_client(LOGS_CONTAINER)
    return sweeper().run(container, datetime.now(UTC)).summaries


def on_redeliver() -> tuple[int, int]:
    """Timer: send notifications still pending or due, and detect again for actors whose
    detection failed alone."""
    p = pipeline()
    p.detector.retry_failed()
    return p.deliverer.redeliver_pending()
