"""Shared fixtures: one real Azurite per test session, isolated names per test, the indexed app.

Tests that touch storage take the `pipeline` (or `storage_env`) fixture; the emulator is started
on free loopback ports on first use and stopped when the session ends.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools import azurite, samples
from shared import functions
from shared.ingest import Pipeline
from shared.settings import LOGS_CONTAINER, Settings

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def emulator() -> Iterator[azurite.Azurite]:
    with azurite.start() as running:
        yield running


def isolated_env(connection: str, **overrides: str) -> dict[str, str]:
    return azurite.isolated_env(connection, **{"WEBHOOK_TIMEOUT_SECONDS": "2", **overrides})


@pytest.fixture
def make_pipeline(emulator: azurite.Azurite) -> Iterator[Callable[..., Pipeline]]:
    """Build pipelines on isolated names: `make_pipeline(FAILURE_THRESHOLD="3")`."""
    built: list[Pipeline] = []

    def make(**overrides: str) -> Pipeline:
        settings = Settings.from_env(isolated_env(emulator.connection_string, **overrides))
        pipeline = Pipeline(settings)
        built.append(pipeline)
        return pipeline

    yield make
    for pipeline in built:
        pipeline.storage.close()
        pipeline.detector.close()


@pytest.fixture(scope="module")
def sample_store(emulator: azurite.Azurite) -> Iterator[tuple[dict[str, str], Pipeline]]:
    """The sample logs ingested once per module on isolated names: (app settings, pipeline)."""
    env = isolated_env(emulator.connection_string)
    pipeline = Pipeline(Settings.from_env(env))
    container = pipeline.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not container.exists():
        container.create_container()
    prefix = env["EVENTS_TABLE"] + "/"
    for name, data in samples.build()[0].items():
        container.upload_blob(prefix + name, data, overwrite=True)
        pipeline.ingest(container.get_blob_client(prefix + name))
    yield env, pipeline
    pipeline.storage.close()
    pipeline.detector.close()


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


@pytest.fixture
def logs(pipeline: Pipeline) -> Any:
    """The logs container on the emulator (created once)."""
    container = pipeline.storage.blobs.get_container_client(LOGS_CONTAINER)
    if not container.exists():
        container.create_container()
    return container


@pytest.fixture
def blob_prefix(request: pytest.FixtureRequest) -> str:
    """A blob-name prefix unique to the test, in the real path layout."""
    return f"resourceId=/SUBSCRIPTIONS/T{next(_ids)}/RESOURCEGROUPS/{request.node.name[:40]}/"


@pytest.fixture(scope="session")
def indexed_app() -> dict[str, Any]:
    """function_app indexed once, as the worker does (get_functions is not repeatable)."""
    import function_app

    return {fn.get_function_name(): fn for fn in function_app.app.get_functions()}


@pytest.fixture
def app_env(
    emulator: azurite.Azurite, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Pipeline]]:
    """Point the function app's own settings at the emulator, on isolated names."""

    def configure(**overrides: str) -> Pipeline:
        for key, value in isolated_env(emulator.connection_string, **overrides).items():
            monkeypatch.setenv(key, value)
        functions.reset()
        return functions.services().pipeline

    yield configure
    functions.reset()
