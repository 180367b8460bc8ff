"""Issue 23.1: a sign-in after failures pages only when it is likely an attack. Pure: events in,
incidents out; the baseline question (`known`) is a set of sign-ins here."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_campaigns import incidents, lines, queue, view

from devtools import samples
from shared.baselines import agents, habits
from shared.baselines.habits import Sighting
from shared.core import domain
from shared.core.catalog import Thresholds
from shared.core.domain import Event, Kind, Severity
from shared.detect import planning, windows
from shared.ingest.loop import Pipeline

USER, IP = Kind.USER, Kind.IP

T = Thresholds()
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NAT = "203.0.113.10"
EDGE = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def ev(second: float, user: str, ok: bool, agent: str = EDGE, ip: str = NAT) -> Event:
    when = T0 + timedelta(seconds=second)
    key = f"{when.isoformat()}|{user}|{ok}|{agent}"  # the whole agent: records differ by it
    return Event(when, key, user, ip, ok, "LINUX-WEB-01", "BASTION", agent)


def forgot(user: str = "dana", n: int = 6, agent: str = EDGE, sign_in: str = EDGE) -> list[Event]:
    """`n` failures 40 s apart, then the sign-in: the shape of a forgotten password."""
    return [
        *(ev(40 * i, user, False, agent) for i in range(n)),
        ev(40 * n + 30, user, True, sign_in),
    ]


def known_all(e: Event) -> bool:
    return True


def found(kind: domain.Kind, events: list[Event], known: windows.Known = known_all) -> list:
    subject = NAT if kind is IP else events[0].user
    mine = [e for e in events if (e.ip if kind is IP else e.user) == subject]
    buckets = windows.build_buckets(kind, mine, T, known=known)
    hot = windows.hot_rules(kind, buckets, T)
    return windows.incidents(kind, subject, buckets, hot, T)


def test_a_forgotten_password_on_the_usual_client_is_a_low_finding_and_no_page() -> None:
    events = forgot()
    (low,) = found(USER, events)
    assert (low.rules, low.severity, low.failures) == (("sign_in_after_retries",), Severity.LOW, 6)
    assert found(IP, events) == []


def test_the_same_shape_pages_when_the_sign_in_is_not_the_usual_one() -> None:
    """New network, client or machine: `known` says no (the baseline decides it)."""
    events = forgot()
    (user,) = found(USER, events, known=lambda e: False)
    (ip,) = found(IP, events, known=lambda e: False)
    assert user.rule == "success_after_failures_user" and user.severity is Severity.CRITICAL
    assert ip.rule == "success_after_failures_ip"


def test_failures_from_another_agent_are_not_explained_by_the_victims_sign_in() -> None:
    """A colleague guesses on their own device, then the victim signs in as usual: the
    guesses still count."""
    events = forgot(agent=FIREFOX, sign_in=EDGE)
    assert found(USER, events)[0].severity is Severity.CRITICAL


def test_more_failures_than_a_person_retrying_page() -> None:
    events = forgot(n=T.retry_failures + 1)
    assert found(USER, events)[0].rule == "success_after_failures_user"
    assert found(USER, forgot(n=T.retry_failures))[0].rule == "sign_in_after_retries"


def test_failures_spread_over_other_accounts_from_the_address_page() -> None:
    """Two other accounts failed from the NAT in the window and never signed in: guessing."""
    others = [ev(10 + 40 * i, u, False) for i, u in enumerate(("erin", "femi"))]
    events = [*forgot(n=4), *others]
    (ip,) = found(IP, events)
    assert "success_after_failures_ip" in ip.rules
    # One colleague's failures alone (a second forgetful person) are not a spread.
    assert found(IP, [*forgot(n=4), ev(15, "erin", False), ev(55, "erin", False)]) == []


def test_a_few_failures_before_a_usual_sign_in_raise_nothing() -> None:
    assert found(USER, forgot(n=3)) == []
    assert found(IP, forgot(n=3)) == []


def test_the_baseline_knows_a_sign_in_only_from_its_network_client_and_machine() -> None:
    first = Sighting(T0, "a", NAT, "LINUX-WEB-01", "B", agents.client_of(EDGE))
    rows = habits.fold({}, [first])
    later = T0 + timedelta(days=1)
    same = Sighting(later, "b", "203.0.113.99", "linux-web-01", "B", agents.client_of(EDGE))
    assert habits.known(rows, same)  # same /24, same client family and OS, same machine
    assert not habits.known(rows, Sighting(later, "c", NAT, "LINUX-WEB-01", "B",
                                             agents.client_of(FIREFOX)))  # fmt: skip
    assert not habits.known(rows, Sighting(later, "d", "198.51.100.1", "LINUX-WEB-01", "B",
                                             agents.client_of(EDGE)))  # fmt: skip
    assert not habits.known(rows, Sighting(later, "e", NAT, "WIN-DB-02", "B",
                                             agents.client_of(EDGE)))  # fmt: skip
    assert not habits.known(rows, Sighting(later, "f", NAT, "LINUX-WEB-01", "B", None))
    assert not habits.known(rows, first)  # the first sighting itself is new
    vpn = Sighting(later, "g", "100.64.1.7", "LINUX-WEB-01", "B", agents.client_of(EDGE))
    assert not habits.known(rows, vpn)  # a network the account never used ...
    assert habits.known(rows, vpn, trusted=True)  # ... unless it is the organisation's own
    guess = Sighting(later, "h", "100.64.1.7", "LINUX-WEB-01", "B", agents.client_of(FIREFOX))
    assert not habits.known(rows, guess, trusted=True)  # its client and machine still decide


def test_clients_are_family_and_os_and_survive_hostile_agents() -> None:
    assert agents.client_of(EDGE) == "edge on windows"
    assert agents.client_of(EDGE.replace("131", "132")) == agents.client_of(EDGE)
    assert agents.client_of(FIREFOX) == "firefox on linux"
    assert agents.client_of("") == agents.NONE
    assert agents.client_of("curl/8.5.0").startswith("curl")
    assert len(agents.client_of("Mozilla/5.0 (" * 100_000)) < 100


_ROWS = st.lists(
    st.tuples(
        st.floats(0, 7200, allow_nan=False),
        st.sampled_from(["dana", "erin", "femi"]),
        st.booleans(),
        st.sampled_from([EDGE, FIREFOX]),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(_ROWS, st.integers(0, 120), st.integers(0, 60), st.sampled_from([IP, USER]))
def test_buckets_rebuilt_from_a_window_equal_those_built_from_all_with_retries(
    rows: list[tuple[float, str, bool, str]], first: int, length: int, kind: domain.Kind
) -> None:
    """What an invocation does (`planning.event_span`): minutes [lo, hi] from a window of
    events on either side; the retries explained must not depend on what lies outside it."""
    events = [ev(s, u, ok, a) for s, u, ok, a in rows]
    mine = [e for e in events if kind is IP or e.user == "dana"]

    def known(e: Event) -> bool:
        return hash(e.key) % 3 != 0

    lo = T0 + timedelta(minutes=first)
    hi = lo + timedelta(minutes=length)
    window = [e for e in mine if lo - T.window <= e.time < hi + domain.MINUTE + T.window]
    part = windows.build_buckets(kind, window, T, lo, hi, known)
    whole = [b for b in windows.build_buckets(kind, mine, T, known=known) if lo <= b.minute <= hi]
    assert part == whole


_NEW = st.lists(
    st.tuples(st.floats(0, 600, allow_nan=False), st.sampled_from(["dana", "erin", "femi"])),
    min_size=1,
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(_ROWS, _NEW, st.integers(0, 110), st.sampled_from([IP, USER]))
def test_failures_no_sign_in_follows_change_their_own_minutes_only(
    rows: list[tuple[float, str, bool, str]],
    new: list[tuple[float, str]],
    at: int,
    kind: domain.Kind,
) -> None:
    """What an invocation reads for new failures (`planning.narrow`): with no sign-in from
    their first minute to a window after the last, every other minute's bucket stays as it
    was, and the minutes up to a window after them, rebuilt from the events from their first
    minute on (none before it), equal those built from all events."""
    added = [ev(at * 60 + s, u, False) for s, u in new]
    touch = planning.Touch(min(e.time for e in added), max(e.time for e in added), records=True)
    last, until = planning.narrow(touch, T) or (touch.hi, touch.hi)
    first, hi = planning.changed_minutes(planning.Actor(kind, "x"), touch, T)
    end = planning.event_span(planning.Actor(kind, "x"), first, hi, T)[1]
    stored = [ev(s, u, ok, a) for s, u, ok, a in rows]
    stored = [e for e in stored if not (e.success and first <= e.time <= until)]  # the premise
    if not any(kind is IP or e.user == "dana" for e in added):
        return
    mine = [e for e in stored + added if kind is IP or e.user == "dana"]
    before = [e for e in stored if kind is IP or e.user == "dana"]

    def outside(events: list[Event]) -> list[domain.Bucket]:
        built = windows.build_buckets(kind, events, T, known=known_all)
        return [b for b in built if not first <= b.minute <= last]

    assert outside(mine) == outside(before)
    read = [e for e in mine if first <= e.time < end]
    part = windows.build_buckets(kind, read, T, first, hi, known_all)
    whole = windows.build_buckets(kind, mine, T, known=known_all)
    assert part == [b for b in whole if first <= b.minute <= hi]


@settings(max_examples=150, deadline=None)
@given(_ROWS, st.floats(0, 7200, allow_nan=False), st.sampled_from([IP, USER]))
def test_a_sign_in_no_failure_comes_just_before_changes_no_bucket(
    rows: list[tuple[float, str, bool, str]], second: float, kind: domain.Kind
) -> None:
    """What `fail|<hour>` rows decide (`planning.failed_nearby`, from the minutes the actor
    failed in): a sign-in they say no failure came just before is in no bucket, and explains
    no failure, so detection need not look at it."""
    stored = [ev(s, u, ok, a) for s, u, ok, a in rows]
    mine = [e for e in stored if kind is IP or e.user == "dana"]
    sign_in = ev(second, "dana", True)
    failing: planning.Failing = {}
    for e in mine:
        if not e.success:
            hour = failing.setdefault(e.time.strftime("%Y-%m-%dT%H"), {})
            hour.setdefault((kind.value, "x"), set()).add(e.time.minute)  # type: ignore[union-attr]
    touch = planning.Touch(sign_in.time, sign_in.time, successes=1, records=True)
    if planning.failed_nearby(planning.Actor(kind, "x"), touch, failing, T):
        return
    with_it = windows.build_buckets(kind, [*mine, sign_in], T, known=known_all)
    assert with_it == windows.build_buckets(kind, mine, T, known=known_all)


def test_fail_rows_name_the_minutes_and_old_rows_any() -> None:
    hour = "2026-03-02T09"
    touch = planning.Touch(T0 + timedelta(minutes=40), T0 + timedelta(minutes=41), successes=1)
    dana = planning.Actor(USER, "dana")
    assert planning.failed_nearby(dana, touch, {hour: {("user", "dana"): {30}}}, T)
    assert not planning.failed_nearby(dana, touch, {hour: {("user", "dana"): {5, 50}}}, T)
    assert planning.failed_nearby(dana, touch, {hour: {("user", "dana"): None}}, T)
    assert not planning.failed_nearby(dana, touch, {hour: {("user", "erin"): None}}, T)


@settings(max_examples=60, deadline=None)
@given(_ROWS, st.randoms(use_true_random=False))
def test_retries_do_not_depend_on_the_order_events_arrive_in(
    rows: list[tuple[float, str, bool, str]], rnd: random.Random
) -> None:
    events = [ev(s, u, ok, a) for s, u, ok, a in rows]
    shuffled = list(events)
    rnd.shuffle(shuffled)
    for kind in (IP, USER):
        subject = NAT if kind is IP else "dana"
        a = [e for e in events if kind is IP or e.user == subject]
        b = [e for e in shuffled if kind is IP or e.user == subject]
        assert windows.build_buckets(kind, a, T, known=known_all) == windows.build_buckets(
            kind, b, T, known=known_all
        )


# -- through the indexed blob trigger, against Azurite -----------------------------------------
def _session(user: str, start: datetime, failures: int, agent: str, port: int) -> list[dict]:
    """`failures` records 40 s apart, then the sign-in, all from the office NAT with `agent`."""
    out = [
        samples.record(start + timedelta(seconds=40 * i), user, samples.FAIL, NAT, port=port + i,
                       agent=agent)
        for i in range(failures)
    ]  # fmt: skip
    at = start + timedelta(seconds=40 * failures + 30)
    return [*out, samples.record(at, user, samples.OK, NAT, port=port + 99, agent=agent)]


def _run(indexed_app: dict, logs: Any, prefix: str, hour: datetime, records: list[dict]) -> None:
    name = prefix + samples.blob_path("BASTION-RETRY", hour)
    logs.upload_blob(name, lines(records), overwrite=True)
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))


@pytest.mark.azurite
def test_a_forgotten_password_pages_nobody_and_the_same_shape_from_a_new_client_does(
    app_env: Callable[..., Pipeline], indexed_app: dict, logs: Any, blob_prefix: str
) -> None:
    """dana and erin signed in from the office NAT with Edge last week. Today dana fails six
    times on Edge and gets in (she forgot her password): a low finding for the digest, no
    message. Somebody fails six times as erin on Firefox from the same NAT and gets in: a
    critical page. Then last week's blob arrives again, late and after today's: nothing
    changes, and the same records in the other order end the same."""
    p = app_env()
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    week = today - timedelta(days=7)
    history = [
        samples.record(week + timedelta(minutes=5 + i), u, samples.OK, NAT, port=41000 + i,
                       agent=EDGE)
        for i, u in enumerate(("dana", "erin"))
    ]  # fmt: skip
    now = [*_session("dana", today + timedelta(minutes=5), 6, EDGE, 42000),
           *_session("erin", today + timedelta(minutes=35), 6, FIREFOX, 43000)]  # fmt: skip
    _run(indexed_app, logs, blob_prefix, week, history)
    _run(indexed_app, logs, blob_prefix, today, now)
    seen = {(r["Subject"], r["Rules"].split(",")[0], r["Severity"]) for r in incidents(p)}
    assert ("dana", "sign_in_after_retries", "low") in seen
    assert not any(s == "dana" and sev != "low" for s, _, sev in seen)
    assert ("erin", "success_after_failures_user", "critical") in seen or (
        NAT, "success_after_failures_ip", "critical") in seen  # fmt: skip
    told = queue(p)
    assert told and all("dana" not in m.get("compromisedUsers", []) for m in told)
    assert any("erin" in m.get("compromisedUsers", []) for m in told)
    before = view(p)
    _run(indexed_app, logs, blob_prefix, week, history)  # replayed late
    assert view(p) == before


@pytest.mark.azurite
def test_history_that_arrives_after_the_retry_turns_its_page_into_a_low_finding(
    app_env: Callable[..., Pipeline], indexed_app: dict, logs: Any, blob_prefix: str
) -> None:
    """Today's blob first (dana's network and client are new to a baseline that has not seen
    last week yet: a page), then last week's: the sign-in is her usual one after all, and
    the stored incidents end as they do in time order (the page already sent stays sent)."""
    p = app_env()
    today = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    week = today - timedelta(days=7)
    history = [samples.record(week + timedelta(minutes=5), "dana", samples.OK, NAT, port=41000,
                              agent=EDGE)]  # fmt: skip
    _run(indexed_app, logs, blob_prefix, today, _session("dana", today + timedelta(minutes=5), 6,
                                                          EDGE, 42000))  # fmt: skip
    assert any(r["Severity"] == "critical" for r in incidents(p))
    _run(indexed_app, logs, blob_prefix, week, history)
    final = {(r["Subject"], r["Rules"], r["Severity"], r["State"]) for r in incidents(p)}
    assert {f for f in final if f[3] == "open"} == {
        ("dana", "sign_in_after_retries", "low", "open")
    }
    assert all(f[3] == "withdrawn" for f in final if f[2] != "low")  # told, so kept as withdrawn


@pytest.mark.azurite
@pytest.mark.parametrize("late", [False, True], ids=["time-order", "history-late"])
def test_overlapping_retries_end_the_same_whatever_arrived_first(
    app_env: Callable[..., Pipeline], indexed_app: dict, logs: Any, blob_prefix: str, late: bool
) -> None:
    """Found by the bench's shuffled replay: 4 failures, a sign-in, 4 more, a sign-in, all
    within one window. The second sign-in claims only the failures the first did not explain;
    when the first becomes usual late (its history arrives after), the second is decided again
    too: both orders end with one low finding for the 4 it explained."""
    p = app_env()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    history = [samples.record(hour - timedelta(hours=2), "dana", samples.OK, NAT, port=41000,
                              agent=EDGE)]  # fmt: skip
    now = [*_session("dana", hour + timedelta(minutes=15), 4, EDGE, 42000),
           *_session("dana", hour + timedelta(minutes=19), 4, EDGE, 43000)]  # fmt: skip
    blobs = [(hour - timedelta(hours=2), history), (hour, now)]
    for at, records in reversed(blobs) if late else blobs:
        _run(indexed_app, logs, blob_prefix, at, records)
    opened = [(r["Subject"], r["Rules"], r["Severity"], r["FailureCount"])
              for r in incidents(p) if r["State"] == "open"]  # fmt: skip
    assert opened == [("dana", "sign_in_after_retries", "low", 4)]


@pytest.mark.azurite
@pytest.mark.parametrize("late", [False, True], ids=["time-order", "failure-late"])
def test_a_findings_failure_count_does_not_depend_on_arrival(
    app_env: Callable[..., Pipeline], indexed_app: dict, logs: Any, blob_prefix: str, late: bool
) -> None:
    """Found by the bench's shuffled replay: a first sign-in from a new network after four
    failures, the first of them in the previous hour's blob. When that blob came last, the
    finding kept saying 3 failures (its row changed only with severity or rules)."""
    p = app_env()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    far = "198.51.100.60"
    history = [samples.record(hour - timedelta(days=9), "dana", samples.OK, NAT, port=41000,
                              agent=EDGE)]  # fmt: skip
    before = [samples.record(hour - timedelta(minutes=2), "dana", samples.FAIL, far, port=42000,
                             agent=FIREFOX, vm="WIN-DB-09")]  # fmt: skip
    now = [
        samples.record(
            hour + timedelta(minutes=3 * i),
            "dana",
            samples.FAIL,
            far,
            port=42001 + i,
            agent=FIREFOX,
            vm="WIN-DB-09",
        )
        for i in range(3)
    ]
    now.append(samples.record(hour + timedelta(minutes=10), "dana", samples.OK, far, port=42010,
                              agent=FIREFOX, vm="WIN-DB-09"))  # fmt: skip
    blobs = [(hour - timedelta(days=9), history), (hour - timedelta(hours=1), before), (hour, now)]
    for at, records in [blobs[0], blobs[2], blobs[1]] if late else blobs:
        _run(indexed_app, logs, blob_prefix, at, records)
    found = [(r["Rules"].split(",")[0], r["FailureCount"]) for r in incidents(p)
             if r["State"] == "open"]  # fmt: skip
    assert found == [("new_source_success", 4)]
