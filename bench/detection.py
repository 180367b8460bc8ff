"""Detection quality on a simulated population (issue 16): recall per attack type, precision and
false incidents per benign user-day, for the app and for two baselines. Not part of the tests.

    .venv/bin/python bench/detection.py            # 600 people, 14 days, 6 episodes a type (~5 min)
    .venv/bin/python bench/detection.py --quick    # 100 people, 14 days, 3 episodes a type (~1 min)

1. `bench/population.py` simulates a seeded population over `--days` (the first `--learn` only
   to learn from) with labelled episodes of every attack type after the learning days.
2. The app: every hour blob goes through the real pipeline (`Pipeline.ingest` on an append blob
   in a private Azurite), once in time order and once shuffled (two processes, each with its own
   emulator); the incidents are the open rows of the alerts table, as
   `shared.notify.messages.message` shapes them for the queue. `TIMERS` (empty today) is where
   timer-driven rules plug in.
3. Baselines on the same records, pure Python: Microsoft's Bastion query (>= 5 `Login Failed`
   per source IP in a 15-minute bin, one alert per IP and bin, as a scheduled query over 15
   minutes raises them) and fail2ban's defaults (maxretry 5 within findtime 600 s per IP; a ban
   of 600 s suppresses that IP; counting starts again after it).
4. Scoring: an incident matches an episode when it names one of the episode's actors (account,
   address or host) and its [firstSeen, lastSeen] overlaps the episode widened by `SLACK`.
   Recall per type; precision = matched / all incidents in the evaluation days; false incidents
   (matching nothing) per 1,000 benign user-days, high/medium and low apart; incidents per
   detected episode. Benign user-days are (account, day) pairs with a benign record in the
   evaluation days (staff and service accounts).

Ends with one machine-readable line: `bench: recall=... precision=... ...`.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import population as pop
from _common import settings
from population import Config, Episode, Rec, World

from devtools import azurite
from shared.core.settings import LOGS_CONTAINER
from shared.ingest.loop import Pipeline
from shared.notify import messages

_HOUR = re.compile(r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/")
SLACK = timedelta(minutes=30)
HIGH_MEDIUM = {"critical", "high", "medium"}
#: Timer-driven rules (host silence, digests...): each is called as `timer(pipeline, now)` after
#: the blobs of each simulated hour (time order), or for every hour after all blobs (shuffled).
TIMERS: list[Callable[[Pipeline, datetime], object]] = [
    lambda p, now: p.detector.health.run(now),  # host_silent (and the ARM check, when set)
]


# -- the app ------------------------------------------------------------------------------------
def _hour(name: str) -> datetime:
    """The UTC hour a blob name says (`.../y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`)."""
    found = _HOUR.search(name)
    assert found, name
    y, m, d, h = (int(g) for g in found.groups())
    return datetime(y, m, d, h, tzinfo=pop.UTC)


def collect(p: Pipeline) -> list[dict[str, Any]]:
    """The incidents the app holds, in the alert message's shape (open ones only)."""
    rows = p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
    return [messages.message(r) for r in rows if "FirstSeen" in r and r.get("State") == "open"]


def replay(config: Config, mode: str, trusted: str = pop.TRUSTED) -> dict[str, Any]:
    """Ingest the world's blobs through the app in `mode` order; its incidents and the time."""
    logging.basicConfig(level=logging.ERROR)
    world = pop.simulate(config)
    blobs = world.blobs(seed=config.seed)
    names = sorted(blobs, key=lambda n: (_hour(n), n))
    if mode == "shuffled":
        random.Random(config.seed + 1).shuffle(names)
    started = time.perf_counter()
    with azurite.start() as emulator:
        p = Pipeline(settings(emulator.connection_string, mode[:1].upper(),
                              TRUSTED_NETWORKS=trusted))  # fmt: skip
        logs = p.storage.blobs.get_container_client(LOGS_CONTAINER)
        logs.create_container()
        clock: datetime | None = None
        for name in names:
            hour = _hour(name)
            if mode == "time-order" and clock is not None and hour > clock:
                _tick(p, clock, hour)
            clock = hour if clock is None else max(clock, hour)
            blob = logs.get_blob_client(name)
            blob.create_append_blob()
            blob.append_block(blobs[name])
            p.ingest(blob, now=hour + timedelta(minutes=65))
        if TIMERS:
            first = min(_hour(n) for n in names)
            _tick(p, first if mode != "time-order" else clock or first, world.end)
        found = collect(p)
        p.storage.close()
        p.detector.close()
    return {"mode": mode, "incidents": found, "seconds": time.perf_counter() - started,
            "blobs": len(names)}  # fmt: skip


def _tick(p: Pipeline, since: datetime, until: datetime) -> None:
    """Run the timers once for every simulated hour from `since` to `until`."""
    hour = since
    while hour < until and TIMERS:
        for timer in TIMERS:
            timer(p, hour + timedelta(minutes=65))
        hour += pop.HOUR


# -- baselines ----------------------------------------------------------------------------------
def _incident(ip: str, rule: str, times: Sequence[datetime]) -> dict[str, Any]:
    return {"subjectKind": "ip", "subject": ip, "rules": [rule], "severity": "medium",
            "firstSeen": _iso(min(times)), "lastSeen": _iso(max(times))}  # fmt: skip


def ms_query(records: Iterable[Rec], threshold: int = 5, minutes: int = 15) -> list[dict[str, Any]]:
    """Microsoft's Bastion query: `Login Failed` counted per source IP and 15-minute bin; every
    (IP, bin) with >= 5 is an alert (no grouping: each scheduled run raises its own)."""
    bins: dict[tuple[str, datetime], list[datetime]] = defaultdict(list)
    for r in records:
        if not r.ok:
            start = r.time.replace(minute=r.time.minute - r.time.minute % minutes, second=0,
                                   microsecond=0)  # fmt: skip
            bins[(r.ip, start)].append(r.time)
    return [_incident(ip, "ms_bastion_failed_logins", ts) for (ip, _), ts in sorted(bins.items())
            if len(ts) >= threshold]  # fmt: skip


def fail2ban(
    records: Iterable[Rec], maxretry: int = 5, findtime: float = 600, bantime: float = 600
) -> list[dict[str, Any]]:
    """fail2ban's defaults per source IP: `maxretry` failures within `findtime` seconds ban the
    IP for `bantime` (one alert); failures while banned are not counted, and after a ban the
    count starts from zero."""
    window: dict[str, deque[datetime]] = defaultdict(deque)
    banned_until: dict[str, datetime] = {}
    out = []
    for r in sorted((r for r in records if not r.ok), key=lambda r: r.time):
        if r.ip in banned_until and r.time < banned_until[r.ip]:
            continue
        q = window[r.ip]
        q.append(r.time)
        while q and (r.time - q[0]).total_seconds() > findtime:
            q.popleft()
        if len(q) >= maxretry:
            out.append(_incident(r.ip, "fail2ban_sshd", list(q)))
            banned_until[r.ip] = r.time + timedelta(seconds=bantime)
            q.clear()
    return out


# -- scoring ------------------------------------------------------------------------------------
def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _t(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _names(incident: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, subject) pairs an incident stands for; a host may be named by its resource id."""
    kind, subject = str(incident["subjectKind"]).casefold(), str(incident["subject"]).casefold()
    out = {(kind, subject)}
    if "/bastionhosts/" in subject:
        out.add(("host", subject.rstrip("/").rpartition("/")[2]))
    if kind in ("bastion", "bastionhost"):
        out.add(("host", subject))
    return out


def matches(incident: dict[str, Any], episode: Episode, slack: timedelta = SLACK) -> bool:
    if not _names(incident) & episode.actors:
        return False
    first, last = _t(incident["firstSeen"]), _t(incident["lastSeen"])
    return first <= episode.end + slack and last >= episode.start - slack


@dataclass
class Score:
    episodes: dict[str, int]  # per kind
    detected: dict[str, int]
    incidents: int  # in the evaluation days
    true: int
    false_hm: int
    false_low: int
    learning_false: int  # incidents before the evaluation days (no episode there)
    per_detected: float  # incidents per detected episode
    hits: list[int]  # incidents matching each episode (in `episodes` order)
    rules: dict[str, Counter[str]]  # per kind: rules of the incidents that matched
    false_examples: list[dict[str, Any]]
    user_days: int
    lows: int = 0  # low-severity incidents (digest only) in the evaluation days

    def recall(self, kind: str | None = None) -> float:
        if kind is None:
            total = sum(self.episodes.values())
            return sum(self.detected.values()) / total if total else 0.0
        return self.detected.get(kind, 0) / self.episodes[kind] if self.episodes.get(kind) else 0.0

    @property
    def precision(self) -> float:
        return self.true / self.incidents if self.incidents else 1.0

    @property
    def paging_precision(self) -> float:
        """Precision of what notifies people (medium and above): lows only reach the digest."""
        paging = self.incidents - self.lows
        return (paging - self.false_hm) / paging if paging else 1.0

    @property
    def false_hm_per_1k(self) -> float:
        return 1000 * self.false_hm / max(self.user_days, 1)

    @property
    def false_low_per_100(self) -> float:
        return 100 * self.false_low / max(self.user_days, 1)


def score(
    incidents: Sequence[dict[str, Any]],
    episodes: Sequence[Episode],
    eval_start: datetime,
    user_days: int,
    slack: timedelta = SLACK,
) -> Score:
    """Recall, precision and noise of a list of incidents against the labelled episodes."""
    per_episode: list[list[int]] = [[] for _ in episodes]
    true = false_hm = false_low = learning = total = lows = 0
    examples: list[dict[str, Any]] = []
    for i, inc in enumerate(incidents):
        if _t(inc["lastSeen"]) < eval_start:
            learning += 1
            continue
        total += 1
        lows += str(inc["severity"]).casefold() not in HIGH_MEDIUM
        hits = [k for k, ep in enumerate(episodes) if matches(inc, ep, slack)]
        for k in hits:
            per_episode[k].append(i)
        if hits:
            true += 1
        elif str(inc["severity"]).casefold() in HIGH_MEDIUM:
            false_hm += 1
            examples.append(inc)
        else:
            false_low += 1
            examples.append(inc)
    counts: dict[str, int] = Counter(ep.kind for ep in episodes)
    detected: dict[str, int] = Counter(
        ep.kind for ep, hits in zip(episodes, per_episode, strict=True) if hits
    )
    rules: dict[str, Counter[str]] = defaultdict(Counter)
    for ep, hits in zip(episodes, per_episode, strict=True):
        for i in hits:
            rules[ep.kind].update(incidents[i]["rules"])
    found = [len(h) for h in per_episode if h]
    return Score(dict(counts), dict(detected), total, true, false_hm, false_low, learning,
                 sum(found) / len(found) if found else 0.0, [len(h) for h in per_episode],
                 dict(rules), examples, user_days, lows)  # fmt: skip


def canonical(incidents: Iterable[dict[str, Any]]) -> list[tuple[str, ...]]:
    """What must not depend on processing order."""
    keys = (
        "subjectKind",
        "subject",
        "rules",
        "severity",
        "firstSeen",
        "lastSeen",
        "failureCount",
        "successCount",
        "distinctUsers",
        "users",
        "compromisedUsers",
    )
    return sorted(tuple(str(inc.get(k)) for k in keys) for inc in incidents)


# -- output -------------------------------------------------------------------------------------
def table(world: World, scores: dict[str, Score]) -> list[str]:
    ours, ms, f2b = scores["ours"], scores["ms"], scores["f2b"]
    head = (f"{'type':20s} {'episodes':>8s} {'recall ours':>11s} {'MS query':>8s} "
            f"{'fail2ban':>8s} {'inc/ep ours':>11s}  rules of ours that matched")  # fmt: skip
    lines = [head, "-" * len(head)]
    for kind in (*pop.KINDS, *pop.NOT_IN_RECORDS):
        if kind in pop.NOT_IN_RECORDS:
            where = "(tests/hosts/test_diagnostics.py: ARM check)"
            lines.append(f"{kind:20s} {'-':>8s} {where:>40s}")
            continue
        n = ours.episodes.get(kind, 0)
        found = [
            h for ep, h in zip(world.episodes, ours.hits, strict=True) if ep.kind == kind and h
        ]
        per = f"{sum(found) / len(found):.2f}" if found else "-"
        rules = ", ".join(f"{r} {c}" for r, c in ours.rules.get(kind, Counter()).most_common(3))
        lines.append(f"{kind:20s} {n:8d} {ours.recall(kind):11.2f} {ms.recall(kind):8.2f} "
                     f"{f2b.recall(kind):8.2f} {per:>11s}  {rules or '-'}")  # fmt: skip
    lines.append("-" * len(head))
    total = sum(ours.episodes.values())
    lines.append(f"{'all (in records)':20s} {total:8d} {ours.recall():11.2f} {ms.recall():8.2f} "
                 f"{f2b.recall():8.2f} {ours.per_detected:11.2f}")  # fmt: skip
    lines.append("")
    lines.append(f"{'':36s} {'ours':>8s} {'MS query':>8s} {'fail2ban':>8s}")
    rows = [
        ("incidents (evaluation days)", lambda s: f"{s.incidents}"),
        ("precision", lambda s: f"{s.precision:.3f}"),
        ("precision of paging (medium+)", lambda s: f"{s.paging_precision:.3f}"),
        ("false high/medium per 1,000 user-days", lambda s: f"{s.false_hm_per_1k:.2f}"),
        ("false low per 100 user-days", lambda s: f"{s.false_low_per_100:.2f}"),
        ("incidents per detected episode", lambda s: f"{s.per_detected:.2f}"),
        ("false incidents in the learning days", lambda s: f"{s.learning_false}"),
    ]
    for label, fmt in rows:
        lines.append(f"{label:36s} {fmt(ours):>8s} {fmt(ms):>8s} {fmt(f2b):>8s}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 people, 3 episodes a type")
    parser.add_argument("--people", type=int)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--learn", type=int, default=7)
    parser.add_argument("--episodes", type=int, help="episodes of each type")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2, help="replays run in parallel")
    parser.add_argument("--modes", default="time-order,shuffled")
    parser.add_argument("--untrusted", action="store_true",
                        help="no TRUSTED_NETWORKS (offices and VPN pools not listed)")  # fmt: skip
    args = parser.parse_args()
    people = args.people or (100 if args.quick else 600)
    per_kind = args.episodes or (3 if args.quick else 6)
    config = Config(people=people, days=args.days, learn_days=args.learn, per_kind=per_kind,
                    services=6 if args.quick else 8, seed=args.seed)  # fmt: skip
    started = time.perf_counter()
    world = pop.simulate(config)
    info = pop.summary(world)
    blobs = world.blobs(seed=config.seed)
    print(f"population: {people} people + {config.services} service accounts, {config.days} days "
          f"({config.learn_days} to learn), {info['records']} records ({info['attack']} attack) "
          f"in {len(blobs)} hour blobs of {len(pop.HOSTS)} hosts; {info['dropped']} records "
          f"dropped by host silences; {info['user_days']} benign user-days to score; "
          f"{len(world.episodes)} episodes", flush=True)  # fmt: skip
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"TRUSTED_NETWORKS={'' if args.untrusted else pop.TRUSTED}", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(modes)))) as ex:
        trusted = [""] * len(modes) if args.untrusted else [pop.TRUSTED] * len(modes)
        runs = {r["mode"]: r for r in ex.map(replay, [config] * len(modes), modes, trusted)}
    for mode, run in runs.items():
        print(f"  app, {mode:10s}: {len(run['incidents'])} incidents, {run['seconds']:.0f} s "
              f"for {run['blobs']} blobs", flush=True)  # fmt: skip
    first = runs[modes[0]]["incidents"]
    identical = all(canonical(r["incidents"]) == canonical(first) for r in runs.values())
    print(f"  replays identical: {str(identical).lower()}")
    found = {"ours": first, "ms": ms_query(world.records), "f2b": fail2ban(world.records)}
    scores = {k: score(v, world.episodes, world.eval_start, world.user_days)
              for k, v in found.items()}  # fmt: skip
    print()
    for line in table(world, scores):
        print(line)
    ours = scores["ours"]
    pages = [i for i in ours.false_examples if str(i["severity"]).casefold() in HIGH_MEDIUM]
    lows = [i for i in ours.false_examples if i not in pages]
    for title, shown in (("false pages of ours (all)", pages), ("false lows of ours (first 10)",
                                                                   lows[:10])):  # fmt: skip
        if shown:
            print(f"\n{title}:")
        for inc in shown:
            print(f"  {inc['severity']:8s} {','.join(inc['rules']):40s} {inc['subjectKind']}:"
                  f"{inc['subject']} {inc['firstSeen']}..{inc['lastSeen']}")  # fmt: skip
    missed = [ep for ep, h in zip(world.episodes, ours.hits, strict=True) if not h]
    if missed:
        print("\nmissed by ours:")
        for ep in missed:
            print(f"  {ep.kind}: {ep.label}, {_iso(ep.start)}..{_iso(ep.end)}")
    if not identical:
        print(f"\nincidents that differ from {modes[0]} (+ only in, - missing from):")
        base = Counter(canonical(first))
        for mode, run in runs.items():
            other = Counter(canonical(run["incidents"]))
            for sign, rows in (("+", other - base), ("-", base - other)):
                for row in sorted(rows):
                    print(f"  {sign} {mode}: {' '.join(row)}")
    ms, f2b = scores["ms"], scores["f2b"]
    print(
        f"\nbench: recall={ours.recall():.3f} precision={ours.precision:.3f} "
        f"paging_precision={ours.paging_precision:.3f} "
        f"false_hm_per_1k_user_days={ours.false_hm_per_1k:.2f} "
        f"false_low_per_100_user_days={ours.false_low_per_100:.2f} "
        f"incidents_per_detected_episode={ours.per_detected:.2f} "
        + " ".join(f"recall_{k}={ours.recall(k):.2f}" for k in pop.KINDS)
        + f" ms_recall={ms.recall():.3f} ms_precision={ms.precision:.3f} "
        f"ms_false_hm_per_1k={ms.false_hm_per_1k:.2f} f2b_recall={f2b.recall():.3f} "
        f"f2b_precision={f2b.precision:.3f} f2b_false_hm_per_1k={f2b.false_hm_per_1k:.2f} "
        f"replays_identical={str(identical).lower()} records={info['records']} "
        f"user_days={world.user_days} seconds={time.perf_counter() - started:.0f}"
    )


if __name__ == "__main__":
    main()
