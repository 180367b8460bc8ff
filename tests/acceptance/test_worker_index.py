"""function_app.py indexes under the real Python worker code, with the bindings we deploy for.

`azure.functions` alone accepts mistakes the worker rejects at start-up (a parameter that matches
no binding, an annotation that does not fit the binding, a broken SDK-type binding). The worker's
loader and registry ship as `azure-functions-runtime`, which installs only on Python 3.13, so
this test keeps a second venv, `.venv313/` (gitignored), created on first use, and runs
tests/acceptance/worker_index_probe.py in it. It skips, saying why, when no Python 3.13 is
found or that venv cannot be built (no network to PyPI, for instance).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.core.settings import CONNECTION, DEFAULTS, LOGS_CONTAINER

#: Another interpreter per test, and a venv to build on first use: `make test` runs it, the
#: inner loop (`make unit`) does not.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "function_app.py"
PROBE = Path(__file__).resolve().parent / "worker_index_probe.py"
VENV = ROOT / ".venv313"
STAMP = VENV / ".bastion-audit-requirements"

#: The worker and the azure-functions major it pairs with (1.x stops at Python 3.12), pinned to
#: what this test was written against. Everything else (azurefunctions-extensions-bindings-blob
#: included) comes from requirements.txt, pins kept.
WORKER_PACKAGES = [
    "azure-functions-runtime==1.3.0",
    "azure-functions==2.3.0",
]

HTTP_ROUTES = {
    "http_activity": "activity",
    "http_alerts": "alerts",
    "http_sessions": "sessions",
    "http_report": "report",
    "http_status": "status",
    "http_erase": "erase",
}
TIMERS = {
    "sweep_recent_blobs": "%SWEEP_SCHEDULE%",
    "redeliver_alerts": "%ALERT_RETRY_SCHEDULE%",
    "check_health": "%HEALTH_SCHEDULE%",
    "send_digest": "%DIGEST_SCHEDULE%",
    "expire_old_data": "%RETENTION_SCHEDULE%",
}
EXPECTED = {"ingest_blob", *TIMERS, *HTTP_ROUTES}


def _package_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> list[str]:
    """requirements.txt, with the worker's packages replacing the ones pinned for Python 3.11."""
    ours = {_package_name(r) for r in WORKER_PACKAGES}
    lines = []
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and _package_name(line) not in ours:
            lines.append(line)
    return WORKER_PACKAGES + lines


def _is_python313(candidate: str) -> bool:
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def _find_python313() -> str | None:
    """`python3.13` on PATH; else a pyenv install (its shim fails unless 3.13 is selected)."""
    candidates = [os.environ.get("PYTHON313", ""), shutil.which("python3.13") or ""]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.13*/bin/python3.13"), reverse=True)
    return next((c for c in candidates if c and _is_python313(c)), None)


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def python313() -> str:
    """The .venv313 interpreter with the worker and the app's requirements installed."""
    python = VENV / "bin" / "python"
    wanted = "\n".join(_requirements())
    if python.exists() and STAMP.exists() and STAMP.read_text(encoding="utf-8") == wanted:
        return str(python)
    if not python.exists():
        base = _find_python313()
        if base is None:
            pytest.skip("no Python 3.13 found (python3.13 on PATH or pyenv); worker not checked")
        made = _run([base, "-m", "venv", str(VENV)], timeout=300)
        if made.returncode != 0:
            pytest.skip(f"could not create {VENV.name}: {made.stderr.strip()[-500:]}")
    installed = _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *wanted.split(),
        ],
        timeout=900,
    )
    if installed.returncode != 0:
        pytest.skip(f"could not install the worker into {VENV.name}: {installed.stderr[-800:]}")
    STAMP.write_text(wanted, encoding="utf-8")
    return str(python)


def _clean_env(**settings: str) -> dict[str, str]:
    """The process environment without any of the app's settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTS and not k.startswith("PYTEST")}
    env.pop("VIRTUAL_ENV", None)
    env.update(settings)
    return env


def _index(python: str, **settings: str) -> dict[str, dict[str, Any]]:
    if not APP.exists():
        pytest.skip("function_app.py does not exist yet")
    done = subprocess.run(
        [python, str(PROBE), str(APP)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
        env=_clean_env(**settings),
    )
    assert done.returncode == 0, f"the worker could not index function_app.py:\n{done.stderr}"
    line = next(x for x in done.stdout.splitlines() if x.startswith("WORKER_INDEX_JSON "))
    functions = json.loads(line.removeprefix("WORKER_INDEX_JSON "))
    return {f["name"]: f for f in functions}


@pytest.fixture(scope="session")
def azure_index(python313: str) -> dict[str, dict[str, Any]]:
    """As on Flex Consumption (the app settings infra/main.bicep sets)."""
    return _index(python313, BLOB_TRIGGER_SOURCE="EventGrid")


def _only(bindings: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [b for b in bindings if all(b.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (match, bindings)
    return found[0]


def test_function_names(azure_index: dict[str, dict[str, Any]]) -> None:
    assert set(azure_index) == EXPECTED


def test_blob_trigger_event_grid_sdk_type(azure_index: dict[str, dict[str, Any]]) -> None:
    fn = azure_index["ingest_blob"]
    assert len(fn["bindings"]) == 1
    trigger = _only(fn["bindings"], type="blobTrigger", direction="IN")
    assert trigger["path"] == f"{LOGS_CONTAINER}/{{name}}"
    assert trigger["connection"] == CONNECTION
    assert trigger["source"] == "EventGrid"
    # SDK-type (BlobClient) binding: the host hands over a reference, not the blob's bytes.
    assert trigger["properties"] == {"SupportsDeferredBinding": True}
    assert fn["deferred_bindings_enabled"] is True
    (param,) = fn["input_types"].values()
    assert param["deferred"] is True
    assert param["pytype"].endswith(".BlobClient")
    assert param["pytype"].startswith("azurefunctions.extensions.bindings.blob")
    assert fn["has_return"] is False


def test_timers(azure_index: dict[str, dict[str, Any]]) -> None:
    for name, schedule in TIMERS.items():
        fn = azure_index[name]
        trigger = _only(fn["bindings"], type="timerTrigger", direction="IN")
        assert trigger["schedule"] == schedule
        assert len(fn["bindings"]) == 1
        setting = schedule.strip("%")
        assert setting in DEFAULTS, f"{setting} has no default in shared/core/settings.py"


def test_http_functions(azure_index: dict[str, dict[str, Any]]) -> None:
    for name, route in HTTP_ROUTES.items():
        fn = azure_index[name]
        trigger = _only(fn["bindings"], type="httpTrigger", direction="IN")
        assert trigger["route"] == route
        assert trigger["authLevel"] == "ANONYMOUS"  # Entra ID sign-in stands in front
        assert trigger["methods"] == (["POST"] if name == "http_erase" else ["GET"])
        _only(fn["bindings"], type="http", direction="OUT", name="$return")
        assert fn["is_http_func"] is True
        assert fn["has_return"] is True


def test_local_source_is_polling(python313: str) -> None:
    """With the local default (Azurite has no Event Grid) the trigger polls the container."""
    local = _index(python313, BLOB_TRIGGER_SOURCE=DEFAULTS["BLOB_TRIGGER_SOURCE"])
    assert set(local) == EXPECTED
    trigger = _only(local["ingest_blob"]["bindings"], type="blobTrigger")
    assert trigger["source"] == "LogsAndContainerScan"
