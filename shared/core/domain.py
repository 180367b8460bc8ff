"""The words every stage shares: who acts (`Kind`), how bad (`Severity`), what a stored
record says to detection (`Event`), a minute of an actor's records (`Bucket`), an incident and
its steps, a record's outcome, a piece of input. Types only: no rule, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

MINUTE = timedelta(minutes=1)


class Kind(StrEnum):
    USER = "user"
    IP = "ip"
    HOST = "host"  # a Bastion host (its silence, its diagnostic setting)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


@dataclass(frozen=True, slots=True)
class Event:
    """What detection needs of a stored record."""

    time: datetime
    key: str  # the record's RowKey: duplicates collapse on it
    user: str  # UserKey
    ip: str  # ClientIpKey
    success: bool  # otherwise a failure (other outcomes are not passed in)
    target: str = ""
    host: str = ""
    agent: str | None = None  # the record's userAgent; None: not recorded (older index rows)


@dataclass(slots=True)
class Bucket:
    """One actor's events in one UTC minute (failures counted as the actor's rules count them)."""

    minute: datetime
    failures: int = 0
    before_success: int = 0  # failures of this minute before its first success
    successes: int = 0
    first_failure: datetime | None = None
    last_failure: datetime | None = None
    first_success: datetime | None = None
    last_success: datetime | None = None
    users: list[str] = field(default_factory=list)  # failing users, first failure first
    user_hashes: list[int] = field(default_factory=list)  # KMV sketch of failing users, sorted
    success_users: list[str] = field(default_factory=list)
    ips: list[tuple[str, int]] = field(default_factory=list)  # failing IPs, most first
    targets: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    #: Failures that this minute's sign-ins explain as a person retrying (see `recovered`),
    #: when a sign-in explained at least the failure threshold: a low finding, not a page.
    retried: int = 0

    @property
    def empty(self) -> bool:
        return not (self.failures or self.successes)


@dataclass(frozen=True, slots=True)
class Mark:
    """An account's possible compromise folded into the incident of the IP that attacked it."""

    ip: str
    minute: datetime
    user: str
    time: datetime
    targets: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incident:
    kind: Kind
    subject: str
    first_seen: datetime
    last_seen: datetime
    rules: tuple[str, ...]  # most severe first
    severity: Severity
    failures: int
    successes: int
    users: tuple[str, ...]
    distinct_users: int
    users_estimated: bool
    ips: tuple[str, ...]
    targets: tuple[str, ...]
    hosts: tuple[str, ...]
    compromised: tuple[str, ...] = ()
    #: The incident as it stood after each of its minutes (see `timeline`); empty: only as now.
    steps: tuple[Step, ...] = field(default=(), compare=False, repr=False)

    @property
    def rule(self) -> str:
        return self.rules[0]


@dataclass(frozen=True, slots=True)
class Step:
    """What detection said of an incident once the records of one minute and before were in:
    what people would have been told had the records arrived as they happened."""

    at: datetime  # the end of the minute (event time)
    severity: Severity
    rules: tuple[str, ...]
    failures: int


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


class Outcome(StrEnum):
    """What a record's `message` says happened (`shared.ingest.normalize.outcome`)."""

    SUCCESS = "Success"
    FAILURE = "Failure"
    OTHER = "Other"


class Piece(NamedTuple):
    """One record's worth of input: its parsed value, or the reason it could not be parsed.

    A NamedTuple because one is made per record: it costs a third of a frozen dataclass.
    """

    offset: int  # absolute byte offset in the blob where the record's text starts
    item: int  # position inside a line that held several records (a one-line wrapper)
    value: object
    raw: bytes  # the text, kept for quarantine (only on error; b"" otherwise)
    error: str | None = None
