"""Issue 23, part 5: a host is its resource ID, not its name. Two Bastion hosts called
`BASTION-PROD` in two subscriptions are two hosts in `status` (CLI and `GET /api/status`), in
the health timer's registry and in retention (each one's quarantine expires). Through the
indexed blob trigger and timer against Azurite, then the pure naming rules."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from azure.functions.timer import TimerRequest
from test_campaigns import lines
from test_outcomes import api_status, cli_status, last_hour

from devtools import samples
from shared import functions
from shared.ingest.loop import Pipeline
from shared.store import keys, layout

#: Not the sample data's BASTION-PROD: the logs container is shared with other tests, whose
#: `status` would then see three hosts of one name.
NAME = "BASTION-TWIN"


def folder(prefix: str, sub: str, group: str = "RG-NETWORK-PROD", name: str = NAME) -> str:
    return (f"{prefix}resourceId=/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{group}/PROVIDERS/"
            f"MICROSOFT.NETWORK/BASTIONHOSTS/{name}/")  # fmt: skip


def hour_blob(host_folder: str, hour: datetime) -> str:
    return f"{host_folder}y={hour:%Y}/m={hour:%m}/d={hour:%d}/h={hour:%H}/m=00/PT1H.json"


def two_subscriptions() -> tuple[str, str]:
    """Two subscription IDs unique to the test, told apart by their first 4 characters."""
    tail = str(uuid.uuid4())[4:].upper()
    return "7E1C" + tail, "9A2B" + tail


def sub_of(host_id: str) -> str:
    """The subscription of a host ID ('' for a bare name or "(other)")."""
    return [*host_id.split("/"), "", "", ""][2]


def ingest(indexed_app: dict[str, Any], logs: Any, name: str, records: int, when: datetime) -> None:
    """`records` sign-ins and one broken line (quarantined) into the hour blob `name`."""
    recs = [samples.record(when + timedelta(seconds=i), "carol", samples.OK, "82.165.10.4",
                           port=1000 + i) for i in range(records)]  # fmt: skip
    logs.upload_blob(name, lines(recs) + b'{"broken\n', overwrite=True)
    indexed_app["ingest_blob"].get_user_function()(logs.get_blob_client(name))


@pytest.mark.azurite
def test_two_hosts_of_one_name_are_two_rows_in_status(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], logs: Any, blob_prefix: str
) -> None:
    app_env(API_AUTH="none")
    sub_a, sub_b = two_subscriptions()
    blob_a = hour_blob(folder(blob_prefix, sub_a), last_hour())
    blob_b = hour_blob(folder(blob_prefix, sub_b), last_hour())
    ingest(indexed_app, logs, blob_a, 3, last_hour() + timedelta(minutes=5))
    ingest(indexed_app, logs, blob_b, 5, last_hour() + timedelta(minutes=7))
    for body in (cli_status(), api_status(indexed_app)):
        rows = {sub_of(h["hostId"]): h for h in body["hosts"]}  # other tests' hosts too
        assert {sub_a, sub_b} <= set(rows)
        a, b = rows[sub_a], rows[sub_b]
        # the subscription as far as it tells them from every other host of that name seen
        assert a["host"].startswith(f"{NAME} (sub 7E1C") and b["host"].startswith(
            f"{NAME} (sub 9A2B"
        )
        assert a["host"].endswith(", RG-NETWORK-PROD)") and b["host"].endswith(", RG-NETWORK-PROD)")
        assert (a["stored24h"], a["quarantined24h"], a["lastBlob"]) == (3, 1, blob_a)
        assert (b["stored24h"], b["quarantined24h"], b["lastBlob"]) == (5, 1, blob_b)
        assert a["hostId"].endswith(f"/BASTIONHOSTS/{NAME}") and a["hostId"].startswith("/SUB")
    known = functions.services().detector.health.hosts()
    ours = [h for h in known if sub_of(h.host_id) in (sub_a, sub_b)]
    labels = sorted(h.label for h in ours)  # the registry knows only this test's two hosts
    assert labels == [f"{NAME} (sub 7E1C\u2026, RG-NETWORK-PROD)",
                      f"{NAME} (sub 9A2B\u2026, RG-NETWORK-PROD)"]  # fmt: skip
    assert {h.folder for h in ours} == {folder(blob_prefix, sub_a), folder(blob_prefix, sub_b)}


@pytest.mark.azurite
def test_retention_expires_the_quarantine_of_each_host_of_one_name(
    indexed_app: dict[str, Any], app_env: Callable[..., Pipeline], logs: Any, blob_prefix: str
) -> None:
    p = app_env(QUARANTINE_RETENTION_DAYS="5")
    s = p.storage
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=9)
    folders = [folder(blob_prefix, sub) for sub in two_subscriptions()]
    with time_machine.travel(old + timedelta(minutes=65)):  # stored when they were fresh
        for f in folders:
            ingest(indexed_app, logs, hour_blob(f, old), 2, old + timedelta(minutes=1))
    quarantine = s.container(s.settings.quarantine_container)
    assert all(list(quarantine.list_blobs(name_starts_with=f)) for f in folders)

    indexed_app["expire_old_data"].get_user_function()(TimerRequest(past_due=False))

    assert not [b.name for f in folders for b in quarantine.list_blobs(name_starts_with=f)]


@pytest.mark.azurite
def test_a_host_row_keyed_by_name_before_the_change_is_read_as_its_folders_host(
    app_env: Callable[..., Pipeline], blob_prefix: str
) -> None:
    """No migration is written: the old `hosts` row (RowKey the name, no `HostId`) and its
    `host|<name>` hours count for the host its folder names, and expire with retention."""
    p = app_env()
    sub, _ = two_subscriptions()
    name = f"LEGACY-{sub[-8:]}"
    where = folder(blob_prefix, sub, name=name)
    legacy_key = keys.encode(name.casefold())
    hour = f"{last_hour():%Y-%m-%dT%H}"
    p.storage.upsert((p.storage.index, [
        {"PartitionKey": layout.HOSTS, "RowKey": legacy_key, "Host": name, "Folder": where},
        {"PartitionKey": layout.HOST_PREFIX + legacy_key, "RowKey": hour, "Host": name},
    ]))  # fmt: skip
    host_id = layout.host_id_of_blob(where)
    p.storage.upsert((p.storage.index, [layout.host_entity(host_id, where)]))
    health = functions.services().detector.health
    ours = [h for h in health.hosts() if h.host_id.casefold() == host_id.casefold()]
    assert len(ours) == 1 and ours[0].label == name and ours[0].folder == where
    assert health.active_hours(ours[0], last_hour() - timedelta(hours=1)) == {last_hour()}


# -- the pure rules ---------------------------------------------------------------------------
def test_the_host_id_is_read_from_the_blobs_folders() -> None:
    blob = hour_blob(folder("resourceId=/SUBSCRIPTIONS/X/RESOURCEGROUPS/t/", "S1"), last_hour())
    host_id = "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG-NETWORK-PROD/PROVIDERS/MICROSOFT.NETWORK/"
    assert layout.host_id_of_blob(blob) == host_id + f"BASTIONHOSTS/{NAME}"
    assert layout.host_id_of_blob(blob.rsplit("y=", 1)[0]) == host_id + f"BASTIONHOSTS/{NAME}"
    assert layout.host_id_of_blob("elsewhere/PT1H.json") == ""
    assert layout.host_name(host_id + "BASTIONHOSTS/x") == "x"


def test_a_name_shows_its_subscription_and_group_only_where_two_hosts_share_it() -> None:
    def ident(sub: str, group: str, name: str) -> str:
        return f"/SUBSCRIPTIONS/{sub}/RESOURCEGROUPS/{group}/PROVIDERS/X/BASTIONHOSTS/{name}"

    a, b = ident("7E1C0001", "RG-A", NAME), ident("9A2B0001", "RG-A", NAME.lower())
    c, d = ident("7E1C0001", "RG-A", "BASTION-DEV"), ident("7E1C0002", "RG-A", "BASTION-QA")
    e = ident("7E1C0002", "RG-A", "BASTION-QA")
    labels = layout.host_labels([a, b, c])
    assert labels == {a: f"{NAME} (sub 7E1C\u2026, RG-A)",
                      b: f"{NAME.lower()} (sub 9A2B\u2026, RG-A)", c: "BASTION-DEV"}  # fmt: skip
    same_start = layout.host_labels([d, ident("7E1C0003", "RG-A", "BASTION-QA")])
    assert same_start[d] == "BASTION-QA (sub 7E1C0002, RG-A)"  # 4 characters would not do
    assert layout.host_labels([e]) == {e: "BASTION-QA"}
