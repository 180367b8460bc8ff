"""A record's `userAgent` -> the client it names: browser family and OS, normalized. Pure code.

A client is what an account's baseline remembers beside its networks (`shared.baselines.habits`): a
sign-in after failures from the account's usual network, client and machine reads as a person
who forgot a password; from a client the account never used, as somebody else guessing.
Family and OS (not versions) so that a browser update is not a new client.

Parsing uses `ua-parser` (the Browserscope rules, kept current in `ua-parser-builtins`). It runs
only for sign-ins and the few failures just before one (never per record at ingest), on text
cut to `MAX_AGENT` characters, with a cache: a flood of invented agents costs a bounded amount.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ua_parser import parse

#: Longer agents are cut before parsing (a crafted agent cannot make the rules slow).
MAX_AGENT = 512
#: The client of a record without an agent: a client like any other.
NONE = "(none)"
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,40}")


def client_of(agent: str) -> str:
    """`family on os`, case-folded ("edge on windows"); an agent the rules do not know is its
    first product token ("curl", "mstsc"); no agent at all is `NONE`."""
    return _client(agent.strip()[:MAX_AGENT])  # the cache holds cut text only


@lru_cache(maxsize=4096)
def _client(text: str) -> str:
    if not text:
        return NONE
    found = parse(text)
    family = found.user_agent.family if found.user_agent is not None else ""
    os = found.os.family if found.os is not None else ""
    if not family or family == "Other":
        token = _TOKEN.search(text)
        family = token.group(0) if token else "other"
    return f"{family} on {os or 'other'}".casefold()
