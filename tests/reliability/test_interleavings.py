"""Every interleaving of two invocations ends in the state of a serial run.

`test_concurrency.py` runs eight instances at once and sees whichever interleavings the machine
happens to produce; an extra account incident once showed up there in CI and not again. Here
two invocations (each stores its records and detects over them, as one chunk of the blob
trigger does) run in their own threads and stop at every checkpoint the product declares
(`shared.detect.planning.checkpoint`): after the index rows are stored, before the coverage is read,
before an actor decides from its rows, before it settles its incidents under its head row's
ETag. A scheduler lets one of them go at a time and, run after run, walks through every order
of the two step sequences (depth first over the choices, so each interleaving runs once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from reliability_support import Snapshot, close, lines, names, new_pipeline, snapshot

from devtools import samples
from devtools.azurite import Azurite
from shared.detect import planning
from shared.ingest import parse
from shared.ingest.chunks import store
from shared.ingest.loop import Pipeline

pytestmark = pytest.mark.azurite
#: How long a step may take before the scheduler calls the run hung (a step is a few requests).
STEP_SECONDS = 30.0
BRUTE = samples.BRUTE_IP
ALL = frozenset({"stored", "coverage", "decide", "settle"})
START = samples.START + timedelta(minutes=57)


class Hung(AssertionError):
    """An invocation neither reached a checkpoint nor ended in time."""


@dataclass
class Scheduler:
    """Orders two invocations step by step. Each runs in a thread named `inv<i>` (its detection
    pool's thread too); a checkpoint blocks it until the scheduler lets it go. Where both wait,
    the choice is the next one of `prefix`, then invocation 0; `branches` records every choice."""

    prefix: Sequence[int]
    points: frozenset[str] = ALL
    branches: list[int] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    released: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def checkpoint(self, point: str, detail: str) -> None:
        name = threading.current_thread().name
        if point not in self.points or not name.startswith("inv"):
            return
        me = int(name[3])
        with self.cond:
            self.waiting[me] = f"{point} {detail}".strip()
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: me in self.released, STEP_SECONDS):
                raise Hung(f"invocation {me} was never let go at {point}")
            self.released.discard(me)
            del self.waiting[me]
            self.cond.notify_all()

    def run(self, work: Sequence[Callable[[], None]]) -> None:
        """Run the invocations to their end in the order the schedule says; re-raise a failure."""
        errors: list[BaseException] = []

        def body(i: int) -> None:
            try:
                work[i]()
            except BaseException as exc:
                errors.append(exc)
            finally:
                with self.cond:
                    self.done.add(i)
                    self.cond.notify_all()

        threads = [threading.Thread(target=body, args=(i,), name=f"inv{i}") for i in range(2)]
        for t in threads:
            t.start()
        try:
            while self._step():
                pass
        finally:
            for t in threads:
                t.join(STEP_SECONDS)
        assert not any(t.is_alive() for t in threads), f"an invocation hung: {self.trace}"
        if errors:
            raise errors[0]

    def _step(self) -> bool:
        """Wait until each invocation waits or has ended; let one go. False when both ended."""
        with self.cond:
            settled = self.cond.wait_for(
                lambda: all(i in self.waiting or i in self.done for i in (0, 1)), STEP_SECONDS
            )
            if not settled:
                raise Hung(f"a step took over {STEP_SECONDS} s: {self.trace}")
            ready = sorted(self.waiting)
            if not ready:
                return False
            if len(ready) == 2:
                k = len(self.branches)
                choice = self.prefix[k] if k < len(self.prefix) else ready[0]
                self.branches.append(choice)
            else:
                choice = ready[0]
            self.trace.append(f"{choice}:{self.waiting[choice]}")
            self.released.add(choice)
            self.cond.notify_all()
            self.cond.wait_for(lambda: choice not in self.released, STEP_SECONDS)
            return True


def schedules(run: Callable[[Sequence[int]], list[int]]) -> Iterator[list[int]]:
    """Depth first over the choices: after a run whose choices were `b`, the next schedule
    keeps b up to its last 0 and takes 1 there. Yields each run's choices; every interleaving
    of the two step sequences is run exactly once (each run is deterministic given its order)."""
    prefix: list[int] = []
    while True:
        got = run(prefix)
        assert got[: len(prefix)] == prefix, f"the run did not follow its schedule: {got}"
        yield got
        flips = [i for i, c in enumerate(got) if c == 0]
        if not flips:
            return
        prefix = [*got[: flips[-1]], 1]


# -- the two invocations ------------------------------------------------------------------
def fail(when: datetime, user: str = "admin", ip: str = BRUTE) -> dict[str, Any]:
    return samples.record(when, user, samples.FAIL, ip, port=60000 + int(when.timestamp()) % 5000)


#: The blob both invocations read (host rows name a host's folder: one host, one folder).
BLOB = samples.blob_path("BASTION-PROD", START.replace(minute=0))


#: What one invocation reads: records, from the blob's byte `offset` on.
Part = tuple[int, bytes]


def part(records: Sequence[dict[str, Any]], skip: int = 0) -> Part:
    """The blob holding `records`, read from the start of record `skip` on."""
    head = lines(records[:skip])
    return len(head), lines(records)[len(head) :]


def invocation(p: Pipeline, chunk: Part, now: datetime) -> None:
    """One chunk of the blob trigger: split, store, detect (what `Pipeline.ingest` does per
    chunk, without the cursor: each invocation holds its own chunk)."""
    offset, data = chunk
    max_record = p.settings.max_record_bytes
    pieces = parse.split(data, offset, parse.Mode.UNKNOWN, True, max_record).pieces
    stored = store(p.storage, BLOB, pieces)
    p.detector.run(stored.rows, now)


def pipelines(emulator: Azurite) -> list[Pipeline]:
    """Two instances on the same, fresh names; one request at a time each, detection in a
    thread named after its invocation (so a checkpoint knows whose step it is)."""
    env = names(WRITE_CONCURRENCY="1")
    out = [new_pipeline(emulator.connection_string, env) for _ in range(2)]
    for i, p in enumerate(out):
        p.detector.pool.shutdown()
        pool = ThreadPoolExecutor(1, f"inv{i}")
        p.detector.pool = p.detector.profiler.pool = p.detector.rows.pool = pool
    return out


def state(emulator: Azurite, parts: Sequence[Part], order: Sequence[int],
          scheduler: Scheduler | None = None) -> Snapshot:  # fmt: skip
    """Run the two invocations (serially in `order`, or as the scheduler says); the state."""
    now = START + timedelta(hours=1)
    ps = pipelines(emulator)
    try:
        work = [lambda i=i: invocation(ps[i], parts[i], now) for i in range(2)]
        if scheduler is None:
            for i in order:
                work[i]()
        else:
            scheduler.run(work)
        return snapshot(ps[0])
    finally:
        close(*ps)


def explore(
    emulator: Azurite, monkeypatch: pytest.MonkeyPatch, parts: Sequence[Part]
) -> tuple[Snapshot, int]:
    """Every interleaving of the two invocations against the serial run; (serial, runs)."""
    want = state(emulator, parts, (0, 1))
    assert state(emulator, parts, (1, 0)).incidents() == want.incidents(), "order matters"
    runs = 0

    def run(prefix: Sequence[int]) -> list[int]:
        nonlocal runs
        runs += 1
        scheduler = Scheduler(prefix)
        monkeypatch.setattr(planning, "checkpoint", scheduler.checkpoint)
        got = state(emulator, parts, (), scheduler)
        where = " | ".join(scheduler.trace)
        assert got.incidents() == want.incidents(), f"incidents differ after {where}"
        assert got.events == want.events and got.index == want.index, f"rows differ: {where}"
        assert got.queue_messages == want.queue_messages, f"notified differently: {where}"
        return scheduler.branches

    for _ in schedules(run):
        pass
    return want, runs


def test_halves_of_an_attack_stored_at_once(
    emulator: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CI failure: the brute force on `admin` crosses the hour, so two invocations each
    hold a part (3 and 4 failures from one address). Serially it is the address's incident,
    and the account has none of its own."""
    first = [fail(START + timedelta(seconds=10 * n)) for n in range(3)]
    second = [fail(START + timedelta(minutes=4, seconds=10 * n)) for n in range(4)]
    want, runs = explore(emulator, monkeypatch, [part(first), part([*first, *second], 3)])
    assert [(a["Rule"], a["Subject"]) for a in want.alerts.values()] == [("ip_brute_force", BRUTE)]
    assert runs >= 20


def test_overlapping_records(emulator: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two invocations store some of the same records (a blob read by two instances, one of
    them further): each half is an attack on its own, and together one incident."""
    attack = [fail(START + timedelta(seconds=20 * n)) for n in range(8)]
    want, runs = explore(emulator, monkeypatch, [part(attack[:6]), part(attack, 3)])
    assert [(a["Rule"], a["Subject"], a["FailureCount"]) for a in want.alerts.values()] == [
        ("ip_brute_force", BRUTE, 8)
    ]
    assert runs >= 20
