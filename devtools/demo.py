"""The demo: sample logs -> Azurite -> the blob-trigger code path -> what a person would read."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, TextIO

from shared.core.settings import CONNECTION, LOGS_CONTAINER, Settings
from shared.ingest.loop import Pipeline, Summary
from shared.store import quarantine

from . import azurite, samples


def run(out: TextIO) -> int:
    """Start a private Azurite, ingest the sample set, print records, quarantine and alerts."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    blobs, expected = samples.build()
    with azurite.start() as emulator:
        settings = Settings.from_env({CONNECTION: emulator.connection_string})
        pipeline = Pipeline(settings)
        container = pipeline.storage.blobs.get_container_client(LOGS_CONTAINER)
        container.create_container()
        for name, data in blobs.items():
            container.upload_blob(name, data)
        print(f"Uploaded {len(blobs)} sample blobs to {LOGS_CONTAINER}/ on Azurite\n", file=out)
        # exactly what the blob trigger runs, blob by blob
        total = Summary.total(pipeline.ingest(container.get_blob_client(n)) for n in blobs)
        print_events(pipeline, out)
        print(
            f"\nRecords read {total.read}: stored {total.stored}, "
            f"quarantined {total.quarantined} (in {settings.quarantine_container}/), "
            f"skipped {total.skipped}",
            file=out,
        )
        print_quarantine(pipeline, out)
        print_alerts(pipeline, out)
        pipeline.detector.close()
        pipeline.storage.close()
    ok = total.stored == expected.records and total.quarantined == expected.quarantined
    return 0 if ok else 1


def print_events(pipeline: Pipeline, out: TextIO) -> None:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pipeline.storage.events.query("PartitionKey ge @lo", {"lo": ""}):
        groups[row["PartitionKey"]].append(row)
    print(f"{'User':<24} {'UTC hour':<14} {'OK':>3} {'Fail':>4}  Targets / source IPs", file=out)
    print("-" * 96, file=out)
    for pk in sorted(groups, key=lambda k: (k.rsplit("|", 1)[1], k)):
        rows = groups[pk]
        user = rows[0]["UserName"] or rows[0]["UserEmail"] or "(unknown)"
        ok = sum(r["Outcome"] == "Success" for r in rows)
        targets = sorted({r["TargetVMName"] for r in rows})
        ips = sorted({r["ClientIpAddress"] for r in rows})
        hour = pk.rsplit("|", 1)[1].replace("T", " ") + "h"
        print(
            f"{user[:24]:<24} {hour:<14} {ok:>3} {len(rows) - ok:>4}  "
            f"{', '.join(targets)} / {', '.join(ips)}",
            file=out,
        )


def print_quarantine(pipeline: Pipeline, out: TextIO) -> None:
    """One line per rejected piece (or per run of them: `x COUNT` up to the last offset)."""
    container = pipeline.storage.blobs.get_container_client(pipeline.settings.quarantine_container)
    for item in container.list_blobs():
        for line in quarantine.read(container.download_blob(item.name).readall()):
            where = f"...{line['SourceBlob'][-44:]} @{line['SourceOffset']}"
            if "Count" in line:
                where += f" x{line['Count']} up to @{line['LastOffset']}"
            print(f"  quarantined: {where}  ({line['Reason'][:70]})", file=out)


def print_alerts(pipeline: Pipeline, out: TextIO) -> None:
    rows = sorted(
        (
            r
            for r in pipeline.storage.alerts.query("PartitionKey ge @lo", {"lo": ""})
            if "FirstSeen" in r  # incidents, not the per-actor bookkeeping rows
        ),
        key=lambda r: (r["FirstSeen"], r["Rule"]),
    )
    print(f"\nIncidents ({len(rows)}), one per campaign:", file=out)
    for row in rows:
        print(f"\n  {row['Summary']}", file=out)
        print(f"    rules {row['Rules']}; {row['SubjectKind']} {row['Subject']!r}", file=out)
        print(f"    accounts {row['Users']}  source IPs {row['ClientIps']}", file=out)
        print(f"    targets {row['TargetVMs']}  via {row['BastionHosts']}", file=out)
        print(
            f"    notified: {row['NotifiedSeverity'] or '-'} to {row['DeliveredTo'] or '-'}",
            file=out,
        )
