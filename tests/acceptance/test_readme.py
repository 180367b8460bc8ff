"""The README's newcomer commands run exactly as printed, and print what the README shows.

Every `console` block of the sections below is run, command after command, in one shell session
(`. .venv/bin/activate` and `export` carry over), in a copy of the working tree, against the
Azurite that `make azurite` starts on the default ports. A line `...` in the README stands for any
number of output lines. The demo's printed output (Quick start) is checked the same way.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTIONS = ("Try the command line", "Is it working?")
pytestmark = [pytest.mark.azurite, pytest.mark.slow]


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    return text[start : end if end > 0 else len(text)]


def console_blocks(text: str) -> Iterator[list[tuple[str, list[str]]]]:
    """Each ```console block as [(command, expected output lines)]."""
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line.rstrip())
        yield steps


def matches(expected: list[str], actual: list[str]) -> bool:
    """`expected` with `...` lines standing for any number of lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == head and matches(rest, actual[1:])


def ports_free() -> bool:
    for port in (10000, 10001, 10002):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of the working tree (tracked and new files), with this checkout's venv and
    node_modules, so the commands' files (.azurite/, logs/, report.html) land there."""
    if not (ROOT / ".venv" / "bin" / "python").exists() or not (ROOT / "node_modules").exists():
        pytest.skip("needs make's .venv and node_modules")
    if not ports_free():
        pytest.skip("ports 10000-10002 are taken (another Azurite?): stop it to run this test")
    root = tmp_path_factory.mktemp("readme")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = root / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    for name in (".venv", "node_modules"):
        (root / name).symlink_to(ROOT / name)
    yield root
    subprocess.run(["make", "azurite-stop"], cwd=root, capture_output=True, check=False)


def shell(tree: Path, prelude: list[str], command: str) -> subprocess.CompletedProcess[str]:
    # A newcomer's shell: no app settings, no venv, not inside make (`make test` runs us).
    drop = ("BastionLogs", "VIRTUAL_ENV", "MAKE", "MFLAGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    script = "\n".join([*prelude, command])
    return subprocess.run(
        ["bash", "-c", script], cwd=tree, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def test_commands_work_as_printed(tree: Path) -> None:
    """The sections in order, as a newcomer reads them: what one activates, the next uses."""
    blocks = [block for title in SECTIONS for block in console_blocks(section(title))]
    assert len(blocks) >= len(SECTIONS)
    prelude: list[str] = []
    for steps in blocks:
        for command, expected in steps:
            if command.startswith((". ", "export ", "source ")):
                prelude.append(command)
                continue
            done = shell(tree, prelude, command)
            output = (done.stdout + done.stderr).rstrip("\n").splitlines()
            output = [line.rstrip() for line in output if "WARNING: Location" not in line]
            error = bool(expected) and expected[0].startswith("error:")
            assert (done.returncode != 0) == error, (command, done.returncode, output[-5:])
            assert matches(expected, output), (command, expected, output)


def test_the_demo_prints_what_the_quick_start_shows(tree: Path) -> None:
    text = section("Quick start")
    shown = re.search(r"starts like\s+this:\n\n```\n(.*?)```", text, re.S)
    assert shown
    expected = [line.rstrip() for line in shown.group(1).splitlines()] + ["..."]
    done = shell(tree, [], "make demo")
    assert done.returncode == 0, done.stderr[-2000:]
    output = [
        line.rstrip()
        for line in done.stdout.splitlines()
        if not line.startswith((".venv/bin/python", "npm ci", "touch "))
    ]
    assert matches(expected, output), output[:40]
