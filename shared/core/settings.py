"""App settings, read once from the environment into one immutable object.

Every setting and its default is listed here and nowhere else; the README table and
`local.settings.sample.json` mirror `DEFAULTS` (a test keeps them in step).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.core import resources
from shared.core.catalog import LIMITS, OVERRIDE_BOUNDS, TUNABLE, Overrides, Thresholds

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Name of the app setting (or `<name>__accountName` / `<name>__*ServiceUri` group) that
#: points at the storage account holding the Bastion logs, our tables, queue and quarantine.
CONNECTION = "BastionLogsStorage"

#: Container Azure Monitor writes Bastion audit logs into (fixed by Azure).
LOGS_CONTAINER = "insights-logs-bastionauditlogs"

DEFAULTS: dict[str, str] = {
    "BLOB_TRIGGER_SOURCE": "LogsAndContainerScan",
    "EVENTS_TABLE": "BastionAuditEvents",
    "INDEX_TABLE": "BastionAuditIndex",
    "STATE_TABLE": "BastionAuditState",
    "ALERTS_TABLE": "BastionAuditAlerts",
    "QUARANTINE_CONTAINER": "bastion-audit-quarantine",
    "ALERT_QUEUE": "bastion-alerts",
    "ALERT_WEBHOOK_URL": "",
    "ALERT_TEAMS_WEBHOOK_URL": "",
    "ALERT_SLACK_WEBHOOK_URL": "",
    "WEBHOOK_TIMEOUT_SECONDS": "10",
    "WEBHOOK_MAX_ATTEMPTS": "4",
    "NOTIFY_INTERVAL_MINUTES": "60",
    "IP_ALLOWLIST": "",
    "TRUSTED_NETWORKS": "",
    "SWEEP_SCHEDULE": "0 * * * * *",
    "SWEEP_LOOKBACK_HOURS": "3",
    "ALERT_RETRY_SCHEDULE": "0 */5 * * * *",
    "ALERT_RETRY_HOURS": "72",
    "MAX_RECORD_BYTES": "32768",
    "READ_CHUNK_BYTES": "4194304",
    "WRITE_CONCURRENCY": "4",
    "RULE_OVERRIDES": "",
    # detection's limits: one declaration each, with their bounds (`catalog.LIMITS`)
    **{lim.setting: str(lim.default) for lim in LIMITS},
    "BASELINE_DAYS": "7",
    "SILENCE_HOURS": "3",
    "HEALTH_SCHEDULE": "0 */15 * * * *",
    "BASTION_RESOURCE_IDS": "",
    "LOGS_STORAGE_ACCOUNT_ID": "",
    "COVERAGE_SUBSCRIPTIONS": "",
    "ACTIVE_RESPONSE": "off",
    "ACTIVE_RESPONSE_SEVERITIES": "critical",
    "BREAK_GLASS_ACCOUNTS": "",
    "SESSION_OPEN_LIMIT_HOURS": "12",
    "WORKING_HOURS": "07-19",
    "ARM_ENDPOINT": "https://management.azure.com",
    "DIGEST_SCHEDULE": "0 0 6 * * *",
    "DIGEST_WEBHOOKS": "false",
    "API_AUTH": "entra",
    "API_READER_ROLE": "BastionAudit.Read",
    "API_ERASER_ROLE": "BastionAudit.Erase",
    "RETENTION_DAYS": "180",
    "ALERT_RETENTION_DAYS": "400",
    "QUARANTINE_RETENTION_DAYS": "30",
    "RETENTION_SCHEDULE": "0 30 2 * * *",
}


#: The timers' NCRONTAB schedules (the host reads them as `%SETTING%`; all are checked here).
SCHEDULES = (
    "SWEEP_SCHEDULE",
    "ALERT_RETRY_SCHEDULE",
    "HEALTH_SCHEDULE",
    "DIGEST_SCHEDULE",
    "RETENTION_SCHEDULE",
)
#: Azure's rules: tables 3-63 letters and digits, starting with a letter; queues and containers
#: 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_LOWER_NAME = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")
_NUMBER = re.compile(r"[0-9]{1,12}")
#: NCRONTAB fields as the Functions host reads them: (name, lowest, highest, names).
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")  # fmt: skip
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("weekday", 0, 6, _DAYS),
)
_CRON_ITEM = re.compile(
    r"(\*|([0-9]{1,4}|[A-Za-z]{3,9})(?:-([0-9]{1,4}|[A-Za-z]{3,9}))?)(?:/([0-9]{1,4}))?"
)


class SettingsError(ValueError):
    """A setting has a value we cannot use; raised at start-up, not mid-invocation."""


def shown(value: str, limit: int = 60) -> str:
    """A setting's value in a one-line message: quoted, escaped, cut."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def cron_problem(expression: str) -> str | None:
    """What is wrong with an NCRONTAB schedule (six fields, `second minute hour day month
    weekday`, as the Functions timer takes it), or None when it is fine."""
    fields = expression.split()
    if len(fields) != len(_CRON_FIELDS):
        return f"six fields (second minute hour day month weekday), got {len(fields)}"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if match is None:
                return f"the {name} field {shown(text, 20)} is not NCRONTAB"
            found = [_cron_value(v, names) for v in match.group(2, 3) if v is not None]
            values = [v for v in found if v is not None and low <= v <= high]
            step = int(match.group(4) or 1)
            if len(values) < len(found) or values != sorted(values):
                return f"the {name} field {shown(text, 20)} needs values {low}-{high}, low to high"
            if not 1 <= step <= high - low + 1:
                return f"the {name} field {shown(text, 20)} has a step outside 1-{high - low + 1}"
    return None


def _cron_value(text: str, names: tuple[str, ...]) -> int | None:
    """A number, or a month or weekday name in full or in three letters (`Jan`, `monday`)."""
    if text.isdigit():  # the pattern let ASCII digits only through
        return int(text)
    lowered = text.lower()
    for i, name in enumerate(names):
        if lowered in (name, name[:3]):
            return i + (1 if names is _MONTHS else 0)
    return None


def url_problem(value: str) -> str | None:
    """Why a value is not an `http://` or `https://` URL with a host, or None."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "spaces or control characters"
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # a bad port or bracket raises here
    except ValueError:
        return "not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "not http:// or https://"
    return None if host else "no host"


@dataclass(frozen=True)
class Settings:
    """Typed view of the app settings. Build with `Settings.from_env(os.environ)`."""

    connection: str = field(default="", repr=False)  # may hold an account key
    blob_trigger_source: str = "LogsAndContainerScan"
    events_table: str = "BastionAuditEvents"
    index_table: str = "BastionAuditIndex"
    state_table: str = "BastionAuditState"
    alerts_table: str = "BastionAuditAlerts"
    quarantine_container: str = "bastion-audit-quarantine"
    alert_queue: str = "bastion-alerts"
    webhook_url: str = field(default="", repr=False)
    teams_webhook_url: str = field(default="", repr=False)
    slack_webhook_url: str = field(default="", repr=False)
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 4
    notify_interval_minutes: int = 60
    #: How long a notification that failed is retried, from when it became pending.
    alert_retry_hours: int = 72
    ip_allowlist: tuple[IPNetwork, ...] = ()
    #: The organisation's own egress: a sign-in from it is on no new network (retried sign-ins).
    trusted_networks: tuple[IPNetwork, ...] = ()
    sweep_lookback_hours: int = 3
    max_record_bytes: int = 32768
    read_chunk_bytes: int = 4 * 1024 * 1024
    write_concurrency: int = 4
    #: Detection's limits (`catalog.LIMITS`) and one rule's own (`RULE_OVERRIDES`).
    thresholds: Thresholds = field(default_factory=Thresholds)
    baseline_days: int = 7
    silence_hours: int = 3
    health_schedule: str = "0 */15 * * * *"
    bastion_resource_ids: tuple[str, ...] = ()
    logs_storage_account_id: str = ""
    #: Subscriptions whose every Bastion host the health timer checks is covered (issue 27).
    coverage_subscriptions: tuple[str, ...] = ()
    #: End the sessions a compromise opened: `off`, `dry-run` (say which) or `on` (issue 27).
    active_response: str = "off"
    active_response_severities: tuple[str, ...] = ("critical",)
    #: Accounts whose sessions active response never ends (as typed; compared as accounts are).
    break_glass_accounts: tuple[str, ...] = ()
    #: Sessions still open this long after they began are listed apart (report, sessions).
    session_open_limit_hours: int = 12
    #: The working day, UTC hours `[first, last)`: a session that begins outside it is listed.
    working_hours: tuple[int, int] = (7, 19)
    arm_endpoint: str = "https://management.azure.com"
    digest_schedule: str = "0 0 6 * * *"
    digest_webhooks: bool = False
    api_auth: str = "entra"
    api_reader_role: str = "BastionAudit.Read"
    api_eraser_role: str = "BastionAudit.Erase"
    #: Days kept (0: for ever) of events and index rows, of alerts, of quarantined pieces.
    retention_days: int = 180
    alert_retention_days: int = 400
    quarantine_retention_days: int = 30
    retention_schedule: str = "0 30 2 * * *"
    #: Set by the platform (`WEBSITE_AUTH_ENABLED`), not by us: App Service Authentication is on,
    #: so its identity headers can be trusted.
    platform_auth: bool = False
    #: Connection-setting group for identity-based connections (`<name>__accountName`, ...).
    connection_parts: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls) -> Settings:
        """The app's settings, from the process environment (app settings in Azure)."""
        return cls.from_env(os.environ)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read and validate all settings; unknown keys are ignored."""
        r = _Reader(env)
        source = r.choice("BLOB_TRIGGER_SOURCE", ("LogsAndContainerScan", "EventGrid"))
        api_auth = r.choice("API_AUTH", ("entra", "none"), lower=True)
        num = r.num
        for timer in SCHEDULES:
            r.schedule(timer)
        bastions, account, subscriptions = r.diagnostics()
        return cls(
            connection=env.get(CONNECTION, "").strip(),
            blob_trigger_source=source,
            events_table=r.table("EVENTS_TABLE"),
            index_table=r.table("INDEX_TABLE"),
            state_table=r.table("STATE_TABLE"),
            alerts_table=r.table("ALERTS_TABLE"),
            quarantine_container=r.lower_name("QUARANTINE_CONTAINER", "container"),
            alert_queue=r.lower_name("ALERT_QUEUE", "queue"),
            webhook_url=r.url("ALERT_WEBHOOK_URL", secret=True),
            teams_webhook_url=r.url("ALERT_TEAMS_WEBHOOK_URL", secret=True),
            slack_webhook_url=r.url("ALERT_SLACK_WEBHOOK_URL", secret=True),
            webhook_timeout_seconds=float(num("WEBHOOK_TIMEOUT_SECONDS", 1, 120)),
            webhook_max_attempts=num("WEBHOOK_MAX_ATTEMPTS", 1, 10),
            notify_interval_minutes=num("NOTIFY_INTERVAL_MINUTES", 1, 7 * 24 * 60),
            alert_retry_hours=num("ALERT_RETRY_HOURS", 1, 90 * 24),
            ip_allowlist=r.networks("IP_ALLOWLIST"),
            trusted_networks=r.networks("TRUSTED_NETWORKS"),
            sweep_lookback_hours=num("SWEEP_LOOKBACK_HOURS", 1, 48),
            max_record_bytes=num("MAX_RECORD_BYTES", 1024, 32768),
            read_chunk_bytes=num("READ_CHUNK_BYTES", 64 * 1024, 64 * 1024 * 1024),
            write_concurrency=num("WRITE_CONCURRENCY", 1, 32),
            thresholds=r.thresholds(),
            baseline_days=num("BASELINE_DAYS", 1, 90),
            silence_hours=num("SILENCE_HOURS", 1, 48),
            health_schedule=r.schedule("HEALTH_SCHEDULE"),
            bastion_resource_ids=bastions,
            logs_storage_account_id=account,
            coverage_subscriptions=subscriptions,
            active_response=r.choice("ACTIVE_RESPONSE", ("off", "dry-run", "on"), lower=True),
            active_response_severities=r.severities("ACTIVE_RESPONSE_SEVERITIES"),
            break_glass_accounts=r.names("BREAK_GLASS_ACCOUNTS"),
            session_open_limit_hours=num("SESSION_OPEN_LIMIT_HOURS", 1, 24 * 31),
            working_hours=r.hours("WORKING_HOURS"),
            arm_endpoint=r.url("ARM_ENDPOINT"),
            digest_schedule=r.schedule("DIGEST_SCHEDULE"),
            digest_webhooks=r.flag("DIGEST_WEBHOOKS"),
            api_auth=api_auth,
            api_reader_role=r.role("API_READER_ROLE"),
            api_eraser_role=r.role("API_ERASER_ROLE"),
            retention_days=r.days("RETENTION_DAYS"),
            alert_retention_days=r.days("ALERT_RETENTION_DAYS"),
            quarantine_retention_days=r.days("QUARANTINE_RETENTION_DAYS"),
            retention_schedule=r.schedule("RETENTION_SCHEDULE"),
            platform_auth=env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true",
            connection_parts=r.group(CONNECTION + "__"),
        )


class _Reader:
    """Typed, validated reads of one environment, with the defaults of `DEFAULTS`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self, name: str) -> str:
        return self.env.get(name, DEFAULTS[name]).strip()

    def num(self, name: str, low: int, high: int) -> int:
        """A whole number in ASCII digits (`int()` also takes `٣`, `1_000` and `+5`)."""
        raw = self.get(name)
        if not _NUMBER.fullmatch(raw):
            raise SettingsError(f"{name} must be an integer, got {shown(raw)}")
        value = int(raw)
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def divisor_of_day(self, name: str) -> int:
        """Hours that divide a day, so periods align to UTC midnight."""
        hours = self.num(name, 1, 24)
        if 24 % hours:
            raise SettingsError(f"{name} must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24), got {hours}")
        return hours

    def role(self, name: str) -> str:
        value = self.get(name)
        if not value or any(c.isspace() or not c.isprintable() for c in value):
            raise SettingsError(
                f"{name} must name an app role (callers hold it; no spaces), got {shown(value)}"
            )
        return value

    def table(self, name: str) -> str:
        value = self.get(name)
        if not _TABLE_NAME.fullmatch(value) or value.lower() == "tables":
            raise SettingsError(
                f"{name} must be an Azure table name (3-63 letters and digits, starting with a "
                f"letter), got {shown(value)}"
            )
        return value

    def lower_name(self, name: str, kind: str) -> str:
        """A queue or container name (the same rules for both)."""
        value = self.get(name)
        if not _LOWER_NAME.fullmatch(value):
            raise SettingsError(
                f"{name} must be an Azure {kind} name (3-63 lower-case letters, digits and "
                f"single hyphens, starting and ending with a letter or digit), got {shown(value)}"
            )
        return value

    def schedule(self, name: str) -> str:
        value = self.get(name)
        problem = cron_problem(value)
        if problem:
            raise SettingsError(f"{name} must be an NCRONTAB schedule: {problem}")
        return value

    def url(self, name: str, secret: bool = False) -> str:
        """An `http(s)://` URL with a host; a secret one may be empty and is never shown."""
        value = self.get(name)
        if secret and not value:
            return ""
        if secret and value.startswith("@Microsoft.KeyVault("):
            raise SettingsError(
                f"{name} is a Key Vault reference the platform could not resolve: let the app's "
                "identity read the secret (the value is not shown)"
            )
        problem = url_problem(value)
        if problem:
            got = "the value is secret, not shown" if secret else f"got {shown(value)}"
            raise SettingsError(
                f"{name} must be an http:// or https:// URL with a host: {problem} ({got})"
            )
        return value

    def days(self, name: str) -> int:
        """A retention in days: 0 keeps for ever, else at least 2 (detection reads yesterday)."""
        value = self.num(name, 0, 36500)
        if value == 1:
            raise SettingsError(f"{name} must be 0 (keep for ever) or at least 2 days, got 1")
        return value

    def diagnostics(self) -> tuple[tuple[str, ...], str, tuple[str, ...]]:
        """The Bastion hosts whose diagnostic setting is checked, our account's id (which either
        check needs), and the subscriptions whose every Bastion host is checked."""
        try:
            subscriptions = resources.subscription_ids(self.get("COVERAGE_SUBSCRIPTIONS"))
        except ValueError as exc:
            raise SettingsError(f"COVERAGE_SUBSCRIPTIONS: {exc}") from None
        names = "BASTION_RESOURCE_IDS / COVERAGE_SUBSCRIPTIONS / LOGS_STORAGE_ACCOUNT_ID"
        try:
            bastions = resources.bastion_ids(self.get("BASTION_RESOURCE_IDS"))
            raw = self.get("LOGS_STORAGE_ACCOUNT_ID")
            needed = bastions or subscriptions or raw
            account = resources.storage_account_id(raw) if needed else ""
        except ValueError as exc:
            raise SettingsError(f"{names}: {exc}") from None
        return bastions, account, subscriptions

    def severities(self, name: str) -> tuple[str, ...]:
        """Comma-separated severities (`low`, `medium`, `high`, `critical`), at least one."""
        found = tuple(dict.fromkeys(p.strip().lower() for p in self.get(name).split(",")))
        known = ("low", "medium", "high", "critical")
        bad = [f for f in found if f not in known]
        if bad or not any(found):
            raise SettingsError(f"{name} must name severities among {', '.join(known)}, "
                                f"got {shown(self.get(name))}")  # fmt: skip
        return found

    def hours(self, name: str) -> tuple[int, int]:
        """`HH-HH`: the first hour of the working day and the hour it ends (UTC, 0-24)."""
        first, _, last = self.get(name).strip().partition("-")
        if not (_NUMBER.fullmatch(first) and _NUMBER.fullmatch(last)):
            raise SettingsError(f"{name} must be HH-HH (UTC hours), got {shown(self.get(name))}")
        lo, hi = int(first), int(last)
        if not 0 <= lo < hi <= 24:
            raise SettingsError(f"{name} must run from an hour to a later one, 00-24, got "
                                f"{shown(self.get(name))}")  # fmt: skip
        return lo, hi

    def names(self, name: str) -> tuple[str, ...]:
        """Comma-separated account names or e-mails (compared as accounts are where used)."""
        return tuple(dict.fromkeys(filter(None, (p.strip() for p in self.get(name).split(",")))))

    def flag(self, name: str) -> bool:
        return self.choice(name, ("true", "false"), lower=True) == "true"

    def choice(self, name: str, options: tuple[str, ...], lower: bool = False) -> str:
        value = self.get(name).lower() if lower else self.get(name)
        if value not in options:
            raise SettingsError(f"{name} must be {' or '.join(options)}, got {shown(value)}")
        return value

    def group(self, prefix: str) -> dict[str, str]:
        """The settings named `<prefix><part>`, by part (the identity-based connection)."""
        return {k[len(prefix) :]: v for k, v in self.env.items() if k.startswith(prefix)}

    def thresholds(self) -> Thresholds:
        """Detection's limits, each from its declared setting and bounds, and the rules' own."""
        values = {
            lim.field: self.divisor_of_day(lim.setting)
            if lim.field == "max_hours"
            else self.num(lim.setting, lim.low, lim.high)
            for lim in LIMITS
        }
        return Thresholds.of(values, self.overrides("RULE_OVERRIDES"))

    def overrides(self, name: str) -> Overrides:
        """`rule.threshold=N` and `rule.window_minutes=N`, comma-separated (fail2ban's jails over
        its `[DEFAULT]`): only the rules that declare limits (`catalog.TUNABLE`)."""
        found: dict[str, list[int | None]] = {}
        for item in filter(None, (p.strip() for p in self.get(name).split(","))):
            rule, _, rest = item.partition(".")
            field, _, value = rest.partition("=")
            if rule not in TUNABLE:
                known = ", ".join(sorted(TUNABLE))
                raise SettingsError(f"{name}: no rule {shown(rule)} takes limits (rules: {known})")
            bounds = OVERRIDE_BOUNDS.get(field.strip())
            if bounds is None or not value.strip().isascii() or not value.strip().isdigit():
                raise SettingsError(
                    f"{name}: {shown(item)} is not <rule>.threshold=N or <rule>.window_minutes=N"
                )
            number, (low, high) = int(value), bounds
            if not low <= number <= high:
                raise SettingsError(f"{name}: {shown(item)} must be between {low} and {high}")
            found.setdefault(rule, [None, None])[field.strip() != "threshold"] = number
        return tuple((rule, n, m) for rule, (n, m) in sorted(found.items()))

    def networks(self, name: str) -> tuple[IPNetwork, ...]:
        out = []
        for item in filter(None, (p.strip() for p in self.get(name).split(","))):
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"{name} entry {shown(item)} is not an IP or CIDR") from None
        return tuple(out)
