"""Bodies of the HTTP functions (`GET /api/activity`, `/api/alerts`, `/api/report`).

Each takes the request and the worker's pipeline and returns the response; parameters are
validated by `queries` and a bad one is a 400 with a JSON `{"error": ..., "message": ...}`.
Storage faults are not caught: the host answers 500 and logs them.
"""

from __future__ import annotations

import azure.functions as func
import orjson

from . import queries, report
from .ingest import Pipeline

_JSON = "application/json"
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(
        orjson.dumps(body), status_code=status, mimetype=_JSON, headers=dict(_HEADERS)
    )


def _bad(exc: queries.BadQuery) -> func.HttpResponse:
    return _json({"error": "bad_request", "message": str(exc)}, 400)


def activity(req: func.HttpRequest, pipeline: Pipeline) -> func.HttpResponse:
    """`?user=&vm=&ip=&from=&to=&outcome=&limit=&continuation=` -> `{"items", "continuation"}`."""
    try:
        query = queries.parse_activity(req.params)
    except queries.BadQuery as exc:
        return _bad(exc)
    return _json(queries.activity(pipeline.storage, query).json())


def alerts(req: func.HttpRequest, pipeline: Pipeline) -> func.HttpResponse:
    """`?status=&from=&to=&limit=&continuation=` -> `{"items", "continuation"}`."""
    try:
        query = queries.parse_alerts(req.params)
    except queries.BadQuery as exc:
        return _bad(exc)
    return _json(queries.alerts(pipeline.storage, query).json())


def report_page(req: func.HttpRequest, pipeline: Pipeline) -> func.HttpResponse:
    """`?from=&to=` -> the HTML report (at most `report.MAX_DAYS`)."""
    try:
        start, end = report.parse(req.params)
    except queries.BadQuery as exc:
        return _bad(exc)
    page = report.build(pipeline.storage, start, end)
    headers = {**_HEADERS, "Content-Security-Policy": report.CSP}
    return func.HttpResponse(
        page, status_code=200, mimetype="text/html", charset="utf-8", headers=headers
    )
