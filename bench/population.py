"""A seeded, simulated Bastion population with labelled attack episodes (issue 16). Not a test.

`simulate(Config(...))` returns every record (benign and attack) in time order, the hour blobs
they land in (one append blob per host and hour, the real path layout of `shared.samples`), and
the episodes, each with the actors an incident may name and its time span.

The population, per region (time zone, office NAT address, VPN pool, Bastion host):

- staff with working hours in their own time zone (a start hour, 7.5-9.5 hours a day, Monday to
  Friday local, about one day in seven away), 1-5 sessions a day from the office NAT (shared by
  everyone in that office), the regional VPN pool or their home address (10 % IPv6), mostly to
  their own 1-3 machines, now and then (`Config.new_vm`) to a machine they never used;
- clients: each person works from one device (a browser and OS drawn from a mixed fleet,
  `CLIENTS`), a fifth of them from a second one now and then; service accounts from a script;
- typos: 5 % of sessions start with one or two `Login Failed` and then succeed, same address;
  three in 1,000 sessions follow a forgotten or changed password: 3-9 failures over 2-12
  minutes on the usual device, then the sign-in (benign, and the hardest benign case for
  failure rules: from the office NAT it is the shape of a colleague guessing);
- off hours: a fifth of the staff are on call and work outside their hours about one day in six
  (weekends included); everyone else about one day in 400;
- travel: about one person-day in 250 starts a 1-3 day trip; every session then comes from a
  hotel address nobody used before, in working hours, to the usual machines (benign, rare);
- new hires: 3 % of the staff start during the evaluation days, with no history;
- service accounts on a hub host with fixed addresses and schedules (hourly, every 4 hours,
  nightly), each to one machine, with a rare failure that the retry a minute later fixes;
- 2 % of the records sent in the last two minutes of an hour land in the next hour's blob
  (Azure Monitor appends records when it receives them).

Episodes, all after the learning days (`Config.learn_days`):

- `brute_force`: one new address, one account, 12-25 failures 10-30 s apart (actors: ip, user);
- `distributed_fast`: one account, 14-20 new addresses, one failure each, 15-40 s apart (user);
- `spray`: one new address, 10-20 real accounts, one failure each, 20-45 s apart (ip, users);
- `campaign_win`: one new address, 120 failures on 30 real accounts, then a sign-in to one;
- `slow_brute`: one new address, one account, a failure every 4-6 min for 3-6 h (ip, user);
- `slow_distributed`: one account, 12-20 new addresses, one failure each, over 3-6 h (user);
- `insider_guess`: a colleague in the same office, behind the same NAT, on their own device,
  guesses an armed account's password (5-9 failures over minutes, fewer than
  `PERSON_RETRY_FAILURES`) and signs in to one of the victim's usual machines (user);
  the colleague's client differs from every client the victim used: an insider on a device
  of the victim's make and browser is not told apart by these records (docs say so);
- `stolen_credentials`: an armed account (a first sign-in 7 days before) signs in from a network
  nobody used, at a local hour it never worked, to a machine it never touched; 1-3 sign-ins and
  no failure (user, ip);
- `host_silence`: a regional host's blobs are dropped for 4-7 h of its busy weekday hours (host).

`diagnostic_setting_removed` leaves no trace in the records; `tests/hosts/test_diagnostics.py`
covers it.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from _common import ROOT  # noqa: F401 - puts the project root on sys.path

from devtools import samples

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
KINDS = (
    "brute_force",
    "distributed_fast",
    "spray",
    "campaign_win",
    "slow_brute",
    "slow_distributed",
    "stolen_credentials",
    "insider_guess",
    "host_silence",
)
#: A mixed fleet: (user agent, share). Family and OS are what the app calls a client.
CLIENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 0.35),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 0.25),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 0.12),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", 0.08),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", 0.08),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 0.07),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", 0.05),
)  # fmt: skip
SCRIPT = "python-requests/2.32.3"
ATTACKER_AGENTS = (
    "python-requests/2.31.0",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
)
NOT_IN_RECORDS = ("diagnostic_setting_removed",)
GENERIC = (
    "admin",
    "root",
    "azureuser",
    "administrator",
    "oracle",
    "test",
    "ubuntu",
    "sa",
    "backup",
    "guest",
    "support",
    "dev",
)
_FIRST = (
    "anna",
    "ben",
    "carla",
    "dmitri",
    "elif",
    "farid",
    "gina",
    "hugo",
    "ines",
    "jon",
    "kofi",
    "lena",
    "mei",
    "nils",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tara",
)
_LAST = (
    "smith",
    "mueller",
    "rossi",
    "kowalski",
    "nguyen",
    "garcia",
    "ivanova",
    "dubois",
    "okafor",
    "sato",
    "silva",
    "jansen",
)


@dataclass(frozen=True)
class Region:
    name: str
    tz: float  # hours east of UTC
    host: str
    office: str  # office NAT address
    vpn: tuple[str, ...]
    share: float  # of the staff


REGIONS = (
    Region("uk", 0.0, "BASTION-WEU", "203.0.113.10", tuple(f"100.64.1.{i}" for i in range(1, 9)),
           0.25),
    Region("eu", 1.0, "BASTION-WEU", "203.0.113.11", tuple(f"100.64.1.{i}" for i in range(1, 9)),
           0.35),
    Region("us", -5.0, "BASTION-US", "203.0.113.20", tuple(f"100.64.2.{i}" for i in range(1, 9)),
           0.25),
    Region("in", 5.5, "BASTION-IN", "203.0.113.30", tuple(f"100.64.3.{i}" for i in range(1, 9)),
           0.15),
)  # fmt: skip
HUB = "BASTION-HUB"
#: The organisation's own egress (office NATs, VPN pools), as an operator lists it in
#: `TRUSTED_NETWORKS`.
TRUSTED = ",".join(sorted({f"{r.office}/32" for r in REGIONS} | {f"{r.vpn[0][:-2]}.0/24"
                                                                 for r in REGIONS}))  # fmt: skip
HOSTS = (*sorted({r.host for r in REGIONS}), HUB)


@dataclass(frozen=True)
class Config:
    people: int = 300
    days: int = 14
    learn_days: int = 7
    per_kind: int = 5  # episodes of each kind
    services: int = 8
    seed: int = 16
    # Benign behaviour (rates are guesses; vary them to see what the rules do):
    typo: float = 0.05  # sessions that start with 1-2 failures, then the right password
    forgetful: float = 0.003  # sessions with 3-9 failures over 2-12 min before the sign-in
    second_device: float = 0.2  # people with a second device (used in a fifth of sessions)
    new_vm: float = 0.003  # sessions to a machine the person never used
    ops_share: float = 0.2  # staff on call, who work outside their hours now and then
    ops_off_hours: float = 1 / 6  # per day, for staff on call
    off_hours: float = 1 / 400  # per day, for everyone else
    travel: float = 1 / 250  # per day: a 1-3 day trip, sessions from a new (hotel) network
    hires: float = 0.03  # staff who start during the evaluation days


@dataclass(frozen=True)
class Rec:
    """What the detectors need of a record (the blob holds the full `samples.record`)."""

    time: datetime
    user: str
    ip: str
    ok: bool
    vm: str
    host: str
    port: int
    episode: int = -1  # index of the episode that made it, -1 for benign
    agent: str = SCRIPT


@dataclass(frozen=True)
class Episode:
    kind: str
    actors: frozenset[tuple[str, str]]  # (subjectKind, subject), subject case-folded
    start: datetime
    end: datetime
    label: str  # for people: who and how many

    def names(self, kind: str) -> set[str]:
        return {s for k, s in self.actors if k == kind}


@dataclass
class Person:
    name: str
    region: Region
    start_hour: float  # local
    hours: float
    home: str
    remote: bool
    on_call: bool
    vms: tuple[str, ...]
    hired: int  # first day with activity
    agents: tuple[str, ...] = (SCRIPT,)  # the usual device first
    visited: set[str] = field(default_factory=set)
    local_hours: set[int] = field(default_factory=set)  # local hours of its sessions
    ips: set[str] = field(default_factory=set)
    first: datetime | None = None  # its first sign-in


@dataclass
class World:
    config: Config
    records: list[Rec]  # time order; host-silence windows already removed
    episodes: list[Episode]
    people: list[Person]
    services: list[str]
    user_days: int  # benign (account, day) pairs with a record, in the evaluation days
    dropped: int  # records removed by host-silence episodes

    @property
    def eval_start(self) -> datetime:
        return START + timedelta(days=self.config.learn_days)

    @property
    def end(self) -> datetime:
        return START + timedelta(days=self.config.days)

    def blobs(self, seed: int = 0) -> dict[str, bytes]:
        """Blob name -> JSON Lines, one blob per host and hour, records in time order."""
        rng = random.Random(seed)
        by_blob: dict[str, list[Rec]] = defaultdict(list)
        for r in self.records:
            hour = r.time.replace(minute=0, second=0, microsecond=0)
            if r.time.minute >= 58 and rng.random() < 0.02:
                hour += HOUR  # received after the hour turned
            by_blob[samples.blob_path(r.host, hour)].append(r)
        return {name: b"".join(_line(r) for r in rs) for name, rs in by_blob.items()}


def _line(r: Rec) -> bytes:
    message = samples.OK if r.ok else samples.FAIL
    return orjson.dumps(samples.record(r.time, r.user, message, r.ip, r.vm, r.host, r.port,
                                       agent=r.agent)) + b"\n"  # fmt: skip


class _Addresses:
    """Fresh addresses from disjoint ranges, each handed out once."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.counters: dict[str, Iterable[int]] = {}

    def take(self, kind: str) -> str:
        firsts = {
            "home": (82, 93, 145, 178),
            "hotel": (5, 31, 62),
            "attacker": (45, 185),
            "botnet": (198,),
            "foreign": (102, 41),
            "service": (20,),
        }[kind]
        r = self.rng.randrange
        while True:
            if kind == "home" and self.rng.random() < 0.1:
                ip = f"2001:db8:{r(1 << 16):x}::{r(1, 1 << 16):x}"
            elif kind == "botnet":
                ip = f"198.{self.rng.choice((18, 19))}.{r(256)}.{r(1, 255)}"
            else:
                ip = f"{self.rng.choice(firsts)}.{r(256)}.{r(256)}.{r(1, 255)}"
            if ip not in self.used:
                self.used.add(ip)
                return ip


def _utc(day: datetime, local_hour: float, tz: float) -> datetime:
    return day + timedelta(hours=local_hour - tz)


def _local_hour(when: datetime, tz: float) -> int:
    return int(((when.hour + when.minute / 60 + tz) % 24) // 1)


def simulate(config: Config) -> World:
    rng = random.Random(config.seed)
    addresses = _Addresses(rng)
    ports = itertools.cycle(range(1024, 65536, 7))
    vms = [f"{'WIN' if i % 3 == 0 else 'LINUX'}-{team}-{i:02d}"
           for i, team in enumerate(itertools.islice(itertools.cycle(
               ("WEB", "DB", "APP", "JUMP", "DATA", "OPS")), 36))]  # fmt: skip
    people: list[Person] = []
    shares = [r.share for r in REGIONS]
    for i in range(config.people):
        region = rng.choices(REGIONS, shares)[0]
        name = f"{_FIRST[i % len(_FIRST)]}.{_LAST[(i // len(_FIRST)) % len(_LAST)]}"
        name += str(i // (len(_FIRST) * len(_LAST)) or "")
        hired = 0
        if rng.random() < config.hires:
            hired = rng.randrange(
                config.learn_days + 1, max(config.days - 1, config.learn_days + 2)
            )
        people.append(
            Person(
                name=name,
                region=region,
                start_hour=rng.uniform(7.0, 10.0),
                hours=rng.uniform(7.5, 9.5),
                home=addresses.take("home"),
                remote=rng.random() < 0.3,
                on_call=rng.random() < config.ops_share,
                vms=tuple(rng.sample(vms, rng.randint(1, 3))),
                hired=hired,
                agents=tuple(
                    dict.fromkeys(
                        rng.choices([a for a, _ in CLIENTS], [w for _, w in CLIENTS])[0]
                        for _ in range(2 if rng.random() < config.second_device else 1)
                    )
                ),
            )
        )
    records: list[Rec] = []
    active: set[tuple[str, int]] = set()

    def session(p: Person, when: datetime, ip: str, vm: str, day: int) -> None:
        agent = p.agents[-1] if len(p.agents) > 1 and rng.random() < 0.2 else p.agents[0]
        roll = rng.random()
        if roll < config.typo:  # a typo (or two), then the right password
            for k in range(1 if rng.random() < 0.8 else 2):
                typo = when - timedelta(seconds=rng.randint(20, 90) * (k + 1))
                records.append(Rec(typo, p.name, ip, False, vm, p.region.host, next(ports),
                                   agent=agent))  # fmt: skip
        elif roll < config.typo + config.forgetful:  # a forgotten or changed password
            span = rng.uniform(120, 720)
            for _ in range(rng.randint(3, 9)):
                miss = when - timedelta(seconds=rng.uniform(10, span))
                records.append(Rec(miss, p.name, ip, False, vm, p.region.host, next(ports),
                                   agent=agent))  # fmt: skip
        records.append(Rec(when, p.name, ip, True, vm, p.region.host, next(ports), agent=agent))
        p.visited.add(vm)
        p.local_hours.add(_local_hour(when, p.region.tz))
        p.ips.add(ip)
        p.first = min(p.first or when, when)
        active.add((p.name, day))

    for p in people:
        trip_left, hotel = 0, ""
        for d in range(p.hired, config.days):
            day = START + timedelta(days=d)
            if trip_left == 0 and rng.random() < config.travel:
                trip_left, hotel = rng.randint(1, 3), addresses.take("hotel")
            workday = _utc(day, 12, p.region.tz).weekday() < 5
            if workday and rng.random() < 6 / 7:
                for _ in range(rng.choice((1, 1, 2, 2, 2, 3, 3, 4, 5))):
                    when = _utc(day, p.start_hour + rng.uniform(0, p.hours), p.region.tz)
                    if trip_left:
                        ip = hotel
                    elif p.remote:
                        ip = p.home if rng.random() < 0.7 else rng.choice(p.region.vpn)
                    else:
                        roll = rng.random()
                        ip = (p.region.office if roll < 0.65
                              else rng.choice(p.region.vpn) if roll < 0.85 else p.home)  # fmt: skip
                    vm = rng.choice(p.vms) if rng.random() >= config.new_vm else rng.choice(vms)
                    session(p, when, ip, vm, d)
            odd = config.ops_off_hours if p.on_call else config.off_hours
            if rng.random() < odd:  # outside working hours (weekends too), from home or VPN
                hour = (p.start_hour + p.hours + rng.uniform(1, 24 - p.hours - 2)) % 24
                when = _utc(day, hour, p.region.tz)
                session(p, when, rng.choice((p.home, rng.choice(p.region.vpn))), p.vms[0], d)
            trip_left = max(trip_left - 1, 0)

    services: list[str] = []
    for k in range(config.services):
        jobs = ("backup", "deploy", "monitor", "patch", "etl", "scan", "sync", "report")
        name = f"svc-{jobs[k % 8]}{k // 8 or ''}"
        services.append(name)
        ip, vm = addresses.take("service"), vms[k % len(vms)]
        every = (1, 1, 1, 4, 4, 24, 24, 1)[k % 8]
        minute = rng.randrange(60)
        base = 2 if every == 24 else 0
        t = START + timedelta(hours=base, minutes=minute, seconds=rng.randrange(60))
        while t < START + timedelta(days=config.days):
            when = t + timedelta(seconds=rng.randint(0, 40))
            if rng.random() < 0.01:  # a transient failure, fixed by the retry a minute later
                records.append(Rec(when, name, ip, False, vm, HUB, next(ports)))
                when += timedelta(minutes=1)
            records.append(Rec(when, name, ip, True, vm, HUB, next(ports)))
            active.add((name, (when - START).days))
            t += timedelta(hours=every)

    episodes: list[Episode] = []
    silences: list[tuple[str, datetime, datetime]] = []
    eval_start = START + timedelta(days=config.learn_days)
    eval_span = (config.days - config.learn_days) * 24.0
    armed = [p for p in people if p.hired == 0 and len(p.local_hours) >= 2]
    staff_names = [p.name for p in people if p.hired == 0]
    generic = iter(GENERIC * 10)

    def when_free(hours: float, host: str | None = None) -> datetime:
        """A start in the evaluation days whose span [start, start + hours] fits and avoids
        the silenced windows of `host` (records there would be dropped)."""
        while True:
            start = eval_start + timedelta(hours=rng.uniform(0, eval_span - hours - 1))
            end = start + timedelta(hours=hours)
            if not any(h == host and s < end and start < e for h, s, e in silences):
                return start

    def plant(kind: str, recs: list[Rec], actors: set[tuple[str, str]], label: str) -> None:
        index = len(episodes)
        records.extend(Rec(r.time, r.user, r.ip, r.ok, r.vm, r.host, r.port, index,
                           r.agent) for r in recs)  # fmt: skip
        times = [r.time for r in recs]
        folded = frozenset((k, s.casefold()) for k, s in actors)
        episodes.append(Episode(kind, folded, min(times), max(times), label))

    # Host silence first, so that attacks avoid the dropped windows.
    regional = sorted({r.host for r in REGIONS})
    for n in range(config.per_kind):
        host = regional[n % len(regional)]
        region = next(r for r in REGIONS if r.host == host)
        while True:
            day = eval_start + timedelta(days=rng.randrange(config.days - config.learn_days))
            if _utc(day, 12, region.tz).weekday() < 5:
                break
        start = _utc(day, rng.uniform(9.5, 11.5), region.tz)
        end = start + timedelta(hours=rng.uniform(4, 7))
        silences.append((host, start, end))
        episodes.append(
            Episode(
                "host_silence",
                frozenset({("host", host.casefold())}),
                start,
                end,
                f"{host} silent {(end - start).total_seconds() / 3600:.1f} h",
            )
        )

    def host_for(start: datetime, hours: float) -> str:
        end = start + timedelta(hours=hours)
        free = [
            h for h in HOSTS if not any(x == h and s < end and start < e for x, s, e in silences)
        ]
        return rng.choice(free)

    for _ in range(config.per_kind):
        # Fast brute force: one address, one account.
        ip, user = addresses.take("attacker"), rng.choice((next(generic), rng.choice(staff_names)))
        n, t0 = rng.randint(12, 25), when_free(1)
        host, vm = host_for(t0, 1), rng.choice(vms)
        recs = [Rec(t0 + timedelta(seconds=sum(rng.uniform(10, 30) for _ in range(i + 1))), user,
                    ip, False, vm, host, next(ports)) for i in range(n)]  # fmt: skip
        plant("brute_force", recs, {("ip", ip), ("user", user)}, f"{user} x{n} from 1 IP")

        # Fast distributed: one account, many addresses, minutes.
        user, n, t0 = rng.choice(staff_names), rng.randint(14, 20), when_free(1)
        ips = [addresses.take("botnet") for _ in range(n)]
        host, vm = host_for(t0, 1), rng.choice(vms)
        gaps = itertools.accumulate(rng.uniform(15, 40) for _ in range(n))
        recs = [Rec(t0 + timedelta(seconds=g), user, a, False, vm, host, next(ports))
                for g, a in zip(gaps, ips, strict=True)]  # fmt: skip
        plant("distributed_fast", recs, {("user", user), *(("ip", a) for a in ips)},
              f"{user} from {n} IPs in minutes")  # fmt: skip

        # Spray: one address, many real accounts.
        ip, n, t0 = addresses.take("attacker"), rng.randint(10, 20), when_free(1)
        users = rng.sample(staff_names, n)
        host, vm = host_for(t0, 1), rng.choice(vms)
        gaps = itertools.accumulate(rng.uniform(20, 45) for _ in range(n))
        recs = [Rec(t0 + timedelta(seconds=g), u, ip, False, vm, host, next(ports))
                for g, u in zip(gaps, users, strict=True)]  # fmt: skip
        plant("spray", recs, {("ip", ip), *(("user", u) for u in users)}, f"{n} accounts, 1 IP")

        # Campaign that ends in a sign-in.
        ip, t0 = addresses.take("attacker"), when_free(1)
        users = rng.sample(staff_names, 30)
        host, vm = host_for(t0, 1), rng.choice(vms)
        recs = [Rec(t0 + timedelta(seconds=6 * i + rng.uniform(0, 3)), users[i % 30], ip, False,
                    vm, host, next(ports)) for i in range(120)]  # fmt: skip
        won = rng.choice(users)
        recs.append(Rec(recs[-1].time + timedelta(seconds=rng.uniform(60, 180)), won, ip, True, vm,
                        host, next(ports)))  # fmt: skip
        plant("campaign_win", recs, {("ip", ip), *(("user", u) for u in users)},
              f"120 failures on 30 accounts, then {won} signs in")  # fmt: skip

        # Low and slow: one address, one account, one failure every 4-6 minutes for hours.
        ip, user = addresses.take("attacker"), rng.choice((next(generic), rng.choice(staff_names)))
        hours = rng.uniform(3, 6)
        t0 = when_free(hours)
        host, vm = host_for(t0, hours), rng.choice(vms)
        recs, t = [], t0
        while t < t0 + timedelta(hours=hours):
            recs.append(Rec(t, user, ip, False, vm, host, next(ports)))
            t += timedelta(minutes=rng.uniform(4, 6))
        plant("slow_brute", recs, {("ip", ip), ("user", user)},
              f"{user} x{len(recs)} over {hours:.1f} h from 1 IP")  # fmt: skip

        # Slow distributed: one account, 12-20 addresses over hours.
        user, n, hours = rng.choice(staff_names), rng.randint(12, 20), rng.uniform(3, 6)
        t0 = when_free(hours)
        host, vm = host_for(t0, hours), rng.choice(vms)
        ips = [addresses.take("botnet") for _ in range(n)]
        offsets = sorted(rng.uniform(0, hours * 3600) for _ in range(n))
        recs = [Rec(t0 + timedelta(seconds=o), user, a, False, vm, host, next(ports))
                for o, a in zip(offsets, ips, strict=True)]  # fmt: skip
        plant("slow_distributed", recs, {("user", user), *(("ip", a) for a in ips)},
              f"{user} from {n} IPs over {hours:.1f} h")  # fmt: skip

        # Stolen credentials: never-seen network, an hour never worked, a machine never touched.
        p = rng.choice(armed)
        quiet = [h for h in range(24) if h not in p.local_hours and (h < 6 or h >= 21)]
        hour = rng.choice(quiet or [3])
        while True:
            day = eval_start + timedelta(days=rng.randrange(config.days - config.learn_days))
            t0 = _utc(day, hour + rng.uniform(0, 0.5), p.region.tz)
            armed_at = (p.first or START) + timedelta(days=min(7, config.learn_days))
            if max(eval_start, armed_at) <= t0 < START + timedelta(days=config.days) - HOUR:
                break  # the app judges an account only once BASELINE_DAYS (7) have passed
        ip = addresses.take("foreign")
        vm = rng.choice([v for v in vms if v not in p.visited])
        host = host_for(t0, 1)
        agent = rng.choice(ATTACKER_AGENTS)
        recs = [Rec(t0 + timedelta(minutes=12 * i + rng.uniform(0, 5)), p.name, ip, True, vm, host,
                    next(ports), agent=agent) for i in range(rng.randint(1, 3))]  # fmt: skip
        plant("stolen_credentials", recs, {("user", p.name), ("ip", ip)},
              f"{p.name} from a new network at {hour:02d}h local to {vm}")  # fmt: skip

        # Inside the NAT: a colleague on their own device guesses, then signs in to a machine
        # the victim uses, at an hour the victim works.
        office = [v for v in armed if v.region.office in v.ips]
        while True:
            p = rng.choice(office)
            mates = [q for q in people if q.region == p.region and q is not p and q.hired == 0
                     and q.agents[0] not in p.agents]  # fmt: skip
            day = eval_start + timedelta(days=rng.randrange(config.days - config.learn_days))
            t0 = _utc(day, p.start_hour + rng.uniform(1, p.hours - 1), p.region.tz)
            busy = any(h == p.region.host and s <= t0 + HOUR and t0 < e for h, s, e in silences)
            if mates and t0.weekday() < 5 and t0 < START + timedelta(days=config.days) - HOUR \
                    and not busy:  # fmt: skip
                break
        q, n = rng.choice(mates), rng.randint(5, 9)
        vm = rng.choice(sorted(p.visited & set(p.vms)) or [p.vms[0]])
        span = rng.uniform(120, 480)
        offsets = sorted(rng.uniform(0, span) for _ in range(n))
        recs = [Rec(t0 + timedelta(seconds=o), p.name, p.region.office, False, vm, p.region.host,
                    next(ports), agent=q.agents[0]) for o in offsets]  # fmt: skip
        recs.append(Rec(t0 + timedelta(seconds=span + rng.uniform(20, 90)), p.name,
                        p.region.office, True, vm, p.region.host, next(ports),
                        agent=q.agents[0]))  # fmt: skip
        plant("insider_guess", recs, {("user", p.name), ("ip", p.region.office)},
              f"{q.name} guesses {p.name} x{n} from the office NAT, signs in to {vm}")  # fmt: skip

    def silenced(r: Rec) -> bool:
        return any(r.host == h and s <= r.time < e for h, s, e in silences)

    kept = [r for r in records if not silenced(r)]
    kept.sort(key=lambda r: (r.time, r.host, r.port))
    user_days = sum(1 for _, d in active if d >= config.learn_days)
    return World(config, kept, episodes, people, services, user_days, len(records) - len(kept))


def summary(world: World) -> dict[str, Any]:
    benign = sum(1 for r in world.records if r.episode < 0)
    return {
        "records": len(world.records),
        "benign": benign,
        "attack": len(world.records) - benign,
        "dropped": world.dropped,
        "people": len(world.people),
        "services": len(world.services),
        "user_days": world.user_days,
        "episodes": len(world.episodes),
    }
