"""The worker's services: built once per worker process, shared by every invocation.

Triggers that ingest or deliver use `Services`; the HTTP handlers and the CLI only read, so
they get just the `Storage` clients (no HTTP session, no thread pools).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from shared.core.settings import Settings
from shared.detect import runner
from shared.detect.runner import Detector
from shared.hosts.health import Health
from shared.ingest.loop import Pipeline
from shared.ingest.sweep import Sweeper
from shared.notify.delivery import Deliverer, Digests
from shared.respond.ending import Responder
from shared.store.tables import Storage


@dataclass(frozen=True)
class Services:
    """What the triggers run, side by side: detection, the host checks, delivery, active
    response, the sweep."""

    settings: Settings
    storage: Storage
    detector: Detector
    pipeline: Pipeline
    sweeper: Sweeper  # remembers the Bastion hosts' folders between sweeps
    health: Health
    deliverer: Deliverer
    responder: Responder
    digests: Digests

    @classmethod
    def build(cls, storage: Storage) -> Services:
        s = storage.settings
        found = runner.build(storage)
        pipeline = Pipeline(s, storage, found)
        sweeper = Sweeper(storage, pipeline, timedelta(hours=s.sweep_lookback_hours))
        return cls(s, storage, found, pipeline, sweeper, found.health, found.deliverer,
                   found.responder, Digests(found.deliverer))  # fmt: skip

    def close(self) -> None:
        self.detector.close()
        self.storage.close()
