"""Every rule and finding declared once, as data: its name, kind, severity, the words people
read, and the limits (threshold and window) it takes. The numbers have one declaration too
(`LIMITS`: app setting, default, bounds), from which the settings' defaults, their checks and
`Thresholds` are made; `RULE_OVERRIDES` sets one rule's limits apart (fail2ban's jails over
its `[DEFAULT]`). What a rule *does* is in `shared.detect.rules`, bound to its declaration here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.core.domain import Kind, Severity


@dataclass(frozen=True)
class Limit:
    """One tunable number of detection: the `Thresholds` field it fills, its app setting, its
    default and the bounds start-up holds it to (a window is in minutes)."""

    field: str
    setting: str
    default: int
    low: int
    high: int
    minutes: bool = False


LIMITS: tuple[Limit, ...] = (
    Limit("failures", "FAILURE_THRESHOLD", 5, 2, 10_000),
    Limit("window", "FAILURE_WINDOW_MINUTES", 15, 1, 24 * 60, minutes=True),
    Limit("spray_users", "SPRAY_USER_THRESHOLD", 5, 2, 1000),
    Limit("spray_window", "SPRAY_WINDOW_MINUTES", 20, 1, 24 * 60, minutes=True),
    Limit("quiet", "INCIDENT_QUIET_MINUTES", 60, 1, 24 * 60, minutes=True),
    Limit("max_hours", "INCIDENT_MAX_HOURS", 24, 1, 24),  # must also divide 24
    Limit("slow_failures", "SLOW_FAILURE_THRESHOLD", 10, 2, 10_000),
    Limit("slow_window", "SLOW_WINDOW_MINUTES", 180, 15, 24 * 60, minutes=True),
    Limit("slow_ips", "SLOW_IP_THRESHOLD", 8, 2, 1000),
    Limit("retry_failures", "PERSON_RETRY_FAILURES", 10, 1, 1000),
)
LIMIT_BY_FIELD: dict[str, Limit] = {lim.field: lim for lim in LIMITS}
#: Bounds of a rule's own threshold and window in `RULE_OVERRIDES`.
OVERRIDE_BOUNDS = {"threshold": (2, 10_000), "window_minutes": (1, 24 * 60)}


def _default(name: str) -> int:
    return LIMIT_BY_FIELD[name].default


@dataclass(frozen=True)
class Rule:
    """A rule (it raises incidents) or a finding (a baseline's or a host's), as people see it.

    `threshold` and `window` name the `Thresholds` fields it counts with; a rule that names
    them may have its own in `RULE_OVERRIDES`."""

    name: str
    kind: Kind
    severity: Severity
    description: str  # `{subject}` is the account, the address or the host
    threshold: str = ""
    window: str = ""
    finding: bool = False  # raised by the baselines or the host checks, not by a rule's windows

    @property
    def limits(self) -> tuple[str, str] | None:
        return (self.threshold, self.window) if self.threshold else None


_U, _I, _H = Kind.USER, Kind.IP, Kind.HOST
_LOW, _MED, _HIGH, _CRIT = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL

#: In the order rules are evaluated (ties in severity list the earlier rule first).
RULES: tuple[Rule, ...] = (
    Rule("user_brute_force", _U, _MED, "Repeated failed Bastion sign-ins for user {subject}",
         "failures", "window"),
    Rule("ip_brute_force", _I, _MED, "Repeated failed Bastion sign-ins from {subject}",
         "failures", "window"),
    Rule("high_volume_user", _U, _HIGH, "A flood of failed Bastion sign-ins for user {subject}"),
    Rule("high_volume_ip", _I, _HIGH, "A flood of failed Bastion sign-ins from {subject}"),
    Rule("slow_brute_force_user", _U, _MED, "Slow password guessing against user {subject}",
         "slow_failures", "slow_window"),
    Rule("distributed_slow_user", _U, _HIGH,
         "Distributed password guessing against user {subject}", "slow_ips", "slow_window"),
    Rule("password_spray", _I, _HIGH, "Password spray from {subject}",
         "spray_users", "spray_window"),
    Rule("success_after_failures_user", _U, _CRIT,
         "Possible compromise: {subject} signed in after failures"),
    Rule("success_after_failures_ip", _I, _CRIT,
         "Possible compromise: sign-in from {subject} after failures"),
    Rule("sign_in_after_retries", _U, _LOW,
         "User {subject} signed in after failed attempts from its usual network and client"),
    Rule("new_source_success", _U, _LOW, "Sign-in of user {subject} from a network it never used",
         finding=True),
    Rule("off_hours", _U, _LOW, "Sign-in of user {subject} at an hour it never works",
         finding=True),
    Rule("first_time_target", _U, _LOW, "First sign-in of user {subject} to a machine",
         finding=True),
    Rule("failures_before", _U, _LOW, "Sign-in of user {subject} after failed attempts",
         finding=True),
    Rule("host_silent", _H, _MED, "Bastion host {subject} stopped writing audit records",
         finding=True),
    Rule("diagnostic_setting_changed", _H, _HIGH,
         "The audit log of Bastion host {subject} no longer reaches this app", finding=True),
    Rule("host_not_covered", _H, _HIGH,
         "Bastion host {subject} is not covered: its audit log does not reach this app",
         finding=True),
    Rule("host_covered_again", _H, _MED,
         "Bastion host {subject} is covered again: its audit log reaches this app", finding=True),
)  # fmt: skip
#: Every rule and finding by name: severity and the words people read.
DESCRIBED: dict[str, Rule] = {r.name: r for r in RULES}
#: The rules whose threshold and window `RULE_OVERRIDES` may set, and the limits they take.
TUNABLE: dict[str, tuple[str, str]] = {r.name: r.limits for r in RULES if r.limits}
#: Rules whose guesses may lie `slow_window` apart within one incident.
SLOW = frozenset({"slow_brute_force_user", "distributed_slow_user"})
#: (rule, threshold, window minutes) set apart from the defaults; None keeps the default.
Overrides = tuple[tuple[str, int | None, int | None], ...]


@dataclass(frozen=True)
class Thresholds:
    """The limits detection counts with (defaults: `LIMITS`; the app's: `Settings.thresholds`)."""

    failures: int = _default("failures")
    window: timedelta = timedelta(minutes=_default("window"))
    spray_users: int = _default("spray_users")
    spray_window: timedelta = timedelta(minutes=_default("spray_window"))
    quiet: timedelta = timedelta(minutes=_default("quiet"))
    max_hours: int = _default("max_hours")  # incident period; divides 24
    #: Low and slow: `slow_failures` failures within `slow_window`, from any address, or
    #: failures from `slow_ips` distinct addresses within it.
    slow_failures: int = _default("slow_failures")
    slow_window: timedelta = timedelta(minutes=_default("slow_window"))
    slow_ips: int = _default("slow_ips")
    retry_failures: int = _default("retry_failures")  # most a person retrying a password explains
    #: Rules whose threshold or window differ from their defaults (`RULE_OVERRIDES`; the rules
    #: that allow it are in `TUNABLE`).
    overrides: Overrides = ()

    @classmethod
    def of(cls, values: Mapping[str, int], overrides: Overrides = ()) -> Thresholds:
        """From numbers by field name (a window in minutes), as the settings hold them."""
        made: dict[str, Any] = {
            f: timedelta(minutes=v) if LIMIT_BY_FIELD[f].minutes else v for f, v in values.items()
        }
        return cls(**made, overrides=overrides)

    def limits(self, rule: str, fields: tuple[str, str]) -> tuple[int, timedelta]:
        """A rule's (threshold, window): the defaults it names (`fields`), or its overrides."""
        count, window = getattr(self, fields[0]), getattr(self, fields[1])
        for name, n, minutes in self.overrides:
            if name == rule:
                count = n if n is not None else count
                window = timedelta(minutes=minutes) if minutes is not None else window
        return int(count), window

    def _windows(self, rules: frozenset[str] | None = None) -> list[timedelta]:
        return [timedelta(minutes=m) for name, _, m in self.overrides
                if m is not None and (rules is None or name in rules)]  # fmt: skip

    @property
    def linger(self) -> timedelta:
        """Longest quiet time inside one incident (slow guessing bridges `slow_window`)."""
        return max(self.quiet, self.slow_window, *self._windows(SLOW))

    @property
    def reach(self) -> timedelta:
        """How far a bucket's hotness depends on its neighbours."""
        return max(self.window, self.spray_window, self.slow_window, *self._windows())

    @property
    def resolve_max(self) -> int:
        """A user's own failures that their sign-in from the same IP can explain (typos)."""
        return max(min(2, self.failures - 1), 0)
