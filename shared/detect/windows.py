"""Detection: events -> minute buckets -> hot minutes -> incidents. Pure code.

An *actor* is a source IP or an account (user). Its stored events are summarised per UTC minute
in a `Bucket` (how many failures, which users, which targets...). Rules mark buckets *hot*; hot
buckets less than `quiet` apart, inside one incident period (at most `max_hours` long, aligned
to UTC midnight), form one `Incident`. Everything is a function of the stored events alone, so
the answer is the same whatever order blobs and appends were processed in, and an invocation
only rebuilds the buckets its new events touch (bounded by a few windows, not by the attack's
history) before re-deriving incidents from buckets (at most one per minute of the period).

Windows count whole minutes: "5 failures within 15 minutes" means 5 failures in some 15
consecutive minute buckets.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from shared.core import catalog
from shared.core.catalog import SLOW, Thresholds
from shared.core.domain import (
    MINUTE,
    Bucket,
    Event,
    Incident,
    Kind,
    Mark,
    Severity,
    Step,
    minute_of,
)

#: Users, IPs, targets and hosts a bucket or an incident lists by name (the counts stay exact).
MAX_LISTED = 20
#: Distinct users are counted exactly up to this many per incident, estimated beyond (KMV).
SKETCH = 1024
_HASH_SPACE = float(2**64)


def user_hash(user: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(user.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    )


def resolved(events: Sequence[Event], window: timedelta, most: int, threshold: int) -> set[str]:
    """Keys of an IP's failures explained by a typo: a user's own few (<= `most`) failures
    followed within `window` by that user's success from the same IP, while the IP is not in a
    burst (fewer than `threshold` failures by others still unexplained at that sign-in). A
    burst is never explained away, however it ends and whoever signs in. Uses events up to
    each sign-in only, so a window of events decides it (see `build_buckets`)."""
    fails = [e for e in events if not e.success]
    times = [f.time for f in fails]
    oks: dict[str, list[datetime]] = {}
    for e in events:
        if e.success:
            oks.setdefault(e.user, []).append(e.time)
    by_user: dict[str, list[Event]] = {}
    for f in fails:
        by_user.setdefault(f.user, []).append(f)

    def explained_by(f: Event, moment: datetime) -> bool:
        """Had f's user signed in between f and `moment`?"""
        mine = oks.get(f.user, [])
        i = bisect.bisect_right(mine, f.time)
        return i < len(mine) and mine[i] <= moment

    out: set[str] = set()
    for user, sign_ins in oks.items():
        own = by_user.get(user, [])
        own_times = [f.time for f in own]
        for ok in sign_ins:
            lo = bisect.bisect_left(own_times, ok - window)
            hi = bisect.bisect_left(own_times, ok)
            if not 0 < hi - lo <= most:
                continue
            others = 0
            for f in fails[bisect.bisect_left(times, ok - window) : bisect.bisect_left(times, ok)]:
                if f.user != user and not explained_by(f, ok):
                    others += 1
                    if others >= threshold:
                        break
            if others < threshold:
                out.update(f.key for f in own[lo:hi])
    return out


#: Is a sign-in from its account's usual network and client, to a machine it used before?
Known = Callable[[Event], bool]


def _unknown(e: Event) -> bool:
    return False


def recovered(
    events: Sequence[Event], kind: Kind, t: Thresholds, known: Known = _unknown
) -> tuple[set[str], dict[str, int]]:
    """Failures a person retrying a forgotten password explains, and who explained how many.

    A sign-in explains its account's own failures in the window before it, from its address and
    with its exact user agent, when all of these hold (otherwise they count, and a sign-in after
    the threshold pages):
    - the sign-in is `known`: the account had signed in before from that network,
      with that client, to that machine (`habits.known`); somebody guessing from the
      same NAT uses their own device, a client new to the account;
    - they are at most `t.retry_failures` (more is not a person retrying);
    - for an address: failures of other accounts in the window, not explained by their own
      sign-in by then, are fewer than the threshold and come from fewer than two accounts
      (failures spread over accounts are guessing, whoever signs in after).
    Sorted events in; returns the failures' keys and, per sign-in that explained at least the
    threshold, the count (`RetriedSignIn` makes it a low finding). Uses the window of events
    before each sign-in only (see `build_buckets`)."""
    fails = [e for e in events if not e.success]
    times = [f.time for f in fails]
    own: dict[tuple[str, str], list[Event]] = {}
    oks: dict[str, list[datetime]] = {}
    for e in events:
        if e.success:
            oks.setdefault(e.user, []).append(e.time)
        else:
            own.setdefault((e.user, e.ip), []).append(e)

    def spread(ok: Event) -> bool:
        start = bisect.bisect_left(times, ok.time - t.window)
        return _spread(fails[start : bisect.bisect_left(times, ok.time)], oks, ok, t.failures)

    out: set[str] = set()
    retried: dict[str, int] = {}
    own_times: dict[tuple[str, str], list[datetime]] = {}
    for ok in events:
        if not ok.success or ok.agent is None:
            continue
        mine = own.get((ok.user, ok.ip), [])
        at = own_times.get((ok.user, ok.ip))
        if at is None:  # once per (account, address), not once per sign-in
            at = own_times[(ok.user, ok.ip)] = [f.time for f in mine]
        lo = bisect.bisect_left(at, ok.time - t.window)
        hi = bisect.bisect_left(at, ok.time)
        before = mine[lo:hi]
        if not 0 < len(before) <= t.retry_failures:
            continue
        if any(f.agent != ok.agent for f in before) or (kind is Kind.IP and spread(ok)):
            continue
        if not known(ok):  # asked last: it reads the account's baseline
            continue
        new = [f.key for f in before if f.key not in out]
        out.update(new)
        if len(before) >= t.failures and new:
            retried[ok.key] = len(new)
    return out, retried


def _spread(
    fails: Sequence[Event], oks: dict[str, list[datetime]], ok: Event, threshold: int
) -> bool:
    """Are the failures before `ok` spread over other accounts: `threshold` of them, or two
    accounts, that their own sign-in by then does not explain?"""
    others: set[str] = set()
    count = 0
    for f in fails:
        if f.user == ok.user:
            continue
        mine = oks.get(f.user, [])
        i = bisect.bisect_right(mine, f.time)
        if i < len(mine) and mine[i] <= ok.time:
            continue  # that account signed in after it: its own retry
        count += 1
        others.add(f.user)
        if count >= threshold or len(others) >= 2:
            return True
    return False


def build_buckets(
    kind: Kind,
    events: Iterable[Event],
    t: Thresholds,
    first: datetime | None = None,
    last: datetime | None = None,
    known: Known = _unknown,
) -> list[Bucket]:
    """Buckets of the minutes in [first, last] (all minutes if not given) that detection keeps.

    A bucket is kept if it counts failures, or sign-ins that follow a failure within the window
    (the only sign-ins a rule looks at): which buckets exist is then a function of the events,
    whichever invocation happened to see them. `events` must hold every event from `t.window`
    before `first` and to `t.window` after `last` (a later sign-in explains a typo or a
    retried password); then the buckets equal those built from all events (a property test
    checks this). `known`: is a sign-in from its account's usual network, client and
    machine (see `recovered`)? Asked only of sign-ins just after a few failures.
    """
    unique = sorted({e.key: e for e in events}.values(), key=_order)
    skip = resolved(unique, t.window, t.resolve_max, t.failures) if kind is Kind.IP else set()
    retried_keys, retried = recovered(unique, kind, t, known)
    skip |= retried_keys
    lo = minute_of(first) if first else None
    hi = minute_of(last) if last else None
    buckets: dict[datetime, Bucket] = {}
    ip_counts: dict[datetime, Counter[str]] = {}
    failing: dict[datetime, set[str]] = {}
    failed_at: set[datetime] = set()  # minutes with any failure, explained typos included
    for e in unique:
        minute = minute_of(e.time)
        if not e.success:
            failed_at.add(minute)
            if e.key in skip:
                continue
            ip_counts.setdefault(minute, Counter())[e.ip] += 1
            failing.setdefault(minute, set()).add(e.user)
        b = buckets.get(minute)
        if b is None:
            b = buckets[minute] = Bucket(minute)
        _count(b, e)
        b.retried += retried.get(e.key, 0)
    kept: list[Bucket] = []
    failures = sorted(failed_at)
    span = _minutes(t.window) * MINUTE
    for minute in sorted(buckets):
        b = buckets[minute]
        before = bisect.bisect_right(failures, minute)
        if not (b.failures or b.retried) and (not before or minute - failures[before - 1] >= span):
            continue  # sign-ins with no failure before them: no rule looks at them
        if (lo is not None and minute < lo) or (hi is not None and minute > hi):
            continue
        counts = ip_counts.get(minute)
        if counts:
            b.ips = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LISTED]
            if kind is Kind.IP:
                b.user_hashes = sorted({user_hash(u) for u in failing[minute]})[:SKETCH]
        kept.append(b)
    return kept


def _count(b: Bucket, e: Event) -> None:
    """One event into its minute's bucket."""
    if e.success:
        if not b.successes:
            b.first_success = e.time
        b.successes += 1
        b.last_success = e.time
        _add(b.success_users, e.user)
    else:
        if not b.failures:
            b.first_failure = e.time
        b.failures += 1
        if not b.successes:
            b.before_success += 1
        b.last_failure = e.time
        _add(b.users, e.user)
    if e.target:
        _add(b.targets, e.target)
    if e.host:
        _add(b.hosts, e.host)


def _add(names: list[str], name: str) -> None:
    if len(names) < MAX_LISTED and name not in names:
        names.append(name)


def _order(e: Event) -> tuple[datetime, str]:
    return (e.time, e.key)


# -- buckets -> hot minutes (one class per rule) ------------------------------------------------
class Rule:
    """A rule's logic bound to its declaration (`shared.core.catalog`: name, kind, severity,
    words and limits are declared there, once)."""

    def __init__(self, spec: catalog.Rule) -> None:
        self.spec = spec
        self.name, self.kind, self.severity = spec.name, spec.kind, spec.severity
        self.description = spec.description

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        """Indices of the buckets this rule marks hot (buckets sorted by minute)."""
        raise NotImplementedError

    def counts(self, t: Thresholds) -> tuple[int, int]:
        """(threshold, window in minutes) of a rule that declares limits, overrides applied."""
        assert self.spec.limits is not None
        count, window = t.limits(self.name, self.spec.limits)
        return count, _minutes(window)


class BruteForce(Rule):
    """Many failures for one account, or from one address, in a window: minutes for the brute
    force rules, hours for the slow one (one guess every few minutes, from one address or many,
    that never reaches the short window's threshold)."""

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        count, span = self.counts(t)
        return dense(buckets, span, count)


class Distinct(Rule):
    """Failures that come from, or go to, many distinct others within a window: each bucket's
    others (`others`) are counted as they enter and leave it (O(n))."""

    def others(self, b: Bucket) -> Iterable[object]:
        raise NotImplementedError

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        seen: Counter[object] = Counter()

        def add(b: Bucket) -> int:
            new = 0
            for other in self.others(b):
                new += not seen[other]
                seen[other] += 1
            return new

        def remove(b: Bucket) -> int:
            gone = 0
            for other in self.others(b):
                seen[other] -= 1
                gone += not seen[other]
            return gone

        count, span = self.counts(t)
        return _windows(buckets, span, add, remove, count)


class PasswordSpray(Distinct):
    """Failures for many distinct accounts from one address."""

    def others(self, b: Bucket) -> Iterable[object]:
        return b.user_hashes


class SuccessAfterFailures(Rule):
    """A sign-in that worked right after the failure threshold was reached: maybe compromise."""

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        return compromised(buckets, t, [b.failures for b in buckets])


class DistributedSlow(Distinct):
    """Failures for one account from many distinct addresses over hours: a botnet that keeps
    each address under every per-address threshold."""

    def others(self, b: Bucket) -> Iterable[object]:
        return (ip for ip, _ in b.ips)


class HighVolume(Rule):
    """A change of character (Microsoft's HighVolume): one minute holds an order of magnitude
    more failures than the failure threshold, and than the actor's failing minutes of the
    `quiet` period before it on average. A trickle that turns into a flood escalates at once;
    a steady flood is high-volume from its first minute. Looks only backwards, so a minute's
    verdict never changes with later records."""

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        floor = HIGH_VOLUME_FACTOR * t.failures
        span = _minutes(t.quiet)
        out, lo, total, active = [], 0, 0, 0
        for i, b in enumerate(buckets):
            while buckets[lo].minute <= b.minute - span * MINUTE:
                total -= buckets[lo].failures
                active -= buckets[lo].failures > 0
                lo += 1
            mean = total / active if active else 0.0
            if b.failures >= floor and b.failures >= HIGH_VOLUME_FACTOR * mean:
                out.append(i)
            total += b.failures
            active += b.failures > 0
        return out


class RetriedSignIn(Rule):
    """A sign-in after at least the failure threshold that a person retrying explains (see
    `recovered`): from the account's usual network and client, to a machine it uses, with
    few failures, none from elsewhere. The shape of a forgotten password; a low finding that
    the digest lists, never a page."""

    def hot(self, buckets: Sequence[Bucket], t: Thresholds) -> Iterable[int]:
        return [i for i, b in enumerate(buckets) if b.retried]


#: How many times the usual a minute's failures must be to make it a flood.
HIGH_VOLUME_FACTOR = 10
_LOGIC: dict[str, type[Rule]] = {
    "user_brute_force": BruteForce,
    "ip_brute_force": BruteForce,
    "high_volume_user": HighVolume,
    "high_volume_ip": HighVolume,
    "slow_brute_force_user": BruteForce,
    "distributed_slow_user": DistributedSlow,
    "password_spray": PasswordSpray,
    "success_after_failures_user": SuccessAfterFailures,
    "success_after_failures_ip": SuccessAfterFailures,
    "sign_in_after_retries": RetriedSignIn,
}
#: Every declared rule that is not a finding, with its logic, in the catalogue's order.
RULES: tuple[Rule, ...] = tuple(_LOGIC[r.name](r) for r in catalog.RULES if not r.finding)
RULE_BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
_COMPROMISE = {k: f"success_after_failures_{k.value}" for k in Kind}


def compromised(buckets: Sequence[Bucket], t: Thresholds, failures: Sequence[int]) -> list[int]:
    """Buckets with a success preceded, within the window, by the failure threshold."""
    span = _minutes(t.window)
    prefix = [0]
    for n in failures:
        prefix.append(prefix[-1] + n)
    minutes = [b.minute for b in buckets]
    out = []
    for i, b in enumerate(buckets):
        if not b.successes:
            continue
        lo = bisect.bisect_left(minutes, b.minute - (span - 1) * MINUTE)
        before = prefix[i] - prefix[lo] + min(b.before_success, failures[i])
        if before >= t.failures:
            out.append(i)
    return out


def _minutes(delta: timedelta) -> int:
    return max(int(delta.total_seconds() // 60), 1)


def dense(buckets: Sequence[Bucket], span: int, threshold: int) -> list[int]:
    """Buckets with failures inside some `span`-minute window holding `threshold` failures."""
    return _windows(buckets, span, _failures, _failures, threshold)


def _failures(b: Bucket) -> int:
    return b.failures


def _windows(
    buckets: Sequence[Bucket],
    span: int,
    add: Callable[[Bucket], int],
    remove: Callable[[Bucket], int],
    threshold: int,
) -> list[int]:
    """Slide a `span`-minute window over the buckets (it starts at each bucket in turn); mark
    the buckets with failures of every window whose running measure reaches `threshold`.
    O(n): each bucket enters and leaves once, marked ranges are summed with a difference array.
    """
    n = len(buckets)
    cover = [0] * (n + 1)
    hi = measure = 0
    for lo, start in enumerate(buckets):
        end = start.minute + span * MINUTE
        while hi < n and buckets[hi].minute < end:
            measure += add(buckets[hi])
            hi += 1
        if measure >= threshold:
            cover[lo] += 1
            cover[hi] -= 1
        measure -= remove(start)
    out, depth = [], 0
    for i in range(n):
        depth += cover[i]
        if depth and buckets[i].failures:
            out.append(i)
    return out


def hot_rules(kind: Kind, buckets: Sequence[Bucket], t: Thresholds) -> dict[int, set[str]]:
    """Bucket index -> names of the rules that mark it hot."""
    hot: dict[int, set[str]] = {}
    for rule in RULES:
        if rule.kind is kind:
            for i in rule.hot(buckets, t):
                hot.setdefault(i, set()).add(rule.name)
    return hot


# -- hot minutes -> incidents -------------------------------------------------------------------
def period_of(when: datetime, max_hours: int) -> datetime:
    """Start of the incident period holding `when` (periods tile each UTC day)."""
    return when.replace(hour=when.hour - when.hour % max_hours, minute=0, second=0, microsecond=0)


def incidents(
    kind: Kind,
    subject: str,
    buckets: Sequence[Bucket],
    hot: dict[int, set[str]],
    t: Thresholds,
    marks: Sequence[Mark] = (),
) -> list[Incident]:
    """Group hot buckets (and folded compromises) into incidents and total each one."""
    return [_total(kind, subject, g, buckets, marks) for g in _groups(kind, buckets, hot, t, marks)]


_Point = tuple[datetime, datetime, int, frozenset[str]]  # start, end, bucket, rules


def _groups(
    kind: Kind,
    buckets: Sequence[Bucket],
    hot: dict[int, set[str]],
    t: Thresholds,
    marks: Sequence[Mark],
) -> list[list[_Point]]:
    """Hot buckets (and folded compromises) grouped into incidents, in time order."""
    points: list[_Point] = []
    for i, rules in hot.items():
        b = buckets[i]
        times = [x for x in (b.first_failure, b.last_failure) if x is not None]
        if (_COMPROMISE[kind] in rules or not times) and b.first_success and b.last_success:
            times += [b.first_success, b.last_success]
        points.append((min(times), max(times), i, frozenset(rules)))
    hot_minutes = sorted(buckets[i].minute for i in hot)
    span = (_minutes(t.window) - 1) * MINUTE
    for m in marks:
        i = bisect.bisect_left(hot_minutes, m.minute - span)
        if i == len(hot_minutes) or hot_minutes[i] > m.minute:
            continue  # the address's attack it was folded into is gone (explained since)
        points.append((m.time, m.time, -1, frozenset({"success_after_failures_user"})))
    points.sort(key=lambda p: (p[0], p[2]))
    groups: list[list[_Point]] = []
    last_end: datetime | None = None
    slow = False  # the group holds slow guessing: its guesses may lie `slow_window` apart
    for point in points:
        gap = point[0] - last_end if last_end is not None else None
        near = gap is not None and (
            gap <= t.quiet or (slow and bool(point[3] & SLOW) and gap <= t.linger)
        )
        if near and period_of(point[0], t.max_hours) == period_of(groups[-1][0][0], t.max_hours):
            groups[-1].append(point)
            last_end = max(last_end or point[1], point[1])
            slow = slow or bool(point[3] & SLOW)
        else:
            groups.append([point])
            last_end, slow = point[1], bool(point[3] & SLOW)
    return groups


def _ranked(names: Iterable[str]) -> tuple[str, ...]:
    """Rule names, most severe first (an incident is named after the first)."""
    return tuple(sorted(names, key=lambda n: (-RULE_BY_NAME[n].severity.rank, n)))


#: (first seen, last seen, rules most severe first) of each incident detection finds.
Shape = tuple[datetime, datetime, tuple[str, ...]]
Evaluate = Callable[[Sequence[Bucket]], list[Shape]]
#: Prefix evaluations per incident before the rest of its minutes are found by bisection.
_LINEAR_STEPS = 16


def evaluator(
    kind: Kind,
    subject: str,
    t: Thresholds,
    marks: Sequence[Mark] = (),
    covered: Covered | None = None,
) -> Evaluate:
    """What detection finds in a prefix of an actor's buckets, as `detect` runs it over all of
    them, without totalling the incidents (their shape is all a timeline needs)."""

    def run(prefix: Sequence[Bucket]) -> list[Shape]:
        end = prefix[-1].minute + MINUTE
        if covered is not None:
            own, _, hot = fold_user(subject, prefix, t, covered)
            groups = _groups(kind, own, hot, t, ())
        else:
            mine = [m for m in marks if m.time < end]
            groups = _groups(kind, prefix, hot_rules(kind, prefix, t), t, mine)
        return [
            (min(p[0] for p in g), max(p[1] for p in g), _ranked(set().union(*(p[3] for p in g))))
            for g in groups
        ]

    return run


def with_steps(
    found: list[Incident],
    buckets: Sequence[Bucket],
    run: Evaluate,
    counted: Sequence[Bucket] | None = None,
) -> list[Incident]:
    """The incidents, each with its `timeline` (`counted`: the buckets as the incidents count
    failures, an account's without those IP incidents hold; the same minutes)."""
    return [replace(inc, steps=timeline(inc, buckets, run, counted)) for inc in found]


def timeline(
    inc: Incident, buckets: Sequence[Bucket], run: Evaluate, counted: Sequence[Bucket] | None = None
) -> tuple[Step, ...]:
    """The incident after each of its minutes, from the records of that minute and before only,
    so that it is the same whether the records came as they happened or as one backlog.

    Detection runs again over each prefix until the incident has all its rules (usually at
    once: a brute force is one from its first hot minute); after that only the count grows.
    A prefix costs O(buckets): O(n) per incident, and for a rule that joins late at most
    16 prefixes before the rest is bisected (rules only join as records come)."""
    lo, hi = minute_of(inc.first_seen), minute_of(inc.last_seen)
    idx = [i for i, b in enumerate(buckets) if lo <= b.minute <= hi and not b.empty]
    count = counted if counted is not None else buckets
    steps: list[Step] = []
    state: _State | None = None
    evaluations, n = 0, 0

    def exact(k: int) -> _State | None:
        nonlocal evaluations
        evaluations += 1
        return _state(inc, run(buckets[: idx[k] + 1]), count, idx[k])

    while n < len(idx):
        if state is not None and state[1] != inc.rules and evaluations >= _LINEAR_STEPS:
            first, last = n, len(idx)  # the first prefix whose rules differ from `state`'s
            while first < last:
                mid = (first + last) // 2
                probe = exact(mid)
                first, last = (
                    (first, mid) if probe is None or probe[1] != state[1] else (mid + 1, last)
                )
            for k in range(n, first):
                state = (
                    state[0],
                    state[1],
                    state[2] + count[idx[k]].failures + count[idx[k]].retried,
                )
                steps.append(Step(buckets[idx[k]].minute + MINUTE, *state))
            n = first
            if n == len(idx):
                break
        if state is not None and state[1] == inc.rules:
            state = (state[0], state[1], state[2] + count[idx[n]].failures + count[idx[n]].retried)
        else:
            state = exact(n)
        if state is not None:
            steps.append(Step(buckets[idx[n]].minute + MINUTE, *state))
        n += 1
    return tuple(steps)


_State = tuple[Severity, tuple[str, ...], int]


def _state(inc: Incident, found: list[Shape], count: Sequence[Bucket], i: int) -> _State | None:
    """Severity, rules and failures (from its first minute to bucket i's) of the prefix's
    incident that this one grew from."""
    minute = count[i].minute
    mine = [f for f in found if f[1] >= inc.first_seen and f[0] < minute + MINUTE]
    if not mine:
        return None
    first, _, rules = mine[-1]
    start = minute_of(first)
    failures = sum(b.failures + b.retried for b in count[: i + 1] if b.minute >= start)
    return RULE_BY_NAME[rules[0]].severity, rules, failures


def _total(
    kind: Kind,
    subject: str,
    group: list[tuple[datetime, datetime, int, frozenset[str]]],
    buckets: Sequence[Bucket],
    marks: Sequence[Mark],
) -> Incident:
    first = min(p[0] for p in group)
    last = max(p[1] for p in group)
    rules = _ranked(set().union(*(p[3] for p in group)))
    inside = [b for b in buckets if minute_of(first) <= b.minute <= minute_of(last)]
    winners = [buckets[p[2]] for p in group if p[2] >= 0 and _COMPROMISE[kind] in p[3]]
    folded = [m for m in marks if first <= m.time <= last]
    sketch = sorted({h for b in inside for h in b.user_hashes})
    if kind is Kind.IP:
        distinct, estimated = _distinct(sketch)
        users = _first(b.users for b in inside)
        ips: tuple[str, ...] = (subject,)
    else:
        distinct, estimated, users = 1, False, (subject,)
        ips = _top_counts(b.ips for b in inside)
    return Incident(
        kind=kind,
        subject=subject,
        first_seen=first,
        last_seen=last,
        rules=rules,
        severity=RULE_BY_NAME[rules[0]].severity,
        failures=sum(b.failures + b.retried for b in inside),
        successes=sum(b.successes for b in winners)
        + sum(1 for m in folded if m.minute not in {b.minute for b in winners}),
        users=users,
        distinct_users=distinct,
        users_estimated=estimated,
        ips=ips,
        targets=_first([*(b.targets for b in inside), *(m.targets for m in folded)]),
        hosts=_first([*(b.hosts for b in inside), *(m.hosts for m in folded)]),
        compromised=_first([*(b.success_users for b in winners), [m.user for m in folded]]),
    )


def _first(lists: Iterable[Iterable[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for names in lists:
        for n in names:
            if n not in out:
                out.append(n)
                if len(out) == MAX_LISTED:
                    return tuple(out)
    return tuple(out)


def _top_counts(lists: Iterable[Iterable[tuple[str, int]]]) -> tuple[str, ...]:
    total: Counter[str] = Counter()
    for pairs in lists:
        for name, n in pairs:
            total[name] += n
    return tuple(n for n, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_LISTED])


def _distinct(sketch: Sequence[int]) -> tuple[int, bool]:
    """Distinct count from the K smallest hashes: exact below K, estimated (KMV) above."""
    if len(sketch) < SKETCH:
        return len(sketch), False
    return round((SKETCH - 1) * _HASH_SPACE / (sketch[SKETCH - 1] + 1)), True


# -- accounts attacked from an address that already has an incident ---------------------------
Covered = Callable[[str, datetime], bool]


def fold_user(
    subject: str, buckets: Sequence[Bucket], t: Thresholds, covered: Covered
) -> tuple[list[Bucket], list[Mark], dict[int, set[str]]]:
    """An account's view once failures from IPs with an open incident are that incident's.

    Brute force counts only the other failures; a sign-in after the threshold counts every
    failure, and becomes a `Mark` on the attacking IP's incident when most of the failures
    before it came from a covered IP. Returns (buckets as counted, marks, hot rules).
    """
    own = [_uncovered(b, covered) for b in buckets]
    hot: dict[int, set[str]] = {}
    rule = RULE_BY_NAME["success_after_failures_user"]
    for counting in RULES:
        if counting.kind is Kind.USER and counting is not rule:
            for i in counting.hot(own, t):
                hot.setdefault(i, set()).add(counting.name)
    marks: list[Mark] = []
    span = _minutes(t.window)
    for i in compromised(buckets, t, [b.failures for b in buckets]):
        b = buckets[i]
        window = [x for x in buckets if b.minute - (span - 1) * MINUTE <= x.minute <= b.minute]
        sources: Counter[str] = Counter()
        for x in window:
            for ip, n in x.ips:
                sources[ip] += n
        ip, n = min(sources.items(), key=lambda kv: (-kv[1], kv[0]), default=("", 0))
        if ip and 2 * n > sum(sources.values()) and covered(ip, b.minute):
            assert b.first_success is not None
            marks.append(
                Mark(ip, b.minute, subject, b.first_success, tuple(b.targets), tuple(b.hosts))
            )
        else:
            hot.setdefault(i, set()).add(rule.name)
    return own, marks, hot


def _uncovered(b: Bucket, covered: Covered) -> Bucket:
    """The bucket as the account's own: without the failures IP incidents hold."""
    mine = [(ip, n) for ip, n in b.ips if not covered(ip, b.minute)]
    if len(mine) == len(b.ips):
        return b
    return replace(b, failures=b.failures - sum(n for ip, n in b.ips if covered(ip, b.minute)),
                   ips=mine)  # fmt: skip


def evaluate(kind: Kind, subject: str, events: Iterable[Event], t: Thresholds) -> list[Incident]:
    """Incidents of one actor from all its events (any order, duplicates allowed)."""
    buckets = build_buckets(kind, events, t)
    return incidents(kind, subject, buckets, hot_rules(kind, buckets, t), t)
