"""Normalizing records and encoding keys. No I/O."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from devtools import samples
from shared.core.domain import Outcome
from shared.ingest.normalize import Rejected, normalize, outcome
from shared.store import keys, layout
from shared.store.layout import index_rows

WHEN = datetime(2026, 11, 24, 10, 58, 3, 250000, tzinfo=UTC)
FORBIDDEN = set("/\\#?") | {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))}


def doc_record(**props: object) -> dict[str, object]:
    record = samples.record(WHEN, "alice", "Successfully Connected.", "131.107.159.86", port=24039)
    record["properties"].update(props)  # type: ignore[union-attr]
    return record


def test_documentation_record_maps_to_log_analytics_names() -> None:
    e = normalize(doc_record(), "blob", 10, 0)
    assert e["TimeGenerated"] == WHEN
    assert e["UserName"] == "alice" and e["UserEmail"] == "alice@contoso.com"
    assert e["ClientIpAddress"] == "131.107.159.86" and e["ClientPort"] == 24039
    assert e["Protocol"] == "ssh" and e["ResourceType"] == "VM"
    assert e["TargetVMName"] == "LINUX-WEB-01" and e["TargetVMIPAddress"] == "10.20.1.4"
    assert e["BastionHostName"] == "BASTION-PROD"
    assert e["SubscriptionId"] == samples.SUBSCRIPTION and e["ResourceGroup"] == samples.GROUP
    assert e["OperationName"] == "Microsoft.Network/BastionHost/connect"
    assert e["Outcome"] == "Success" and e["Message"] == "Successfully Connected."
    assert (e["SourceBlob"], e["SourceOffset"], e["SourceIndex"]) == ("blob", 10, 0)
    assert e["PartitionKey"] == "alice|2026-11-24T10"
    assert e["RowKey"].startswith("2026-11-24T10:58:03.250000Z-")
    assert "Extra" not in e  # the documented top-level extras are known fields


def test_field_names_are_matched_without_case_and_unknown_ones_kept() -> None:
    raw = doc_record()
    props = raw.pop("properties")
    raw["Properties"] = {k.upper(): v for k, v in props.items()} | {"newThing": [1, 2]}
    raw["TIME"] = raw.pop("time")
    raw["futureTopLevel"] = "x"
    e = normalize(raw, "blob", 0, 0)
    assert e["UserName"] == "alice" and e["ClientPort"] == 24039
    assert e["TimeGenerated"] == WHEN
    assert '"properties.newThing":[1,2]' in e["Extra"] and '"futureTopLevel":"x"' in e["Extra"]


def test_session_fields_are_kept_when_present() -> None:
    e = normalize(
        doc_record(sessionStartTime="2026-11-24T10:58:03Z", sessionEndTime="2026-11-24T11:20:00Z",
                   duration=1317000),
        "b", 0, 0,
    )  # fmt: skip
    assert e["SessionStartTime"] == datetime(2026, 11, 24, 10, 58, 3, tzinfo=UTC)
    assert e["SessionEndTime"] == "2026-11-24T11:20:00Z" and e["Duration"] == 1317000


@pytest.mark.parametrize("name", ["CONTOSO\\alice", "bob/ops", "h#x?r", "zoë", "a\tb", "%41|x"])
def test_identities_stay_verbatim_and_keys_stay_legal(name: str) -> None:
    e = normalize(doc_record(userName=name), "b", 0, 0)
    assert e["UserName"] == name
    assert not FORBIDDEN & set(e["PartitionKey"]) and not FORBIDDEN & set(e["RowKey"])


def test_keys_are_injective_and_case_insensitive() -> None:
    names = ["bob/ops", "bob%2Fops", "bob|ops", "bob%7Cops", "BOB/OPS", "x" * 300, "x" * 301]
    encoded = {keys.encode(keys.user_key(n, "")) for n in names}
    assert len(encoded) == len(names) - 1  # only BOB/OPS == bob/ops
    assert all(len(k.encode("utf-16-le")) <= 1024 for k in encoded)


def test_user_falls_back_to_email_then_unknown() -> None:
    assert normalize(doc_record(userName=""), "b", 0, 0)["UserKey"] == "alice@contoso.com"
    none = normalize(doc_record(userName="", userEmail=""), "b", 0, 0)
    assert none["UserKey"] == keys.NO_IDENTITY
    assert none["PartitionKey"] == "(NO IDENTITY)|2026-11-24T10"


def test_same_record_gets_same_keys_whatever_blob_or_position() -> None:
    a = normalize(doc_record(), "blob-a", 1, 0)
    b = normalize(copy.deepcopy(doc_record()), "blob-b", 99, 3)
    assert (a["PartitionKey"], a["RowKey"]) == (b["PartitionKey"], b["RowKey"])
    c = normalize(doc_record(clientPort=24040), "blob-a", 1, 0)
    assert c["RowKey"] != a["RowKey"]


def test_times_are_utc_with_any_offset_or_precision() -> None:
    raw = doc_record()
    raw["time"] = "2026-11-24T11:58:03.2500000+01:00"
    assert normalize(raw, "b", 0, 0)["TimeGenerated"] == WHEN


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"category": "GatewayDiagnosticLog"}, "wrong_category"),
        ({"category": None}, "wrong_category"),
        ({"time": "yesterday"}, "bad_time"),
        ({"time": None}, "bad_time"),
        ({"time": "1601-01-01T00:00:00Z"}, "bad_time"),
        ({"properties": "nope"}, "bad_field"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(change: dict[str, object], reason: str) -> None:
    raw = doc_record() | change
    with pytest.raises(Rejected) as err:
        normalize(raw, "b", 0, 0)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    "props",
    [{"clientPort": "abc"}, {"clientPort": 70000}, {"userName": {"a": 1}}, {"duration": 1.5}],
)
def test_wrong_field_types_are_rejected(props: dict[str, object]) -> None:
    with pytest.raises(Rejected):
        normalize(doc_record(**props), "b", 0, 0)


def test_numeric_strings_and_numbers_are_coerced() -> None:
    e = normalize(doc_record(clientPort="443", userName=12345), "b", 0, 0)
    assert e["ClientPort"] == 443 and e["UserName"] == "12345"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Successfully Connected.", Outcome.SUCCESS),
        (" successfully connected.", Outcome.SUCCESS),
        ("Login Failed", Outcome.FAILURE),
        (" LOGIN FAILED ", Outcome.FAILURE),
        ("Session Disconnected", Outcome.OTHER),
        ("Connection failed: target VM unreachable", Outcome.OTHER),
        ("Login Failed for 3 users", Outcome.OTHER),
        ("successfully connected", Outcome.OTHER),
        ("", Outcome.OTHER),
    ],
)
def test_outcome_from_message(message: str, expected: Outcome) -> None:
    assert outcome(message) is expected


def test_ipv6_and_mapped_addresses_group_together() -> None:
    a = normalize(doc_record(clientIpAddress="::ffff:131.107.159.86"), "b", 0, 0)
    b = normalize(doc_record(clientIpAddress="2001:DB8::1"), "b", 0, 0)
    assert a["ClientIpKey"] == "131.107.159.86" and b["ClientIpKey"] == "2001:db8::1"


def test_index_rows_cover_ip_vm_and_failures_once() -> None:
    """One index row per event (its IP's, naming the machine for the VM question) and one
    `fail|<hour>` row per failing account and address: no row per machine (issue 25)."""
    ok = normalize(doc_record(), "b", 0, 0)
    bad = normalize(doc_record(message="Login Failed", clientPort=1), "b", 0, 0)
    bad2 = normalize(doc_record(message="Login Failed", clientPort=2), "b", 0, 0)
    rows = list(index_rows([ok, bad, bad2]))
    ip_rows = [r for r in rows if r["PartitionKey"] == "ip|2026-11-24"]
    assert len(ip_rows) == 3 and len(rows) == 5
    assert all(r["RowKey"] == "131.107.159.86|" + r["EventRowKey"] for r in ip_rows)
    assert all(r["TargetVMKey"] == "linux-web-01" for r in ip_rows)
    fails = [r for r in rows if r["PartitionKey"].startswith("fail|")]
    assert sorted(r["RowKey"] for r in fails) == ["ip|131.107.159.86", "user|alice"]
    minute = bad["TimeGenerated"].minute  # the minutes they failed in, merged by writers
    assert all(layout.failed_minutes(r) == {minute} for r in fails)
    assert layout.failed_minutes({"Kind": "user", "Subject": "alice"}) is None  # before
    assert len({(r["PartitionKey"], r["RowKey"]) for r in rows}) == len(rows)


# -- who is the same user -------------------------------------------------------------------
# The key: format characters (Cf) removed, NFC, surrounding whitespace stripped, then simple
# per-character case folding as Windows compares account names (keys.identity).
SAME_USER = [
    pytest.param("admin ", "admin", id="trailing-space"),
    pytest.param("\t admin\u00a0\u3000", "admin", id="surrounding-unicode-whitespace"),
    pytest.param("Admin", "ADMIN", id="ascii-case"),
    pytest.param("caf\u00e9", "cafe\u0301", id="nfc-vs-nfd"),
    pytest.param("Zo\u00cb", "zoe\u0308", id="nfc-vs-nfd-upper"),
    pytest.param("ad\u200bmin", "admin", id="zero-width-space"),
    pytest.param("\ufeffad\u200c\u200d\u2060min", "admin", id="bom-joiners-word-joiner"),
    pytest.param("\u202eadmin\u202c", "admin", id="bidi-controls"),
    pytest.param("ad\u00admin", "admin", id="soft-hyphen"),
    pytest.param("\u212aelvin", "kelvin", id="kelvin-sign-is-canonically-K"),
    pytest.param("\u212aELVIN", "Kelvin", id="kelvin-sign-upper"),
    pytest.param("Stra\u00dfe", "STRA\u00dfE", id="sharp-s-with-itself"),
    pytest.param("\u039f\u0394\u039f\u03a3", "\u03bf\u03b4\u03bf\u03c2", id="final-sigma"),
    pytest.param("CONTOSO\\Bob", "contoso\\bob", id="domain-prefix"),
]
DIFFERENT_USERS = [
    pytest.param("Stra\u00dfe", "STRASSE", id="sharp-s-is-not-ss"),
    pytest.param("STRA\u1e9eE", "Stra\u00dfe", id="capital-sharp-s-is-not-sharp-s"),
    pytest.param("\ufb01le", "file", id="fi-ligature-is-not-fi"),
    pytest.param("\ufb01le", "FILE", id="fi-ligature-is-not-FI"),
    pytest.param("\u0130", "i", id="dotted-capital-I-is-not-i"),
    pytest.param("\uff41dmin", "admin", id="fullwidth-is-not-ascii"),
    pytest.param("ad min", "admin", id="inner-space-kept"),
    pytest.param("admin.", "admin", id="trailing-dot-kept"),
    pytest.param("bob/ops", "bob%2Fops", id="encoded-text-is-not-the-character"),
]


def user_of(name: str) -> dict[str, object]:
    return normalize(doc_record(userName=name, userEmail="x@contoso.com"), "b", 0, 0)


@pytest.mark.parametrize(("a", "b"), SAME_USER)
def test_names_a_person_cannot_tell_apart_are_one_user(a: str, b: str) -> None:
    ea, eb = user_of(a), user_of(b)
    assert ea["UserKey"] == eb["UserKey"] and ea["PartitionKey"] == eb["PartitionKey"]
    assert (ea["UserName"], eb["UserName"]) == (a, b)  # the verbatim name is kept
    assert keys.user_key(b, "") == keys.user_key(a, "")  # either way round
    assert keys.identity(keys.identity(a)) == keys.identity(a)  # a key is its own key


@pytest.mark.parametrize(("a", "b"), DIFFERENT_USERS)
def test_distinct_accounts_stay_apart(a: str, b: str) -> None:
    ea, eb = user_of(a), user_of(b)
    assert ea["UserKey"] != eb["UserKey"] and ea["PartitionKey"] != eb["PartitionKey"]
    assert keys.user_key(b, "") != keys.user_key(a, "")


def test_a_name_of_only_invisible_characters_falls_back_to_the_email() -> None:
    e = normalize(
        doc_record(userName="\u200b\u2060 \ufeff", userEmail=" Eve@Contoso.com"), "b", 0, 0
    )
    assert e["UserKey"] == "eve@contoso.com" and e["UserName"] == "\u200b\u2060 \ufeff"


def test_queries_find_a_user_by_any_spelling_of_the_key() -> None:
    """The API and CLI build the user key with the same rule as ingest."""
    from shared.answer import queries

    stored = user_of("Jos\u00e9")["UserKey"]
    for typed in ("JOSE\u0301", " jos\u00e9", "jos\u200b\u00e9"):
        q = queries.parse_activity({"user": typed, "to": "2026-11-24T12:00Z"})
        assert queries.activity_filter(q)[2][0]["lo"].startswith(keys.encode(stored) + "|")
