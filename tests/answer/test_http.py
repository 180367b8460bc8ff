"""The HTTP functions through the indexed app, against Azurite with the sample logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func
import orjson
import pytest

from devtools import samples
from shared.ingest.loop import Pipeline

pytestmark = pytest.mark.azurite
RANGE = {"from": "2026-11-23T09:00:00Z", "to": "2026-11-23T12:00:00Z"}


@pytest.fixture(scope="module")
def tables(sample_store: tuple[dict[str, str], Pipeline]) -> dict[str, str]:
    """Sample logs ingested once; the app is pointed at these settings by each test."""
    return sample_store[0]


@pytest.fixture
def call(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], tables: dict[str, str]
) -> Callable[..., func.HttpResponse]:
    app_env(**tables, API_AUTH="none")  # as under `func start`; sign-in: test_http_auth.py

    def invoke(name: str, **params: str) -> func.HttpResponse:
        route = name.removeprefix("http_")
        request = func.HttpRequest(method="GET", url=f"/api/{route}", params=params, body=b"")
        return indexed_app[name].get_user_function()(request)

    return invoke


def body(response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    return orjson.loads(response.get_body())


def test_routes_are_get_only_and_left_to_entra_sign_in(indexed_app: dict[str, Any]) -> None:
    """Anonymous at the Functions level: App Service Authentication stands in front and the
    app checks the caller's role itself (test_http_auth.py)."""
    for name, route in (("http_activity", "activity"), ("http_alerts", "alerts")):
        raw = orjson.loads(indexed_app[name].get_raw_bindings()[0])
        assert raw["route"] == route and raw["methods"] == ["GET"]
        assert raw["authLevel"].lower() == "anonymous"


def test_activity_by_user(call: Callable[..., func.HttpResponse]) -> None:
    response = call("http_activity", user="svc-deploy", **RANGE)
    assert response.status_code == 200
    items = body(response)["items"]
    assert [i["outcome"] for i in items] == ["Failure"] * 6 + ["Success"]
    assert {i["clientIp"] for i in items} == {samples.COMPROMISE_IP}
    assert {i["targetVM"] for i in items} == {"LINUX-DB-01"}


def test_activity_by_vm_ip_and_outcome(call: Callable[..., func.HttpResponse]) -> None:
    items = body(call("http_activity", vm="win-app-02", outcome="failure", **RANGE))["items"]
    assert len(items) == 7 and {i["clientIp"] for i in items} == {samples.SPRAY_IP}
    items = body(call("http_activity", ip=samples.BRUTE_IP, **RANGE))["items"]
    assert len(items) == 7 and {i["user"] for i in items} == {"admin"}


def test_activity_paging(call: Callable[..., func.HttpResponse]) -> None:
    everything = body(call("http_activity", **RANGE))["items"]
    _, expected = samples.build()
    assert len(everything) == expected.records
    seen, token = [], ""
    while True:
        page = body(call("http_activity", limit="25", continuation=token, **RANGE))
        seen += page["items"]
        token = page["continuation"]
        if token is None:
            break
    assert seen == everything


def test_injection_matches_nothing(call: Callable[..., func.HttpResponse]) -> None:
    response = call("http_activity", user="x' or PartitionKey ne '", **RANGE)
    assert response.status_code == 200 and body(response) == {"items": [], "continuation": None}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"from": "not-a-date"}, "ISO 8601"),
        ({"from": "2026-11-23T12:00Z", "to": "2026-11-23T09:00Z"}, "before"),
        ({"from": "2026-01-01", "to": "2026-06-01", "user": "a"}, "longer than"),
        ({**RANGE, "outcome": "Maybe"}, "outcome"),
        ({**RANGE, "limit": "-1"}, "limit"),
        ({**RANGE, "limit": "100000"}, "limit"),
        ({**RANGE, "continuation": "garbage"}, "continuation"),
    ],
)
def test_activity_bad_parameters(
    call: Callable[..., func.HttpResponse], params: dict[str, str], fragment: str
) -> None:
    response = call("http_activity", **params)
    assert response.status_code == 400
    error = body(response)
    assert error["error"] == "bad_request" and fragment in error["message"]


def test_alerts(call: Callable[..., func.HttpResponse]) -> None:
    _, expected = samples.build()
    response = call("http_alerts", **{"from": "2026-11-23", "to": "2026-11-24"})
    assert response.status_code == 200
    items = body(response)["items"]
    assert {(a["rule"], a["subject"]) for a in items} == set(expected.alerts)
    pending = body(
        call("http_alerts", status="pending", **{"from": "2026-11-23", "to": "2026-11-24"})
    )
    assert pending == {"items": [], "continuation": None}
    assert call("http_alerts", status="weird").status_code == 400
    assert call("http_alerts", **{"from": "2026-11-24", "to": "2026-11-23"}).status_code == 400


def test_report(call: Callable[..., func.HttpResponse]) -> None:
    response = call("http_report", **RANGE)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = response.get_body().decode()
    assert "<script" not in page and 'id="hourly"' in page and "svc-deploy" in page
    assert call("http_report", **{"from": "2026-11-01", "to": "2026-11-23"}).status_code == 400
