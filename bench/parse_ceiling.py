"""How close can parse+normalize get to bare `orjson.loads`? (issue 4's parse_ratio >= 0.6)

    .venv/bin/python bench/parse_ceiling.py              # orjson rows only
    .venv/bin/pip install msgspec==0.22.0                # optional, not a project dependency
    .venv/bin/python bench/parse_ceiling.py              # adds the typed-decoder prototype rows

Every row is records/s on the same bytes as `bench/ingest.py`'s parse row, divided by bare
`orjson.loads` per line. The prototype rows are the fastest design we found: a typed C decoder
(msgspec Structs, no dicts), parse slices that fit in L2, and the derived fields cached per
host and per user. They build entities equal to `normalize.normalize`'s (checked below), so they
are a fair ceiling. Not part of the app: an experiment kept so it can be re-run.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from typing import Any

import _common as c
import orjson
from ingest import bare, split_normalize

from shared.ingest import normalize
from shared.store import keys

try:
    import msgspec
except ImportError:  # the orjson rows still run
    msgspec = None


def rate(fn: Callable[[], int], repeats: int) -> float:
    best, n = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def slices(data: bytes, size: int) -> list[tuple[int, bytes]]:
    """Whole-line slices of about `size` bytes, with their offsets (as ingest's carry makes)."""
    out, pos = [], 0
    while pos < len(data):
        end = data.rfind(b"\n", pos, pos + size) + 1 or len(data)
        out.append((pos, data[pos:end]))
        pos = end
    return out


def loads_kept(parts: list[tuple[int, bytes]]) -> int:
    """Decode only, keeping each slice's values as a batched writer must."""
    loads, n = orjson.loads, 0
    for _, part in parts:
        n += len([loads(line) for line in part.split(b"\n") if line])
    return n


def typed_prototype(digest: str | None) -> Callable[[list[tuple[int, bytes]]], int]:
    """Decode into Structs and build the entity with per-host and per-user caches."""
    assert msgspec is not None
    names = dict(zip(normalize._TEXT_NAMES, normalize._TEXT_KEYS, strict=True))
    props_type = msgspec.defstruct(
        "Props",
        [(n, str, "") for n in names]
        + [("ClientPort", int | None, None), ("Duration", int | None, None)],
        rename={**names, "ClientPort": "clientPort", "Duration": "duration"},
        forbid_unknown_fields=True,  # anything unusual takes normalize.normalize's general path
        gc=False,
    )
    dropped = [(n, msgspec.Raw, msgspec.Raw()) for n in normalize._DROPPED]
    record_type = msgspec.defstruct(
        "Record",
        [("time", str), ("category", str), ("properties", props_type)]
        + [(n, str, "") for n in ("resourceId", "operationName", "level", "location")]
        + dropped,
        forbid_unknown_fields=True,
        gc=False,
    )
    decode = msgspec.json.Decoder(record_type).decode
    astuple = msgspec.structs.astuple
    parse_time = normalize.ciso8601.parse_datetime
    hosts: dict[tuple[str, ...], dict[str, Any]] = {}
    people: dict[tuple[str, ...], tuple[dict[str, Any], str]] = {}

    def host_fields(r: Any) -> dict[str, Any]:
        key = (r.resourceId, r.operationName, r.location, r.level)
        if key not in hosts:
            hosts[key] = {
                "OperationName": r.operationName,
                "Location": r.location,
                "Level": r.level,
                "BastionResourceId": r.resourceId,
                **normalize._resource_parts(r.resourceId),
            }
        return hosts[key]

    def person_fields(p: Any) -> tuple[dict[str, Any], str]:
        key = (p.UserName, p.UserEmail, p.ClientIpAddress, p.TargetResourceId, p.Message)
        if key not in people:
            user = keys.user_key(p.UserName, p.UserEmail)
            fields = {
                "TargetVMName": normalize.vm_name(p.TargetResourceId),
                "Outcome": normalize.outcome(p.Message).value,
                "UserKey": user,
                "ClientIpKey": normalize.ip_key(p.ClientIpAddress),
            }
            people[key] = (fields, keys.encode(user) + "|")
        return people[key]

    def run(parts: list[tuple[int, bytes]], out: list[dict[str, Any]] | None = None) -> int:
        n = 0
        for offset, part in parts:
            entities = []
            for line in part.split(b"\n"):
                if line:
                    r = decode(line)
                    p = r.properties
                    person, prefix = person_fields(p)
                    t = r.time
                    stamp = t[:23] + "000+00:00"  # the fast path only takes Azure's own format
                    e = {
                        "UserName": p.UserName,
                        "UserEmail": p.UserEmail,
                        "UserAgent": p.UserAgent,
                        "ClientIpAddress": p.ClientIpAddress,
                        "Protocol": p.Protocol,
                        "TargetResourceId": p.TargetResourceId,
                        "TargetVMIPAddress": p.TargetVMIPAddress,
                        "Message": p.Message,
                        "ResourceType": p.ResourceType,
                        "TunnelId": p.TunnelId,
                        "TargetSubscriptionId": p.TargetSubscriptionId,
                        "SessionEndTime": p.SessionEndTime,
                        **host_fields(r),
                        **person,
                        "TimeGenerated": parse_time(t),
                        "SourceBlob": "bench",
                        "SourceOffset": offset,
                        "SourceIndex": 0,
                        "PartitionKey": prefix + t[:13],
                    }
                    if p.ClientPort is not None:
                        e["ClientPort"] = p.ClientPort
                    if p.Duration is not None:
                        e["Duration"] = p.Duration
                    if digest:  # normalize.normalize's identity digest, byte for byte
                        ident = "\x1f".join(
                            (
                                stamp,
                                r.resourceId,
                                r.operationName,
                                str(p.ClientPort),
                                str(p.Duration),
                                *astuple(p)[:12],
                            )
                        ).encode("utf-8", "surrogatepass")
                        if digest == "blake2b":
                            hexdigest = hashlib.blake2b(ident, digest_size=10).hexdigest()
                        else:  # the fastest hashlib digest here (SHA-NI): a different RowKey
                            hexdigest = hashlib.sha256(ident).hexdigest()[:20]
                        e["RowKey"] = keys.row_key(stamp, hexdigest)
                    entities.append(e)
                offset += len(line) + 1
            n += len(entities)
            if out is not None:
                out.extend(entities)
        return n

    return run


def check_prototype(data: bytes) -> None:
    """The prototype must build what ingest builds, or its speed means nothing."""
    sample = data[: data.find(b"\n", 200_000) + 1]
    got: list[dict[str, Any]] = []
    typed_prototype("blake2b")([(0, sample)], got)
    assert len(got) == sample.count(b"\n"), (len(got), sample.count(b"\n"))
    offset = 0
    for line, entity in zip(sample.split(b"\n"), got, strict=False):
        want = normalize.normalize(orjson.loads(line), "bench", offset, 0)
        assert entity == want, (sorted(entity.items()), sorted(want.items()))
        offset += len(line) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    data = c.lines(args.records, seed=11)  # the same bytes as bench/ingest.py's parse row
    base = rate(lambda: bare(orjson.loads, data), args.repeats)
    big, small = slices(data, 4 << 20), slices(data, 64 << 10)
    rows: list[tuple[str, float]] = [
        (
            "ours: split + normalize, 4 MiB reads",
            rate(lambda: split_normalize(data, 4 << 20, 32768), args.repeats),
        ),
        (
            "ours with 64 KiB parse slices",
            rate(lambda: split_normalize(data, 64 << 10, 32768), args.repeats),
        ),
        ("orjson.loads only, kept per 4 MiB", rate(lambda: loads_kept(big), args.repeats)),
        ("orjson.loads only, kept per 64 KiB", rate(lambda: loads_kept(small), args.repeats)),
    ]
    if msgspec is not None:
        check_prototype(data)
        for label, digest in (
            ("typed prototype, 64 KiB, same entity", "blake2b"),
            ("  the same with SHA-256 in the RowKey", "sha256"),
            ("  the same without the RowKey digest", None),
        ):
            run = typed_prototype(digest)
            rows.append((label, rate(lambda run=run: run(small), args.repeats)))
    print(
        f"{args.records:,} records, {len(data) / 1e6:.0f} MB; bare orjson.loads/line {base:,.0f}/s"
    )
    for label, value in rows:
        print(f"  {label:<40} {value:>10,.0f}/s  ratio {value / base:.2f}")
    if msgspec is None:
        print("  (pip install msgspec==0.22.0 for the typed-decoder rows)")


if __name__ == "__main__":
    main()
