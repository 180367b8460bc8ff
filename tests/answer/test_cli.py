"""`python -m shared activity|alerts|ingest|report` against Azurite, settings from the env."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from devtools import azurite, samples
from shared import cli
from shared.core.settings import CONNECTION

pytestmark = pytest.mark.azurite
RANGE = ["--from", "2026-11-23T09:00Z", "--to", "2026-11-23T12:00Z"]


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    for name, data in samples.build()[0].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "README.txt").write_text("not a log")
    return root


@pytest.fixture(scope="module")
def env(emulator: azurite.Azurite, sample_dir: Path) -> dict[str, str]:
    """Isolated tables with the samples ingested once, through `ingest PATH`."""
    values = azurite.isolated_env(emulator.connection_string)
    n = values["EVENTS_TABLE"]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        out = io.StringIO()
        assert cli.main(["ingest", str(sample_dir), "--prefix", f"cli{n}/"], out) == 0
    values["ingest_output"] = out.getvalue()
    values["prefix"] = f"cli{n}/"
    return values


@pytest.fixture
def run(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    for key, value in env.items():
        if key[0].isupper() or key == CONNECTION:
            monkeypatch.setenv(key, value)

    def invoke(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = cli.main(list(argv), out)
        return code, out.getvalue()

    return invoke


def test_ingest_local_folder(env: dict[str, str]) -> None:
    blobs, expected = samples.build()
    text = env["ingest_output"]
    assert f"uploaded {len(blobs)} file(s)" in text  # README.txt is not a log
    assert (
        f"total: blobs={len(blobs)} read={expected.records + expected.quarantined} "
        f"stored={expected.records} quarantined={expected.quarantined} skipped=0 "
        f"new_alerts={len(expected.alerts)}"
    ) in text


def test_ingest_blob_prefix_again_stores_nothing_new(
    run: Callable[..., tuple[int, str]], env: dict[str, str]
) -> None:
    code, text = run("ingest", env["prefix"] + "resourceId=/SUBSCRIPTIONS/")
    assert code == 0
    assert "stored=0" in text.splitlines()[-1] and "blobs=5" in text.splitlines()[-1]
    code, _ = run("ingest", "no-such-prefix/")
    assert code == 1


def test_activity_table(run: Callable[..., tuple[int, str]]) -> None:
    code, text = run("activity", "--user", "svc-deploy", *RANGE)
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["Time", "(UTC)", "User"]
    assert lines[-1] == "(7 rows)"
    assert sum("Failure" in line for line in lines) == 6


def test_activity_json_and_csv(run: Callable[..., tuple[int, str]]) -> None:
    code, text = run(
        "activity", "--vm", "win-app-02", "--outcome", "failure", *RANGE, "--format", "json"
    )
    assert code == 0
    items = orjson.loads(text)
    assert len(items) == 7 and {i["clientIp"] for i in items} == {samples.SPRAY_IP}
    code, text = run("activity", "--ip", samples.OFFICE_NAT, *RANGE, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 24 and rows[0]["targetVM"] == "WIN-JUMP-01"
    code, text = run("activity", *RANGE, "--limit", "5", "--format", "json")
    assert len(orjson.loads(text)) == 5


def test_activity_injection_and_errors(run: Callable[..., tuple[int, str]]) -> None:
    code, text = run("activity", "--user", "x' or PartitionKey ne '", *RANGE)
    assert code == 0 and text.strip() == "(no results)"
    assert run("activity", "--from", "yesterday")[0] == 2
    assert run("activity", "--outcome", "maybe")[0] == 2
    assert run("activity", "--from", "2026-01-01", "--to", "2026-03-01")[0] == 2


def test_csv_and_table_output_are_safe() -> None:
    rows = [{"time": "t", "user": '=HYPERLINK("x")', "message": "\x1b[31mred"}]
    out = io.StringIO()
    cli.write(rows, cli.ACTIVITY_COLUMNS, "csv", out)
    assert "'=HYPERLINK" in out.getvalue()
    out = io.StringIO()
    cli.write(rows, cli.ACTIVITY_COLUMNS, "table", out)
    assert "\x1b" not in out.getvalue() and "\\x1b[31mred" in out.getvalue()


def test_alerts(run: Callable[..., tuple[int, str]]) -> None:
    _, expected = samples.build()
    code, text = run("alerts", "--from", "2026-11-23", "--to", "2026-11-24", "--format", "json")
    assert code == 0
    assert {(a["rule"], a["subject"]) for a in orjson.loads(text)} == set(expected.alerts)
    code, text = run("alerts", "--status", "pending", "--from", "2026-11-23", "--to", "2026-11-24")
    assert code == 0 and "(no results)" in text
    code, text = run("alerts", "--from", "2026-11-23", "--to", "2026-11-24")
    assert "password_spray" in text and text.splitlines()[-1] == f"({len(expected.alerts)} rows)"
    assert run("alerts", "--status", "nope")[0] == 2


def test_report(run: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    code, _ = run("report", *RANGE, "--output", str(target))
    assert code == 0 and target.exists()
    assert "svc-deploy" in target.read_text() and "<script" not in target.read_text()


def _fails(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """Run the CLI with exactly these settings; (exit code, stderr). Never a traceback."""
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(CONNECTION)]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        code = cli.main(argv, io.StringIO())
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_every_newcomer_failure_is_one_line(
    capsys: pytest.CaptureFixture[str], emulator: azurite.Azurite
) -> None:
    code, err = _fails(["alerts"], {}, capsys)
    assert code == 2 and err.startswith("error: BastionLogsStorage is not set")
    code, err = _fails(["alerts"], {CONNECTION: "this is not a connection string"}, capsys)
    assert code == 2 and "not a usable connection string" in err
    code, err = _fails(
        ["alerts"], {CONNECTION: emulator.connection_string, "FAILURE_THRESHOLD": "five"}, capsys
    )
    assert code == 2 and err.strip() == "error: FAILURE_THRESHOLD must be an integer, got 'five'"
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;" + (
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/x;"
        "QueueEndpoint=http://127.0.0.1:9/x;"
    )
    code, err = _fails(["alerts"], {CONNECTION: dead}, capsys)
    assert code == 1 and err.startswith("error: cannot reach storage")
    assert len(err.strip().splitlines()) == 1


def test_missing_container_and_strict_azurite_are_explained() -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    code, text = cli.explain(
        ResourceNotFoundError(
            "The specified container does not exist.\nErrorCode:ContainerNotFound"
        )
    )
    assert code == 1 and "container does not exist" in text
    strict = HttpResponseError(
        "The API version 2025-11-05 is not supported by Azurite. Please upgrade Azurite..."
    )
    code, text = cli.explain(strict)
    assert code == 1 and "--skipApiVersionCheck" in text


def test_help_states_ranges_and_time_zone() -> None:
    text = cli.parser().format_help()
    assert "UTC" in text and "at most 7 days" in text and "Exit codes" in text
    sub = cli.parser()._subparsers._group_actions[0].choices["activity"].format_help()  # type: ignore[union-attr]
    assert "at most 7 days" in sub and "UTC" in sub


def test_status_says_per_host_what_arrived_and_a_verdict(
    run: Callable[..., tuple[int, str]],
) -> None:
    code, text = run("status", "--format", "json")
    assert code == 0
    body = orjson.loads(text)
    hosts = {h["host"]: h for h in body["hosts"]}
    assert {"BASTION-PROD", "BASTION-DEV"} <= set(hosts)
    prod = hosts["BASTION-PROD"]
    assert prod["stored24h"] == 0 or prod["lastRecord"]  # the samples are from 2026-11-23
    assert body["pendingAlerts"] == 0 and body["detectionRetries"] == 0
    code, text = run("status")
    assert code == 0 and "Verdict" in text and "alerts pending delivery: 0" in text


def test_quarantine_lists_every_piece_with_a_safe_excerpt(
    run: Callable[..., tuple[int, str]], env: dict[str, str]
) -> None:
    code, text = run("quarantine", "--blob", env["prefix"], "--format", "json")
    assert code == 0
    items = orjson.loads(text)
    _, expected = samples.build()
    assert sum(i["count"] for i in items) == expected.quarantined
    reasons = {i["reason"].split(":")[0] for i in items}
    assert reasons == {"malformed", "wrong_category", "bad_time", "oversized", "truncated"}
    assert all(i["sourceBlob"].startswith(env["prefix"]) for i in items)
    assert all("\n" not in i["excerpt"] and len(i["excerpt"]) <= 80 for i in items)
    code, text = run("quarantine", "--blob", "nothing-here/")
    assert code == 0 and text.strip() == "(no results)"


def test_a_strict_azurite_and_a_fresh_account_are_explained(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real Azurite started without --skipApiVersionCheck (as `npx azurite` is), and a fresh
    one without the logs container: one line each, with what to do."""
    import subprocess

    ports = [azurite.free_port() for _ in range(3)]
    args = [azurite.executable(), "--silent", "--disableTelemetry", "--location", str(tmp_path)]
    for service, port in zip(("blob", "queue", "table"), ports, strict=True):
        args += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(port)]
    strict = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        emulator = azurite.Azurite(*ports, strict)
        azurite_ready(ports)
        code, err = _fails(["quarantine"], {CONNECTION: emulator.connection_string}, capsys)
        assert code == 1 and "--skipApiVersionCheck" in err, err  # the blob service refuses
    finally:
        strict.terminate()
        strict.wait(10)
    with azurite.start() as fresh:
        code, err = _fails(
            ["ingest", "no-such-prefix/"], {CONNECTION: fresh.connection_string}, capsys
        )
        assert code == 1 and "container does not exist" in err, err


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def azurite_ready(ports: list[int]) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(_listening(p) for p in ports):
            return
        time.sleep(0.1)
    raise AssertionError("Azurite did not start")
