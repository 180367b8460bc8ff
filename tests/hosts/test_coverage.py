"""Issue 27, part 2: every Bastion host of the covered subscriptions is proven covered. Pure
verdicts first, then the health timer through the indexed app against Azurite and a local
stand-in for Azure Resource Manager that answers `BastionHosts_List` (paged) and
`DiagnosticSettings_List` as the REST reference shapes them."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest
from test_campaigns import incidents, queue
from test_diagnostics import ELSEWHERE, OURS, SUB, FakeArm, audit, body, checker, setting

from shared import cli, functions
from shared.answer import report
from shared.core import resources
from shared.core.settings import Settings, SettingsError
from shared.hosts import coverage
from shared.hosts.coverage import Bastion, Cover
from shared.hosts.diagnostics import Check, Verdict
from shared.ingest.loop import Pipeline

TIMER = TimerRequest(past_due=False)
LIST = f"/subscriptions/{SUB}/providers/Microsoft.Network/bastionHosts"
HOSTS = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/bastionHosts"
COVERED, BARE, AWAY, DEV = (f"{HOSTS}/{n}" for n in ("bas-ok", "bas-bare", "bas-away", "bas-dev"))
FOREIGN = HOSTS.replace(SUB, "99999999-9999-9999-9999-999999999999") + "/bas-foreign"


def host(host_id: str, sku: str = "Standard") -> dict[str, Any]:
    """One entry of `BastionHosts_List`, as the REST reference's example shows it."""
    return {
        "id": host_id,
        "name": host_id.rsplit("/", 1)[1],
        "type": "Microsoft.Network/bastionHosts",
        "location": "westeurope",
        "sku": {"name": sku},
        "properties": {"provisioningState": "Succeeded", "dnsName": "bst-x.bastion.azure.com"},
    }


def settings_to(account: str) -> dict[str, Any]:
    return body(setting("audit", [audit()], storageAccountId=account))


# -- pure -----------------------------------------------------------------------------------------
def test_a_page_of_hosts_keeps_only_bastion_hosts_of_that_subscription() -> None:
    page = {"value": [host(COVERED), host(DEV, "Developer"), host(FOREIGN), {"id": "/x"}, 7],
            "nextLink": "https://management.azure.com/next"}  # fmt: skip
    found, link = coverage.bastions(page, SUB)
    assert found == [Bastion(COVERED, SUB, "Standard"), Bastion(DEV, SUB, "Developer")]
    assert link == "https://management.azure.com/next"
    assert coverage.bastions({"value": []}, SUB) == ([], None)
    with pytest.raises(ValueError):
        coverage.bastions({"error": {"code": "x"}}, SUB)


def test_each_verdict_from_the_sku_and_the_check() -> None:
    def check(verdict: Verdict) -> Check:
        return Check(verdict, "detail", bastion_id=COVERED)

    standard = Bastion(COVERED, SUB, "Standard")
    assert coverage.verdict(standard, check(Verdict.OK)).verdict is Cover.COVERED
    assert coverage.verdict(standard, check(Verdict.REMOVED)).verdict is Cover.NO_SETTING
    assert coverage.verdict(standard, check(Verdict.REDIRECTED)).verdict is Cover.ELSEWHERE
    assert coverage.verdict(standard, check(Verdict.ERROR)).verdict is Cover.UNKNOWN
    developer = coverage.verdict(Bastion(DEV, SUB, "Developer"), None)
    assert developer.verdict is Cover.DEVELOPER and "writes no audit log" in developer.detail


@pytest.mark.parametrize(
    ("before", "now", "news"),
    [
        (None, Cover.COVERED, None),
        (None, Cover.NO_SETTING, "uncovered"),
        ("covered", Cover.ELSEWHERE, "uncovered"),
        ("no_setting", Cover.ELSEWHERE, None),  # still not covered: told once
        ("developer", Cover.COVERED, "covered"),
        ("covered", Cover.COVERED, None),
        ("no_setting", Cover.UNKNOWN, None),  # ARM's hiccup is no news
    ],
)
def test_what_is_news(before: str | None, now: Cover, news: str | None) -> None:
    old = {"Verdict": before} if before else None
    assert coverage.change(old, coverage.Finding(COVERED, SUB, "", now, "")) == news


def test_the_setting_takes_subscription_ids_only() -> None:
    env = {"COVERAGE_SUBSCRIPTIONS": f" {SUB.upper()}, {SUB}", "LOGS_STORAGE_ACCOUNT_ID": OURS}
    assert Settings.from_env(env).coverage_subscriptions == (SUB,)
    with pytest.raises(SettingsError, match="COVERAGE_SUBSCRIPTIONS"):
        Settings.from_env({"COVERAGE_SUBSCRIPTIONS": "../../x", "LOGS_STORAGE_ACCOUNT_ID": OURS})
    with pytest.raises(SettingsError, match="LOGS_STORAGE_ACCOUNT_ID"):
        Settings.from_env({"COVERAGE_SUBSCRIPTIONS": SUB})  # whose account would be ours?
    assert resources.subscription_of(COVERED) == SUB


def test_a_next_link_away_from_arm_is_not_followed(arm: FakeArm) -> None:
    arm.answer(LIST, 200, {"value": [], "nextLink": "https://attacker.example/steal"})
    with checker(arm) as c, pytest.raises(ValueError, match="away from"):
        c.list_bastions(SUB)
    assert all(r["path"] == LIST for r in arm.requests)


# -- through the health timer ---------------------------------------------------------------------
def serve(arm: FakeArm, bare: dict[str, Any]) -> None:
    """Four hosts on two pages: covered, no setting, sent elsewhere, and a Developer host."""
    second = f"{arm.endpoint}{LIST}?api-version=2025-05-01&$skipToken=2"
    arm.answer(LIST, 200, {"value": [host(COVERED), host(BARE)], "nextLink": second})
    arm.answer(f"{LIST}?$skipToken=2", 200, {"value": [host(AWAY), host(DEV, "Developer")]})
    arm.answer(COVERED, 200, settings_to(OURS))
    arm.answer(BARE, 200, bare)
    arm.answer(AWAY, 200, settings_to(ELSEWHERE))


def status(indexed_app: dict[str, Any]) -> list[tuple[str, str, bool]]:
    from test_outcomes import api_status

    return [(c["host"], c["verdict"], c["covered"]) for c in api_status(indexed_app)["coverage"]]


def test_three_kinds_of_uncovered_host_are_each_told_once_and_their_fix_once(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], arm: FakeArm, logs: Any
) -> None:
    p = app_env(COVERAGE_SUBSCRIPTIONS=SUB, LOGS_STORAGE_ACCOUNT_ID=OURS, API_AUTH="none")
    functions.services().detector.health.checker = checker(arm)
    run = indexed_app["check_health"].get_user_function()
    serve(arm, body())
    run(TIMER)
    run(TIMER)
    assert status(indexed_app) == [
        ("bas-away", "elsewhere", False),
        ("bas-bare", "no_setting", False),
        ("bas-dev", "developer", False),
        ("bas-ok", "covered", True),
    ]
    told = sorted((m["rule"], m["subject"]) for m in queue(p))
    assert told == [("host_not_covered", h) for h in ("bas-away", "bas-bare", "bas-dev")]
    assert not any(r["path"].startswith(DEV) for r in arm.requests)  # its SKU says it all
    out = io.StringIO()
    assert cli.main(["status"], out) == 0
    assert "coverage: bas-dev (Developer): NOT COVERED, developer" in out.getvalue()
    page = report.build(p.storage, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC))
    assert "Coverage of the Bastion hosts" in page and "no_setting" in page

    serve(arm, settings_to(OURS))  # somebody adds the missing setting
    run(TIMER)
    run(TIMER)
    fixed = [(m["rule"], m["subject"]) for m in queue(p)]  # queue() takes what it reads
    assert fixed == [("host_covered_again", "bas-bare")]
    assert ("bas-bare", "covered", True) in status(indexed_app)
    rules = sorted(r["Rule"] for r in incidents(p))
    assert rules == ["host_covered_again", *["host_not_covered"] * 3]


def test_arm_down_changes_nothing_and_tells_nothing(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    arm: FakeArm,
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = app_env(COVERAGE_SUBSCRIPTIONS=SUB, LOGS_STORAGE_ACCOUNT_ID=OURS, API_AUTH="none")
    functions.services().detector.health.checker = checker(arm)
    run = indexed_app["check_health"].get_user_function()
    arm.answer(LIST, 200, {"value": [host(COVERED)]})
    arm.answer(COVERED, 200, settings_to(OURS))
    run(TIMER)
    arm.answer(LIST, 503, {"error": {"code": "ServiceUnavailable", "message": "later"}})
    with caplog.at_level("WARNING"):
        run(TIMER)
    arm.answer(LIST, 200, {"value": [host(COVERED)]})
    arm.answer(COVERED, 500, {"error": {"code": "InternalServerError", "message": "x"}})
    run(TIMER)
    assert queue(p) == [] and incidents(p) == []
    assert "503" in caplog.text
    assert ("bas-ok", "covered", True) in status(indexed_app)


def test_two_timers_at_once_tell_each_host_once(
    app_env: Callable[..., Pipeline], indexed_app: dict[str, Any], arm: FakeArm, logs: Any
) -> None:
    """The verdict is kept under the row's ETag: of two timers that find the same news at
    once, one writes and tells."""
    p = app_env(COVERAGE_SUBSCRIPTIONS=SUB, LOGS_STORAGE_ACCOUNT_ID=OURS, API_AUTH="none")
    functions.services().detector.health.checker = checker(arm)
    run = indexed_app["check_health"].get_user_function()
    serve(arm, body())
    barrier = threading.Barrier(2)

    def timer() -> None:
        barrier.wait()
        run(TIMER)

    threads = [threading.Thread(target=timer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    told = sorted((m["rule"], m["subject"]) for m in queue(p))
    assert told == [("host_not_covered", h) for h in ("bas-away", "bas-bare", "bas-dev")]
