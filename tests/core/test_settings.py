"""Settings and connections: validation at start-up, identity-based connections. No I/O."""

from __future__ import annotations

import pytest

from shared.core.settings import CONNECTION, DEFAULTS, Settings, SettingsError
from shared.store.tables import Storage


def test_defaults_build_a_valid_settings_object() -> None:
    s = Settings.from_env({})
    assert s.events_table == DEFAULTS["EVENTS_TABLE"] and s.thresholds.failures == 5
    assert s.ip_allowlist == () and s.blob_trigger_source == "LogsAndContainerScan"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FAILURE_THRESHOLD", "five"),
        ("FAILURE_THRESHOLD", "1"),
        ("MAX_RECORD_BYTES", "99999999"),
        ("BLOB_TRIGGER_SOURCE", "Polling"),
        ("IP_ALLOWLIST", "10.0.0.0/8, not-an-ip"),
        ("RULE_OVERRIDES", "ip_brute_force.threshold=1"),
        ("RULE_OVERRIDES", "ip_brute_force.threshold=٣"),
        ("RULE_OVERRIDES", "ip_brute_force.limit=5"),
        ("RULE_OVERRIDES", "success_after_failures_ip.threshold=9"),  # takes no limits
        ("RULE_OVERRIDES", "no_such_rule.window_minutes=5"),
    ],
)
def test_bad_values_stop_start_up_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_rule_overrides_set_one_rule_apart_from_the_defaults() -> None:
    """fail2ban's jails over its `[DEFAULT]`: an address may fail more often than an account."""
    env = {"RULE_OVERRIDES": " ip_brute_force.threshold=20, password_spray.window_minutes=60,"
                             "ip_brute_force.window_minutes=30"}  # fmt: skip
    s = Settings.from_env(env)
    assert s.thresholds.overrides == (("ip_brute_force", 20, 30), ("password_spray", None, 60))
    assert Settings.from_env({}).thresholds.overrides == ()


def test_secrets_are_not_in_the_repr() -> None:
    s = Settings.from_env({"ALERT_WEBHOOK_URL": "https://hooks.example/SECRET"})
    assert "SECRET" not in repr(s)


def test_identity_based_connection_uses_service_uris() -> None:
    env = {
        f"{CONNECTION}__blobServiceUri": "https://logs.blob.core.windows.net",
        f"{CONNECTION}__queueServiceUri": "https://logs.queue.core.windows.net",
        f"{CONNECTION}__tableServiceUri": "https://logs.table.core.windows.net",
        f"{CONNECTION}__credential": "managedidentity",
    }
    storage = Storage(Settings.from_env(env))
    assert storage.blobs.url.startswith("https://logs.blob.core.windows.net")
    assert storage.queues.url.startswith("https://logs.queue.core.windows.net")
    assert storage.tables.url.startswith("https://logs.table.core.windows.net")
    assert type(storage.blobs.credential).__name__ == "DefaultAzureCredential"
    storage.close()


def test_account_name_alone_is_enough() -> None:
    storage = Storage(Settings.from_env({f"{CONNECTION}__accountName": "logs"}))
    assert storage.tables.url.startswith("https://logs.table.core.windows.net")
    storage.close()


def test_no_connection_says_what_to_set() -> None:
    with pytest.raises(RuntimeError, match=f"{CONNECTION}__accountName"):
        Storage(Settings.from_env({}))


def test_active_response_and_session_settings_are_checked_at_start_up() -> None:
    """Issue 27's settings: off by default; a wrong value stops start-up naming the setting."""
    s = Settings.from_env({})
    assert (s.active_response, s.active_response_severities) == ("off", ("critical",))
    assert (s.session_open_limit_hours, s.working_hours, s.break_glass_accounts) == (
        12,
        (7, 19),
        (),
    )
    env = {
        "ACTIVE_RESPONSE": " DRY-RUN ",
        "ACTIVE_RESPONSE_SEVERITIES": "high, critical,high",
        "BREAK_GLASS_ACCOUNTS": " ops-admin ,, CONTOSO\\breakglass ",
        "WORKING_HOURS": "06-22",
    }
    s = Settings.from_env(env)
    assert (s.active_response, s.active_response_severities) == ("dry-run", ("high", "critical"))
    assert s.break_glass_accounts == ("ops-admin", "CONTOSO\\breakglass")
    assert s.working_hours == (6, 22)
    for name, value in [
        ("ACTIVE_RESPONSE", "yes"),
        ("ACTIVE_RESPONSE_SEVERITIES", "critical, severe"),
        ("ACTIVE_RESPONSE_SEVERITIES", " , "),
        ("WORKING_HOURS", "19-07"),
        ("WORKING_HOURS", "7-25"),
        ("WORKING_HOURS", "\u0667-19"),  # an Arabic-Indic seven is no ASCII digit
        ("WORKING_HOURS", "x" * 10_000),
        ("SESSION_OPEN_LIMIT_HOURS", "0"),
    ]:
        with pytest.raises(SettingsError, match=name) as caught:
            Settings.from_env({name: value})
        assert len(str(caught.value)) < 300, name  # a huge value is cut in the message
