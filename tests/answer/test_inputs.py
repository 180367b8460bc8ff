"""Every HTTP and CLI input gets an answer (issue 22): a bad value is a 400 with a one-line
reason, or exit code 2 with one line on stderr; never a 500, a traceback or "unexpected".

Each route's query parameters, each command's options and each setting get random values
(text, Unicode digits, huge and negative numbers, dates whose offset overflows, empty,
repeated). Every failing example Hypothesis found is kept below as an explicit case.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import cli, functions
from shared.answer import http, queries
from shared.core.settings import CONNECTION, DEFAULTS, Settings, SettingsError, cron_problem
from shared.ingest.loop import Pipeline
from shared.store.tables import Storage

ROOT = Path(__file__).resolve().parents[2]
_SCALE = float(os.environ.get("RELIABILITY_BUDGET_SCALE", "1"))  # < 1 for quick local runs
BUDGET = {"http": 40, "cli": 25, "settings": 300, "status": 2}
BUDGET = {k: max(1, int(v * _SCALE)) for k, v in BUDGET.items()}
PROPERTY = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: Every HTTP route's query parameters (checked against the handlers' docstrings below).
ROUTES = {
    "http_activity": ("user", "vm", "ip", "from", "to", "outcome", "limit", "continuation"),
    "http_alerts": ("status", "from", "to", "limit", "continuation"),
    "http_sessions": ("user", "from", "to", "limit"),
    "http_report": ("from", "to", "user"),
    "http_status": (),
    "http_erase": ("user", "all", "exact"),
}
#: Every command's options (checked against the parser below); `ingest` also takes its source.
COMMANDS = {
    "activity": ("--user", "--vm", "--ip", "--outcome", "--from", "--to", "--limit", "--format"),
    "alerts": ("--status", "--from", "--to", "--format"),
    "sessions": ("--user", "--from", "--to", "--limit", "--format"),
    "status": ("--format",),
    "quarantine": ("--blob", "--from", "--to", "--format"),
    "ingest": ("--prefix",),
    "report": ("--from", "--to", "--output", "--user"),
    "erase": ("--user", "--all-matches", "--exact"),
    "aliases": (),
    "retain": ("--since",),
}
#: Found by hand or by Hypothesis: each answered 500 or "unexpected ...Error" once.
OVERFLOWING = [
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    "0001-01-01",
    "9999-12-31T23:59:59.999999Z",
    "1600-12-31T23:59:59Z",
]
BAD_NUMBERS = ["²", "٣", "1_000", "+5", "-1", "0", "1001", "9" * 5000, " 5"]
SAMPLE = {"from": "2026-11-23T09:00:00Z", "to": "2026-11-23T12:00:00Z"}


# -- values --------------------------------------------------------------------------------
def iso_times() -> st.SearchStrategy[str]:
    """ISO 8601 times anywhere in the calendar, with offsets up to a day (some overflow)."""
    offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
        lambda m: f"{'+' if m >= 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
    )
    when = st.datetimes().map(lambda d: d.isoformat())
    return st.one_of(
        st.tuples(when, st.sampled_from(["", "Z"]) | offsets).map("".join),
        st.dates().map(str),
        st.sampled_from(OVERFLOWING),
    )


def values() -> st.SearchStrategy[str]:
    """What a caller may put in any parameter."""
    single = st.one_of(
        st.just(""),
        st.text(max_size=40),
        st.integers(-(10**30), 10**30).map(str),
        st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4),
        st.sampled_from(BAD_NUMBERS),
        iso_times(),
        st.sampled_from(["Success", "failure", "pending", "delivered", "alice", "10.0.0.1", "-"]),
    )
    repeated = st.lists(single, min_size=2, max_size=3).map(",".join)
    return single | repeated


def token(segment: object) -> str:
    """A continuation for the sample range and user alice whose segment is `segment`."""
    query = queries.parse_activity({**SAMPLE, "user": "alice"})
    return queries.encode_token(query.fingerprint(), {"s": segment})


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# -- HTTP ----------------------------------------------------------------------------------
Call = Callable[[str, dict[str, str]], func.HttpResponse]


@pytest.fixture(scope="module")
def call(
    indexed_app: dict[str, Any], sample_store: tuple[dict[str, str], Pipeline]
) -> Iterator[Call]:
    """The indexed app's HTTP functions on the sample logs, as under `func start`."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**sample_store[0], "API_AUTH": "none"}.items():
            mp.setenv(key, value)
        functions.reset()

        def invoke(name: str, params: dict[str, str]) -> func.HttpResponse:
            route = name.removeprefix("http_")
            method = "POST" if route == "erase" else "GET"
            url = f"/api/{route}?{urlencode(params)}"
            request = func.HttpRequest(method=method, url=url, params=params, body=b"")
            response: func.HttpResponse = indexed_app[name].get_user_function()(request)
            return response

        yield invoke
    functions.reset()


def answered(response: func.HttpResponse) -> None:
    """An answer the API documents: a 400 is JSON with a one-line reason."""
    assert response.status_code in (200, 400, 401, 403, 404, 409), response.status_code
    if response.status_code in (400, 409):  # 409: an erasure of several accounts, not asked
        body = orjson.loads(response.get_body())
        assert body["error"] == ("bad_request" if response.status_code == 400 else "ambiguous")
        assert one_line(body["message"]) and "unexpected" not in body["message"], body


def test_routes_and_their_parameters_are_all_here(indexed_app: dict[str, Any]) -> None:
    assert set(ROUTES) == {name for name in indexed_app if name.startswith("http_")}
    handlers = {"http_activity": http.activity, "http_alerts": http.alerts,
                "http_sessions": http.sessions, "http_report": http.report_page,
                "http_erase": http._erase}  # fmt: skip
    for name, handler in handlers.items():
        documented = tuple(re.findall(r"[?&](\w+)=", handler.__doc__ or ""))
        assert documented == ROUTES[name], name


@pytest.mark.parametrize(
    ("route", "params"),
    [
        *[(r, {"from": t}) for r in ("http_activity", "http_alerts", "http_sessions",
                                     "http_report") for t in OVERFLOWING],
        *[(r, {"to": t}) for r in ("http_activity", "http_alerts", "http_sessions",
                                   "http_report") for t in OVERFLOWING],
        *[(r, {"limit": n}) for r in ("http_activity", "http_alerts", "http_sessions")
          for n in BAD_NUMBERS],
        *[("http_activity", {**SAMPLE, "user": "alice", "continuation": token(s)})
          for s in (-1, True, 10**6, "0")],  # a forged segment: IndexError once
        ("http_erase", {"user": ""}),
    ],
)  # fmt: skip
def test_bad_values_answer_400_in_one_line(call: Call, route: str, params: dict[str, str]) -> None:
    response = call(route, params)
    assert response.status_code == 400, response.get_body()
    answered(response)


def test_good_values_still_answer(call: Call) -> None:
    assert call("http_activity", {**SAMPLE, "limit": "3"}).status_code == 200
    assert call("http_alerts", {"from": "2026-11-23", "to": "2026-11-24"}).status_code == 200
    assert call("http_report", {**SAMPLE, "from": "2026-11-23T09:00:00+01:00"}).status_code == 200
    assert call("http_activity", {"from": "1601-01-01", "to": "1601-01-02"}).status_code == 200
    assert call("http_activity", {"to": "1601-01-01T01:00:00Z"}).status_code == 200  # from: 1601


@pytest.mark.parametrize("route", sorted(set(ROUTES) - {"http_status"}))
@settings(PROPERTY, max_examples=BUDGET["http"])
@given(data=st.data())
def test_every_parameter_of_every_route_gets_an_answer(
    call: Call, route: str, data: st.DataObject
) -> None:
    names = st.sampled_from([*ROUTES[route], "unknown"])
    params = data.draw(st.dictionaries(names, values(), max_size=4), label="params")
    answered(call(route, params))


@settings(PROPERTY, max_examples=BUDGET["status"])  # each answer reads every host's folder
@given(params=st.dictionaries(values(), values(), max_size=3))
def test_status_takes_no_parameter_and_answers_whatever_it_is_given(
    call: Call, params: dict[str, str]
) -> None:
    response = call("http_status", params)
    assert response.status_code == 200
    answered(response)


# -- CLI -----------------------------------------------------------------------------------
Run = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture(scope="module")
def run(
    sample_store: tuple[dict[str, str], Pipeline], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    """`python -m shared ...` in-process on the sample logs, in an empty working folder (no
    random path names an existing file): (exit code, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in sample_store[0].items():
            mp.setenv(key, value)
        mp.chdir(folder)

        def invoke(argv: list[str]) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    code = cli.main(argv, out)
                except SystemExit as exc:  # argparse: a usage error or --help
                    code = int(exc.code or 0)
            return code, out.getvalue(), err.getvalue()

        yield invoke


def exited_well(code: int, err: str) -> None:
    """0, or 2 for the input, or 1 for what the operation found: always one line."""
    assert "Traceback" not in err and "unexpected" not in err, err
    if code == 0:
        return
    assert code in (1, 2), (code, err)
    assert one_line(err) and err.startswith("error: "), err
    if code == 1:  # what the operation found: no blob, or no account under that name
        assert err.startswith(("error: nothing to ingest", "error: no such account")), err


def test_commands_and_their_options_are_all_here() -> None:
    choices: Any = cli.parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == set(COMMANDS)
    for name, command in choices.items():
        options = {o for a in command._actions for o in a.option_strings if o.startswith("--")}
        assert options - {"--help", "--debug"} == {*COMMANDS[name], *(("--output",) if name ==
                                                   "report" else ())}, name  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        *[[c, "--from", t] for c in ("activity", "alerts", "quarantine", "report")
          for t in OVERFLOWING],
        *[[c, f"--to={t}"] for c in ("activity", "alerts", "quarantine", "report")
          for t in OVERFLOWING],
        *[["activity", f"--limit={n}"] for n in BAD_NUMBERS if n != "1001"],
        ["retain", "--since", "0001-01-01"],
        ["retain", "--since", "9999-12-31"],
        ["retain", "--since", "2026-13-01"],
        ["report", *("--from", SAMPLE["from"]), "-o", "/nonexistent/x.html"],
        ["report", *("--from", SAMPLE["from"]), "-o", "nul\0here.html"],
        ["report", *("--from", SAMPLE["from"]), "-o", "."],
        ["ingest", ""],
        ["ingest", "~inputs/\x08"],  # Azurite answered 500 (retried for minutes)
        ["ingest", "~inputs/\udcff"],  # an undecodable byte in argv
        ["ingest", "~inputs/", "--prefix", "\x00"],
        ["ingest", "~inputs/" + "x" * 1025],
        ["quarantine", "--blob", "\x1b[31m"],
        ["erase", "--user", ""],
        ["activity", "--user"],
        ["nonsense"],
        [],
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_in_one_line(run: Run, argv: list[str]) -> None:
    code, _, err = run(argv)
    assert code == 2, (code, err)
    exited_well(code, err)


def option_values(command: str) -> st.SearchStrategy[list[str]]:
    """Options of a command in either spelling (`--x v`, `--x=v`), random values; `ingest` gets
    a source that is no local path, `report -o` a file in the working folder or nowhere."""
    special = {
        "--format": st.sampled_from(["table", "json", "csv"]) | values(),
        "--output": st.sampled_from(["-", "/nonexistent/x.html", "", "."])
        | st.text(st.characters(exclude_characters="/"), min_size=1, max_size=30),
    }
    option = st.sampled_from(COMMANDS[command]).flatmap(
        lambda name: st.tuples(st.just(name), special.get(name, values()), st.booleans())
    )
    spelled = option.map(lambda o: [f"{o[0]}={o[1]}"] if o[2] else [o[0], o[1]])
    argv = st.lists(spelled, max_size=3).map(lambda parts: [w for p in parts for w in p])
    if command == "ingest":
        source = st.text(max_size=20).map(lambda t: "~inputs/" + t) | st.sampled_from(["", " "])
        return st.tuples(source, argv).map(lambda s: [s[0], *s[1]])
    if command == "erase":
        return st.tuples(values(), argv).map(lambda s: ["--user", s[0], *s[1]])
    return argv


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"status", "aliases"}))
@settings(PROPERTY, max_examples=BUDGET["cli"])
@given(data=st.data())
def test_every_option_of_every_command_gets_an_answer(
    run: Run, command: str, data: st.DataObject
) -> None:
    argv = [command, *data.draw(option_values(command), label="options")]
    code, _, err = run(argv)
    exited_well(code, err)


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "xml", "", "٣"])
def test_status_takes_its_one_option(run: Run, fmt: str) -> None:
    """`status` reads every host's folder: its one option is tried by hand, not at random."""
    code, _, err = run(["status", f"--format={fmt}"])
    assert code == (0 if fmt in ("table", "json", "csv") else 2), err
    exited_well(code, err)


def test_debug_is_taken_before_and_after_the_command() -> None:
    parse = cli.parser().parse_args
    assert parse(["--debug", "alerts"]).debug and parse(["alerts", "--debug"]).debug
    assert not parse(["alerts"]).debug


def test_a_reader_that_went_away_ends_the_command_quietly(
    sample_store: tuple[dict[str, str], Pipeline],
) -> None:
    """`activity ... | head -1`: exit 141 (128 + SIGPIPE), nothing on stderr."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    env = {k: v for k, v in os.environ.items() if not k.startswith(CONNECTION)}
    env |= sample_store[0]
    argv = [sys.executable, "-m", "shared", "activity", "--from", SAMPLE["from"]]
    argv += ["--to", SAMPLE["to"], "--format", "json"]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, stdout=write, stderr=subprocess.PIPE,
                              timeout=60, check=False)  # fmt: skip
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (cli.BROKEN_PIPE, b"")


def test_a_stopped_emulator_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ingest` and `quarantine` (blob clients) fail as fast as the table commands: the CLI
    does not retry a refused connection (the SDK default took 87 s)."""
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;" + (
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/x;"
        "QueueEndpoint=http://127.0.0.1:9/x;"
    )
    monkeypatch.setenv(CONNECTION, dead)
    for argv in (["ingest", "some/prefix"], ["quarantine"], ["alerts"], ["status"]):
        started = time.monotonic()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(argv, io.StringIO())
        assert code == 1 and err.getvalue().startswith("error: cannot reach storage"), argv
        assert time.monotonic() - started < 3, argv


def test_the_worker_retries_blob_and_queue_on_a_short_schedule() -> None:
    """The host path still retries (3 times), seconds apart rather than 15-24 s."""
    storage = Storage(Settings.from_env({CONNECTION: "UseDevelopmentStorage=true"}))
    for client in (storage.blobs, storage.queues):
        policy: Any = client._config.retry_policy
        assert policy.total_retries == 3 and policy.connect_retries == 3
        assert policy.backoff + policy.random_jitter_range <= 3
    storage.close()


# -- settings ------------------------------------------------------------------------------
def setting_values() -> st.SearchStrategy[str]:
    """Values of any setting: the generic ones, plus near-miss schedules, URLs and names."""
    cron_word = st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "Jan", "mon", "7", "?"])
    cron = st.lists(cron_word, min_size=4, max_size=7).map(" ".join)
    url = st.tuples(
        st.sampled_from(["https://", "http://", "ftp://", "", "https:///", "http://[::1"]),
        st.text(max_size=15),
    ).map("".join)
    name = st.from_regex(r"[A-Za-z0-9_!-]{0,70}", fullmatch=True)
    return values() | cron | url | name


@settings(PROPERTY, max_examples=BUDGET["settings"])
@given(data=st.data())
def test_every_setting_loads_or_stops_start_up_in_one_line(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(DEFAULTS)), label="name")
    value = data.draw(setting_values(), label="value")
    try:
        Settings.from_env({name: value})
    except SettingsError as exc:
        message = str(exc)
        assert one_line(message) and name in message, message
        if "WEBHOOK_URL" in name and len(value.strip()) > 3:
            assert value.strip() not in message  # a secret is never shown


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SWEEP_SCHEDULE", "every minute"),
        ("SWEEP_SCHEDULE", "0 */5 * * *"),  # five fields: the host wants six
        ("ALERT_RETRY_SCHEDULE", "0 */0 * * * *"),
        ("HEALTH_SCHEDULE", "0 0 24 * * *"),
        ("DIGEST_SCHEDULE", "0 0 6 * * 7"),
        ("RETENTION_SCHEDULE", "0 30 2 * Mar-Jan *"),
        ("ALERT_WEBHOOK_URL", "not a url"),
        ("ALERT_TEAMS_WEBHOOK_URL", "ftp://hooks.example/x"),
        ("ALERT_SLACK_WEBHOOK_URL", "https://"),
        ("ALERT_WEBHOOK_URL", "http://[::1"),
        ("ALERT_WEBHOOK_URL", "https://hooks.example:port/x"),
        ("ALERT_WEBHOOK_URL", "@Microsoft.KeyVault(VaultName=kv;SecretName=hook)"),
        ("ARM_ENDPOINT", ""),
        ("ARM_ENDPOINT", "management.azure.com"),
        ("EVENTS_TABLE", "bad_name!"),
        ("INDEX_TABLE", "1abc"),
        ("STATE_TABLE", "ab"),
        ("ALERTS_TABLE", "Tables"),
        ("QUARANTINE_CONTAINER", "Quarantine"),
        ("QUARANTINE_CONTAINER", "a--b"),
        ("ALERT_QUEUE", "-alerts"),
        ("ALERT_QUEUE", "alerts-"),
        ("FAILURE_THRESHOLD", "٣"),
        ("FAILURE_THRESHOLD", "1_000"),
        ("READ_CHUNK_BYTES", "9" * 5000),
        ("API_READER_ROLE", "Bastion Audit"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name) as caught:
        Settings.from_env({name: value})
    assert one_line(str(caught.value))
    if "WEBHOOK_URL" in name and value not in "http:// or https://":
        assert value not in str(caught.value)


def test_the_sample_settings_and_the_documented_schedules_load() -> None:
    values_ = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert Settings.from_env(values_).api_auth == "none"
    for schedule in ("0 */5 * * * *", "0 30 9 * * 1-5", "0 0 6 * * Mon-Fri", "*/30 * * * Jan *"):
        assert cron_problem(schedule) is None, schedule
    good = {"ALERT_WEBHOOK_URL": "http://127.0.0.1:8080/hook", "ARM_ENDPOINT":
            "https://management.usgovcloudapi.net/", "QUARANTINE_CONTAINER": "q-1-2"}  # fmt: skip
    assert Settings.from_env(good).quarantine_container == "q-1-2"


def test_count_takes_ascii_digits_only() -> None:
    assert cli.count("42") == 42
    for raw in BAD_NUMBERS[:4]:
        with pytest.raises(argparse.ArgumentTypeError):
            cli.count(raw)
