"""Baselines, their findings, host silence and the digest: pure code, no I/O."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from shared.baselines import habits
from shared.baselines.habits import Sighting
from shared.core.domain import Severity
from shared.hosts import activity
from shared.notify import digest, messages

DAY0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
ARM = timedelta(days=7)
OFFICE = "203.0.113.10"


def habit(days: int = 8, hours: range = range(8, 18, 3)) -> list[Sighting]:
    """An account's working days: office network, office hours, one machine."""
    out = []
    for d, h in itertools.product(range(days), hours):
        when = DAY0 + timedelta(days=d, hours=h, minutes=d)
        out.append(Sighting(when, f"{when.isoformat()}-k", OFFICE, "LINUX-WEB-01", "BASTION"))
    return out


def learned(sightings: list[Sighting]) -> dict[str, Sighting]:
    return habits.fold({}, sightings)


def found(rows: dict[str, Sighting], failures: int = 0) -> dict[str, habits.Finding]:
    return habits.findings(rows, lambda _: failures, ARM, threshold=5)


def with_new(rows: dict[str, Sighting], s: Sighting) -> dict[str, Sighting]:
    return {**rows, **habits.fold(rows, [s])}


def at(days: int, hour: int, ip: str = "198.18.4.9", vm: str = "LINUX-WEB-01") -> Sighting:
    when = DAY0 + timedelta(days=days, hours=hour, minutes=7)
    return Sighting(when, f"{when.isoformat()}-new", ip, vm, "BASTION")


def test_fold_is_a_minimum_whatever_the_order_and_replays_change_nothing() -> None:
    events = habit()
    want = learned(events)
    for seed in range(5):
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        rows: dict[str, Sighting] = {}
        for part in (shuffled[:7], shuffled[7:20], shuffled[20:]):  # sliced, out of order
            rows.update(habits.fold(rows, part))
        assert rows == want
    assert habits.fold(want, events) == {}  # a replay writes nothing


def test_networks_are_slash_24_and_slash_48() -> None:
    assert habits.network("203.0.113.77") == "203.0.113.0/24"
    assert habits.network("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert habits.network("not an ip") == "not an ip"


def test_a_new_network_alone_is_no_finding() -> None:
    rows = with_new(learned(habit()), at(9, 10))
    assert found(rows) == {}


def test_not_armed_is_quiet_while_it_learns() -> None:
    rows = with_new(learned(habit(days=3)), at(3, 2, vm="WIN-NEW-09"))
    assert found(rows) == {}  # first sign-in 3 days before: still learning


def test_context_raises_severity() -> None:
    base = learned(habit())
    low = found(with_new(base, at(9, 10, vm="WIN-NEW-09")))
    assert [(f.severity, f.context) for f in low.values()] == [
        (Severity.LOW, ("first_time_target",))
    ]
    medium = found(with_new(base, at(9, 2, vm="WIN-NEW-09")))
    assert [(f.severity, f.context) for f in medium.values()] == [
        (Severity.MEDIUM, ("off_hours", "first_time_target"))
    ]
    high = found(with_new(base, at(9, 2, vm="WIN-NEW-09")), failures=3)
    assert [f.severity for f in high.values()] == [Severity.HIGH]
    typos = found(with_new(base, at(9, 2, vm="WIN-NEW-09")), failures=2)  # a typo or two
    assert [f.severity for f in typos.values()] == [Severity.MEDIUM]
    assert found(with_new(base, at(9, 2)), failures=5) == {}  # the compromise rule's


def test_known_network_at_night_is_no_finding() -> None:
    assert found(with_new(learned(habit()), at(9, 2, ip="203.0.113.99"))) == {}


@pytest.mark.parametrize(("hour", "night"), [(2, True), (23, True), (18, False), (7, False)])
def test_off_hours_is_inside_the_accounts_night(hour: int, night: bool) -> None:
    rows = learned(habit())  # seen 08, 11, 14, 17 h: night 18..07, an hour from its edges
    when = DAY0 + timedelta(days=9, hours=hour)
    assert habits.off_hours(rows, when) is night


def test_full_baseline_learns_nothing_new() -> None:
    rows = {f"net|{i}": at(1, 9, ip=f"10.0.{i}.1") for i in range(habits.MAX_ROWS)}
    assert habits.fold(rows, [at(2, 9, ip="192.0.2.1")]) == {}


# -- host silence --------------------------------------------------------------------------------
def busy(days: int, hours: range = range(24)) -> set[datetime]:
    return {DAY0 + timedelta(days=d, hours=h) for d in range(days) for h in hours}


def test_a_host_always_busy_is_silent_after_three_hours() -> None:
    active = busy(9)
    now = DAY0 + timedelta(days=9, hours=5, minutes=10)  # nothing since midnight
    found = activity.silence(active, now, ARM, 3)
    assert found is not None and found.since == DAY0 + timedelta(days=9)
    assert activity.silence(active, DAY0 + timedelta(days=9, hours=2), ARM, 3) is None


def test_a_quiet_night_is_not_silence() -> None:
    active = busy(9, range(8, 18))  # office hours only (weekdays and weekends alike)
    assert activity.silence(active, DAY0 + timedelta(days=9, hours=7, minutes=30), ARM, 3) is None
    silent = activity.silence(active, DAY0 + timedelta(days=9, hours=13, minutes=30), ARM, 3)
    assert silent is not None and silent.since == DAY0 + timedelta(days=8, hours=18)  # last+1h


def test_a_young_host_is_still_learning() -> None:
    assert activity.silence(busy(3), DAY0 + timedelta(days=3, hours=8), ARM, 3) is None


def test_sparse_hours_are_no_outage_and_a_second_outage_is_found_like_the_first() -> None:
    """Seventeen empty hours a host is busy in on a third of its days each add up to more
    than three, but say little: no silence. A host busy 08-18 every day that was down 12-16
    on Wednesday is down again at the same hours on Friday: found (Wednesday is no habit;
    counted as one, three empty hours would make 2.67 expected busy hours, short of 3)."""
    sparse = {DAY0 + timedelta(days=d, hours=h) for d in range(11) for h in range(6, 23)
              if d % 3 == h % 3} | {DAY0 + timedelta(days=11, hours=5)}  # fmt: skip
    friday_night = DAY0 + timedelta(days=11, hours=23, minutes=5)
    assert activity.silence(sparse, friday_night, ARM, 3) is None
    office = busy(12, range(8, 18)) - {DAY0 + timedelta(days=9, hours=h) for h in range(12, 16)}
    office -= {DAY0 + timedelta(days=11, hours=h) for h in range(12, 18)}  # Friday, again
    now = DAY0 + timedelta(days=11, hours=16, minutes=10)
    found = activity.silence({h for h in office if h < now}, now, ARM, 3)
    assert found is not None and found.since == DAY0 + timedelta(days=11, hours=12)


def test_silence_does_not_depend_on_records_after_now() -> None:
    active = busy(9)
    now = DAY0 + timedelta(days=9, hours=5)
    later = active | {DAY0 + timedelta(days=9, hours=6)}
    assert activity.silence(active, now, ARM, 3) == activity.silence(later, now, ARM, 3)


# -- the digest and the lines people read --------------------------------------------------------
def row(subject: str, severity: str, rules: str, when: datetime, kind: str = "user") -> dict:
    return {
        "PartitionKey": when.date().isoformat(), "RowKey": f"find|{subject}|{when:%H%M}",
        "AlertId": f"{kind}-{subject}-{when:%H%M}", "Rule": rules.split(",")[0], "Rules": rules,
        "Severity": severity, "SubjectKind": kind, "Subject": subject, "FailureCount": 0,
        "ClientIps": '["198.18.4.9"]', "TargetVMs": '["WIN-NEW-09"]', "FirstSeen": when,
        "LastSeen": when,
    }  # fmt: skip


def test_digest_groups_low_findings_per_account_and_keeps_text_inert() -> None:
    when = DAY0 + timedelta(days=9, hours=2)
    evil = "eve](https://evil.example)\n<!channel>"
    rows = [
        row("alice", "low", "new_source_success,first_time_target", when),
        row("alice", "low", "new_source_success,off_hours", when + timedelta(hours=1)),
        row(evil, "low", "new_source_success,off_hours", when),
        row("bob", "medium", "new_source_success,off_hours,first_time_target", when),
        {"PartitionKey": "x", "RowKey": "~cover"},
    ]
    body = digest.build("2026-11-11", rows)
    assert body is not None and body["findings"] == 3
    assert [(a["subject"], a["count"]) for a in body["accounts"]] == [("alice", 2), (evil, 1)]
    for line in digest.lines(body):
        assert "https://" not in line and "\n" not in line  # plain: shown only where inert
    assert "at an hour it never works" in digest.lines(body)[1]
    assert digest.build("2026-11-11", rows[3:]) is None  # nothing low: no digest
    card = digest.teams_card(body)["attachments"][0]["content"]
    assert {b["type"] for b in card["body"]} == {"RichTextBlock"}
    assert all(b["text"]["type"] == "plain_text" for b in digest.slack_message(body)["blocks"])


def test_host_lines_say_what_is_missing() -> None:
    when = DAY0 + timedelta(days=9, hours=2)
    silent = {**row("BASTION-WEU", "medium", "host_silent", when, "host"), "FailureCount": 4}
    line = messages.summary(silent)
    assert line.startswith("[MEDIUM] Bastion host")
    assert "no records for 4 hour(s)" in line and "failures" not in line


def test_a_flood_of_low_findings_still_fits_one_queue_message() -> None:
    """300 accounts with 25 findings each, names at their longest: the counts stay exact, the
    body fits a queue message after base64, the Teams card stays under its size limit."""
    when = DAY0 + timedelta(days=9, hours=2)
    rows = [
        row(f"{'x' * 2000}{a}", "low", "new_source_success,off_hours", when + timedelta(minutes=f))
        for a in range(300)
        for f in range(25)
    ]
    body = digest.build("2026-11-11", rows)
    assert body is not None
    assert (body["findings"], body["accountCount"]) == (7500, 300)
    assert 0 < len(body["accounts"]) < 300
    assert len(orjson.dumps(body)) * 4 / 3 < 64 * 1024
    assert len(orjson.dumps(digest.teams_card(body))) < 28 * 1024


def test_last_use_is_rewritten_weekly_and_retention_allows_for_the_lag() -> None:
    """`Last` moves when a week old (a row used daily costs a write a week); a row is removed
    only when even its latest possible use is older than the days kept."""
    assert habits.refresh("", "2026-11-23")  # never set
    assert not habits.refresh("2026-11-16", "2026-11-23")  # a week: kept as it is
    assert habits.refresh("2026-11-15", "2026-11-23")
    assert not habits.refresh("2026-11-23", "2026-11-01")  # a late record: never moves back
    keep_from = "2026-11-01"
    stale = habits.stale_before(keep_from)
    latest_use = (date.fromisoformat(stale) + habits.LAST_STEP).isoformat()
    assert latest_use <= keep_from  # a row with `Last` before `stale` was unused since
