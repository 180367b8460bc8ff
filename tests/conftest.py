"""Shared fixtures: one real Azurite per test session, isolated names per test, the indexed app.

Tests mirror the package: `tests/<stage>/` for each folder of `shared/`, beside
`reliability/` (faults, races, hostile input), `acceptance/` (the README, the worker's indexer,
the deployment, the architecture) and `runners/` (every runner on the in-memory services).
Fixtures that one folder alone uses live in its own `conftest.py`.

Tests that touch storage take the `pipeline` (or `app_env`) fixture; the emulator is started
on free loopback ports on first use and stopped when the session ends. Such tests are marked
`azurite` here, from the fixtures they use; every other test is a unit test (`make unit`):
it runs with the app's settings cleared from the environment and no network but loopback.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import azurite, samples
from shared import functions
from shared.core.settings import CONNECTION, DEFAULTS, LOGS_CONTAINER, Settings
from shared.ingest.loop import Pipeline

#: A test module may import another's helpers by module name (`from test_campaigns import
#: lines`), whatever stage folder either sits in: every folder of tests/ is on the path.
sys.path[:0] = sorted(
    str(d) for d in Path(__file__).parent.iterdir() if d.is_dir() and "_" not in d.name
)

_ids = itertools.count(1)
_NEEDS_AZURITE = {"emulator", "restartable"}
#: `TEST_DAYS_AHEAD=400 make test` runs the suite as if today were 400 days later: no answer
#: may depend on the day the tests were written (README, "Tests").
DAYS_AHEAD = "TEST_DAYS_AHEAD"
_SITE = """import datetime as d, os
try:  # a fresh venv that the README's commands are still installing has no time_machine yet
    import time_machine
except ImportError:
    pass
else:
    ahead = d.timedelta(days=int(os.environ["TEST_DAYS_AHEAD"]))
    time_machine.travel(d.datetime.now(d.UTC) + ahead, tick=True).start()
"""

#: The same for Node.js (Azurite: blob Last-Modified, entity Timestamp), via NODE_OPTIONS.
_NODE = """const ahead = Number(process.env.TEST_DAYS_AHEAD) * 86400000;
const Real = Date;
function Shifted(...args) {
  if (!new.target) return new Real(Real.now() + ahead).toString();
  return args.length ? new Real(...args) : new Real(Real.now() + ahead);
}
Shifted.prototype = Real.prototype;
Shifted.now = () => Real.now() + ahead;
Shifted.parse = Real.parse;
Shifted.UTC = Real.UTC;
globalThis.Date = Shifted;
"""


def pytest_configure(config: pytest.Config) -> None:
    """Travel in time for the whole session when TEST_DAYS_AHEAD is set: this process and
    Python subprocesses (a `sitecustomize` on PYTHONPATH) with time-machine, which moves every
    clock Python reads and keeps it ticking; Azurite and other Node.js processes with a
    preloaded script that shifts `Date`. Storage and app then agree on the time, as in Azure."""
    days = os.environ.get(DAYS_AHEAD, "").strip()
    if not days:
        return
    import time_machine

    to = datetime.now(UTC) + timedelta(days=int(days))
    site = Path(tempfile.mkdtemp(prefix="travel-"))
    (site / "sitecustomize.py").write_text(_SITE)
    (site / "clock.js").write_text(_NODE)
    node = [os.environ.get("NODE_OPTIONS", ""), f"--require={site / 'clock.js'}"]
    os.environ["NODE_OPTIONS"] = " ".join(filter(None, node))
    os.environ["TEST_TRAVEL_TO"] = to.isoformat()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )
    traveller = time_machine.travel(to, tick=True)
    traveller.start()
    config.stash[_TRAVEL] = traveller


def pytest_report_header(config: pytest.Config) -> str | None:
    days = os.environ.get(DAYS_AHEAD, "").strip()
    return f"clock: {days} days ahead, now {datetime.now(UTC):%Y-%m-%d}" if days else None


_TRAVEL = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--repeat",
        type=int,
        default=1,
        help="run each selected test N times in one session (to show a flaky test is not)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`--repeat N`: each test N times, as `name[run1]` ... (pytest-repeat's `--count`)."""
    runs = int(metafunc.config.getoption("repeat"))
    if runs > 1:
        metafunc.fixturenames.append("repeat_run")
        metafunc.parametrize("repeat_run", range(1, runs + 1), ids=lambda n: f"run{n}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what needs Azurite (any test using the emulator, even through other fixtures)."""
    for item in items:
        if _NEEDS_AZURITE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.azurite)


def _loopback(host: object) -> bool:
    if host in (None, "localhost", b"localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def unit_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see none of the app's settings and reach nothing beyond loopback."""
    if request.node.get_closest_marker("azurite"):
        return
    for name in list(os.environ):
        if name in DEFAULTS or name.startswith(CONNECTION):
            monkeypatch.delenv(name)
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise OSError(f"unit tests stay off the network (tried {address[0]})")
        real_connect(sock, address)

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            raise OSError(f"unit tests stay off the network (looked up {host})")
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)


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


@pytest.fixture
def hook() -> Iterator[Any]:
    """A webhook receiver on 127.0.0.1 whose answers a test scripts (`test_alerts.Hook`)."""
    from test_alerts import Hook

    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture
def arm() -> Iterator[Any]:
    """A server on 127.0.0.1 answering like ARM's diagnostic settings (`test_diagnostics`)."""
    from test_diagnostics import FakeArm

    server = FakeArm()
    yield server
    server.stop()
