"""Security properties: no query text built from input, no secret in logs, data stays data."""

from __future__ import annotations

import ast
import logging
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from reliability_support import close, logs_container, names, new_pipeline, snapshot

from devtools import azurite, samples
from devtools.azurite import AZURITE_KEY, Azurite
from shared.ingest import normalize

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: A comparison operator right before (or after) an interpolated value: `f"X eq '{v}'"`.
ODATA_OPERATOR = re.compile(r"\b(eq|ne|gt|ge|lt|le)\s*'?$|^'?\s*(eq|ne|gt|ge|lt|le)\b")


# -- no OData text built from input ---------------------------------------------------------
def _calls(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == name
        ):
            yield node


def test_every_query_passes_values_as_parameters() -> None:
    checked = 0
    for path in sorted(SHARED.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "query_entities"):
            checked += 1
            kw = {k.arg for k in call.keywords}
            assert "parameters" in kw, (
                f"{path.name}:{call.lineno} query_entities without parameters"
            )
            assert "query_filter" not in kw or "parameters" in kw
        for call in _calls(tree, "query"):
            if path.name == "storage.py" or not call.args:
                continue
            checked += 1  # Table.query(filter, parameters, select=None)
            has_params = len(call.args) >= 2 or "parameters" in {k.arg for k in call.keywords}
            assert has_params, f"{path.name}:{call.lineno} query without parameters"
            flt = call.args[0]
            assert not isinstance(flt, ast.JoinedStr), f"{path.name}:{call.lineno} f-string filter"
        for node in ast.walk(tree):  # no f-string, % or .format produces OData text
            if isinstance(node, ast.JoinedStr):
                for part in node.values:
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        assert not ODATA_OPERATOR.search(part.value), (
                            f"{path.name}:{node.lineno} builds a filter with an f-string"
                        )
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
            ):
                assert not re.search(r"\b(eq|ne|gt|ge|lt|le)\b", node.left.value), path.name
        for call in _calls(tree, "format"):
            target = call.func.value  # type: ignore[attr-defined]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                assert not re.search(r"\b(eq|ne|gt|ge|lt|le)\b", target.value), path.name
    assert checked >= 5  # the check sees the real queries


# -- no secret in logs ----------------------------------------------------------------------
class _Failing(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.azurite
def test_no_secret_in_logs_or_alert_rows(
    emulator: Azurite, failing_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{azurite.free_port()}"  # nothing listens there
    secrets = {
        "webhook": "s3cr3t-webhook-token-aaaa",
        "teams": "s3cr3t-teams-signature-bbbb",
        "slack": "s3cr3t-slack-token-cccc",
    }
    env = names(
        ALERT_WEBHOOK_URL=f"{dead}/hooks/{secrets['webhook']}?sig={secrets['webhook']}",
        ALERT_TEAMS_WEBHOOK_URL=f"{failing_server}/workflows/{secrets['teams']}",
        ALERT_SLACK_WEBHOOK_URL=f"{failing_server}/services/{secrets['slack']}",
        WEBHOOK_MAX_ATTEMPTS="2",
        WEBHOOK_TIMEOUT_SECONDS="1",
    )
    caplog.set_level(logging.DEBUG)
    p = new_pipeline(emulator.connection_string, env)
    container = logs_container(p)
    start = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    attack = [
        samples.record(start + timedelta(seconds=10 * i), "admin", samples.FAIL, "192.0.2.66",
                       port=1000 + i)
        for i in range(6)
    ]  # fmt: skip
    name = samples.blob_path("BASTION-SECRET", start)
    container.upload_blob(name, b"".join(orjson.dumps(r) + b"\n" for r in attack))
    summary = p.ingest(container.get_blob_client(name))
    assert summary.alerts
    tried, done = p.detector.deliverer.redeliver_pending(datetime.now(UTC) + timedelta(minutes=10))
    assert tried == len(summary.alerts) and done == 0
    rows = [
        r
        for r in p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
        if "FirstSeen" in r  # incident rows, not the per-actor head rows
    ]
    close(p)

    assert _Failing.hits >= 2 * 2 * len(summary.alerts)  # two channels, retried, twice
    assert rows and all(r["Status"] == "pending" for r in rows)
    assert all("HTTP 500" in r["LastError"] for r in rows)
    logged = caplog.text + "\n".join(
        str(r.args) + str(r.exc_info) + (r.exc_text or "") for r in caplog.records
    )
    stored = "\n".join(orjson.dumps(dict(r), default=str).decode() for r in rows)
    for where, text in (("log output", logged), ("alert rows", stored)):
        for secret in (*secrets.values(), AZURITE_KEY, AZURITE_KEY[:20]):
            assert secret not in text, f"{secret[:12]}... appears in {where}"
        for path in ("/hooks/", "/workflows/", "/services/"):
            assert path not in text, f"a webhook path appears in {where}"


# -- quarantine holds data ------------------------------------------------------------------
HOSTILE_LINES = [
    b"<script>alert(document.cookie)</script>",
    b'{"time": "</script><img src=x onerror=alert(1)>", "category": "BastionAuditLogs"}',
    b"=cmd|' /C calc'!A0",
    b"\xff\xfe<svg onload=alert(1)>",
    b"'; DROP TABLE x; --",
]


@pytest.mark.azurite
def test_quarantine_is_stored_as_json_data_and_cut(emulator: Azurite) -> None:
    p = new_pipeline(emulator.connection_string, names(READ_CHUNK_BYTES="65536"))
    container = logs_container(p)
    huge = b'{"category": "BastionAuditLogs", "x": "' + b"A" * (10 * 1024 * 1024) + b'"}'
    good = orjson.dumps(samples.record(samples.START, "bob", samples.OK, "10.0.0.1")) + b"\n"
    name = samples.blob_path("BASTION-HOSTILE", samples.START)
    data = good + b"\n".join([*HOSTILE_LINES, huge]) + b"\n" + good
    container.upload_blob(name, data)
    summary = p.ingest(container.get_blob_client(name))
    state = snapshot(p)
    quarantine = p.storage.blobs.get_container_client(p.settings.quarantine_container)
    types = {b.name: b.content_settings.content_type for b in quarantine.list_blobs()}
    close(p)

    assert summary.quarantined == len(HOSTILE_LINES) + 1 and summary.bytes_read == len(data)

    def as_data(text: str) -> object:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text

    kept = sorted(repr(as_data(d["Raw"])) for d in state.quarantine.values() if d["RawBytes"] < 999)
    want = sorted(repr(as_data(line.decode("utf-8", "replace"))) for line in HOSTILE_LINES)
    assert kept == want  # each hostile line kept whole, as a JSON string inside a JSON document
    (cut,) = [d for d in state.quarantine.values() if d["Reason"].startswith("oversized")]
    assert cut["RawBytes"] <= p.settings.max_record_bytes
    assert len(cut["Raw"].encode()) <= p.settings.max_record_bytes
    assert all("html" not in (t or "") and "javascript" not in (t or "") for t in types.values())


def test_report_escapes_hostile_strings() -> None:
    report = pytest.importorskip("shared.answer.report")
    evil = "<script>alert(1)</script>"
    when = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    rec = samples.record(when, evil, samples.FAIL, "10.0.0.1", vm=f"VM{evil}")
    rec["properties"]["clientIpAddress"] = f"1.2.3.4{evil}"
    events = [normalize.normalize(rec, "b", i, 0) for i in range(3)]
    data = report.aggregate(events, [], when - timedelta(hours=1), when + timedelta(hours=1))
    page = report.render(data, when)
    assert evil not in page and "<script" not in page.lower()
    assert "&lt;script&gt;" in page  # shown, as text
