"""The diagnostic-setting check's call to Azure Resource Manager (I/O); the verdict is decided
by `shared.hosts.diagnostics` (pure), whose docstring says what is asked and why azure-core."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import policies
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from shared.core import resources, text
from shared.hosts.diagnostics import (
    API_VERSION,
    ARM_ENDPOINT,
    GROUPS,
    Check,
    Verdict,
    decide,
    host_name,
)

log = logging.getLogger(__name__)


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the call (I/O) -----------------------------------------------------------------------------
class Checker:
    """Checks Bastion hosts' diagnostic settings through ARM; one per worker process (it keeps
    the credential's token between timer runs). `check` and `check_all` never raise for an API,
    network or credential failure: they return `error` and log one line (type and status)."""

    def __init__(
        self,
        storage_account_id: str,
        credential: TokenCredential,
        endpoint: str = ARM_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 2,
        groups: Iterable[str] = GROUPS,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("the ARM endpoint must be an https URL")
        self._plain = parts.scheme == "http"
        if self._plain and not _loopback(parts.hostname):
            raise ValueError("the ARM endpoint must use https (http only for a loopback test)")
        if not storage_account_id.strip():
            raise ValueError("the logs storage account's resource id is required")
        self.storage_account_id = storage_account_id.strip()
        self.groups = tuple(groups)
        self.endpoint = endpoint.rstrip("/")
        # ARM's token scope is its own endpoint + /.default (also in sovereign clouds).
        scope = (ARM_ENDPOINT if self._plain else self.endpoint) + "/.default"
        self._client: PipelineClient[Any, Any] = PipelineClient(
            self.endpoint,
            policies=[
                policies.HeadersPolicy({"Accept": "application/json"}),
                policies.UserAgentPolicy("bastion-audit-diagnostics"),
                policies.RetryPolicy(
                    retry_total=retries, retry_backoff_factor=0.5, retry_backoff_max=4
                ),
                policies.BearerTokenCredentialPolicy(credential, scope),
            ],  # no HTTP logging policy: nothing of the request is ever logged
            transport=RequestsTransport(connection_timeout=min(timeout, 5.0), read_timeout=timeout),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_settings(self, bastion_id: str) -> Any:
        """The JSON body of `DiagnosticSettings_List` for one host. Raises `HttpResponseError`
        (with `status_code`) for an error answer, azure-core errors for network failures."""
        path = quote(bastion_id, safe="/") + "/providers/Microsoft.Insights/diagnosticSettings"
        url = self.endpoint + path
        request = HttpRequest("GET", url, params={"api-version": API_VERSION})
        options: dict[str, Any] = {"enforce_https": False} if self._plain else {}
        response = self._client.send_request(request, **options)
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        return response.json()

    def check(self, bastion_id: str) -> Check:
        """One host's verdict; never raises for a failed call (the verdict is then `error`)."""
        host = host_name(bastion_id)
        started = time.monotonic()
        try:
            if not resources.BASTION_ID.match(bastion_id):
                raise ValueError("not a Bastion host resource id")
            body = self.list_settings(bastion_id)
        except Exception as exc:  # noqa: BLE001 - a failed check is logged, never raised
            status = getattr(exc, "status_code", None)
            log.warning(
                "diagnostic-setting check of %s failed: %s status=%s (no finding)",
                host,
                type(exc).__name__,
                status if status is not None else "-",
            )
            return Check(
                Verdict.ERROR,
                f"Could not read the diagnostic settings of {text.quoted(host, 80)} "
                f"({type(exc).__name__}{f', HTTP {status}' if status is not None else ''}).",
                bastion_id=bastion_id,
                status=status,
                error=type(exc).__name__,
            )
        result = decide(body, self.storage_account_id, bastion_id, self.groups)
        if result.verdict is Verdict.ERROR:
            log.warning(
                "diagnostic-setting check of %s failed: %s status=200 (no finding)",
                host,
                result.error,
            )
            return replace(result, status=200)
        level = logging.INFO if result.verdict is Verdict.OK else logging.WARNING
        log.log(
            level,
            "diagnostic-setting check of %s: %s (%d setting(s), %.2f s)",
            host,
            result.verdict.value,
            len(result.settings),
            time.monotonic() - started,
        )
        return result

    def check_all(self, ids: Iterable[str]) -> list[Check]:
        """Every host's verdict, one after another; one host's failure does not stop the rest."""
        return [self.check(i) for i in ids]


def check(
    bastion_id: str,
    storage_account_id: str,
    credential: TokenCredential,
    endpoint: str = ARM_ENDPOINT,
    timeout: float = 10.0,
) -> Check:
    """One host's verdict with a throw-away client (prefer a long-lived `Checker` in the app)."""
    with Checker(storage_account_id, credential, endpoint, timeout) as checker:
        return checker.check(bastion_id)
