"""How alerting holds up while an attacker writes the input (issue 11). Not part of the tests.

    .venv/bin/python bench/attack.py            # ~6 min on 2 cores; --quick: ~2 min

1. **Campaign**: one IP tries 400 accounts (6,000 failures over 50 minutes) in one growing
   hour blob, ingested after each of 12 appends, then signs in to one of them. Prints
   notifications, incidents, records stored, seconds per step (first and last) and their ratio.
   Targets: <= 3 notifications; last/first step <= 1.3.
2. **Evaluation**: detection over 20,000 failures of one address, pure code. Target < 0.3 s.
3. **Replays**: a seeded population (colleagues, an office NAT with typos, a VPN pool) over
   several days with planted attacks, replayed through the app's ingest into Azurite in time
   order, shuffled, and grown in slices. Prints incidents per planted attack and false
   incidents. Target: shuffled and sliced give exactly the incidents of the time-ordered run.
4. **Backlog** (`--backlog` runs only this): a trickle of 5 failures, a flood of 300, then the
   campaign against 400 accounts ending in a sign-in, ingested as it happened (appended and
   ingested minute by minute, the clock at each minute, the redelivery timer every 5 minutes)
   and as one backlog a month late. Prints the notifications of each and the seconds spent.
   Target: the same notifications (event, severity, failures, rules), apart from delivery time.
5. **Long attack** (`--long`: 15,000 failures against 400 accounts in 30 appends to one hour
   blob; `--six-hours`: the same campaign across six hour blobs). Prints each step's seconds,
   the CPU this process and Azurite spent, and its storage requests (blob reads, table point
   reads, queries and writes), then the median of the last three steps over the first three.
   Target: <= 1.2.

Each part starts its own in-memory Azurite (loopback, free ports) and stops it.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import time_machine
from _common import settings
from azure.core.pipeline.transport import RequestsTransport

from devtools import azurite, samples
from shared.core import catalog, domain
from shared.core.settings import LOGS_CONTAINER
from shared.detect import windows
from shared.ingest.loop import Pipeline

DAY = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ATTACKER = "198.51.100.66"


def lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for r in sorted(records, key=lambda r: r["time"])]


def incident_rows(p: Pipeline) -> list[dict[str, Any]]:
    rows = p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
    return [r for r in rows if "FirstSeen" in r and r.get("State") == "open"]


# -- 1. the campaign ----------------------------------------------------------------------------
REQUESTS: Counter[str] = Counter()
PORTS: dict[int, str] = {}  # the running emulator's port of each service
_send = RequestsTransport.send


def _counting_send(self: RequestsTransport, request: Any, **kwargs: Any) -> Any:
    """Counts every storage request by what it costs: blob read, table query or write."""
    REQUESTS[_kind(request.method, request.url)] += 1
    return _send(self, request, **kwargs)


def _kind(method: str, url: str) -> str:
    service = PORTS.get(urlsplit(url).port or 0, "other")
    if method in ("GET", "HEAD"):
        if service == "table" and "PartitionKey=" in urlsplit(url).path:
            return "table_get"  # a point read
        return "blob_read" if service == "blob" else f"{service}_query"
    return f"{service}_write"


RequestsTransport.send = _counting_send  # type: ignore[method-assign]


def campaign(accounts: int, failures: int, steps: int, hours: int = 1) -> dict[str, Any]:
    """One address against `accounts` accounts, `failures` spread over `hours` hour blobs
    (50 minutes of each), appended in `steps` pieces and ingested after each; then a sign-in."""
    start = DAY + timedelta(hours=10)
    span = timedelta(minutes=50) if hours == 1 else timedelta(hours=hours) - timedelta(minutes=10)
    records = [
        samples.record(start + span * i / failures, f"acct{i % accounts:03d}",
                       samples.FAIL, ATTACKER, port=i % 60000)
        for i in range(failures)
    ]  # fmt: skip
    records.sort(key=lambda r: r["time"])
    end = _t(records[-1]["time"])
    win = samples.record(end + timedelta(seconds=30), "acct007", samples.OK, ATTACKER)
    per = -(-len(records) // steps)
    pieces = [records[k * per : (k + 1) * per] for k in range(steps)] + [[win]]
    with azurite.start() as emulator:
        PORTS.update({emulator.blob_port: "blob", emulator.queue_port: "queue",
                      emulator.table_port: "table"})  # fmt: skip
        p = Pipeline(settings(emulator.connection_string, "A"))
        logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
        logs.create_container()
        made: dict[str, Any] = {}
        seconds: list[float] = []
        requests: list[Counter[str]] = []
        told, stored = 0, 0
        for piece in pieces:
            by_blob: dict[str, list[bytes]] = {}
            for r in piece:
                hour = _t(r["time"]).replace(minute=0, second=0, microsecond=0)
                by_blob.setdefault(samples.blob_path("BASTION-PROD", hour), []).append(
                    orjson.dumps(r) + b"\n"
                )
            for name, data in by_blob.items():
                if name not in made:
                    made[name] = logs.get_blob_client(name)
                    made[name].create_append_blob()
                made[name].append_block(b"".join(data))
            t0, before = time.perf_counter(), Counter(REQUESTS)
            cpu0, emu0 = time.process_time(), cpu_seconds(emulator.process.pid)
            for name in by_blob:
                summary = p.ingest(made[name], now=end + timedelta(minutes=5))
                told += len(summary.alerts)
                stored += summary.stored
            seconds.append(time.perf_counter() - t0)
            requests.append(Counter(REQUESTS) - before)
            cpu = (time.process_time() - cpu0, cpu_seconds(emulator.process.pid) - emu0)
            print(f"  step {len(seconds):2d}: {len(piece):4d} records, {seconds[-1]:5.2f} s"
                  f" (cpu: app {cpu[0]:.2f} s, azurite {cpu[1]:.2f} s),"
                  f" requests {_fmt(requests[-1])}", flush=True)  # fmt: skip
        rows = incident_rows(p)
        p.storage.close()
    attack = seconds[:steps]  # the last step is the one-record sign-in
    return {
        "notifications": told,
        "incidents": len(rows),
        "stored": stored,
        "first_s": attack[0],
        "last_s": attack[-1],
        "ratio": statistics.median(attack[-3:]) / statistics.median(attack[:3]),
        "severity": rows[0]["Severity"] if rows else "-",
        "accounts": rows[0]["DistinctUsers"] if rows else 0,
        "requests_first": _mean(requests[:3]),
        "requests_last": _mean(requests[steps - 3 : steps]),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user + system), from /proc (0 where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mean(counts: list[Counter[str]]) -> dict[str, float]:
    keys = sorted({k for c in counts for k in c})
    return {k: sum(c[k] for c in counts) / len(counts) for k in keys}


def _fmt(counts: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in sorted(counts.items()) if v) or "-"


def print_campaign(accounts: int, failures: int, steps: int, hours: int) -> dict[str, Any]:
    where = "one hour blob" if hours == 1 else f"{hours} hour blobs"
    print(f"1. campaign: {failures} failures from one IP against {accounts} accounts,"
          f" {steps} appends to {where}")  # fmt: skip
    c = campaign(accounts, failures, steps, hours)
    print(f"   notifications {c['notifications']} (target <= 3), incidents {c['incidents']},"
          f" stored {c['stored']}, severity {c['severity']},"
          f" accounts listed {c['accounts']}")  # fmt: skip
    print(f"   step seconds: first {c['first_s']:.2f}, last {c['last_s']:.2f},"
          f" last/first (median of 3) {c['ratio']:.2f} (target <= 1.2)")  # fmt: skip
    print(f"   requests per step, first three: {_fmt(c['requests_first'])}")
    print(f"   requests per step, last three:  {_fmt(c['requests_last'])}")
    return c


# -- 2. evaluation ------------------------------------------------------------------------------
def evaluation(n: int = 20_000) -> float:
    t0 = DAY + timedelta(hours=3)
    events = [
        domain.Event(t0 + timedelta(seconds=0.2 * i), f"k{i}", f"acct{i % 400}", ATTACKER,
                        False, "VM1", "BH")
        for i in range(n)
    ]  # fmt: skip
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        windows.evaluate(domain.Kind.IP, ATTACKER, events, catalog.Thresholds())
        best = min(best, time.perf_counter() - start)
    return best


# -- 3. replays of a population -----------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    kind: str  # brute_force, spray, campaign_win, distributed
    actor: str  # the IP (or account) an incident should name
    start: datetime
    end: datetime


def population(days: int, people: int, seed: int) -> tuple[dict[str, list[bytes]], list[Episode]]:
    """Hour blobs (as line lists) of three hosts, and the attacks planted in them."""
    rng = random.Random(seed)
    hosts = ["BASTION-HUB", "BASTION-WEU", "BASTION-NEU"]
    staff = [(f"user{i:03d}", f"82.165.{i // 200}.{i % 200 + 1}", rng.choice(list(samples.VMS)))
             for i in range(people)]  # fmt: skip
    nat, vpn = "203.0.113.10", [f"100.64.0.{i}" for i in range(1, 9)]
    out: list[tuple[str, dict[str, Any]]] = []
    for d in range(days):
        day = DAY + timedelta(days=d)
        if day.weekday() >= 5:
            continue
        for n, (user, home, vm) in enumerate(staff):
            for _ in range(rng.randint(1, 6)):
                when = day + timedelta(hours=rng.uniform(7, 19))
                ip = nat if n % 3 == 0 else rng.choice(vpn) if n % 3 == 1 else home
                host = hosts[n % len(hosts)]
                port = rng.randrange(1024, 65000)
                if rng.random() < 0.06:  # a typo, then the right password a minute later
                    typo = samples.record(when, user, samples.FAIL, ip, vm, host=host, port=port)
                    out.append((host, typo))
                    when += timedelta(seconds=rng.randint(20, 120))
                ok = samples.record(when, user, samples.OK, ip, vm, host=host, port=port + 1)
                out.append((host, ok))
    episodes: list[Episode] = []

    def plant(kind: str, actor: str, recs: list[dict[str, Any]], host: str) -> None:
        out.extend((host, r) for r in recs)
        times = [r["time"] for r in recs]
        episodes.append(Episode(kind, actor, _t(min(times)), _t(max(times))))

    def burst(at: datetime, every: float, users: list[str], ips: list[str]) -> list[dict[str, Any]]:
        """Failures `every` seconds apart, attempt i by users[i] from ips[i]."""
        return [
            samples.record(at + timedelta(seconds=every * i), u, samples.FAIL, ip, port=i)
            for i, (u, ip) in enumerate(zip(users, ips, strict=True))
        ]

    for d in range(days):
        day = DAY + timedelta(days=d)
        when = [day + timedelta(hours=rng.uniform(0, 22)) for _ in range(4)]
        brute, spray, camp = f"45.83.{d}.7", f"45.84.{d}.7", f"45.85.{d}.7"
        plant("brute_force", brute, burst(when[0], 20, ["admin"] * 12, [brute] * 12), hosts[d % 3])
        sprayed = [f"user{i:03d}" for i in range(9)]
        plant("spray", spray, burst(when[1], 30, sprayed, [spray] * 9), hosts[(d + 1) % 3])
        recs = burst(when[2], 6, [f"user{i % 40:03d}" for i in range(200)], [camp] * 200)
        recs.append(samples.record(when[2] + timedelta(seconds=1210), "user007", samples.OK, camp))
        plant("campaign_win", camp, recs, hosts[(d + 2) % 3])
        ips = [f"192.0.{d}.{i}" for i in range(14)]
        plant(
            "distributed", "svc-backup", burst(when[3], 40, ["svc-backup"] * 14, ips), hosts[d % 3]
        )
    blobs: dict[str, list[dict[str, Any]]] = {}
    for host, r in out:
        hour = _t(r["time"]).replace(minute=0, second=0, microsecond=0)
        blobs.setdefault(samples.blob_path(host, hour), []).append(r)
    return {name: lines(rs) for name, rs in blobs.items()}, episodes


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def replay(blobs: dict[str, list[bytes]], mode: str, seed: int) -> list[tuple[Any, ...]]:
    """Ingest every blob through the app's code in `mode` order; the incidents it ends with."""
    rng = random.Random(seed)
    names = sorted(blobs, key=lambda n: (n.split("/y=")[1], n))
    with azurite.start() as emulator:
        p = Pipeline(settings(emulator.connection_string, mode[:1].upper()))
        logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
        logs.create_container()
        if mode == "sliced":  # every blob grows in appends of 1-40 records, ingested after each
            clients = {n: logs.get_blob_client(n) for n in names}
            for c in clients.values():
                c.create_append_blob()
            pending = {n: list(blobs[n]) for n in names}
            while any(pending.values()):
                name = rng.choice([n for n in names if pending[n]])
                take = rng.randint(1, 40)
                clients[name].append_block(b"".join(pending[name][:take]))
                pending[name] = pending[name][take:]
                p.ingest(clients[name])
        else:
            if mode == "shuffled":
                rng.shuffle(names)
            for name in names:
                logs.upload_blob(name, b"".join(blobs[name]))
                p.ingest(logs.get_blob_client(name))
        rows = incident_rows(p)
        p.storage.close()
    fields = ("SubjectKind", "Subject", "Rules", "Severity", "FirstSeen", "LastSeen",
              "FailureCount", "SuccessCount", "DistinctUsers", "Users",
              "CompromisedUsers")  # fmt: skip
    return sorted(tuple(str(r[f]) for f in fields) for r in rows)


def score(found: list[tuple[Any, ...]], episodes: list[Episode]) -> dict[str, Any]:
    """Incidents per planted attack (matched by actor and overlapping time) and false ones."""
    per: dict[str, list[int]] = {}
    matched: set[int] = set()
    for ep in episodes:
        hits = [
            i for i, f in enumerate(found)
            if f[1] == ep.actor and _t(f[4]) <= ep.end + timedelta(minutes=15)
            and _t(f[5]) >= ep.start - timedelta(minutes=15)
        ]  # fmt: skip
        matched.update(hits)
        per.setdefault(ep.kind, []).append(len(hits))
    kinds = {
        k: f"{sum(1 for n in v if n)}/{len(v)} found, {sum(v) / max(len(v), 1):.2f} per attack"
        for k, v in per.items()
    }
    return {"per_kind": kinds, "false": len(found) - len(matched)}


# -- 4. as it happened vs as one backlog ---------------------------------------------------------
def backlog_records(accounts: int, failures: int) -> list[dict[str, Any]]:
    start = DAY + timedelta(hours=9, minutes=55)
    trickle = [start + timedelta(minutes=i, seconds=40) for i in range(5)]
    flood = [start + timedelta(minutes=5, seconds=i / 10) for i in range(300)]
    spread = [start + timedelta(minutes=6, seconds=50 * 60 * i / failures) for i in range(failures)]
    out = [
        samples.record(t, "admin", samples.FAIL, ATTACKER, port=i)
        for i, t in enumerate(trickle + flood)
    ]
    out += [samples.record(t, f"acct{i % accounts:03d}", samples.FAIL, ATTACKER, port=i % 60000)
            for i, t in enumerate(spread)]  # fmt: skip
    out.append(samples.record(start + timedelta(minutes=57), "acct007", samples.OK, ATTACKER))
    return out


def _minutes(records: list[dict[str, Any]]) -> dict[datetime, list[bytes]]:
    out: dict[datetime, list[bytes]] = {}
    for r in records:
        at = datetime.fromisoformat(r["time"]).replace(second=0, microsecond=0)
        out.setdefault(at, []).append(orjson.dumps(r) + b"\n")
    return out


def _told(p: Pipeline) -> list[tuple[Any, ...]]:
    queue = p.storage.queues.get_queue_client(p.settings.alert_queue)
    out = []
    while batch := list(queue.receive_messages(max_messages=32, visibility_timeout=600)):
        for m in batch:
            body = orjson.loads(base64.b64decode(m.content))
            out.append((body["notification"], body["event"], body["severity"],
                        body["failureCount"], tuple(body["rules"])))  # fmt: skip
    return sorted(out)


def backlog(accounts: int, failures: int) -> dict[str, Any]:
    """Notifications and seconds, live (minute by minute) and as one backlog a month late."""
    minutes = _minutes(backlog_records(accounts, failures))
    out: dict[str, Any] = {}
    with azurite.start() as emulator:
        for mode in ("live", "backlog"):
            p = Pipeline(settings(emulator.connection_string, mode[:1].upper()))
            logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
            if not logs.exists():
                logs.create_container()
            t0, invocations = time.perf_counter(), 0
            if mode == "live":
                invocations = _live(p, logs, minutes)
            else:
                invocations = _as_backlog(p, logs, minutes)
            out[mode] = {"told": _told(p), "seconds": time.perf_counter() - t0,
                         "invocations": invocations}  # fmt: skip
            p.storage.close()
            p.detector.close()
    return out


def _as_backlog(p: Pipeline, logs: Any, minutes: dict[datetime, list[bytes]]) -> int:
    """Every hour's blob written and ingested at once, a month late; the timer 5 min later."""
    late = max(minutes) + timedelta(days=30)
    hours: dict[datetime, list[bytes]] = {}
    for minute, data in sorted(minutes.items()):
        hours.setdefault(minute.replace(minute=0), []).extend(data)
    with time_machine.travel(late, tick=False):
        for hour, data in hours.items():
            blob = logs.get_blob_client("backlog/" + samples.blob_path("BH", hour))
            blob.upload_blob(b"".join(data))
            p.ingest(blob)
    with time_machine.travel(late + timedelta(minutes=5), tick=False):
        p.detector.deliverer.redeliver_pending()
    return len(hours)


def _live(p: Pipeline, logs: Any, minutes: dict[datetime, list[bytes]]) -> int:
    """Each minute appended 30 s after it ends and ingested; the timer every 5 minutes."""
    clock, end, invocations, made = min(minutes), max(minutes) + timedelta(hours=2), 0, set()
    while clock <= end:
        with time_machine.travel(clock + timedelta(minutes=1, seconds=30), tick=False):
            if clock in minutes:
                blob = logs.get_blob_client(
                    "live/" + samples.blob_path("BH", clock.replace(minute=0))
                )
                if blob.blob_name not in made:
                    blob.create_append_blob()
                    made.add(blob.blob_name)
                data = b"".join(minutes[clock])
                for k in range(0, len(data), 4 * 1024 * 1024):  # an append block holds 4 MiB
                    blob.append_block(data[k : k + 4 * 1024 * 1024])
                p.ingest(blob)
                invocations += 1
            if clock.minute % 5 == 0:
                p.detector.deliverer.redeliver_pending()
        clock += timedelta(minutes=1)
    return invocations


def print_backlog(accounts: int, failures: int) -> bool:
    print(
        f"4. backlog: 5 failures, a flood of 300, {failures} against {accounts} accounts, a sign-in"
    )
    b = backlog(accounts, failures)
    for mode in ("live", "backlog"):
        r = b[mode]
        print(f"   {mode:8s}: {r['invocations']:3d} invocations, {r['seconds']:6.1f} s, told:")
        for seq, event, severity, n, rules in r["told"]:
            print(f"      #{seq} {event:9s} {severity:8s} {n:5d} failures  {','.join(rules)}")
    same = b["live"]["told"] == b["backlog"]["told"]
    print(f"   same notifications: {str(same).lower()} (target: true); backlog/live seconds "
          f"{b['backlog']['seconds'] / b['live']['seconds']:.2f}")  # fmt: skip
    print(f"bench: backlog_same={str(same).lower()} notifications={len(b['live']['told'])} "
          f"live_s={b['live']['seconds']:.1f} backlog_s={b['backlog']['seconds']:.1f}")  # fmt: skip
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller campaign and population")
    parser.add_argument("--backlog", action="store_true", help="only part 4: live vs backlog")
    parser.add_argument(
        "--long",
        action="store_true",
        help="only the long campaign: 15,000 failures in 30 appends to one hour",
    )
    parser.add_argument(
        "--six-hours", action="store_true", help="only the long campaign across six hour blobs"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    big = not args.quick
    accounts, failures, days, people = (400, 6000, 4, 120) if big else (100, 1500, 2, 60)
    if args.backlog:
        print_backlog(accounts, failures)
        return
    if args.long or args.six_hours:
        hours = 6 if args.six_hours else 1
        c = print_campaign(400, 15_000, 30, hours)
        print(
            f"bench: mode={'six_hours' if args.six_hours else 'long'} "
            f"notifications={c['notifications']} stored={c['stored']} "
            f"step_ratio={c['ratio']:.2f} first_s={c['first_s']:.2f} last_s={c['last_s']:.2f}"
        )
        return
    c = print_campaign(accounts, failures, 12, 1)
    seconds = evaluation()
    print(f"2. evaluating 20,000 failures of one address: {seconds:.3f} s (target < 0.3)")
    blobs, episodes = population(days, people, seed=11)
    records = sum(len(v) for v in blobs.values())
    print(
        f"3. replays: {records} records in {len(blobs)} hour blobs over {days} days, "
        f"{len(episodes)} planted attacks"
    )
    runs = {mode: replay(blobs, mode, seed=5) for mode in ("time-order", "shuffled", "sliced")}
    for mode, found in runs.items():
        s = score(found, episodes)
        same = "same as time order" if found == runs["time-order"] else "DIFFERENT"
        print(f"   {mode:10s}: {len(found)} incidents, false {s['false']}, {same}")
    for kind, text in score(runs["time-order"], episodes)["per_kind"].items():
        print(f"   {kind:13s} {text}")
    identical = runs["shuffled"] == runs["sliced"] == runs["time-order"]
    print(
        f"bench: notifications={c['notifications']} step_ratio={c['ratio']:.2f} "
        f"eval_20k_s={seconds:.3f} replays_identical={str(identical).lower()} "
        f"false_incidents={score(runs['time-order'], episodes)['false']}"
    )
    print_backlog(accounts, failures)


if __name__ == "__main__":
    main()
