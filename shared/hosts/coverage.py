"""Is every Bastion host covered? (issue 27, part 2) Pure: ARM's answers in, verdicts out.

A host without the audit diagnostic setting writes nothing, and its quiet looks like safety;
a Developer-SKU host writes no audit log at all; a host whose log goes to another account is
invisible to this app. The health timer lists the Bastion hosts of the subscriptions named in
`COVERAGE_SUBSCRIPTIONS` (`BastionHosts_List`, paged by `nextLink`):

    GET {arm}/subscriptions/{id}/providers/Microsoft.Network/bastionHosts?api-version=2025-05-01
    200 {"value": [{"id", "name", "location", "sku": {"name": "Basic|Standard|Premium|
                    Developer"}, "properties": {...}}], "nextLink": "..."}

and decides for each one verdict:

- `covered`: its `BastionAuditLogs` reach our storage account (the diagnostic check says `ok`);
- `no_setting`: no diagnostic setting sends them anywhere;
- `elsewhere`: they are sent, but not to us;
- `developer`: a Developer-SKU host, which writes no audit log (the SKU is the verdict: its
  diagnostic settings are not asked);
- `unknown`: ARM could not say (no finding, and the last verdict stands).

A host that is not covered is a finding, told once when it becomes so, and once more when it is
covered again. Reader on those subscriptions is the only right this needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.core import resources, text
from shared.hosts.diagnostics import Check, Verdict, host_name

#: Bastion's management API (the sessions calls of active response use it too).
NETWORK_API = "2025-05-01"
DEVELOPER = "developer"


class Cover(StrEnum):
    COVERED = "covered"
    NO_SETTING = "no_setting"
    ELSEWHERE = "elsewhere"
    DEVELOPER = "developer"
    UNKNOWN = "unknown"

    @property
    def covered(self) -> bool:
        return self is Cover.COVERED


_FROM_CHECK = {
    Verdict.OK: Cover.COVERED,
    Verdict.REMOVED: Cover.NO_SETTING,
    Verdict.REDIRECTED: Cover.ELSEWHERE,
    Verdict.ERROR: Cover.UNKNOWN,
}
#: What each verdict means, in words for people (`{host}` is quoted and escaped).
WORDS = {
    Cover.COVERED: "the audit log of {host} reaches this app",
    Cover.NO_SETTING: "{host} has no diagnostic setting that sends its audit log anywhere",
    Cover.ELSEWHERE: "the audit log of {host} goes to another destination, not to this app",
    Cover.DEVELOPER: "{host} is a Developer-SKU host: it writes no audit log at all",
    Cover.UNKNOWN: "Azure Resource Manager could not say whether {host} is covered",
}


@dataclass(frozen=True)
class Bastion:
    """A Bastion host as `BastionHosts_List` names it."""

    host_id: str
    subscription: str
    sku: str  # as ARM spells it ("Standard"); "" when it did not say

    @property
    def developer(self) -> bool:
        return self.sku.casefold() == DEVELOPER


@dataclass(frozen=True)
class Finding:
    """One host's coverage: its verdict, and the words people read."""

    host_id: str
    subscription: str
    sku: str
    verdict: Cover
    detail: str


def bastions(body: Any, subscription: str) -> tuple[list[Bastion], str | None]:
    """The hosts of one page of `BastionHosts_List`, and its `nextLink` (None on the last
    page). An entry whose id is not a Bastion host's, or is of another subscription, is
    skipped: what ARM answers goes into the next URL, so it is checked like a setting.
    Raises ValueError for a body that is not a list page."""
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        raise ValueError("not a BastionHosts_List page")
    out = []
    for entry in body["value"]:
        if not isinstance(entry, Mapping):
            continue
        host_id = entry.get("id")
        if not isinstance(host_id, str) or not resources.BASTION_ID.match(host_id):
            continue
        if resources.subscription_of(host_id) != subscription.casefold():
            continue
        sku = entry.get("sku")
        name = sku.get("name") if isinstance(sku, Mapping) else None
        out.append(Bastion(host_id, subscription, name if isinstance(name, str) else ""))
    link = body.get("nextLink")
    return out, link if isinstance(link, str) and link else None


def verdict(host: Bastion, check: Check | None) -> Finding:
    """A host's coverage from its SKU and its diagnostic check (None: not asked, a Developer
    host's settings are not asked)."""
    found = Cover.DEVELOPER if host.developer else _FROM_CHECK[check.verdict] if check else None
    cover = found or Cover.UNKNOWN
    detail = WORDS[cover].format(host=text.quoted(host_name(host.host_id), 80))
    if check is not None and cover in (Cover.NO_SETTING, Cover.ELSEWHERE):
        detail += f" ({check.detail})"
    return Finding(
        host.host_id, host.subscription, host.sku, cover, detail[:1].upper() + detail[1:]
    )


def change(old: Mapping[str, Any] | None, new: Finding) -> str | None:
    """What a new verdict tells people about a host, given its stored row: `uncovered` when it
    stops being covered (or is first seen uncovered), `covered` when an uncovered host is
    covered again; None otherwise. `unknown` never changes anything (ARM's hiccup is no news)."""
    if new.verdict is Cover.UNKNOWN:
        return None
    before = Cover(str(old["Verdict"])) if old is not None else None
    if new.verdict.covered:
        return "covered" if before is not None and not before.covered else None
    if before is None or before.covered:
        return "uncovered"
    return None
