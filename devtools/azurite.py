"""Start and stop a private Azurite (the storage emulator) for the demo, tests and benchmarks.

Loopback only, free ports, in memory unless a folder is given, and always stopped: a test
session must not leave processes behind. Not used by the function app itself.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from shared.core.settings import CONNECTION

#: The emulator's well-known development account (public, documented by Microsoft).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Azurite:
    """A running emulator; use as a context manager."""

    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/devstoreaccount1;"
            f"QueueEndpoint={host}:{self.queue_port}/devstoreaccount1;"
            f"TableEndpoint={host}:{self.table_port}/devstoreaccount1;"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_names = itertools.count(1)


def isolated_env(connection: str, tag: str = "", **overrides: str) -> dict[str, str]:
    """App settings on table, queue and container names no other run or test uses."""
    n = f"{os.getpid()}X{next(_names)}{tag}"
    env = {
        CONNECTION: connection,
        "EVENTS_TABLE": f"Events{n}",
        "INDEX_TABLE": f"Index{n}",
        "STATE_TABLE": f"State{n}",
        "ALERTS_TABLE": f"Alerts{n}",
        "QUARANTINE_CONTAINER": f"quarantine-{n.lower()}",
        "ALERT_QUEUE": f"alerts-{n.lower()}",
    }
    env.update(overrides)
    return env


def executable() -> str:
    """The pinned Azurite from `npm ci` (node_modules), else one on PATH."""
    local = ROOT / "node_modules" / ".bin" / "azurite"
    found = str(local) if local.exists() else shutil.which("azurite")
    if not found:
        raise RuntimeError("Azurite not found: run `npm ci` in the project root")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    location: str | None = None,
    ports: tuple[int, int, int] | None = None,
    timeout: float = 30.0,
) -> Azurite:
    """Start Azurite and wait until all three services accept connections."""
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    args = [executable(), "--silent", "--disableTelemetry", "--skipApiVersionCheck"]
    args += ["--location", location] if location else ["--inMemoryPersistence"]
    for service, port in (("blob", blob), ("queue", queue), ("table", table)):
        args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True
    )
    emulator = Azurite(blob, queue, table, process)
    deadline = time.monotonic() + timeout
    pending = {blob, queue, table}
    while pending:
        if process.poll() is not None:
            errors.seek(0)
            err = errors.read().decode(errors="replace")
            raise RuntimeError(f"Azurite exited with {process.returncode}: {err[-2000:]}")
        if time.monotonic() > deadline:
            emulator.stop()
            raise RuntimeError("Azurite did not start in time")
        for port in list(pending):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    pending.discard(port)
        time.sleep(0.05)
    return emulator


#: `make azurite`: the default ports (what `UseDevelopmentStorage=true` means), data kept here.
LOCAL = ROOT / ".azurite"
DEFAULT_PORTS = (10000, 10001, 10002)


def start_background() -> str:
    """Start Azurite on the default ports, detached, with its data in `.azurite/`."""
    LOCAL.mkdir(exist_ok=True)
    pid_file = LOCAL / "azurite.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text() or 0)):
        return "Azurite is already running (make azurite-stop stops it)"
    for port in DEFAULT_PORTS:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(
                    f"port {port} is in use: another Azurite? Stop it, or use its connection"
                )
    emulator = start(location=str(LOCAL), ports=DEFAULT_PORTS)
    pid_file.write_text(str(emulator.process.pid))
    return (
        "Azurite is running on 127.0.0.1:10000 (blob), 10001 (queue), 10002 (table); "
        "data in .azurite/. Stop it with: make azurite-stop"
    )


def stop_background() -> str:
    pid_file = LOCAL / "azurite.pid"
    pid = int(pid_file.read_text() or 0) if pid_file.exists() else 0
    if not pid or not _alive(pid):
        pid_file.unlink(missing_ok=True)
        return "Azurite was not running"
    os.killpg(pid, 15)  # it runs in its own session: stop it and anything it started
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return "Azurite stopped (its data stays in .azurite/; delete the folder to start afresh)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return True
    return state != "Z"
