"""Log text made safe for people: nothing a record says becomes a link, markup or a trick.

User names, e-mails, user agents and VM names are chosen by whoever signs in. In a Teams card, a
Slack message, an alert summary or the report they must stay readable values, never Markdown,
mentions, links, template functions, bidi overrides or invisible characters. Pure code.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

#: Unicode categories that are invisible or steer layout: controls, format characters (zero-width
#: joiners, bidi overrides, the BOM), line/paragraph separators, surrogates and private use.
_HIDDEN = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
_SCHEME = re.compile(r"(?i)\b(h)tt(ps?)://|\b([a-z][a-z0-9+.-]{1,30})://")
_WWW = re.compile(r"(?i)\bwww\.")
#: CommonMark's escapable punctuation, minus the few that names and addresses are full of and
#: that cannot start markup on their own (`. - : / , @ _ '`).
_MARKDOWN = frozenset('\\`*{}[]()<>#+!|~"=&;$%^?')
#: Slack mrkdwn has no escape character: formatting characters get look-alikes instead.
_SLACK_LOOKALIKE = str.maketrans({"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ", ">": "›", "<": "‹"})
ELLIPSIS = "…"


def visible(text: str) -> str:
    """Invisible and layout-steering characters shown as `\\uXXXX` (or `\\xNN`), so a bidi
    override or a zero-width space is evidence a person can see, not a trick."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch != " " and unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def cut(text: str, limit: int) -> str:
    """At most `limit` characters; a cut value ends with an ellipsis so nobody mistakes it."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def defang(text: str) -> str:
    """URLs that no client will turn into links (`hxxps[:]//`, `www[.]`), as threat reports do."""
    text = _SCHEME.sub(
        lambda m: f"hxx{m.group(2)}[:]//" if m.group(1) else f"{m.group(3)}[:]//", text
    )
    return _WWW.sub(lambda m: m.group(0)[:3] + "[.]", text).replace("{{", "{ {")


def plain(text: str, limit: int = 200) -> str:
    """For places that render no markup (Adaptive Card TextRun, Slack plain_text, HTML after
    escaping, a terminal): visible, defanged and cut."""
    return defang(visible(cut(text, limit)))


def markdown(text: str, limit: int = 200) -> str:
    """For text a reader may render as Markdown (alert summaries, queue consumers' cards):
    `plain`, then every character that could open markup is backslash-escaped."""
    return "".join("\\" + c if c in _MARKDOWN else c for c in plain(text, limit))


def slack(text: str, limit: int = 200) -> str:
    """For Slack mrkdwn (the notification fallback): `plain`, `&<>` as entities (Slack's only
    escapes) and formatting characters replaced by look-alikes (Slack has no backslash escape)."""
    safe = plain(text, limit).replace("&", "&amp;")
    return safe.translate(_SLACK_LOOKALIKE)


def quoted(text: str, limit: int = 80) -> str:
    """A log value inside one of our sentences: Markdown-safe and in quotes, so a name such as
    `0 failures (scheduled test)` reads as a name, not as our words."""
    return f'"{markdown(text, limit)}"'


def utc(value: object) -> str:
    """A time as ISO 8601 UTC with a `Z` (as answers and messages show times; a naive one is
    taken as UTC); anything else as text, None as ''."""
    if isinstance(value, datetime):
        when = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return when.isoformat().replace("+00:00", "Z")
    return "" if value is None else str(value)
