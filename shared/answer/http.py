"""Bodies of the HTTP functions (`GET /api/activity`, `/api/alerts`, `/api/report`, `/api/status`,
`POST /api/erase`).

Each takes the request and the worker's storage clients and returns the response. Every route first
checks the caller (`auth`: Entra ID sign-in with the reader role) and logs who read what;
parameters are validated by `queries` and a bad one is a 400 with a JSON
`{"error": ..., "message": ...}`. Storage faults are not caught: the host answers 500.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import orjson

from shared.answer import auth, queries, report
from shared.store.tables import Storage

log = logging.getLogger(__name__)
_JSON = "application/json"
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
Handler = Callable[[func.HttpRequest, Storage], func.HttpResponse]


def signed_in(handler: Handler, eraser: bool = False) -> Handler:
    """Answer only callers `auth` lets in (with the reader role, or the eraser role for
    erasure); log every access to the audit data."""

    @functools.wraps(handler)
    def guarded(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
        s = storage.settings
        url = urlsplit(req.url)
        here = url.path + (f"?{url.query}" if url.query else "")
        role = s.api_eraser_role if eraser else s.api_reader_role
        decision = auth.decide(s.api_auth, role, s.platform_auth, req.headers, here)
        who = decision.caller.id if decision.caller else "-"
        log.info("api %s by %s: %d", handler.__name__, who, decision.status)
        if decision.status == 302:
            headers = {**_HEADERS, "Location": decision.location}
            return func.HttpResponse(status_code=302, headers=headers)
        if not decision.allowed:
            error = "unauthorized" if decision.status == 401 else "forbidden"
            response = _json({"error": error, "message": decision.message}, decision.status)
            if decision.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="bastion-audit"'
            return response
        return handler(req, storage)

    return guarded


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps(body), status_code=status, mimetype=_JSON, headers=dict(_HEADERS)
    )


def _bad(exc: queries.BadQuery) -> func.HttpResponse:
    return _json({"error": "bad_request", "message": str(exc)}, 400)


def _paged(
    req: func.HttpRequest,
    storage: Storage,
    parse: Callable[[Any], Any],
    answer: Callable[[Storage, Any], queries.Page],
) -> func.HttpResponse:
    """A page of a listing: its parameters checked (a 400 names the bad one), then read."""
    try:
        query = parse(req.params)
    except queries.BadQuery as exc:
        return _bad(exc)
    return _json(answer(storage, query).json())


@signed_in
def activity(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """`?user=&vm=&ip=&from=&to=&outcome=&limit=&continuation=` -> `{"items", "continuation"}`."""
    return _paged(req, storage, queries.parse_activity, queries.activity)


@signed_in
def alerts(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """`?status=&from=&to=&limit=&continuation=` -> `{"items", "continuation"}`."""
    return _paged(req, storage, queries.parse_alerts, queries.alerts)


@signed_in
def sessions(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """`?user=&from=&to=&limit=` -> `{"items", "total", "open", "openNowFrom"}`: who was
    connected to what, from when to when (open sessions: Bastion's word where it may be asked)."""
    try:
        query = queries.parse_sessions(req.params)
    except queries.BadQuery as exc:
        return _bad(exc)
    with queries.sessions_asker(storage.settings) as ask:
        return _json(queries.session_list(storage, query, ask))


@signed_in
def report_page(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """`?from=&to=&user=` -> the HTML report (at most `report.MAX_DAYS`; with `user`, only the
    accounts that name reaches, listed on the page)."""
    user = req.params.get("user", "").strip() or None
    try:
        start, end = report.parse(req.params)
        if user and len(user) > 1024:
            raise queries.BadQuery("user: at most 1024 characters")
        page = report.build(storage, start, end, user)
    except queries.BadQuery as exc:
        return _bad(exc)
    headers = {**_HEADERS, "Content-Security-Policy": report.CSP}
    return func.HttpResponse(
        page, status_code=200, mimetype="text/html", charset="utf-8", headers=headers
    )


@signed_in
def status(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """Is it working? Per Bastion host: last record, bytes behind, 24 h counts, verdict."""
    from shared.answer import status as health

    return _json(health.collect(storage, storage.logs()).json())


def _erase(req: func.HttpRequest, storage: Storage) -> func.HttpResponse:
    """`POST ?user=NAME[&all=true][&exact=true]` -> `{"removed": {kind: count}}` (and
    `matchedAccounts` when the name reached more than its literal account; 409 when it reached
    several that hold records and neither `all` nor `exact` is given): README, "Retention and
    erasure"; the eraser role is required. Running it again removes nothing."""
    from shared.keep.expiry import Eraser
    from shared.keep.policy import Ambiguous, NoSuchAccount

    user = req.params.get("user", "")
    if len(user) > 1024:
        return _json({"error": "bad_request", "message": "user: at most 1024 characters"}, 400)
    eraser = Eraser(storage)
    every, exact = (req.params.get(k, "").strip().casefold() in ("true", "1", "yes")
                    for k in ("all", "exact"))  # fmt: skip
    try:
        removed = eraser.erase(user, all_matches=every, exact=exact)
    except NoSuchAccount as exc:
        return _json({"error": "not_found", "message": str(exc)}, 404)
    except Ambiguous as exc:
        body = {"error": "ambiguous", "message": str(exc), "matchedAccounts": exc.found.matched()}
        return _json(body, 409)
    except ValueError as exc:
        return _json({"error": "bad_request", "message": str(exc)}, 400)
    answer: dict[str, object] = {"removed": dict(sorted(removed.items()))}
    if eraser.found.widened:
        answer["matchedAccounts"] = eraser.found.matched()
    return _json(answer)


erase = signed_in(_erase, eraser=True)
