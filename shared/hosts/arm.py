"""The diagnostic-setting check's call to Azure Resource Manager (I/O); the verdict is decided
by `shared.hosts.diagnostics` (pure), whose docstring says what is asked and why azure-core."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, Self
from urllib.parse import quote, urlsplit

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline import policies
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

from shared.core import resources, text
from shared.core.settings import Settings
from shared.hosts import coverage
from shared.hosts.coverage import NETWORK_API, Bastion
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
#: Most pages of one listing followed (ARM pages hold 100 or more entries).
MAX_PAGES = 50


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential(settings: Settings) -> TokenCredential:
    """The app's identity for ARM: the managed identity the logs connection names (a
    user-assigned one by its client id), else `DefaultAzureCredential`'s chain."""
    from azure.identity import DefaultAzureCredential

    parts = settings.connection_parts
    client = parts.get("clientId") if parts.get("credential") == "managedidentity" else None
    return DefaultAzureCredential(managed_identity_client_id=client)


# -- the calls (I/O) ----------------------------------------------------------------------------
class Arm:
    """A client of Azure Resource Manager; one per worker process (it keeps the credential's
    token between timer runs). Bearer tokens go to ARM's endpoint only: over https, or plain
    http to a loopback address (a test's stand-in), and never to a link that leaves it."""

    def __init__(
        self,
        credential: TokenCredential,
        endpoint: str = ARM_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 2,
        agent: str = "bastion-audit",
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("the ARM endpoint must be an https URL")
        self._plain = parts.scheme == "http"
        if self._plain and not _loopback(parts.hostname):
            raise ValueError("the ARM endpoint must use https (http only for a loopback test)")
        self.endpoint = endpoint.rstrip("/")
        # ARM's token scope is its own endpoint + /.default (also in sovereign clouds).
        scope = (ARM_ENDPOINT if self._plain else self.endpoint) + "/.default"
        self._client: PipelineClient[Any, Any] = PipelineClient(
            self.endpoint,
            policies=[
                policies.HeadersPolicy({"Accept": "application/json"}),
                policies.UserAgentPolicy(agent),
                policies.RetryPolicy(
                    retry_total=retries, retry_backoff_factor=0.5, retry_backoff_max=4
                ),
                policies.BearerTokenCredentialPolicy(credential, scope),
            ],  # no HTTP logging policy: nothing of the request is ever logged
            transport=RequestsTransport(connection_timeout=min(timeout, 5.0), read_timeout=timeout),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def follow(self, link: str) -> str:
        """A `nextLink` or `Location` ARM answered, if it stays on ARM's endpoint."""
        ours, theirs = urlsplit(self.endpoint), urlsplit(link)
        if (theirs.scheme, theirs.netloc.casefold()) != (ours.scheme, ours.netloc.casefold()):
            raise ValueError("a link away from Azure Resource Manager")
        return link

    def send(
        self, method: str, url: str, params: dict[str, str] | None = None, body: Any = None
    ) -> HttpResponse:
        """One request; raises `HttpResponseError` (with `status_code`) for an error answer."""
        request = HttpRequest(method, url, params=params, json=body)
        options: dict[str, Any] = {"enforce_https": False} if self._plain else {}
        response: HttpResponse = self._client.send_request(request, **options)
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        return response

    def _get(self, url: str, params: dict[str, str] | None) -> Any:
        response = self.send("GET", url, params)
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        return response.json()


class Checker(Arm):
    """Checks Bastion hosts' diagnostic settings, and lists a subscription's Bastion hosts.
    `check` and `check_all` never raise for an API, network or credential failure: they return
    `error` and log one line (type and status)."""

    def __init__(
        self,
        storage_account_id: str,
        credential: TokenCredential,
        endpoint: str = ARM_ENDPOINT,
        timeout: float = 10.0,
        retries: int = 2,
        groups: Iterable[str] = GROUPS,
    ) -> None:
        if not storage_account_id.strip():
            raise ValueError("the logs storage account's resource id is required")
        super().__init__(credential, endpoint, timeout, retries, "bastion-audit-diagnostics")
        self.storage_account_id = storage_account_id.strip()
        self.groups = tuple(groups)

    def list_settings(self, bastion_id: str) -> Any:
        """The JSON body of `DiagnosticSettings_List` for one host. Raises `HttpResponseError`
        (with `status_code`) for an error answer, azure-core errors for network failures."""
        path = quote(bastion_id, safe="/") + "/providers/Microsoft.Insights/diagnosticSettings"
        return self._get(self.endpoint + path, {"api-version": API_VERSION})

    def list_bastions(self, subscription: str) -> list[Bastion]:
        """Every Bastion host of one subscription (`BastionHosts_List`, every page). Raises as
        `list_settings`, and ValueError for a page that is not one, or a `nextLink` that leaves
        ARM's endpoint (a token is only ever sent there)."""
        if not resources.SUBSCRIPTION.match(subscription):
            raise ValueError("not a subscription id")
        url = (
            f"{self.endpoint}/subscriptions/{subscription}/providers/Microsoft.Network/bastionHosts"
        )
        params: dict[str, str] | None = {"api-version": NETWORK_API}
        out: list[Bastion] = []
        for _ in range(MAX_PAGES):
            found, link = coverage.bastions(self._get(url, params), subscription)
            out += found
            if link is None:
                return out
            url, params = self.follow(link), None
        raise ValueError(f"more than {MAX_PAGES} pages of Bastion hosts")

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
