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

Each part starts its own in-memory Azurite (loopback, free ports) and stops it.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from _common import settings

from devtools import azurite, samples
from shared import detection
from shared.ingest import Pipeline
from shared.settings import LOGS_CONTAINER

DAY = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ATTACKER = "198.51.100.66"


def lines(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for r in sorted(records, key=lambda r: r["time"])]


def incident_rows(p: Pipeline) -> list[dict[str, Any]]:
    rows = p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
    return [r for r in rows if "FirstSeen" in r and r.get("State") == "open"]


# -- 1. the campaign ----------------------------------------------------------------------------
def campaign(accounts: int, failures: int, steps: int) -> dict[str, Any]:
    start = DAY + timedelta(hours=10)
    records = [
        samples.record(start + timedelta(seconds=50 * 60 * i / failures), f"acct{i % accounts:03d}",
                       samples.FAIL, ATTACKER, port=i % 60000)
        for i in range(failures)
    ]  # fmt: skip
    data = lines(records)
    win = samples.record(start + timedelta(minutes=50, seconds=30), "acct007", samples.OK, ATTACKER)
    with azurite.start() as emulator:
        p = Pipeline(settings(emulator.connection_string, "A"))
        logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
        logs.create_container()
        blob = logs.get_blob_client(samples.blob_path("BASTION-PROD", start))
        blob.create_append_blob()
        per = -(-len(data) // steps)
        seconds, told, stored = [], 0, 0
        pieces = [b"".join(data[k * per : (k + 1) * per]) for k in range(steps)]
        pieces.append(orjson.dumps(win) + b"\n")  # the attacker gets in
        for piece in pieces:
            blob.append_block(piece)
            t0 = time.perf_counter()
            summary = p.ingest(blob, now=start + timedelta(minutes=55))
            seconds.append(time.perf_counter() - t0)
            told += len(summary.alerts)
            stored += summary.stored
            print(f"  step {len(seconds):2d}: {summary.stored:4d} records, {seconds[-1]:5.2f} s,"
                  f" notified {summary.alerts or '-'}", flush=True)  # fmt: skip
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
    }


# -- 2. evaluation ------------------------------------------------------------------------------
def evaluation(n: int = 20_000) -> float:
    t0 = DAY + timedelta(hours=3)
    events = [
        detection.Event(t0 + timedelta(seconds=0.2 * i), f"k{i}", f"acct{i % 400}", ATTACKER,
                        False, "VM1", "BH")
        for i in range(n)
    ]  # fmt: skip
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        detection.evaluate(detection.IP, ATTACKER, events, detection.Thresholds())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller campaign and population")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    big = not args.quick
    accounts, failures, days, people = (400, 6000, 4, 120) if big else (100, 1500, 2, 60)
    print(f"1. campaign: {failures} failures from one IP against {accounts} accounts, 12 appends")
    c = campaign(accounts, failures, 12)
    print(f"   notifications {c['notifications']} (target <= 3), incidents {c['incidents']},"
          f" stored {c['stored']}, severity {c['severity']},"
          f" accounts listed {c['accounts']}")  # fmt: skip
    print(f"   step seconds: first {c['first_s']:.2f}, last {c['last_s']:.2f},"
          f" last/first (median of 3) {c['ratio']:.2f} (target <= 1.3)")  # fmt: skip
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


if __name__ == "__main__":
    main()
