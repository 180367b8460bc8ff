"""Azure resource ids the settings name (Bastion hosts, the logs' storage account), checked
before any of them goes into an ARM URL."""

from __future__ import annotations

import re

#: A Bastion host's resource id: the only kind of id this check accepts (it goes into a URL).
BASTION_ID = re.compile(
    r"(?i)^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/?#%\s]{1,90}"
    r"/providers/Microsoft\.Network/bastionHosts/[^/?#%\s]{1,80}$"
)
STORAGE_ID = re.compile(
    r"(?i)^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/?#%\s]{1,90}"
    r"/providers/Microsoft\.Storage/storageAccounts/[a-z0-9]{3,24}$"
)


def bastion_ids(raw: str) -> tuple[str, ...]:
    """Comma-separated Bastion host resource ids (the `BASTION_RESOURCE_IDS` setting), checked;
    empty means the check is off. Raises ValueError naming the bad entry."""
    out: list[str] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        if not BASTION_ID.match(item):
            raise ValueError(
                f"not a Bastion host resource id: {item!r} (expected /subscriptions/<id>/"
                "resourceGroups/<rg>/providers/Microsoft.Network/bastionHosts/<name>)"
            )
        if not any(item.casefold() == o.casefold() for o in out):
            out.append(item)
    return tuple(out)


def storage_account_id(raw: str) -> str:
    """The logs storage account's resource id (the `LOGS_STORAGE_ACCOUNT_ID` setting), checked."""
    value = raw.strip().rstrip("/")
    if not STORAGE_ID.match(value):
        raise ValueError(
            f"not a storage account resource id: {value!r} (expected /subscriptions/<id>/"
            "resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<name>)"
        )
    return value


#: A subscription id, as ARM writes it.
SUBSCRIPTION = re.compile(r"(?i)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SUBSCRIPTION_OF = re.compile(r"(?i)^/subscriptions/([0-9a-f-]{36})/")


def subscription_ids(raw: str) -> tuple[str, ...]:
    """Comma-separated subscription ids (the `COVERAGE_SUBSCRIPTIONS` setting), checked and
    lower-cased; empty means the coverage check is off. Raises ValueError naming the bad one."""
    out: list[str] = []
    for item in (p.strip() for p in raw.split(",")):
        if not item:
            continue
        if not SUBSCRIPTION.match(item):
            raise ValueError(f"not a subscription id: {item!r} (expected a GUID)")
        if item.casefold() not in out:
            out.append(item.casefold())
    return tuple(out)


def subscription_of(resource_id: str) -> str:
    """The lower-case subscription id a resource id starts with ("" when it has none)."""
    found = _SUBSCRIPTION_OF.match(resource_id)
    return found.group(1).casefold() if found else ""
