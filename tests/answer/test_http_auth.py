"""Sign-in in front of the audit data (issue 13): the decision is pure (`shared.answer.auth`); the
routes are checked through the indexed app with real HttpRequest objects against Azurite."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func
import orjson
import pytest

from shared.answer import auth
from shared.core.settings import Settings
from shared.ingest.loop import Pipeline

ROLE = "BastionAudit.Read"


def principal(*roles: str, role_typ: str = "roles", oid: str = "11111111-aaaa") -> str:
    claims = [{"typ": role_typ, "val": r} for r in roles]
    claims.append({"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
                   "val": oid})  # fmt: skip
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": role_typ}
    return base64.b64encode(orjson.dumps(doc)).decode()


def test_no_sign_in_sends_browsers_to_sign_in_and_programs_get_401() -> None:
    browser = auth.decide("entra", ROLE, True, {"Accept": "text/html"}, "/api/report?from=x")
    assert browser.status == 302
    assert browser.location == "/.auth/login/aad?post_login_redirect_uri=/api/report?from=x"
    program = auth.decide("entra", ROLE, True, {"Accept": "application/json"}, "/api/alerts")
    assert program.status == 401


def test_the_reader_role_is_required_and_enough() -> None:
    for role_typ in ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"):
        ok = {"X-MS-CLIENT-PRINCIPAL": principal(ROLE, role_typ=role_typ)}
        assert auth.decide("entra", ROLE, True, ok, "/api/alerts").allowed
    other = {"X-MS-CLIENT-PRINCIPAL": principal("Something.Else")}
    assert auth.decide("entra", ROLE, True, other, "/api/alerts").status == 403


def test_identity_headers_are_not_trusted_when_the_platform_has_no_sign_in() -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": principal(ROLE), "Accept": "text/html"}
    decision = auth.decide("entra", ROLE, False, forged, "/api/report")
    assert decision.status == 401 and decision.caller is None


@pytest.mark.parametrize("raw", ["", "!!!", base64.b64encode(b"[1,2]").decode(), "A" * 70000])
def test_a_malformed_principal_is_no_one(raw: str) -> None:
    assert auth.principal({"x-ms-client-principal": raw}) is None


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "\\\\evil", ""])
def test_sign_in_only_ever_returns_to_a_local_path(target: str) -> None:
    assert auth.login_url(target) == "/.auth/login/aad?post_login_redirect_uri=/"


def test_settings_default_to_sign_in_and_never_print_the_key() -> None:
    key = "AccountKey=c2VjcmV0IGtleSBtYXRlcmlhbA=="
    s = Settings.from_env({"BastionLogsStorage": f"DefaultEndpointsProtocol=https;{key}"})
    assert s.api_auth == "entra" and s.api_reader_role == ROLE and not s.platform_auth
    assert "c2VjcmV0" not in repr(s) and "AccountKey" not in repr(s)


@pytest.fixture(scope="module")
def tables(sample_store: tuple[dict[str, str], Pipeline]) -> dict[str, str]:
    return sample_store[0]


@pytest.mark.azurite
@pytest.mark.parametrize(
    ("headers", "platform", "status"),
    [
        ({}, "True", 401),
        ({"Accept": "text/html"}, "True", 302),
        ({"X-MS-CLIENT-PRINCIPAL": principal("Other")}, "True", 403),
        ({"X-MS-CLIENT-PRINCIPAL": principal(ROLE)}, "True", 200),
        ({"X-MS-CLIENT-PRINCIPAL": principal(ROLE)}, "", 401),  # sign-in off: a forged header
    ],
    ids=["program", "browser", "no-role", "reader", "forged"],
)
def test_every_route_answers_only_readers(
    indexed_app: dict[str, Any],
    app_env: Callable[..., Pipeline],
    tables: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    platform: str,
    status: int,
) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", platform)
    app_env(**tables)
    caplog.set_level(logging.INFO, logger="shared.answer.http")
    for name in ("http_activity", "http_alerts", "http_report"):
        route = name.removeprefix("http_")
        request = func.HttpRequest(
            method="GET",
            url=f"https://app.example/api/{route}?from=2026-11-23&to=2026-11-24",
            params={"from": "2026-11-23", "to": "2026-11-24"},
            headers=headers,
            body=b"",
        )
        response = indexed_app[name].get_user_function()(request)
        assert response.status_code == status, name
        if status == 302:
            assert response.headers["Location"].startswith("/.auth/login/aad?")
        if status in (401, 403):
            assert orjson.loads(response.get_body())["error"] in ("unauthorized", "forbidden")
    if status == 200:
        assert "by 11111111-aaaa: 200" in caplog.text  # who read the audit data is logged
