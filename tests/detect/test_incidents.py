"""Incident planning (rows to write, who to tell) and the text people read. Pure: no I/O."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core import text
from shared.core.domain import Incident, Kind, Severity
from shared.notify import incidents, messages

USER, IP = Kind.USER, Kind.IP

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
HOUR = timedelta(hours=1)
HEAD = ("2026-11-24", "ip|198.51.100.7|~")


def inc(first: float = 0, last: float = 10, failures: int = 6, severity: Severity = Severity.MEDIUM,
        rules: tuple[str, ...] = ("ip_brute_force",)) -> Incident:  # fmt: skip
    return Incident(
        kind=IP, subject="198.51.100.7",
        first_seen=T0 + timedelta(minutes=first), last_seen=T0 + timedelta(minutes=last),
        rules=rules, severity=severity, failures=failures, successes=0, users=("admin",),
        distinct_users=1, users_estimated=False, ips=("198.51.100.7",), targets=("VM1",),
        hosts=("BH",),
    )  # fmt: skip


class Row(dict[str, Any]):
    """A stored row as the SDK returns it: a dict with an ETag in `metadata`."""

    def __init__(self, value: dict[str, Any], etag: str = "e1") -> None:
        super().__init__(value)
        self.metadata = {"etag": etag}


def stored(plan: incidents.Plan, delivered: bool = True) -> list[Row]:
    """The rows a plan creates, as the next invocation reads them (optionally delivered)."""
    rows = []
    for op, entity, _ in plan.ops:
        if op in ("create", "update") and "FirstSeen" in entity:
            row = dict(entity)
            if delivered and row.get("Pending"):
                row.update(Pending="", NotifiedSeverity=row["Severity"], NotifiedAt=NOW,
                           NotifiedFailures=row["FailureCount"], DeliveredTo="queue",
                           Status="delivered", Owed="[]")  # fmt: skip
            rows.append(Row(row))
    return rows


def test_a_new_incident_is_created_and_owes_an_opening_notification() -> None:
    plan = incidents.plan([inc()], [], None, HEAD, NOW, HOUR)
    ops = [op for op, *_ in plan.ops]
    assert ops == ["create", "create"]  # the head, then the incident
    row = plan.ops[1][1]
    assert row["Pending"] == "opened" and row["Seq"] == 1 and row["Status"] == "pending"
    assert plan.notify == [(row["RowKey"], row["AlertId"])]
    assert "198.51.100.7" not in row["AlertId"]  # opaque: no log text in the id


def test_nothing_changed_writes_nothing() -> None:
    first = incidents.plan([inc()], [], None, HEAD, NOW, HOUR)
    again = incidents.plan([inc()], stored(first), Row({"Version": 1}), HEAD, NOW, HOUR)
    assert again.ops == [] and again.notify == []


def test_escalation_is_told_growth_is_deferred_then_due() -> None:
    rows = stored(incidents.plan([inc()], [], None, HEAD, NOW, HOUR))
    grown = incidents.plan([inc(failures=40)], rows, Row({"Version": 1}), HEAD, NOW, HOUR)
    row = grown.ops[1][1]
    assert not grown.notify and row["UpdateDue"] and not row["Pending"]
    assert incidents.due_update(row, NOW + timedelta(minutes=10), HOUR) is None
    due = incidents.due_update(row, NOW + 2 * HOUR, HOUR)
    assert due is not None and due["Pending"] == "updated" and due["Seq"] == 2
    worse = incidents.plan([inc(severity=Severity.CRITICAL, rules=("success_after_failures_ip",))],
                           rows, Row({"Version": 1}), HEAD, NOW, HOUR)  # fmt: skip
    assert worse.notify and worse.ops[1][1]["Pending"] == "escalated"


def test_an_incident_whose_start_moves_is_rekeyed_silently_and_keeps_its_id() -> None:
    rows = stored(incidents.plan([inc(first=5)], [], None, HEAD, NOW, HOUR))
    earlier = incidents.plan([inc(first=0)], rows, Row({"Version": 1}), HEAD, NOW, HOUR)
    kinds = [op for op, *_ in earlier.ops]
    assert kinds == ["update", "create", "delete"] and not earlier.notify
    assert earlier.ops[1][1]["AlertId"] == rows[0]["AlertId"]


def test_two_incidents_merged_by_a_filled_gap_become_one() -> None:
    rows = stored(incidents.plan([inc(0, 5), inc(80, 90)], [], None, HEAD, NOW, HOUR))
    merged = incidents.plan([inc(0, 90, failures=20)], rows, Row({"Version": 1}), HEAD, NOW, HOUR)
    kinds = sorted(op for op, *_ in merged.ops)
    assert kinds == ["delete", "update", "update"] and not merged.notify


def test_withdrawn_when_later_records_explain_it_away() -> None:
    told = stored(incidents.plan([inc()], [], None, HEAD, NOW, HOUR))
    gone = incidents.plan([], told, Row({"Version": 1}), HEAD, NOW, HOUR)
    assert gone.ops[1][0] == "update" and gone.ops[1][1]["State"] == "withdrawn"
    untold = stored(incidents.plan([inc()], [], None, HEAD, NOW, HOUR), delivered=False)
    untold[0].update(Pending="", DeliveredTo="")  # decided, never sent anywhere
    assert incidents.plan([], untold, Row({"Version": 1}), HEAD, NOW, HOUR).ops[1][0] == "delete"


def test_user_incidents_name_the_account_in_the_summary_safely() -> None:
    user = Incident(
        kind=USER, subject="[click](https://evil.example)", first_seen=T0, last_seen=T0,
        rules=("user_brute_force",), severity=Severity.MEDIUM, failures=5, successes=0,
        users=("x",), distinct_users=1, users_estimated=False, ips=("1.2.3.4",), targets=(),
        hosts=(),
    )  # fmt: skip
    row = incidents.content(user, "2026-11-24", "user|x|2026-11-24T10:00:00")
    assert '"\\[click\\]\\(hxxps\\[:\\]//evil.example\\)"' in row["Summary"]


HIDDEN = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_text_for_people_never_carries_markup_links_or_invisible_characters(value: str) -> None:
    plain = text.plain(value, 120)
    assert all(unicodedata.category(c) not in HIDDEN or c == " " for c in plain)
    assert "://" not in plain and "{{" not in plain
    assert len(text.cut(value, 120)) <= 120
    md = text.markdown(value, 120)
    assert not re.search(r"(?<!\\)[\[\]()<>*`|~]", md.replace("\\\\", ""))
    slack = text.slack(value, 120)
    assert not set(slack) & set("*_~`<>")


def test_summaries_cards_and_slack_keep_values_readable() -> None:
    row = incidents.content(inc(), "2026-11-24", "ip|198.51.100.7|2026-11-24T10:00:00")
    row.update(AlertId="ip-x-1", Pending="opened", Seq=1)
    assert messages.summary(row).startswith('[MEDIUM] Repeated failed Bastion sign-ins from "198')
    card = messages.teams_card(row)["attachments"][0]["content"]
    assert all(block["type"] == "RichTextBlock" for block in card["body"])
    slack = messages.slack_message(row)
    assert slack["blocks"][0]["text"]["type"] == "plain_text"
    body = messages.message(row)
    assert body["schema"] == "bastion-audit/alert@2" and body["event"] == "opened"
