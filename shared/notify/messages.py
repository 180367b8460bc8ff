"""What people and programs receive about an incident: the summary line, the queue/webhook JSON
(`bastion-audit/alert@2`), the Teams Adaptive Card and the Slack Block Kit message. Pure code.

Every value that came from a log record reaches a person through `shared.core.text`: in the card and
the Slack blocks only in elements that render no markup (TextRun, plain_text), in the summary
quoted and Markdown-escaped, URLs defanged, invisible characters shown. The JSON body keeps the
raw values (programs need them exact) beside the safe summary.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from shared.core import text
from shared.core.catalog import DESCRIBED

SCHEMA = "bastion-audit/alert@2"
_COLORS = {"critical": "Attention", "high": "Attention", "medium": "Warning", "low": "Default"}


def _list(row: dict[str, Any], name: str) -> list[str]:
    value = orjson.loads(row.get(name) or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []


def owed(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The notices a row owes people, oldest first (`Owed`: JSON written by `incidents`). A
    row pending from before `Owed` existed owes one: its `Pending` about the row as it is."""
    value = orjson.loads(row.get("Owed") or "[]")
    if isinstance(value, list) and value:
        return [v for v in value if isinstance(v, dict)]
    if not row.get("Pending"):
        return []
    return [
        {
            "event": row["Pending"],
            "seq": int(row.get("Seq") or 0),
            "severity": row["Severity"],
            "rules": [r for r in str(row.get("Rules") or row["Rule"]).split(",") if r],
            "failures": int(row.get("FailureCount") or 0),
        }
    ]


def current(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the notice now being delivered describes it: severity, rules and count of the
    moment it tells of (a backlog owes several, each as it was then); the rest as now."""
    notices = owed(row)
    if not notices:
        return row
    head = notices[0]
    rules = [str(r) for r in head.get("rules") or [row["Rule"]]]
    shown = {**row, "Pending": head["event"], "Seq": head["seq"], "Severity": head["severity"]}
    shown.update(Rule=rules[0], Rules=",".join(rules), FailureCount=head["failures"])
    at = head.get("at")
    end = row.get("LastSeen")
    if isinstance(at, str) and isinstance(end, datetime):  # as far as the notice tells
        shown["LastSeen"] = shown["WindowEnd"] = min(end, datetime.fromisoformat(at))
    shown["Summary"] = summary(shown)
    if head["event"] == "response" and row.get("ResponseSummary"):
        shown["Summary"] = f"[{str(shown['Severity']).upper()}] {row['ResponseSummary']}"
    return shown


def summary(row: dict[str, Any]) -> str:
    """One line a person can act on; log values quoted and Markdown-escaped, so they cannot
    pose as our words or become links wherever the line is rendered."""
    return _line(row, text.quoted)


def headline(row: dict[str, Any]) -> str:
    """The summary for places that render no markup (card TextRuns, Slack plain_text)."""
    return _line(row, lambda value, limit=80: f'"{text.plain(value, limit)}"')


#: What each context rule adds to a finding's line.
_CONTEXT = {
    "off_hours": "at an hour it never works",
    "first_time_target": "to a machine it never used",
    "failures_before": "after failed attempts",
}


def _line(row: dict[str, Any], q: Callable[..., str]) -> str:
    rule = DESCRIBED.get(str(row["Rule"]))
    head = (rule.description if rule else str(row["Rule"])).format(
        subject=q(str(row["Subject"] or "?"))
    )
    first, last = row["FirstSeen"], row["LastSeen"]
    when = f"{first:%Y-%m-%d %H:%M}-{last:%H:%M} UTC"
    if row["SubjectKind"] == "host":
        parts = [f"no records for {row['FailureCount']} hour(s)"] if row["FailureCount"] else []
        return f"[{str(row['Severity']).upper()}] {head}: " + ", ".join([*parts, when])
    ips = ", ".join(q(ip, 40) for ip in _list(row, "ClientIps")[:3])
    targets = ", ".join(q(vm, 40) for vm in _list(row, "TargetVMs")[:3])
    rules = str(row.get("Rules") or "").split(",")
    parts = [
        f"{row['FailureCount']} failures",
        _accounts(row) if row["SubjectKind"] == "ip" else f"from {ips or '?'}",
        f"on {targets or 'unknown target'}",
        *(_CONTEXT[r] for r in rules if r in _CONTEXT),
    ]
    compromised = _list(row, "CompromisedUsers")
    if compromised:
        names = ", ".join(q(u, 40) for u in compromised[:3])
        parts.append(f"then signed in: {names}")
    parts.append(when)
    return f"[{str(row['Severity']).upper()}] {head}: " + ", ".join(parts)


def _accounts(row: dict[str, Any]) -> str:
    about = "~" if row.get("UsersEstimated") else ""
    return f"{about}{int(row.get('DistinctUsers') or 0)} account(s)"


def message(row: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON body (queue message and generic webhook)."""
    return {
        "schema": SCHEMA,
        "alertId": row["AlertId"],
        "event": row.get("Pending") or "",
        "notification": int(row.get("Seq") or 0),
        "rule": row["Rule"],
        "rules": [r for r in str(row.get("Rules") or row["Rule"]).split(",") if r],
        "severity": row["Severity"],
        "state": row.get("State", "open"),
        "subjectKind": row["SubjectKind"],
        "subject": row["Subject"],
        "summary": row["Summary"],
        "failureCount": row["FailureCount"],
        "successCount": row.get("SuccessCount", 0),
        "distinctUsers": row.get("DistinctUsers", 0),
        "distinctUsersEstimated": bool(row.get("UsersEstimated")),
        "users": _list(row, "Users"),
        "clientIps": _list(row, "ClientIps"),
        "targetVMs": _list(row, "TargetVMs"),
        "bastionHosts": _list(row, "BastionHosts"),
        "compromisedUsers": _list(row, "CompromisedUsers"),
        "windowStart": text.utc(row["WindowStart"]),
        "windowEnd": text.utc(row["WindowEnd"]),
        "firstSeen": text.utc(row["FirstSeen"]),
        "lastSeen": text.utc(row["LastSeen"]),
        "response": response(row),
    }


def response(row: dict[str, Any]) -> dict[str, Any] | None:
    """What active response did about the incident (`shared.respond`), once it acted: its mode,
    each session's fate, the error that stopped it; None before (or without) it."""
    value = orjson.loads(row.get("Response") or "null")
    if not isinstance(value, dict) or value.get("state") != "done":
        return None
    return {"mode": value.get("mode"), "at": value.get("at"), "summary": value.get("summary"),
            "error": value.get("error") or None, "actions": value.get("actions") or [],
            "unlisted": int(value.get("unlisted") or 0)}  # fmt: skip


def _facts(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs; labels are ours, values are made plain here."""

    def names(values: list[str], n: int = 10) -> str:
        shown = ", ".join(text.plain(v, 80) for v in values[:n])
        more = len(values) - n
        return (shown + (f" (+{more} more)" if more > 0 else "")) or "-"

    users = f"{'~' if body['distinctUsersEstimated'] else ''}{body['distinctUsers']}"
    return [
        ("Event", body["event"] or "-"),
        ("Rules", ", ".join(body["rules"])),
        ("Severity", body["severity"]),
        ("Failures", str(body["failureCount"])),
        ("Accounts", f"{users}: {names(body['users'])}"),
        ("Signed in after", names(body["compromisedUsers"])),
        ("Source IPs", names(body["clientIps"])),
        ("Targets", names(body["targetVMs"])),
        ("Bastion", names(body["bastionHosts"], 3)),
        ("First seen", body["firstSeen"]),
        ("Last seen", body["lastSeen"]),
        ("Alert id", text.plain(body["alertId"], 300)),
        *(
            [("Response", text.plain(body["response"]["summary"] or "", 600))]
            if body.get("response")
            else []
        ),
    ]


def teams_card(row: dict[str, Any]) -> dict[str, Any]:
    """Adaptive Card in the envelope Teams incoming webhooks (and Workflows) accept.

    Only RichTextBlock/TextRun carry text: Adaptive Cards render no Markdown there (TextBlock and
    FactSet would), so a `[label](url)` in a user name stays characters.
    """
    body = message(row)
    title = headline(row)

    def line(label: str, value: str) -> dict[str, Any]:
        return {
            "type": "RichTextBlock",
            "inlines": [
                {"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"},
                {"type": "TextRun", "text": value},
            ],
        }

    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "RichTextBlock", "inlines": [
                {"type": "TextRun", "text": title, "size": "Medium", "weight": "Bolder",
                 "color": _COLORS.get(str(body["severity"]), "Default")}]},
            *(line(k, v) for k, v in _facts(body)),
        ],
    }  # fmt: skip
    return {
        "type": "message",
        "summary": title,
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def slack_message(row: dict[str, Any]) -> dict[str, Any]:
    """Block Kit message for Slack incoming webhooks: values only in `plain_text` objects;
    `text` (the notification fallback, which Slack reads as mrkdwn) made inert."""
    body = message(row)
    title = headline(row)
    fields = [{"type": "plain_text", "text": f"{k}: {v}"[:1900]} for k, v in _facts(body)]
    return {
        "text": text.slack(title, 400),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text.cut(title, 150)}},
            {"type": "section", "fields": fields[:10]},
            {"type": "section", "text": {"type": "plain_text", "text": "; ".join(
                f"{k}: {v}" for k, v in _facts(body)[10:])[:1900]}},
        ],
    }  # fmt: skip
