"""The diagnostic-setting check (issue 16): pure decisions, and the ARM call against a real HTTP
server on 127.0.0.1 that answers like `DiagnosticSettings_List`.

A removed or redirected setting is a finding; an API failure (403, 500, a timeout, a broken
body, a credential that cannot get a token) is not: it is logged by type and status only.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shared.core import resources
from shared.hosts.arm import Checker
from shared.hosts.diagnostics import Verdict, decide

SUB = "7e1c5a3b-0d2f-4b8e-9a61-3c5d7f9b1e24"
RG = f"/subscriptions/{SUB}/resourceGroups"
BASTION = f"{RG}/rg-network/providers/Microsoft.Network/bastionHosts/bas-hub"
OTHER_BASTION = BASTION.replace("bas-hub", "bas-dev")
OURS = f"{RG}/rg-logs/providers/Microsoft.Storage/storageAccounts/stbastionlogs"
ELSEWHERE = OURS.replace("stbastionlogs", "stattacker")
WORKSPACE = f"{RG}/rg-x/providers/Microsoft.OperationalInsights/workspaces/law"
EVENTHUB_RULE = (
    f"/subscriptions/{SUB}/resourceGroups/rg-x/providers/Microsoft.EventHub/namespaces/ns"
    "/authorizationrules/RootManageSharedAccessKey"
)
TOKEN = "dummy-token-for-tests"


def setting(name: str, logs: list[dict[str, Any]], **destinations: str) -> dict[str, Any]:
    """One entry of the list, shaped like examples/listDiagnosticSettings.json."""
    return {
        "id": f"{BASTION}/providers/microsoft.insights/diagnosticSettings/{name}",
        "type": "Microsoft.Insights/diagnosticSettings",
        "name": name,
        "properties": {
            "workspaceId": "",
            **destinations,
            "metrics": [{"category": "AllMetrics", "enabled": False}],
            "logs": logs,
        },
    }


def audit(enabled: bool = True, **kw: Any) -> dict[str, Any]:
    entry = {"enabled": enabled, "retentionPolicy": {"enabled": False, "days": 0}}
    entry.update(kw or {"category": "BastionAuditLogs"})
    return entry


def body(*settings: dict[str, Any]) -> dict[str, Any]:
    return {"value": list(settings)}


# -- pure decisions -----------------------------------------------------------------------------
def test_present_by_category_is_ok() -> None:
    c = decide(body(setting("bastion-audit-to-storage", [audit()], storageAccountId=OURS)), OURS)
    assert c.verdict is Verdict.OK and not c.is_finding and c.finding() is None
    assert c.settings == ("bastion-audit-to-storage",)


@pytest.mark.parametrize("group", ["allLogs", "audit", "ALLLOGS", " Audit "])
def test_category_groups_count(group: str) -> None:
    logs = [audit(categoryGroup=group)]
    assert decide(body(setting("s", logs, storageAccountId=OURS)), OURS).verdict is Verdict.OK


def test_other_groups_and_categories_do_not_count() -> None:
    logs = [audit(categoryGroup="security"), audit(category="BastionSessionLogs")]
    c = decide(body(setting("s", logs, storageAccountId=OURS)), OURS)
    assert c.verdict is Verdict.REMOVED and c.is_finding


def test_storage_id_compared_without_case_or_trailing_slash() -> None:
    theirs = OURS.upper() + "/"
    c = decide(
        body(setting("s", [audit(category="bastionauditlogs")], storageAccountId=theirs)), OURS
    )
    assert c.verdict is Verdict.OK


@pytest.mark.parametrize(
    "settings",
    [
        [],
        [setting("s", [audit(enabled=False)], storageAccountId=OURS)],
        [setting("s", [{"category": "BastionAuditLogs"}], storageAccountId=OURS)],  # no enabled
        [setting("s", [audit(enabled="true")], storageAccountId=OURS)],  # not a boolean
        [setting("s", [], storageAccountId=OURS)],
        [setting("metrics-only", [audit(category="Other")], workspaceId=WORKSPACE)],
    ],
)
def test_removed(settings: list[dict[str, Any]]) -> None:
    c = decide(body(*settings), OURS, BASTION)
    assert c.verdict is Verdict.REMOVED
    finding = c.finding()
    assert finding is not None and finding["severity"] == "high"
    assert finding["rule"] == "diagnostic_setting_changed" and finding["subject"] == BASTION
    assert '"bas-hub"' in c.detail


def test_redirected_to_another_account_names_the_kind_not_the_id() -> None:
    c = decide(body(setting("moved", [audit()], storageAccountId=ELSEWHERE)), OURS, BASTION)
    assert c.verdict is Verdict.REDIRECTED and c.is_finding
    assert c.destinations == ("another storage account",)
    assert "stattacker" not in c.detail and "subscriptions" not in c.detail


def test_redirected_to_workspace_and_event_hub_never_shows_key_names() -> None:
    s = setting("siem", [audit(categoryGroup="allLogs")], workspaceId=WORKSPACE,
                eventHubAuthorizationRuleId=EVENTHUB_RULE, eventHubName="hub")  # fmt: skip
    c = decide(body(s), OURS, BASTION)
    assert c.verdict is Verdict.REDIRECTED
    assert c.destinations == ("a Log Analytics workspace", "an Event Hub")
    finding = c.finding()
    assert finding is not None
    text = json.dumps(finding)
    assert "RootManageSharedAccessKey" not in text and "law" not in c.detail
    assert "Log Analytics workspace" in finding["summary"]


def test_multiple_settings_one_to_us_is_ok_and_mentions_the_others() -> None:
    c = decide(
        body(
            setting("siem", [audit()], workspaceId=WORKSPACE),
            setting("archive", [audit(categoryGroup="allLogs")], storageAccountId=OURS),
            setting("off", [audit(enabled=False)], storageAccountId=ELSEWHERE),
        ),
        OURS,
    )
    assert c.verdict is Verdict.OK
    assert c.settings == ("siem", "archive")
    assert "Log Analytics workspace" in c.detail and "another storage account" not in c.detail


def test_setting_names_cannot_forge_text() -> None:
    evil = "[click](https://evil.example) \u202eresu\u200b"
    c = decide(body(setting(evil, [audit()], workspaceId=WORKSPACE)), OURS, BASTION)
    assert c.settings == (evil,)  # raw for programs
    assert "](" not in c.detail and "https://" not in c.detail
    assert "\u202e" not in c.detail and "\\u202e" in c.detail


@pytest.mark.parametrize(
    "junk",
    [None, [], "x", {"values": []}, {"value": None}, {"value": {"a": 1}}],
)
def test_unexpected_bodies_are_errors_not_findings(junk: Any) -> None:
    c = decide(junk, OURS, BASTION)
    assert c.verdict is Verdict.ERROR and c.finding() is None


def test_junk_entries_inside_the_list_are_skipped() -> None:
    good = setting("ok", [audit()], storageAccountId=OURS)
    junk: list[Any] = [1, None, {"name": 5}, {"name": "x", "properties": []},
                       {"name": "y", "properties": {"logs": "all"}}]  # fmt: skip
    assert decide(body(*junk, good), OURS).verdict is Verdict.OK
    assert decide(body(*junk), OURS).verdict is Verdict.REMOVED


def test_setting_parsers() -> None:
    assert resources.bastion_ids("") == ()
    assert resources.bastion_ids(f" {BASTION} ,{OTHER_BASTION},{BASTION.upper()}") == (
        BASTION,
        OTHER_BASTION,
    )
    for bad in ("bas-hub", BASTION + "?x=1", BASTION + "/../x", OURS):
        with pytest.raises(ValueError):
            resources.bastion_ids(bad)
    assert resources.storage_account_id(OURS + "/") == OURS
    with pytest.raises(ValueError):
        resources.storage_account_id(BASTION)


# -- against a local HTTP server that answers like ARM -----------------------------------------
class FakeCredential:
    """A TokenCredential that hands out a dummy token (counted)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        if self.fail:
            raise ClientAuthenticationError("no identity here")
        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken(TOKEN, int(time.time()) + 3600)


class FakeArm:
    """ThreadingHTTPServer on 127.0.0.1: per resource id, an answer (status, JSON, delay)."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, Any, float]] = {}
        self.requests: list[dict[str, Any]] = []
        arm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                arm.requests.append(
                    {
                        "path": parts.path,
                        "query": parse_qs(parts.query),
                        "auth": self.headers.get("Authorization"),
                    }
                )
                suffix = "/providers/Microsoft.Insights/diagnosticSettings"
                resource = parts.path[: -len(suffix)] if parts.path.endswith(suffix) else ""
                if not resource:  # a listing: the path, and the page its `$skipToken` asks for
                    token = parse_qs(parts.query).get("$skipToken", [""])[0]
                    resource = parts.path + (f"?$skipToken={token}" if token else "")
                status, payload, delay = arm.answers.get(
                    resource.lower(),
                    (404, {"error": {"code": "ResourceNotFound", "message": "nope"}}, 0.0),
                )
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, resource: str, status: int, payload: Any, delay: float = 0.0) -> None:
        self.answers[resource.lower()] = (status, payload, delay)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def checker(arm: FakeArm, credential: Any = None, **kw: Any) -> Checker:
    kw.setdefault("retries", 0)
    kw.setdefault("timeout", 2.0)
    return Checker(OURS, credential or FakeCredential(), endpoint=arm.endpoint, **kw)


def test_present_over_http(arm: FakeArm) -> None:
    arm.answer(
        BASTION, 200, body(setting("bastion-audit-to-storage", [audit()], storageAccountId=OURS))
    )
    with checker(arm) as c:
        result = c.check(BASTION)
    assert (
        result.verdict is Verdict.OK and result.bastion_id == BASTION and result.host == "bas-hub"
    )
    (req,) = arm.requests
    assert req["path"] == BASTION + "/providers/Microsoft.Insights/diagnosticSettings"
    assert req["query"] == {"api-version": ["2021-05-01-preview"]}
    assert req["auth"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    "payload",
    [body(), body(setting("s", [audit(enabled=False)], storageAccountId=OURS))],
    ids=["empty-list", "category-disabled"],
)
def test_removed_over_http(arm: FakeArm, payload: dict[str, Any]) -> None:
    arm.answer(BASTION, 200, payload)
    with checker(arm) as c:
        result = c.check(BASTION)
    assert result.verdict is Verdict.REMOVED
    finding = result.finding()
    assert finding is not None and finding["severity"] == "high"


def test_redirected_over_http(arm: FakeArm) -> None:
    arm.answer(BASTION, 200, body(setting("moved", [audit()], storageAccountId=ELSEWHERE)))
    with checker(arm) as c:
        result = c.check(BASTION)
    assert result.verdict is Verdict.REDIRECTED
    assert result.destinations == ("another storage account",)


@pytest.mark.parametrize("status", [403, 500, 404])
def test_http_errors_are_no_finding_and_logged_by_type_and_status(
    arm: FakeArm, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    arm.answer(
        BASTION, status, {"error": {"code": "AuthorizationFailed", "message": f"s3cr3t {TOKEN}"}}
    )
    caplog.set_level(logging.DEBUG)
    with checker(arm, retries=1) as c:
        result = c.check(BASTION)
    assert result.verdict is Verdict.ERROR and result.finding() is None
    assert result.status == status and result.error == "HttpResponseError"
    ours = [r for r in caplog.records if r.name == "shared.hosts.arm"]
    assert len(ours) == 1 and ours[0].levelno == logging.WARNING
    line = ours[0].getMessage()
    assert f"status={status}" in line and "HttpResponseError" in line and "bas-hub" in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in everything and "s3cr3t" not in everything
    assert "http://" not in everything and "diagnosticSettings" not in everything
    expected = 2 if status == 500 else 1  # 500 is retried (retries=1); 403/404 are not
    assert len(arm.requests) == expected


def test_timeout_is_no_finding_and_logged(arm: FakeArm, caplog: pytest.LogCaptureFixture) -> None:
    arm.answer(BASTION, 200, body(), delay=3.0)
    caplog.set_level(logging.WARNING, logger="shared.hosts.arm")
    started = time.monotonic()
    with checker(arm, timeout=0.5) as c:
        result = c.check(BASTION)
    assert time.monotonic() - started < 2.5
    assert result.verdict is Verdict.ERROR and result.status is None and result.finding() is None
    (record,) = [r for r in caplog.records if r.name == "shared.hosts.arm"]
    assert "status=-" in record.getMessage() and result.error in record.getMessage()


def test_broken_body_is_an_error(arm: FakeArm) -> None:
    arm.answer(BASTION, 200, b"<html>proxy says hi</html>")
    arm.answer(OTHER_BASTION, 200, {"value": "nope"})
    with checker(arm) as c:
        first, second = c.check_all([BASTION, OTHER_BASTION])
    assert first.verdict is Verdict.ERROR and second.verdict is Verdict.ERROR
    assert second.status == 200 and second.error == "UnexpectedResponse"


def test_credential_failure_is_an_error_and_sends_nothing(
    arm: FakeArm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="shared.hosts.arm")
    with checker(arm, FakeCredential(fail=True)) as c:
        result = c.check(BASTION)
    assert result.verdict is Verdict.ERROR and result.error == "ClientAuthenticationError"
    assert arm.requests == []
    assert "ClientAuthenticationError" in caplog.records[-1].getMessage()


def test_one_host_failing_does_not_stop_the_others(arm: FakeArm) -> None:
    arm.answer(BASTION, 403, {"error": {"code": "AuthorizationFailed"}})
    arm.answer(OTHER_BASTION, 200, body())
    credential = FakeCredential()
    with checker(arm, credential) as c:
        results = c.check_all([BASTION, OTHER_BASTION, "not-an-id"])
        again = c.check(OTHER_BASTION)
    assert [r.verdict for r in results] == [Verdict.ERROR, Verdict.REMOVED, Verdict.ERROR]
    assert again.verdict is Verdict.REMOVED
    assert credential.calls == 1  # the token is kept between checks
    assert len(arm.requests) == 3  # the bad id was never sent


def test_http_only_to_loopback() -> None:
    for endpoint in ("http://management.azure.com", "http://10.0.0.1:8080", "ftp://127.0.0.1"):
        with pytest.raises(ValueError):
            Checker(OURS, FakeCredential(), endpoint=endpoint)
    Checker(OURS, FakeCredential(), endpoint="http://localhost:1").close()
    Checker(OURS, FakeCredential()).close()  # the default: https://management.azure.com
