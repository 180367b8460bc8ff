"""Realistic sample Bastion audit logs in the real blob layout, for the demo, tests and benchmarks.

Three hours of two Bastion hosts: ordinary sign-ins (some people behind one office NAT address
mistype once), a brute-force burst on `admin` that crosses the hour boundary, a password spray,
a sign-in that works after repeated failures, odd identities, every file format we accept, and
some bad input that must end up in quarantine.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

SUBSCRIPTION = "7E1C5A3B-0D2F-4B8E-9A61-3C5D7F9B1E24"
GROUP = "RG-NETWORK-PROD"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
VMS = {
    "LINUX-WEB-01": "10.20.1.4",
    "LINUX-DB-01": "10.20.2.5",
    "WIN-JUMP-01": "10.20.3.6",
    "WIN-APP-02": "10.20.3.7",
}
OFFICE_NAT = "203.0.113.10"
BRUTE_IP = "198.51.100.23"
SPRAY_IP = "45.83.64.7"
COMPROMISE_IP = "185.220.101.4"


def blob_path(host: str, hour: datetime) -> str:
    """Where Azure Monitor writes a Bastion host's hour of logs (container not included)."""
    return (
        f"resourceId=/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{GROUP}/PROVIDERS/"
        f"MICROSOFT.NETWORK/BASTIONHOSTS/{host}/"
        f"y={hour:%Y}/m={hour:%m}/d={hour:%d}/h={hour:%H}/m=00/PT1H.json"
    )


def record(
    when: datetime,
    user: str,
    message: str,
    ip: str,
    vm: str = "LINUX-WEB-01",
    host: str = "BASTION-PROD",
    port: int = 50000,
    email: str | None = None,
    protocol: str | None = None,
    agent: str = USER_AGENT,
) -> dict[str, Any]:
    """One record shaped like the documentation's example."""
    proto = protocol or ("rdp" if vm.startswith("WIN") else "ssh")
    return {
        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "resourceId": (
            f"/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/{GROUP}/PROVIDERS/"
            f"MICROSOFT.NETWORK/BASTIONHOSTS/{host}"
        ),
        "operationName": "Microsoft.Network/BastionHost/connect",
        "category": "BastionAuditLogs",
        "level": "Informational",
        "location": "westeurope",
        "properties": {
            "userName": user,
            "userAgent": agent,
            "clientIpAddress": ip,
            "clientPort": port,
            "protocol": proto,
            "targetResourceId": (
                f"/SUBSCRIPTIONS/{SUBSCRIPTION}/RESOURCEGROUPS/RG-WORKLOADS/PROVIDERS/"
                f"MICROSOFT.COMPUTE/VIRTUALMACHINES/{vm}"
            ),
            "subscriptionId": SUBSCRIPTION,
            "message": message,
            "resourceType": "VM",
            "targetVMIPAddress": VMS.get(vm, "10.20.9.9"),
            "userEmail": email if email is not None else user.split("\\")[-1] + "@contoso.com",
            "tunnelId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{when.isoformat()}|{user}|{port}")),
        },
        "FluentdIngestTimestamp": when.isoformat().replace("+00:00", ".0000000Z"),
        "Region": "westeurope",
        "CustomerSubscriptionId": SUBSCRIPTION,
    }


OK = "Successfully Connected."
FAIL = "Login Failed"


@dataclass(frozen=True)
class Expected:
    """What the sample set must produce; tests and the demo check against it."""

    records: int  # valid records
    quarantined: int
    alerts: frozenset[tuple[str, str]]  # (most severe rule, subject) of each incident


def _ordinary(hour: datetime, seed: int) -> list[dict[str, Any]]:
    people = [
        ("alice", "82.165.10.4", "LINUX-WEB-01"),
        ("CONTOSO\\bob", "82.165.10.9", "WIN-JUMP-01"),
        ("bob/ops", "93.184.216.34", "LINUX-DB-01"),
        ("zoë", "2001:db8:85a3::8a2e:370:7334", "LINUX-WEB-01"),
        ("h#x?r", "82.165.10.11", "WIN-APP-02"),
    ]
    out = []
    for i, (user, ip, vm) in enumerate(people):
        when = hour + timedelta(minutes=5 + 9 * i + seed, seconds=17 * i)
        out.append(record(when, user, OK, ip, vm, port=40000 + 100 * seed + i))
    # Four colleagues behind the office NAT mistype once each, then sign in.
    for i, user in enumerate(("dave", "erin", "frank", "grace")):
        when = hour + timedelta(minutes=30 + i, seconds=5)
        out.append(record(when, user, FAIL, OFFICE_NAT, "WIN-JUMP-01", port=51000 + i))
        out.append(
            record(
                when + timedelta(seconds=40), user, OK, OFFICE_NAT, "WIN-JUMP-01", port=51100 + i
            )
        )
    return out


def build() -> tuple[dict[str, bytes], Expected]:
    """Blob name -> content (names relative to the logs container), and what to expect."""
    h0, h1, h2 = START, START + timedelta(hours=1), START + timedelta(hours=2)
    blobs: dict[str, bytes] = {}

    def lines(records: list[dict[str, Any]]) -> bytes:
        return b"".join(orjson.dumps(r) + b"\n" for r in records)

    # Hour 0, production host: JSON Lines with a brute force starting at 09:57.
    prod0 = _ordinary(h0, 0)
    prod0 += [
        record(h0 + timedelta(minutes=57, seconds=10 * i), "admin", FAIL, BRUTE_IP, port=60000 + i)
        for i in range(3)
    ]
    prod0.sort(key=lambda r: r["time"])
    bad = [
        b'{"time":"2026-11-23T09:40:00Z","category":"BastionAuditLogs","properties":{"userName"\n',
        orjson.dumps({**record(h0, "x", OK, "1.2.3.4"), "category": "GatewayDiagnosticLog"})
        + b"\n",
        orjson.dumps({**record(h0, "x", OK, "1.2.3.4"), "time": "yesterday"}) + b"\n",
    ]
    blobs[blob_path("BASTION-PROD", h0)] = lines(prod0[:6]) + b"".join(bad) + lines(prod0[6:])

    # Hour 1, production host: the brute force goes on past 10:00, then a password spray.
    prod1 = _ordinary(h1, 1)
    prod1 += [
        record(h1 + timedelta(minutes=1, seconds=10 * i), "admin", FAIL, BRUTE_IP, port=60100 + i)
        for i in range(4)
    ]
    sprayed = ("alice", "administrator", "azureuser", "root", "backup", "oracle", "test")
    prod1 += [
        record(
            h1 + timedelta(minutes=20, seconds=35 * i),
            u,
            FAIL,
            SPRAY_IP,
            "WIN-APP-02",
            port=61000 + i,
        )
        for i, u in enumerate(sprayed)
    ]
    prod1.sort(key=lambda r: r["time"])
    huge = record(h1 + timedelta(minutes=44), "mallory", OK, "10.9.9.9")
    huge["properties"]["userAgent"] = "A" * 40000
    blobs[blob_path("BASTION-PROD", h1)] = (
        b"\xef\xbb\xbf" + lines(prod1).replace(b"\n", b"\r\n") + orjson.dumps(huge) + b"\r\n"
    )

    # Hour 2, production host: svc-deploy fails six times and then gets in; truncated tail.
    prod2 = _ordinary(h2, 2)
    prod2 += [
        record(h2 + timedelta(minutes=10, seconds=20 * i), "svc-deploy", FAIL, COMPROMISE_IP,
               "LINUX-DB-01", port=62000 + i)
        for i in range(6)
    ]  # fmt: skip
    prod2.append(
        record(h2 + timedelta(minutes=12, seconds=30), "svc-deploy", OK, COMPROMISE_IP,
               "LINUX-DB-01", port=62100)
    )  # fmt: skip
    prod2.append(
        record(h2 + timedelta(minutes=50), "", OK, "82.165.10.4", email="nina@contoso.com")
    )
    prod2.sort(key=lambda r: r["time"])
    blobs[blob_path("BASTION-PROD", h2)] = lines(prod2) + b'{"time":"2026-11-23T11:59:59Z","cat'

    # Development host: the legacy wrapper (pretty-printed) and documentation-style objects.
    dev = {"host": "BASTION-DEV"}
    dev0 = [
        record(h0 + timedelta(minutes=15 + i), "alice", OK, "82.165.10.4", port=45000 + i, **dev)
        for i in range(3)
    ]
    blobs[blob_path("BASTION-DEV", h0)] = orjson.dumps(
        {"records": dev0}, option=orjson.OPT_INDENT_2
    )
    dev1 = [
        record(h1 + timedelta(minutes=25 + i), "CONTOSO\\bob", OK, "82.165.10.9", "WIN-JUMP-01",
               port=46000 + i, **dev)
        for i in range(2)
    ]  # fmt: skip
    blobs[blob_path("BASTION-DEV", h1)] = b"\n".join(
        orjson.dumps(r, option=orjson.OPT_INDENT_2) for r in dev1
    )

    valid = len(prod0) + len(prod1) + len(prod2) + len(dev0) + len(dev1)
    expected = Expected(
        records=valid,
        quarantined=len(bad) + 1 + 1,  # malformed, wrong category, bad time; huge; truncated
        alerts=frozenset(
            {  # one incident per campaign: the accounts' findings fold into the IP's incident
                ("ip_brute_force", BRUTE_IP),
                ("password_spray", SPRAY_IP),
                ("success_after_failures_ip", COMPROMISE_IP),
            }
        ),
    )
    return blobs, expected


def write(folder: Path) -> int:
    """Write the sample blobs under `folder`, each at its blob name (the real layout), so that
    `python -m shared ingest <folder>` uploads and ingests them."""
    blobs, _ = build()
    for name, data in blobs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(blobs)
