"""The house in docs/architecture.md is the house in the code: every module has a room, the
import contracts in pyproject.toml hold (import-linter: layers, a pure core without I/O), no
function in the package grows past 60 lines, and unit tests cannot reach the network or the
developer's settings."""

from __future__ import annotations

import ast
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT / "shared"
DOC = ROOT / "docs" / "architecture.md"

#: Pure core: decides, formats and names things; never touches a client, a socket or a clock
#: it was not given.
PURE = {
    "activity", "auth", "baseline", "clients", "detection", "diagnostics", "digest", "entities",
    "incidents", "keys", "layout", "messages", "model", "parse", "planning", "quarantine",
    "retention", "settings", "text",
}  # fmt: skip
#: The write path, in the order the data walks it (plus the sweep that feeds it).
WRITE = {
    "storage", "blobs", "store", "ingest", "detect", "profile", "health", "alerting", "sweep",
    "arm", "retain",
}  # fmt: skip
#: The read side: answers questions about what was stored.
READ = {"queries", "report", "status"}
#: Edges: wiring for the triggers, the HTTP bodies and the command line.
EDGES = {"services", "functions", "http", "cli", "__main__", "__init__"}


def modules() -> dict[str, set[str]]:
    """Each module of the package, and everything it imports (sibling names for `from .`)."""
    out: dict[str, set[str]] = {}
    for path in SHARED.glob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    names.add(node.module.split(".")[0])
                else:
                    names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[path.stem] = names
    return out


def test_every_module_has_a_room_and_the_document_names_it() -> None:
    found = set(modules())
    assert found == PURE | WRITE | READ | EDGES, "a new module needs a room (and a line in docs)"
    named = set(re.findall(r"`(\w+)\.py`", DOC.read_text()))
    assert found - {"__init__"} <= named, f"not in docs/architecture.md: {found - named}"
    assert named <= found | {"function_app"}, (
        f"docs name modules that do not exist: {named - found}"
    )


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_the_import_contracts_hold() -> None:
    """import-linter (pyproject.toml): the layers import downwards only, the pure core does no
    I/O, nothing deployed imports tooling. A broken contract prints the chain of imports. In
    a process of its own: it configures logging (`dictConfig`), which would silence the
    loggers of the tests after it."""
    run = "import sys; from importlinter.cli import lint_imports as l; sys.exit(l(no_cache=True))"
    done = subprocess.run(
        [sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_contracts_name_every_room() -> None:
    """Every module sits in one layer, and the pure core of the contract is this one."""
    layers, pure = contracts()[0]["layers"], contracts()[1]["source_modules"]
    placed = [m.strip() for layer in layers for m in layer.split("|")]
    assert sorted(placed) == sorted(set(modules()) - {"__init__"}), "a module needs a layer"
    assert {m.removeprefix("shared.") for m in pure} == PURE


def test_function_app_only_declares_triggers() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert len(node.body) == 1, f"{node.name}: one call into shared, nothing else"


@pytest.mark.parametrize("path", [*sorted(SHARED.glob("*.py")), ROOT / "function_app.py"])
def test_no_function_is_over_sixty_lines(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 60, f"{path.name}:{node.lineno} {node.name} is {length} lines"


def test_unit_tests_stay_off_the_network_and_out_of_the_settings() -> None:
    assert not any(k.startswith("BastionLogsStorage") for k in os.environ)
    with pytest.raises(OSError, match="off the network"):
        socket.create_connection(("192.0.2.1", 443), timeout=0.1)
    with pytest.raises(OSError, match="off the network"):
        socket.getaddrinfo("example.com", 443)
    with socket.socket() as server:  # loopback stays open: local servers are real parts
        server.bind(("127.0.0.1", 0))
        server.listen()
        socket.create_connection(server.getsockname(), timeout=1).close()
