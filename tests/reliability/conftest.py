"""Fixtures of the reliability suite alone: an Azurite a test may stop and start again."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from reliability_support import Restartable


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    """An Azurite of the test's own that it can stop and start again (on the same data)."""
    with tempfile.TemporaryDirectory(prefix="azurite-") as folder:
        emulator = Restartable(folder)
        try:
            yield emulator
        finally:
            emulator.stop()
