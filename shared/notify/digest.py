"""The daily digest: a day's low-severity findings grouped per account, so their context
reaches people without paging anyone. Pure code; `shared.notify.delivery` sends it.

Low findings (a new network with one oddity, say) never notify on their own; the digest is
where they are read. Its text is made the same way as alerts' (`messages.headline`): log
values are quoted and inert wherever the digest is rendered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from shared.core import text
from shared.core.domain import Severity
from shared.notify import messages

SCHEMA = "bastion-audit/digest@1"
#: Most findings listed per account (its count stays exact).
PER_ACCOUNT = 20
#: Bytes of listed findings a digest holds: a queue message is 64 KiB after base64 (4/3), and
#: a flood of low findings must not make the digest unsendable. What is left out is counted.
BUDGET = 40_000
#: Lines a Teams card lists (a card holds about 28 KB).
CARD_LINES = 50


def build(day: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The digest of one UTC day from its alerts partition; None when nothing is low."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "FirstSeen" not in row or row.get("Severity") != Severity.LOW.value:
            continue
        item = {
            "alertId": str(row["AlertId"]),
            "rules": [r for r in str(row.get("Rules") or row["Rule"]).split(",") if r],
            "firstSeen": text.utc(row["FirstSeen"]),
            "line": messages.headline(dict(row)),
        }
        groups.setdefault((str(row["SubjectKind"]), str(row["Subject"])), []).append(item)
    if not groups:
        return None
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    accounts: list[dict[str, Any]] = []
    spent = 0
    for (kind, subject), items in ordered:
        spent += len(orjson.dumps(subject)) + 64
        listed = []
        for item in sorted(items, key=lambda i: (i["firstSeen"], i["alertId"]))[:PER_ACCOUNT]:
            spent += len(orjson.dumps(item))
            if spent > BUDGET:
                break
            listed.append(item)
        if not listed:
            break
        accounts.append({"subjectKind": kind, "subject": subject, "count": len(items),
                         "findings": listed})  # fmt: skip
    total = sum(len(items) for _, items in ordered)
    return {
        "schema": SCHEMA,
        "day": day,
        "summary": f"[DIGEST] {day}: {total} low-severity finding(s) for {len(ordered)} "
        "account(s); no action unless one looks wrong",
        "findings": total,
        "accountCount": len(ordered),
        "accounts": accounts,
    }


def lines(body: Mapping[str, Any]) -> list[str]:
    """One plain line per finding listed (for cards and chat messages)."""
    return [item["line"] for account in body["accounts"] for item in account["findings"]]


def teams_card(body: Mapping[str, Any]) -> dict[str, Any]:
    """The digest as an Adaptive Card: text only in TextRuns (no Markdown)."""
    shown = lines(body)
    more = body["findings"] - min(len(shown), CARD_LINES)
    runs = [body["summary"], *shown[:CARD_LINES]]
    if more > 0:
        runs.append(f"(+{more} more: see the queue message or GET /api/alerts)")
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": t}]} for t in runs
        ],
    }
    return {
        "type": "message",
        "summary": body["summary"],
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def slack_message(body: Mapping[str, Any]) -> dict[str, Any]:
    """The digest as Slack blocks: values only in `plain_text`."""
    shown = "\n".join(lines(body))[:2900] or "-"
    return {
        "text": text.slack(body["summary"], 400),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": text.cut(body["day"], 150)}},
            {"type": "section", "text": {"type": "plain_text", "text": body["summary"]}},
            {"type": "section", "text": {"type": "plain_text", "text": shown}},
        ],
    }


#: How each webhook channel renders the digest (the generic webhook gets the JSON body).
RENDER: dict[str, Callable[[dict[str, Any]], Any]] = {
    "webhook": dict,
    "teams": teams_card,
    "slack": slack_message,
}
