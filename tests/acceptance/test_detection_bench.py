"""The detection benchmark's own logic (bench/detection.py, bench/population.py): the baselines
follow their documented semantics, scoring matches incidents to episodes by actor and time, and
the simulated world is seeded and labelled as documented. Pure code, no emulator."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import detection as bench
import population as pop

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def fails(ip: str, seconds: list[float], user: str = "u") -> list[pop.Rec]:
    return [
        pop.Rec(T0 + timedelta(seconds=s), user, ip, False, "VM", "BASTION-WEU", i)
        for i, s in enumerate(seconds)
    ]


def test_ms_query_counts_per_ip_and_15_minute_bin() -> None:
    straddling = fails("1.1.1.1", [14 * 60 + 10 * i for i in range(8)])  # 09:14:00-09:15:10
    five_in_one = fails("2.2.2.2", [60 * i for i in range(5)])
    one_each = [r for i in range(6) for r in fails(f"3.3.3.{i}", [0])]
    found = bench.ms_query(straddling + five_in_one + one_each)
    # 6 of the 8 fall in the 09:00 bin (an alert), 2 in the 09:15 bin (none).
    assert [(f["subject"], f["firstSeen"], f["lastSeen"]) for f in found] == [
        ("1.1.1.1", "2026-11-10T09:14:00Z", "2026-11-10T09:14:50Z"),
        ("2.2.2.2", "2026-11-10T09:00:00Z", "2026-11-10T09:04:00Z"),
    ]
    # 4 on each side of a bin boundary: never 5 in one bin, no alert.
    assert bench.ms_query(fails("1.1.1.1", [14 * 60 + 20 + 10 * i for i in range(8)])) == []


def test_fail2ban_bans_suppress_and_counting_restarts() -> None:
    # 5 in 600 s -> ban; 10 more during the ban -> nothing; 5 after the ban -> a second ban.
    seconds = (
        [0, 100, 200, 300, 400] + [450 + 10 * i for i in range(10)] + [1100 + i for i in range(5)]
    )
    found = bench.fail2ban(fails("9.9.9.9", seconds))
    assert len(found) == 2
    assert found[0]["lastSeen"] == "2026-11-10T09:06:40Z"
    # 5 failures spread over more than findtime never ban.
    assert bench.fail2ban(fails("9.9.9.9", [0, 200, 400, 600, 800, 1000])) == []


def episode(kind: str, actors: set[tuple[str, str]], start_min: int, end_min: int) -> pop.Episode:
    return pop.Episode(
        kind,
        frozenset(actors),
        T0 + timedelta(minutes=start_min),
        T0 + timedelta(minutes=end_min),
        "",
    )


def incident(kind: str, subject: str, first_min: int, last_min: int, severity: str = "medium"):
    return {
        "subjectKind": kind,
        "subject": subject,
        "rules": ["r"],
        "severity": severity,
        "firstSeen": bench._iso(T0 + timedelta(minutes=first_min)),
        "lastSeen": bench._iso(T0 + timedelta(minutes=last_min)),
    }


def test_scoring_by_actor_and_time() -> None:
    eps = [
        episode("brute_force", {("ip", "1.2.3.4"), ("user", "admin")}, 0, 10),
        episode("slow_brute", {("user", "bob")}, 60, 300),
        episode("host_silence", {("host", "bastion-weu")}, 400, 700),
    ]
    found = [
        incident("ip", "1.2.3.4", 2, 9),
        incident("user", "ADMIN", 3, 5),  # case does not matter: also the brute force
        incident("user", "bob", 500, 520),  # too late for the slow one: false (medium)
        incident(
            "host",
            "/subscriptions/x/providers/Microsoft.Network/bastionHosts/BASTION-WEU",
            450,
            460,
            "high",
        ),
        incident("user", "carol", 30, 40, "low"),  # false (low)
        incident("ip", "5.6.7.8", -600, -590),  # before the evaluation days
    ]
    s = bench.score(found, eps, T0 - timedelta(minutes=60), user_days=500)
    assert s.episodes == {"brute_force": 1, "slow_brute": 1, "host_silence": 1}
    assert s.recall("brute_force") == 1.0 and s.recall("slow_brute") == 0.0
    assert s.recall() == pytest.approx(2 / 3)
    assert (s.incidents, s.true, s.false_hm, s.false_low, s.learning_false) == (5, 3, 1, 1, 1)
    assert s.precision == pytest.approx(3 / 5)
    assert s.hits == [2, 0, 1] and s.per_detected == pytest.approx(1.5)
    assert s.false_hm_per_1k == pytest.approx(2.0) and s.false_low_per_100 == pytest.approx(0.2)


def test_world_is_seeded_labelled_and_silences_drop_records() -> None:
    config = pop.Config(people=40, days=10, learn_days=7, per_kind=2, services=3, seed=3)
    a, b = pop.simulate(config), pop.simulate(config)
    assert a.records == b.records and a.episodes == b.episodes
    assert a.blobs(1) == b.blobs(1)
    assert {e.kind for e in a.episodes} == set(pop.KINDS)
    assert all(e.start >= a.eval_start for e in a.episodes)
    assert a.dropped > 0
    for ep in a.episodes:
        if ep.kind == "host_silence":
            (host,) = ep.names("host")
            assert not [r for r in a.records
                        if r.host.casefold() == host and ep.start <= r.time < ep.end]  # fmt: skip
        else:
            assert any(r.episode >= 0 for r in a.records)
    names = list(a.blobs(1))
    assert all(n.endswith("/m=00/PT1H.json") and "/BASTIONHOSTS/" in n for n in names)
