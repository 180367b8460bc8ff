"""One suite, two tables: Azurite and the in-memory stand-in (`devtools.memtables`) must answer
alike, through the app's own `Table`, for every operation the app and its tests use. A runner
test on the memory table is worth what this suite proves; the Azurite half runs in `make test`,
the memory half in `make unit` too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.data.tables import EdmType, EntityProperty

from devtools import azurite
from devtools.memtables import MemoryTableService
from shared.core.settings import Settings
from shared.store import layout
from shared.store.tables import Conflict, Storage, Table

T0 = datetime(2026, 11, 23, 9, 0, 1, 250000, tzinfo=UTC)
_names = itertools.count()


@pytest.fixture(params=["memory", pytest.param("azurite", marks=pytest.mark.azurite)])
def table(request: pytest.FixtureRequest) -> Iterator[Table]:
    if request.param == "memory":
        env = azurite.isolated_env("UseDevelopmentStorage=true")
        storage = Storage(Settings.from_env(env), services=(None, MemoryTableService(), None))
    else:
        emulator = request.getfixturevalue("emulator")
        storage = Storage(Settings.from_env(azurite.isolated_env(emulator.connection_string)))
    yield Table(storage, f"Contract{next(_names)}x{id(storage) % 10_000}")
    storage.close()


def plain(value: Any) -> Any:
    return value.value if isinstance(value, EntityProperty) else value


def row(pk: str, rk: str, **props: Any) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": rk, **props}


def test_values_come_back_typed(table: Table) -> None:
    big = EntityProperty(2**40, EdmType.INT64)  # as the SDK takes a number past Int32
    table.put(row("p", "r", Text="é ✓", Empty="", Small=7, Big=big, Flag=True, At=T0))
    got = table.get("p", "r")
    assert got is not None and got.metadata["etag"]
    assert {k: plain(v) for k, v in got.items()} == {
        "PartitionKey": "p",
        "RowKey": "r",
        "Text": "é ✓",
        "Empty": "",
        "Small": 7,
        "Big": 2**40,
        "Flag": True,
        "At": T0,
    }
    assert isinstance(got["At"], datetime) and got["At"].tzinfo is not None
    assert table.get("p", "nothing") is None


def test_merge_keeps_and_replace_drops(table: Table) -> None:
    table.put(row("p", "r", A=1, B="b"))
    table.client.upsert_entity(row("p", "r", C=3))  # the SDK's default: merge
    assert {k for k in table.get("p", "r") or {}} == {"PartitionKey", "RowKey", "A", "B", "C"}
    table.put(row("p", "r", D=4))  # replace
    assert {k for k in table.get("p", "r") or {}} == {"PartitionKey", "RowKey", "D"}


def test_filters_as_the_service_evaluates_them(table: Table) -> None:
    rows = [
        row("2026-11-22", "a", Status="pending", UpdatedAt=T0, UpdateDue=False, N=1),
        row("2026-11-23", "b", Status="delivered", UpdatedAt=T0, UpdateDue=True, N=2),
        row("2026-11-23", "c", Status="pending", UpdatedAt=T0 + timedelta(hours=2), N=3),
        row("2026-11-24", "d", Status="pending", N=4),  # no UpdatedAt
        row("2026-11-25", "e"),
    ]
    for r in rows:
        table.put(r)

    def keys(flt: str, **params: Any) -> list[str]:
        return [r["RowKey"] for r in table.query(flt, params, ["RowKey"])]

    owed = "(Status eq @pending and UpdatedAt le @before ) or UpdateDue eq true"
    assert keys(owed, pending="pending", before=T0 + timedelta(hours=1)) == ["a", "b"]
    assert keys(layout.PK_RANGE, lo="2026-11-23", hi="2026-11-24~") == ["b", "c", "d"]
    assert keys(layout.SEEK, pk="2026-11-23", lo="b", hi="c") == ["b"]
    assert keys("N ge @n and N le @m", n=2, m=3) == ["b", "c"]
    assert keys("UpdateDue ne @t", t=True) == ["a"]  # a missing property matches nothing
    assert keys("Status ne @s", s="pending") == ["b"]
    assert keys("not ( Status eq @s )", s="pending") == ["b", "e"]
    # Azurite compares times to the millisecond (Azure to 100 ns): the app's bounds are minutes
    assert keys("UpdatedAt lt @t", t=T0 + timedelta(milliseconds=1)) == ["a", "b"]
    assert keys("UpdatedAt lt @t", t=T0) == []
    (only,) = table.query(layout.PARTITION, {"pk": "2026-11-22"}, ["Status"])
    assert dict(only) == {"Status": "pending"} and only.metadata["etag"]


def test_rows_come_in_key_order_and_in_pages(table: Table) -> None:
    for i in range(25):
        table.put(row(f"p{i % 3}", f"r{i:02d}", I=i))
    want = sorted((f"p{i % 3}", f"r{i:02d}") for i in range(25))
    assert [(r["PartitionKey"], r["RowKey"]) for r in table.client.list_entities()] == want
    seen, token, pages = [], None, 0
    while True:
        page, token = table.page("I ge @z", {"z": 0}, ["PartitionKey", "RowKey"], 10, token)
        seen += [(r["PartitionKey"], r["RowKey"]) for r in page]
        pages += 1
        if token is None:
            break
    assert seen == want and pages == 3


def test_transactions_are_all_or_nothing(table: Table) -> None:
    table.put(row("p", "a", V=1))
    first = table.get("p", "a")
    assert first is not None
    with pytest.raises(Conflict):  # creating what exists: nothing of the batch applies
        table.transact([("upsert", row("p", "b", V=2), {}), ("create", row("p", "a"), {})])
    assert table.get("p", "b") is None
    etag = first.metadata["etag"]
    table.transact([("update", row("p", "a", V=3), {"etag": etag, "mode": "merge"})])
    with pytest.raises(Conflict):  # the row changed since that ETag
        table.transact([("update", row("p", "a", V=4), {"etag": etag})])
    with pytest.raises(Conflict):  # no such row
        table.transact([("update", row("p", "zz", V=4), {})])
    with pytest.raises(Conflict):
        table.transact([("delete", row("p", "zz"), {})])
    now = table.get("p", "a")
    assert now is not None and now["V"] == 3
    table.transact([("delete", row("p", "a"), {"etag": now.metadata["etag"]})])
    assert table.get("p", "a") is None
    table.delete("p", "a")  # deleting what is gone is done


def test_guarded_updates(table: Table) -> None:
    table.put(row("p", "a", V=1, W="w"))
    got = table.get("p", "a")
    assert got is not None
    etag = table.update(row("p", "a", V=2), got.metadata["etag"])
    assert etag and etag != got.metadata["etag"]
    now = table.get("p", "a")
    assert now is not None and (now["V"], now["W"], now.metadata["etag"]) == (2, "w", etag)
    with pytest.raises(Conflict):
        table.update(row("p", "a", V=3), got.metadata["etag"])
    with pytest.raises(Conflict):
        table.update(row("p", "missing", V=3), etag)


@pytest.mark.parametrize(
    "bad",
    [row("p", "r#1"), row("p", "r\x01"), row("p", "r", Big="x" * 40_000)],
    ids=["hash", "control", "long-string"],
)
def test_what_the_service_refuses(table: Table, bad: dict[str, Any]) -> None:
    with pytest.raises(HttpResponseError) as refused:
        table.put(bad)
    assert refused.value.status_code == 400
    with pytest.raises(HttpResponseError) as in_batch:
        table.transact([("upsert", bad, {})])
    assert in_batch.value.status_code in (400, 413) and not isinstance(in_batch.value, Conflict)


def test_a_slash_in_a_key_is_refused_in_memory_as_azure_does() -> None:
    """Azure answers 400 (a key may not hold `/`); Azurite 3.37 answers 500, so this one is
    not in the contract. The app's keys never hold one (`shared.store.keys.encode`)."""
    env = azurite.isolated_env("UseDevelopmentStorage=true")
    storage = Storage(Settings.from_env(env), services=(None, MemoryTableService(), None))
    with pytest.raises(HttpResponseError) as refused:
        Table(storage, "Slash").put(row("a/b", "r"))
    assert refused.value.status_code == 400


def test_whole_numbers_past_int32_go_in_and_come_back_plain(table: Table) -> None:
    """A blob past 2 GiB (its size, an offset in it) must not fail every invocation of it: the
    SDK refuses a plain int of 2**31 or more, so the app sends such numbers as Int64 and reads
    them back as ints, in every write path (put, upsert, transaction, guarded update)."""
    big = 3 * 2**30
    table.put(row("p", "a", Offset=big, Small=5, Flag=True))
    table.upsert([row("p", "b", Offset=big + 1)])
    table.transact([("upsert", row("p", "c", Offset=big + 2), {})])
    got = table.get("p", "a")
    assert got is not None and (got["Offset"], got["Small"], got["Flag"]) == (big, 5, True)
    assert type(got["Offset"]) is int
    table.update(row("p", "a", Offset=big + 3), got.metadata["etag"])
    offsets = [r["Offset"] for r in table.query(layout.PARTITION, {"pk": "p"}, ["Offset"])]
    assert offsets == [big + 3, big + 1, big + 2] and all(type(o) is int for o in offsets)


def test_a_cursor_past_two_gib(table: Table) -> None:
    from shared.store.tables import Cursor

    storage = table._storage
    blob = "resourceId=/X/y=2026/m=11/d=23/h=09/m=00/PT1H.json"
    key = f"cursor-{table.name}"
    moved = Cursor(offset=5 * 2**30, size=6 * 2**30, stored=7, mode="lines")
    storage.write_cursor(key, blob, Cursor(), moved)
    back = storage.read_cursor(key, blob)
    assert (back.offset, back.size, back.stored) == (5 * 2**30, 6 * 2**30, 7)
