"""Who may read the audit data over HTTP: people and programs signed in with Entra ID and
holding the reader app role. Pure code.

App Service Authentication (configured by `infra/`) validates tokens and sign-in sessions and
hands the app the caller as the `X-MS-CLIENT-PRINCIPAL` header (base64 JSON of the token's
claims); the platform strips that header from incoming requests, so it cannot be forged while
authentication is enabled, which the platform announces as `WEBSITE_AUTH_ENABLED=True`. With
`API_AUTH=entra` (the default) the app answers only callers with the role in
`API_READER_ROLE`: no principal means a browser is sent to sign in and a program gets 401, a
principal without the role gets 403, and headers are not trusted at all when the platform says
authentication is off. `API_AUTH=none` is for local runs (`func start`) only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import orjson

PRINCIPAL_HEADER = "x-ms-client-principal"
LOGIN_PATH = "/.auth/login/aad"
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid", "appid")


@dataclass(frozen=True)
class Caller:
    """A signed-in person or program: its object id (for the access log) and its app roles."""

    id: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Decision:
    """Allowed (with the caller, if any), or the status and headers to answer instead."""

    caller: Caller | None
    status: int = 200
    message: str = ""
    location: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200


def principal(headers: Mapping[str, str]) -> Caller | None:
    """The caller App Service Authentication vouches for, or None if there is none (or it
    cannot be read: a malformed header is treated as no sign-in, never as a person)."""
    raw = next((v for k, v in headers.items() if k.lower() == PRINCIPAL_HEADER), "")
    if not raw or len(raw) > 64 * 1024:
        return None
    try:
        doc = orjson.loads(base64.b64decode(raw, validate=False))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        return None
    role_type = doc.get("role_typ") if isinstance(doc.get("role_typ"), str) else "roles"
    roles, ident = set(), ""
    for claim in doc["claims"]:
        if not isinstance(claim, dict):
            continue
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(typ, str) or not isinstance(val, str):
            continue
        if typ == role_type or typ in _ROLE_CLAIMS:
            roles.add(val)
        elif typ in _ID_CLAIMS and not ident:
            ident = val
    return Caller(ident[:100] or "unknown", frozenset(roles))


def decide(
    mode: str,
    role: str,
    platform_auth: bool,
    headers: Mapping[str, str],
    path_and_query: str,
) -> Decision:
    """May this request read the audit data?"""
    if mode == "none":
        return Decision(None)
    caller = principal(headers) if platform_auth else None
    if caller is None:
        accept = next((v for k, v in headers.items() if k.lower() == "accept"), "")
        if platform_auth and "text/html" in accept.lower():
            return Decision(None, 302, "sign in first", login_url(path_and_query))
        why = "sign in with Entra ID" if platform_auth else "App Service Authentication is off"
        return Decision(None, 401, why)
    if role not in caller.roles:
        return Decision(caller, 403, f"the app role {role!r} is required")
    return Decision(caller)


def login_url(path_and_query: str) -> str:
    """Where a browser signs in, coming back to the same page (only ever a local path)."""
    target = path_and_query if path_and_query.startswith("/") else "/"
    if target.startswith("//") or "\\" in target:
        target = "/"
    return f"{LOGIN_PATH}?post_login_redirect_uri={quote(target, safe='/?=&')}"
