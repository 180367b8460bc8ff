"""The rows the app stores, as types: what each table's entities hold (no run-time cost).

Names follow the Log Analytics `MicrosoftAzureBastionAuditLogs` columns where one exists. Keys
and partition layout are described in `shared.store.layout`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict


class Keyed(TypedDict):
    PartitionKey: str
    RowKey: str


class EventRow(Keyed, total=False):
    """One audit record (events table; partition `<user>|<yyyy-MM-ddTHH>`)."""

    TimeGenerated: datetime
    UserName: str
    UserEmail: str
    UserAgent: str
    UserKey: str  # the identity rule's folded account (`keys.user_key`)
    ClientIpAddress: str
    ClientIpKey: str
    ClientPort: int
    Protocol: str
    TargetResourceId: str
    TargetVMIPAddress: str
    TargetVMName: str
    TargetSubscriptionId: str
    Message: str
    Outcome: str  # `model.Outcome`
    ResourceType: str
    TunnelId: str
    SessionStartTime: datetime
    SessionEndTime: str
    Duration: int
    OperationName: str
    Location: str
    Level: str
    BastionResourceId: str
    SubscriptionId: str
    ResourceGroup: str
    BastionHostName: str
    SourceBlob: str  # where the record was read: blob, byte offset, item on that line
    SourceOffset: int
    SourceIndex: int
    Extra: str  # properties the documented schema does not name, as sorted JSON


class IndexRow(Keyed, total=False):
    """An event's copy under `ip|<day>` or `vm|<day>` (index table), pointing back to it."""

    EventPartitionKey: str
    EventRowKey: str
    TimeGenerated: datetime
    UserName: str
    UserKey: str
    ClientIpAddress: str
    ClientIpKey: str
    ClientPort: int
    TargetVMName: str
    TargetResourceId: str
    TargetVMIPAddress: str
    Protocol: str
    Message: str
    Outcome: str
    BastionHostName: str
    UserAgent: str
