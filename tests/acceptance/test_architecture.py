"""The house in docs/architecture.md is the house in the code: one folder per stage, each
module drawn in the document and placed in a layer, the import contracts in pyproject.toml
hold (import-linter: layers, pure modules without I/O), no two names of one stem, no function
in the package past 60 lines, and unit tests cannot reach the network or the developer's
settings."""

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

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
DOC = ROOT / "docs" / "architecture.md"


def modules() -> list[str]:
    """Every module of the package, dotted from `shared` (`detect.windows`, `cli`)."""
    out = []
    for path in SHARED.rglob("*.py"):
        parts = path.relative_to(SHARED).with_suffix("").parts
        if parts[-1] != "__init__":
            out.append(".".join(parts))
    return sorted(out)


def packages() -> list[str]:
    return sorted(p.parent.name for p in SHARED.glob("*/__init__.py"))


def test_every_module_is_drawn_in_the_document() -> None:
    found = set(re.findall(r"`([\w/]+)\.py`", DOC.read_text()))
    named = {n for n in found if not n.startswith(("tests/", "devtools/", "shared/"))}
    named -= {"function_app", "__init__"}
    paths = {m.replace(".", "/") for m in modules()}
    assert paths - {"__main__"} <= named, f"not in docs/architecture.md: {paths - named}"
    assert named <= paths, f"docs name modules that do not exist: {named - paths}"


def test_the_root_keeps_only_the_wiring() -> None:
    assert {m for m in modules() if "." not in m} == {"__main__", "cli", "functions", "services"}


def test_each_folder_says_what_lives_there_and_what_it_may_import() -> None:
    for name in packages():
        doc = ast.get_docstring(ast.parse((SHARED / name / "__init__.py").read_text()))
        assert doc and 1 <= doc.count("\n") <= 3 and "import" in doc.lower(), name


def test_no_two_names_differ_only_by_a_suffix() -> None:
    """`detect` beside `detection`, `retain` beside `retention`, `store` beside `storage`: two
    names of one stem make people guess. Modules and folders alike, by their first letters."""
    names = sorted({m.rsplit(".", 1)[-1] for m in modules()} | set(packages()) - {"__main__"})
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert a[:4] != b[:4], f"{a} and {b} are told apart only by their ends"


def contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_the_import_contracts_hold() -> None:
    """import-linter (pyproject.toml): the stages import downwards only, and inside each stage
    its rooms do; the pure modules do no I/O; nothing deployed imports tooling. A broken
    contract prints the chain of imports. In a process of its own: it configures logging
    (`dictConfig`), which would silence the loggers of the tests after it."""
    run = "import sys; from importlinter.cli import lint_imports as l; sys.exit(l(no_cache=True))"
    done = subprocess.run(
        [sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_contracts_place_every_module() -> None:
    """Every stage and root module sits in a layer of the stages, and every module of a stage
    in a layer of its stage's contract."""
    placed: set[str] = set()
    for c in contracts():
        if c["type"] != "layers":
            continue
        (container,) = c["containers"]
        prefix = container.removeprefix("shared").lstrip(".")
        for layer in c["layers"]:
            placed |= {f"{prefix}.{m.strip()}".lstrip(".") for m in layer.split("|")}
    assert placed == set(modules()) | set(packages())


def test_function_app_only_declares_triggers() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert len(node.body) == 1, f"{node.name}: one call into shared, nothing else"


@pytest.mark.parametrize("path", [*sorted(SHARED.rglob("*.py")), ROOT / "function_app.py"])
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
