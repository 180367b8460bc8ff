"""The worker's services: built once per worker process, shared by every invocation.

Triggers that ingest or deliver use `Services`; the HTTP handlers and the CLI only read, so
they get just the `Storage` clients (no HTTP session, no thread pools).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from . import detect
from .alerting import Deliverer
from .detect import Detector
from .health import Health
from .ingest import Pipeline
from .settings import Settings
from .storage import Storage
from .sweep import Sweeper


@dataclass(frozen=True)
class Services:
    """What the triggers run, side by side: detection, the host checks, delivery, the sweep."""

    settings: Settings
    storage: Storage
    detector: Detector
    pipeline: Pipeline
    sweeper: Sweeper  # remembers the Bastion hosts' folders between sweeps
    health: Health
    deliverer: Deliverer

    @classmethod
    def build(cls, storage: Storage) -> Services:
        s = storage.settings
        detector = detect.build(storage)
        pipeline = Pipeline(s, storage, detector)
        sweeper = Sweeper(storage, pipeline, timedelta(hours=s.sweep_lookback_hours))
        return cls(s, storage, detector, pipeline, sweeper, detector.health, detector.deliverer)

    def close(self) -> None:
        self.detector.close()
        self.storage.close()
