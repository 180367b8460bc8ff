"""Is the Bastion host's audit log still archived to our storage account? (issue 16)

Whoever can change a Bastion host's diagnostic setting can blind this app: delete the setting,
untick `BastionAuditLogs`, or point it at another destination. From the logs alone that looks
like a quiet day. A timer asks Azure Resource Manager for the host's diagnostic settings and
decides one of four verdicts:

- `ok`: some setting sends `BastionAuditLogs` (by category, or by the category group `audit` or
  `allLogs`), enabled, to our storage account (resource ids compared without case);
- `removed`: no setting sends `BastionAuditLogs` anywhere;
- `redirected`: it is sent, but not to our storage account (the detail names the kinds of
  destination, never their ids or keys);
- `error`: the API failed or answered something we cannot read. No finding (a permission or
  network hiccup must not page anyone); one log line with the error's type and HTTP status.

The API (`DiagnosticSettings_List`), as documented in the REST reference and the API spec
(Azure/azure-rest-api-specs, specification/monitor/resource-manager/Microsoft.Insights/
preview/2021-05-01-preview/diagnosticsSettings_API.json and examples/listDiagnosticSettings.json;
learn.microsoft.com/rest/api/monitor/diagnostic-settings/list):

    GET https://management.azure.com/{resourceUri}/providers/Microsoft.Insights/
        diagnosticSettings?api-version=2021-05-01-preview
    200 {"value": [{"id": ..., "name": ..., "type": "Microsoft.Insights/diagnosticSettings",
                    "properties": {"storageAccountId", "workspaceId", "eventHubAuthorizationRuleId",
                                   "eventHubName", "serviceBusRuleId", "marketplacePartnerId",
                                   "logs": [{"category" | "categoryGroup", "enabled",
                                             "retentionPolicy"}], "metrics": [...]}}]}
    otherwise ErrorResponse {"code", "message"} (ARM wraps it as {"error": {...}})

`2021-05-01-preview` is the newest version the REST reference lists for diagnostic settings;
there is no GA version of this operation. The list is one page (`x-ms-pageable` with
`nextLinkName: null`). Reading needs `Microsoft.Insights/diagnosticSettings/read`, which the
Monitoring Reader role on the Bastion host gives (infra/app/bastion-diagnostics.bicep).

Why azure-core and not `azure-mgmt-monitor`: the current release of that SDK (7.0.0, 2025-07)
no longer has the `diagnostic_settings` operation group (Azure/azure-sdk-for-python#42425, open);
the last release with it, 6.0.2, is a 20 MB multi-API package. The call is a single GET of one
page, so this module sends it through an azure-core pipeline with the same pieces the SDK would
use (`BearerTokenCredentialPolicy` with the ARM scope, `RetryPolicy`, the requests transport):
no new dependency. A test points it at a local HTTP server: bearer tokens are only ever sent
over https, except to a loopback address (`enforce_https=False` is set for loopback only).

This module decides (pure); `shared/hosts/arm.py` makes the call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.core import text

log = logging.getLogger(__name__)

API_VERSION = "2021-05-01-preview"
ARM_ENDPOINT = "https://management.azure.com"
CATEGORY = "BastionAuditLogs"
#: Category groups that include every category of a resource (`allLogs`) or its audit categories.
#: `allLogs` holds every category by definition; that `audit` holds `BastionAuditLogs` is assumed
#: (the supported-logs reference lists the category, not its groups).
GROUPS = ("audit", "allLogs")
RULE = "diagnostic_setting_changed"
SEVERITY = "high"
#: Destination properties of a setting, and how they are named to people (never their values:
#: an Event Hub authorization rule id names a key, and ids say more than responders need).
DESTINATIONS = (
    ("storageAccountId", "another storage account"),
    ("workspaceId", "a Log Analytics workspace"),
    ("eventHubAuthorizationRuleId", "an Event Hub"),
    ("serviceBusRuleId", "a Service Bus rule"),
    ("marketplacePartnerId", "a partner solution"),
)


class Verdict(StrEnum):
    OK = "ok"
    REMOVED = "removed"
    REDIRECTED = "redirected"
    ERROR = "error"


@dataclass(frozen=True)
class Check:
    """What one check of one Bastion host found.

    `detail` is safe for people (setting names quoted and Markdown-escaped: whoever can change a
    diagnostic setting chooses its name). `settings` are the raw names of the settings that send
    `BastionAuditLogs` somewhere (for `removed`: all the host's settings). `status` is the HTTP
    status of a failed call, `error` the exception's type name.
    """

    verdict: Verdict
    detail: str
    settings: tuple[str, ...] = ()
    bastion_id: str = ""
    status: int | None = None
    error: str = ""
    destinations: tuple[str, ...] = field(default=())  # kinds, as in DESTINATIONS

    @property
    def host(self) -> str:
        return host_name(self.bastion_id)

    @property
    def is_finding(self) -> bool:
        """Removed or redirected: people must hear about it (an API error is not a finding)."""
        return self.verdict in (Verdict.REMOVED, Verdict.REDIRECTED)

    def finding(self) -> dict[str, Any] | None:
        """The alert for a removed or redirected setting (None otherwise), in the field names
        of the alert message (`shared.notify.messages.message`) where they apply."""
        if not self.is_finding:
            return None
        head = (
            "Bastion audit logs are no longer archived"
            if self.verdict is Verdict.REMOVED
            else "Bastion audit logs are sent elsewhere"
        )
        return {
            "rule": RULE,
            "rules": [RULE],
            "severity": SEVERITY,
            "subjectKind": "host",
            "subject": self.bastion_id,
            "verdict": self.verdict.value,
            "settings": list(self.settings),
            "destinations": list(self.destinations),
            "summary": f"[{SEVERITY.upper()}] {head}: {self.detail}",
        }


# -- the decision (pure) ------------------------------------------------------------------------
def host_name(resource_id: str) -> str:
    return resource_id.rstrip("/").rpartition("/")[2]


def _same_id(a: str, b: str) -> bool:
    return bool(a) and a.strip().rstrip("/").casefold() == b.strip().rstrip("/").casefold()


def _covers(entry: Any, groups: Iterable[str]) -> bool:
    """A `logs` entry that sends BastionAuditLogs: enabled, by category or category group."""
    if not isinstance(entry, Mapping) or entry.get("enabled") is not True:
        return False
    category = entry.get("category")
    group = entry.get("categoryGroup")
    if isinstance(category, str) and category.strip().casefold() == CATEGORY.casefold():
        return True
    wanted = {g.casefold() for g in groups}
    return isinstance(group, str) and group.strip().casefold() in wanted


def _names(names: Iterable[str]) -> str:
    shown = [text.quoted(n, 80) for n in list(names)[:5]]
    return ", ".join(shown) if shown else "(unnamed)"


def decide(
    body: Any,
    storage_account_id: str,
    bastion_id: str = "",
    groups: Iterable[str] = GROUPS,
) -> Check:
    """The verdict for one host from the JSON body of `DiagnosticSettings_List`. Pure.

    A body that is not `{"value": [...]}` is an `error` (no finding); entries of an unexpected
    shape inside the list are skipped.
    """
    host = text.quoted(host_name(bastion_id) or "?", 80)
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        return Check(
            Verdict.ERROR,
            f"Unexpected answer from Azure Resource Manager for {host}.",
            bastion_id=bastion_id,
            error="UnexpectedResponse",
        )
    everything, sending, ours, kinds = _survey(body["value"], storage_account_id, tuple(groups))
    if ours:
        also = f"; also sent to {', '.join(kinds)}" if kinds else ""
        return Check(
            Verdict.OK,
            f"{CATEGORY} of {host} go to the logs storage account (setting {_names(ours)}){also}.",
            tuple(sending),
            bastion_id,
            destinations=tuple(kinds),
        )
    if sending:
        where = ", ".join(kinds) or "no destination"
        return Check(
            Verdict.REDIRECTED,
            f"{CATEGORY} of {host} go to {where} (setting {_names(sending)}), "
            "not to the logs storage account: this app no longer sees sign-ins there.",
            tuple(sending),
            bastion_id,
            destinations=tuple(kinds),
        )
    present = (
        f"its settings {_names(everything)} do not include it"
        if everything
        else "it has no diagnostic setting"
    )
    return Check(
        Verdict.REMOVED,
        f"No diagnostic setting of {host} sends {CATEGORY} anywhere ({present}): "
        "its sign-ins are no longer recorded.",
        tuple(everything),
        bastion_id,
    )


def _survey(
    settings: list[Any], storage_account_id: str, groups: tuple[str, ...]
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Names of all settings, of those sending the category, of those sending it to us, and
    the kinds of the other destinations it goes to."""
    everything: list[str] = []
    sending: list[str] = []
    ours: list[str] = []
    kinds: list[str] = []
    for setting in settings:
        if not isinstance(setting, Mapping):
            continue
        name = setting.get("name")
        name = name if isinstance(name, str) else ""
        everything.append(name)
        props = setting.get("properties")
        if not isinstance(props, Mapping):
            continue
        logs = props.get("logs")
        if not isinstance(logs, list) or not any(_covers(e, groups) for e in logs):
            continue
        sending.append(name)
        storage = props.get("storageAccountId")
        if isinstance(storage, str) and _same_id(storage, storage_account_id):
            ours.append(name)
        for prop, kind in DESTINATIONS:
            value = props.get(prop)
            if not (isinstance(value, str) and value.strip()):
                continue
            if prop == "storageAccountId" and _same_id(value, storage_account_id):
                continue
            if kind not in kinds:
                kinds.append(kind)
    return everything, sending, ours, kinds
