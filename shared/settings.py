"""App settings, read once from the environment into one immutable object.

Every setting and its default is listed here and nowhere else; the README table and
`local.settings.sample.json` mirror `DEFAULTS` (a test keeps them in step).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

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
    "FAILURE_THRESHOLD": "5",
    "FAILURE_WINDOW_MINUTES": "15",
    "SPRAY_USER_THRESHOLD": "5",
    "SPRAY_WINDOW_MINUTES": "20",
    "INCIDENT_QUIET_MINUTES": "60",
    "INCIDENT_MAX_HOURS": "24",
    "NOTIFY_INTERVAL_MINUTES": "60",
    "IP_ALLOWLIST": "",
    "SWEEP_SCHEDULE": "0 * * * * *",
    "SWEEP_LOOKBACK_HOURS": "3",
    "ALERT_RETRY_SCHEDULE": "0 */5 * * * *",
    "ALERT_RETRY_HOURS": "72",
    "MAX_RECORD_BYTES": "32768",
    "READ_CHUNK_BYTES": "4194304",
    "WRITE_CONCURRENCY": "4",
    "SLOW_FAILURE_THRESHOLD": "10",
    "SLOW_WINDOW_MINUTES": "180",
    "SLOW_IP_THRESHOLD": "8",
    "BASELINE_DAYS": "7",
    "SILENCE_HOURS": "3",
    "HEALTH_SCHEDULE": "0 */15 * * * *",
    "BASTION_RESOURCE_IDS": "",
    "LOGS_STORAGE_ACCOUNT_ID": "",
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


class SettingsError(ValueError):
    """A setting has a value we cannot use; raised at start-up, not mid-invocation."""


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
    failure_threshold: int = 5
    failure_window_minutes: int = 15
    spray_user_threshold: int = 5
    spray_window_minutes: int = 20
    incident_quiet_minutes: int = 60
    incident_max_hours: int = 24
    notify_interval_minutes: int = 60
    #: How long a notification that failed is retried, from when it became pending.
    alert_retry_hours: int = 72
    ip_allowlist: tuple[IPNetwork, ...] = ()
    sweep_lookback_hours: int = 3
    max_record_bytes: int = 32768
    read_chunk_bytes: int = 4 * 1024 * 1024
    write_concurrency: int = 4
    slow_failures: int = 10
    slow_window_minutes: int = 180
    slow_ips: int = 8
    baseline_days: int = 7
    silence_hours: int = 3
    health_schedule: str = "0 */15 * * * *"
    bastion_resource_ids: tuple[str, ...] = ()
    logs_storage_account_id: str = ""
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
        max_hours = r.num("INCIDENT_MAX_HOURS", 1, 24)
        if 24 % max_hours:
            raise SettingsError(f"INCIDENT_MAX_HOURS must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24), "
                                f"got {max_hours}")  # fmt: skip
        get, num = r.get, r.num
        bastions, account = r.diagnostics()
        prefix = CONNECTION + "__"
        return cls(
            connection=env.get(CONNECTION, "").strip(),
            blob_trigger_source=source,
            events_table=get("EVENTS_TABLE"),
            index_table=get("INDEX_TABLE"),
            state_table=get("STATE_TABLE"),
            alerts_table=get("ALERTS_TABLE"),
            quarantine_container=get("QUARANTINE_CONTAINER"),
            alert_queue=get("ALERT_QUEUE"),
            webhook_url=get("ALERT_WEBHOOK_URL"),
            teams_webhook_url=get("ALERT_TEAMS_WEBHOOK_URL"),
            slack_webhook_url=get("ALERT_SLACK_WEBHOOK_URL"),
            webhook_timeout_seconds=float(num("WEBHOOK_TIMEOUT_SECONDS", 1, 120)),
            webhook_max_attempts=num("WEBHOOK_MAX_ATTEMPTS", 1, 10),
            failure_threshold=num("FAILURE_THRESHOLD", 2, 10_000),
            failure_window_minutes=num("FAILURE_WINDOW_MINUTES", 1, 24 * 60),
            spray_user_threshold=num("SPRAY_USER_THRESHOLD", 2, 1000),
            spray_window_minutes=num("SPRAY_WINDOW_MINUTES", 1, 24 * 60),
            incident_quiet_minutes=num("INCIDENT_QUIET_MINUTES", 1, 24 * 60),
            incident_max_hours=max_hours,
            notify_interval_minutes=num("NOTIFY_INTERVAL_MINUTES", 1, 7 * 24 * 60),
            alert_retry_hours=num("ALERT_RETRY_HOURS", 1, 90 * 24),
            ip_allowlist=r.networks("IP_ALLOWLIST"),
            sweep_lookback_hours=num("SWEEP_LOOKBACK_HOURS", 1, 48),
            max_record_bytes=num("MAX_RECORD_BYTES", 1024, 32768),
            read_chunk_bytes=num("READ_CHUNK_BYTES", 64 * 1024, 64 * 1024 * 1024),
            write_concurrency=num("WRITE_CONCURRENCY", 1, 32),
            slow_failures=num("SLOW_FAILURE_THRESHOLD", 2, 10_000),
            slow_window_minutes=num("SLOW_WINDOW_MINUTES", 15, 24 * 60),
            slow_ips=num("SLOW_IP_THRESHOLD", 2, 1000),
            baseline_days=num("BASELINE_DAYS", 1, 90),
            silence_hours=num("SILENCE_HOURS", 1, 48),
            health_schedule=get("HEALTH_SCHEDULE"),
            bastion_resource_ids=bastions,
            logs_storage_account_id=account,
            arm_endpoint=get("ARM_ENDPOINT"),
            digest_schedule=get("DIGEST_SCHEDULE"),
            digest_webhooks=r.flag("DIGEST_WEBHOOKS"),
            api_auth=api_auth,
            api_reader_role=r.role("API_READER_ROLE"),
            api_eraser_role=r.role("API_ERASER_ROLE"),
            retention_days=r.days("RETENTION_DAYS"),
            alert_retention_days=r.days("ALERT_RETENTION_DAYS"),
            quarantine_retention_days=r.days("QUARANTINE_RETENTION_DAYS"),
            retention_schedule=get("RETENTION_SCHEDULE"),
            platform_auth=env.get("WEBSITE_AUTH_ENABLED", "").strip().lower() == "true",
            connection_parts={k[len(prefix) :]: v for k, v in env.items() if k.startswith(prefix)},
        )


class _Reader:
    """Typed, validated reads of one environment, with the defaults of `DEFAULTS`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def get(self, name: str) -> str:
        return self.env.get(name, DEFAULTS[name]).strip()

    def num(self, name: str, low: int, high: int) -> int:
        raw = self.get(name)
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def role(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise SettingsError(f"{name} must name an app role (callers hold it)")
        return value

    def days(self, name: str) -> int:
        """A retention in days: 0 keeps for ever, else at least 2 (detection reads yesterday)."""
        value = self.num(name, 0, 36500)
        if value == 1:
            raise SettingsError(f"{name} must be 0 (keep for ever) or at least 2 days, got 1")
        return value

    def diagnostics(self) -> tuple[tuple[str, ...], str]:
        """The Bastion hosts whose diagnostic setting is checked, and our account's id."""
        from . import diagnostics

        try:
            bastions = diagnostics.bastion_ids(self.get("BASTION_RESOURCE_IDS"))
            raw = self.get("LOGS_STORAGE_ACCOUNT_ID")
            account = diagnostics.storage_account_id(raw) if bastions or raw else ""
        except ValueError as exc:
            raise SettingsError(f"BASTION_RESOURCE_IDS / LOGS_STORAGE_ACCOUNT_ID: {exc}") from None
        return bastions, account

    def flag(self, name: str) -> bool:
        return self.choice(name, ("true", "false"), lower=True) == "true"

    def choice(self, name: str, options: tuple[str, ...], lower: bool = False) -> str:
        value = self.get(name).lower() if lower else self.get(name)
        if value not in options:
            raise SettingsError(f"{name} must be {' or '.join(options)}, got {value!r}")
        return value

    def networks(self, name: str) -> tuple[IPNetwork, ...]:
        out = []
        for item in filter(None, (p.strip() for p in self.get(name).split(","))):
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"{name} entry {item!r} is not an IP or CIDR") from None
        return tuple(out)
