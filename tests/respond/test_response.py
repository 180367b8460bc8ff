"""Issue 27, part 1: active response. The matching is pure; then a compromise goes through the
indexed blob trigger against Azurite, with a local stand-in for ARM's Bastion session API that
answers as the REST reference shapes it (`getActiveSessions` at once or as a 202 whose
`Location` is polled, pages by `nextLink`; `disconnectActiveSessions` per id)."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from test_campaigns import incidents, lines, queue
from test_diagnostics import FakeCredential

from devtools import samples
from shared import functions
from shared.answer import report
from shared.ingest.loop import Pipeline
from shared.respond import matching
from shared.respond.bastion import Sessions
from shared.respond.matching import Session, SignIn
from shared.store.tables import etag_of

DAY = datetime(2026, 11, 23, tzinfo=UTC)
ATTACKER, USER = "185.220.101.4", "svc-deploy"
HOST = (f"/SUBSCRIPTIONS/{samples.SUBSCRIPTION}/RESOURCEGROUPS/{samples.GROUP}/PROVIDERS/"
        "MICROSOFT.NETWORK/BASTIONHOSTS/BASTION-PROD")  # fmt: skip
VM_ID = (f"/SUBSCRIPTIONS/{samples.SUBSCRIPTION}/RESOURCEGROUPS/RG-WORKLOADS/PROVIDERS/"
         "MICROSOFT.COMPUTE/VIRTUALMACHINES/LINUX-DB-01")  # fmt: skip


Headers = dict[str, str] | None


# -- a stand-in for ARM's Bastion session API -----------------------------------------------------
class FakeBastion:
    """ThreadingHTTPServer on 127.0.0.1. `sessions[host]` are the active sessions; `lro` makes
    getActiveSessions answer 202 and its Location 202 that many times before the first page;
    `page_size` splits the list into pages linked by `nextLink`; `fail` answers that status."""

    def __init__(self) -> None:
        self.sessions: dict[str, list[dict[str, Any]]] = {}
        self.lro = 0
        self.page_size = 0
        self.fail: int | None = None
        self.disconnects: list[list[str]] = []
        self.requests: list[tuple[str, str]] = []
        self._ops = itertools.count(1)
        self._polls: dict[str, tuple[int, str]] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = urlsplit(self.path).path
                fake.requests.append(("POST", path))
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"null")
                if fake.fail:
                    return self.reply(fake.fail, {"error": {"code": "Boom", "message": "down"}})
                host, _, action = path.rpartition("/")
                if action == "getActiveSessions":
                    if fake.lro:
                        op = f"/ops/{next(fake._ops)}"
                        fake._polls[op] = (fake.lro, host)
                        return self.reply(202, None, {"Location": fake.endpoint + op,
                                                      "Retry-After": "0"})  # fmt: skip
                    return self.reply(200, fake.page(host, 0))
                if action == "disconnectActiveSessions":
                    ids = list(body["sessionIds"])
                    fake.disconnects.append(ids)
                    return self.reply(200, {"value": fake.end(host, ids)})
                return self.reply(404, {"error": {"code": "NotFound"}})

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fake.requests.append(("GET", parts.path))
                if parts.path in fake._polls:
                    left, host = fake._polls[parts.path]
                    if left > 1:
                        fake._polls[parts.path] = (left - 1, host)
                        return self.reply(202, None, {"Location": fake.endpoint + parts.path})
                    return self.reply(200, fake.page(host, 0))
                if parts.path.startswith("/pages/"):
                    _, _, index, host = parts.path.split("/", 3)
                    return self.reply(200, fake.page("/" + host, int(index)))
                return self.reply(404, {"error": {"code": "NotFound"}})

            def reply(
                self, status: int, payload: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def page(self, host: str, index: int) -> dict[str, Any]:
        found = self.sessions.get(host.lower(), [])
        size = self.page_size or max(len(found), 1)
        out: dict[str, Any] = {"value": found[index * size : (index + 1) * size]}
        if (index + 1) * size < len(found):
            out["nextLink"] = f"{self.endpoint}/pages/{index + 1}{host}"
        return out

    def end(self, host: str, ids: list[str]) -> list[dict[str, str]]:
        live = self.sessions.get(host.lower(), [])
        out = []
        for sid in ids:
            hit = [s for s in live if s["sessionId"] == sid]
            for s in hit:
                live.remove(s)
            state = "Disconnected" if hit else "NotFound"
            out.append({"sessionId": sid, "message": state, "state": state})
        return out

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def session(
    sid: str, user: str, start: datetime, vm: str = VM_ID, ip: str = "10.20.3.7"
) -> dict[str, Any]:
    return {"sessionId": sid, "startTime": start.isoformat().replace("+00:00", "Z"),
            "targetSubscriptionId": samples.SUBSCRIPTION, "resourceType": "VM",
            "targetHostName": vm.rsplit("/", 1)[1], "targetResourceGroup": "RG-WORKLOADS",
            "userName": user, "targetIpAddress": ip, "protocol": "SSH", "targetResourceId": vm,
            "sessionDurationInMins": 3.5}  # fmt: skip


@pytest.fixture
def bastion() -> Iterator[FakeBastion]:
    fake = FakeBastion()
    yield fake
    fake.stop()


# -- pure -----------------------------------------------------------------------------------------
T = DAY + timedelta(hours=11, minutes=12)
SIGN_IN = SignIn(HOST, USER, VM_ID, "10.20.3.7", T, "LINUX-DB-01")


@pytest.mark.parametrize(
    ("changed", "matches"),
    [
        ({}, True),
        ({"user": "SVC-DEPLOY"}, True),  # accounts compare as accounts do
        ({"user": "svc-other"}, False),
        ({"target_id": VM_ID.replace("DB-01", "WEB-01")}, False),
        ({"target_id": "", "target_ip": "10.20.3.7"}, True),  # no id: the address decides
        ({"target_id": "", "target_ip": "10.20.3.8"}, False),
        ({"start": T + timedelta(minutes=4)}, True),
        ({"start": T - timedelta(minutes=6)}, False),
        ({"start": None}, False),
    ],
)
def test_a_session_matches_on_account_target_and_start(
    changed: dict[str, Any], matches: bool
) -> None:
    base = {"session_id": "s1", "user": USER, "target_id": VM_ID, "target_ip": "10.20.3.7",
            "protocol": "SSH", "start": T}  # fmt: skip
    assert matching.matches(Session(**{**base, **changed}), SIGN_IN) is matches


def test_the_plan_ends_matches_spares_break_glass_and_says_what_it_found() -> None:
    active = {HOST.casefold(): [Session("s1", USER, VM_ID, "", "SSH", T),
                                Session("s2", "alice", VM_ID, "", "SSH", T)]}  # fmt: skip
    other = SignIn(HOST, "bob", VM_ID, "", T, "LINUX-DB-01")
    on = matching.plan([SIGN_IN, other], active, frozenset(), matching.ON)
    assert [(a.session_id, a.result) for a in on] == [("s1", "to end"), ("", "no matching session")]
    dry = matching.plan([SIGN_IN], active, frozenset(), matching.DRY_RUN)
    assert [(a.session_id, a.result) for a in dry] == [("s1", "would end")]
    spared = matching.plan([SIGN_IN], active, frozenset({USER}), matching.ON)
    assert [a.result for a in spared] == ["spared (break-glass account)"] and not matching.to_end(
        spared
    )
    done = matching.outcome(on, {"s1": "Disconnected"})
    assert done[0].result == "ended"
    assert matching.outcome(on, {"s1": "NotFound"})[0].result == "not found"
    assert matching.outcome(on, {})[0].result == "failed"
    assert "ended: session" in matching.summary("on", done)


def test_malformed_sessions_are_skipped() -> None:
    items = [{"sessionId": "ok", "userName": "a", "startTime": "2026-11-23T11:12:00Z"},
             {"sessionId": ""}, {"sessionId": 5}, "x",
             {"sessionId": "b", "startTime": "yesterday"}]  # fmt: skip
    found = matching.sessions(items)
    assert [s.session_id for s in found] == ["ok", "b"] and found[1].start is None


def test_the_client_polls_a_long_running_answer_and_reads_every_page(bastion: FakeBastion) -> None:
    bastion.sessions[HOST.lower()] = [session(f"s{i}", USER, T) for i in range(5)]
    bastion.lro, bastion.page_size = 2, 2
    client = Sessions(FakeCredential(), bastion.endpoint, retries=0, sleep=lambda s: None)
    assert [s.session_id for s in client.active(HOST)] == ["s0", "s1", "s2", "s3", "s4"]
    polls = [p for m, p in bastion.requests if m == "GET" and p.startswith("/ops/")]
    assert len(polls) == 2 and any(p.startswith("/pages/") for _, p in bastion.requests)
    assert client.disconnect(HOST, ["s1", "nope"]) == {"s1": "Disconnected", "nope": "NotFound"}


# -- through the blob trigger ---------------------------------------------------------------------
def compromise() -> list[dict[str, Any]]:
    """Six failures for svc-deploy from one address, then its sign-in to LINUX-DB-01."""
    start = DAY + timedelta(hours=11, minutes=5)
    fails = [samples.record(start + timedelta(seconds=40 * i), USER, samples.FAIL, ATTACKER,
                            vm="LINUX-DB-01", port=41000 + i) for i in range(6)]  # fmt: skip
    return [*fails, samples.record(T, USER, samples.OK, ATTACKER, vm="LINUX-DB-01", port=41999)]


def run(app: dict[str, Any], logs: Any, prefix: str, records: list[dict[str, Any]]) -> None:
    name = prefix + samples.blob_path("BASTION-PROD", DAY + timedelta(hours=11))
    logs.upload_blob(name, lines(records), overwrite=True)
    app["ingest_blob"].get_user_function()(logs.get_blob_client(name))


def armed(bastion: FakeBastion) -> None:
    bastion.sessions[HOST.lower()] = [
        session("attacker", USER, T + timedelta(seconds=2)),  # the compromise's session
        session("own-web", USER, T, vm=VM_ID.replace("DB-01", "WEB-01"), ip="10.20.1.4"),
        session("colleague", "alice", T),
        session("yesterday", USER, T - timedelta(days=1)),
    ]
    functions.services().responder.sessions = Sessions(
        FakeCredential(), bastion.endpoint, retries=0, sleep=lambda s: None
    )


@dataclass
class Scene:
    """The app pointed at Azurite with the Bastion stand-in armed: `start` with settings, then
    `ingest` the compromise through the indexed blob trigger."""

    app_env: Callable[..., Pipeline]
    app: dict[str, Any]
    logs: Any
    prefix: str
    bastion: FakeBastion

    def start(self, **settings: str) -> Pipeline:
        p = self.app_env(**settings)
        armed(self.bastion)
        return p

    def ingest(self) -> None:
        run(self.app, self.logs, self.prefix, compromise())


@pytest.fixture
def scene(
    app_env: Callable[..., Pipeline],
    indexed_app: dict[str, Any],
    logs: Any,
    blob_prefix: str,
    bastion: FakeBastion,
) -> Scene:
    return Scene(app_env, indexed_app, logs, blob_prefix, bastion)


def responses(p: Pipeline) -> list[dict[str, Any]]:
    return [orjson.loads(r["Response"]) for r in incidents(p) if r.get("Response")]


def test_a_critical_compromise_ends_exactly_its_session_and_says_so(
    scene: Scene, bastion: FakeBastion
) -> None:
    p = scene.start(ACTIVE_RESPONSE="on")
    bastion.lro, bastion.page_size = 1, 2  # a 202 to poll, and two pages
    scene.ingest()
    assert bastion.disconnects == [["attacker"]]
    left = {s["sessionId"] for s in bastion.sessions[HOST.lower()]}
    assert left == {"own-web", "colleague", "yesterday"}
    (done,) = responses(p)
    assert done["state"] == "done" and done["mode"] == "on" and not done["error"]
    assert [(a["sessionId"], a["result"]) for a in done["actions"]] == [("attacker", "ended")]
    told = queue(p)
    events = [(m["event"], m["severity"]) for m in told]
    assert events[-1][0] == "response" and ("escalated", "critical") in events[:-1]
    assert all(m["response"] is None for m in told[:-1])  # the alerts first, as they were
    assert told[-1]["response"]["actions"][0]["result"] == "ended"
    assert "ended: session" in told[-1]["summary"]
    page = report.build(p.storage, DAY, DAY + timedelta(days=1))
    assert "Active response (on): ended: session" in page.replace("&quot;", '"')
    scene.ingest()  # a replay acts and tells nothing again
    functions.on_redeliver()
    assert bastion.disconnects == [["attacker"]] and queue(p) == []


def test_dry_run_ends_nothing_and_says_which_it_would(scene: Scene, bastion: FakeBastion) -> None:
    p = scene.start(ACTIVE_RESPONSE="dry-run")
    scene.ingest()
    assert bastion.disconnects == [] and len(bastion.sessions[HOST.lower()]) == 4
    (done,) = responses(p)
    assert [(a["sessionId"], a["result"]) for a in done["actions"]] == [("attacker", "would end")]
    assert "would end: session" in queue(p)[-1]["summary"]


def test_a_break_glass_account_is_never_ended(scene: Scene, bastion: FakeBastion) -> None:
    p = scene.start(ACTIVE_RESPONSE="on", BREAK_GLASS_ACCOUNTS="ops-admin, SVC-Deploy")
    scene.ingest()
    assert bastion.disconnects == []
    (done,) = responses(p)
    assert [a["result"] for a in done["actions"]] == ["spared (break-glass account)"]


def test_arm_down_leaves_the_alert_delivered_and_the_failure_written(
    scene: Scene, bastion: FakeBastion
) -> None:
    p = scene.start(ACTIVE_RESPONSE="on")
    bastion.fail = 503
    scene.ingest()
    told = queue(p)
    assert ("escalated", "critical") in [(m["event"], m["severity"]) for m in told[:-1]]
    (done,) = responses(p)
    assert "HttpResponseError" in done["error"] and "503" in done["error"]
    assert told[-1]["event"] == "response" and "could not act" in told[-1]["summary"]
    assert bastion.disconnects == []


def test_off_by_default_asks_nothing(scene: Scene, bastion: FakeBastion) -> None:
    p = scene.start()
    scene.ingest()
    assert bastion.requests == [] and responses(p) == []
    assert "response" not in [m["event"] for m in queue(p)]


def test_hundreds_of_matching_sessions_are_all_ended_and_the_incident_stays_writable(
    scene: Scene, bastion: FakeBastion
) -> None:
    """Whoever opened 300 sessions must not push the incident's row past a property's 64 KiB
    or the alert queue's message size: all are ended, 20 are listed, the rest counted."""
    p = scene.start(ACTIVE_RESPONSE="on")
    bastion.sessions[HOST.lower()] = [
        session(f"{i:03d}-" + "x" * 190, USER, T + timedelta(seconds=i % 200)) for i in range(300)
    ]
    bastion.page_size = 100
    scene.ingest()
    assert len(bastion.disconnects) == 1 and len(bastion.disconnects[0]) == 300
    assert bastion.sessions[HOST.lower()] == []
    (done,) = responses(p)
    assert len(done["actions"]) == 20 and done["unlisted"] == 280
    told = queue(p)
    assert told[-1]["event"] == "response" and told[-1]["response"]["unlisted"] == 280
    assert all(len(orjson.dumps(m)) < 48 * 1024 for m in told)  # base64 of it fits 64 KiB


def test_two_workers_on_one_incident_end_its_session_once(
    scene: Scene, bastion: FakeBastion
) -> None:
    """The claim is written under the row's ETag: of two workers that pay the same debt at
    once, one acts and tells; the other finds it claimed."""
    p = scene.start(ACTIVE_RESPONSE="dry-run")  # decided and told, but not acted on yet
    scene.ingest()
    row = next(r for r in incidents(p) if r.get("Response"))
    p.storage.alerts.update({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                             "Response": ""}, etag_of(row))  # fmt: skip
    queue(p)  # what the dry run told
    bastion.disconnects.clear()
    responder = functions.services().responder
    responder.mode = "on"
    fresh = p.storage.alerts.get(row["PartitionKey"], row["RowKey"])
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        responder.respond(fresh)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bastion.disconnects == [["attacker"]]
    assert [m["event"] for m in queue(p)] == ["response"]


def test_a_claim_left_by_a_stopped_worker_is_taken_up_by_the_timer(
    scene: Scene, bastion: FakeBastion
) -> None:
    """A worker that claimed the incident and stopped (a crash, a storage fault) leaves an
    `acting` claim; once it is stale, the redelivery timer responds."""
    p = scene.start(ACTIVE_RESPONSE="on")
    bastion.fail = 503  # the first attempt could not act: replace its answer by a stale claim
    scene.ingest()
    bastion.fail = None
    row = next(r for r in incidents(p) if r.get("Response"))
    stale = (datetime.now(UTC) - timedelta(minutes=11)).isoformat()
    claim = orjson.dumps({"state": "acting", "mode": "on", "at": stale}).decode()
    p.storage.alerts.update({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                             "Response": claim}, etag_of(row))  # fmt: skip
    queue(p)
    functions.on_redeliver()
    assert bastion.disconnects == [["attacker"]]
    (done,) = responses(p)
    assert done["state"] == "done" and done["actions"][0]["result"] == "ended"
    assert [m["event"] for m in queue(p)] == ["response"]


def test_turning_it_on_answers_lately_written_compromises_not_old_ones(
    scene: Scene, bastion: FakeBastion
) -> None:
    """The timer answers compromises whose rows were written in the last day (a backlog's
    incident included); one written before that is left alone."""
    p = scene.start()  # off while the compromise is ingested
    scene.ingest()
    queue(p)
    (row,) = [r for r in incidents(p) if r.get("CompromisedUsers") not in (None, "[]")]
    old = datetime.now(UTC) - timedelta(days=2)
    p.storage.alerts.update({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                             "UpdatedAt": old}, etag_of(row))  # fmt: skip
    functions.services().responder.mode = "on"
    functions.on_redeliver()
    assert bastion.requests == [] and responses(p) == []
    row = p.storage.alerts.get(row["PartitionKey"], row["RowKey"])
    p.storage.alerts.update({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                             "UpdatedAt": datetime.now(UTC)}, etag_of(row))  # fmt: skip
    functions.on_redeliver()
    assert bastion.disconnects == [["attacker"]]
