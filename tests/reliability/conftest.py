"""Fixtures of the reliability suite (helpers live in reliability_support.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from reliability_support import Restartable


@pytest.fixture
def restartable() -> Iterator[Restartable]:
    with tempfile.TemporaryDirectory(prefix="azurite-") as folder:
        emulator = Restartable(folder)
        try:
            yield emulator
        finally:
            emulator.stop()
