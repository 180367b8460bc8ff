"""Command line: `python -m shared COMMAND` (see README, "See who connected to what").

  demo      ingest the sample logs into a private Azurite and print the result
  activity  who connected to what (--user --vm --ip --from --to --outcome --format)
  alerts    alerts by status and first-seen time (--status --from --to --format)
  ingest    backfill: run the ingest pipeline over a local file/folder or a blob prefix
  report    write the HTML activity report (--from --to --output)

All but `demo` use the app settings from the environment (`Settings.load()`), e.g.
`BastionLogsStorage=<connection string>`; `BastionLogsStorage=UseDevelopmentStorage=true`
points at a default local Azurite (ports 10000-10002).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from .settings import CONNECTION

ACTIVITY_COLUMNS = [
    ("time", "Time (UTC)"),
    ("user", "User"),
    ("clientIp", "Client IP"),
    ("targetVM", "Target VM"),
    ("protocol", "Proto"),
    ("outcome", "Outcome"),
    ("bastionHost", "Bastion"),
    ("message", "Message"),
]
ALERT_COLUMNS = [
    ("firstSeen", "First seen"),
    ("severity", "Severity"),
    ("rule", "Rule"),
    ("subject", "Subject"),
    ("failureCount", "Failures"),
    ("status", "Status"),
    ("summary", "Summary"),
]


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="ingest sample logs into a private Azurite and print the result")

    act = sub.add_parser("activity", help="who connected to what, in time order")
    act.add_argument("--user", help="user name or e-mail (case-insensitive)")
    act.add_argument("--vm", help="target VM name (case-insensitive)")
    act.add_argument("--ip", help="client IP address")
    _range_args(act)
    act.add_argument("--outcome", help="Success, Failure or Other")
    act.add_argument("--limit", type=int, help="print at most this many events")
    _format_arg(act)

    alr = sub.add_parser("alerts", help="alerts first seen in a time range")
    alr.add_argument("--status", help="pending or delivered")
    _range_args(alr)
    _format_arg(alr)

    ing = sub.add_parser("ingest", help="backfill from a local file/folder or a blob prefix")
    ing.add_argument(
        "source",
        metavar="PATH_OR_BLOB_PREFIX",
        help="a local file or folder (uploaded to the logs container under its relative path, "
        "then ingested) or, if no such path exists, a blob-name prefix in the logs container",
    )
    ing.add_argument("--prefix", default="", help="blob-name prefix for uploaded local files")

    rep = sub.add_parser("report", help="write the HTML activity report")
    _range_args(rep)
    rep.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo

        return demo.run(out)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from azure.core.exceptions import ServiceRequestError

    from . import queries

    try:
        return _COMMANDS[args.command](args, out)
    except queries.BadQuery as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServiceRequestError as exc:
        print(f"error: cannot reach storage (is {CONNECTION} right?): {exc}", file=sys.stderr)
        return 1


def _range_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", help="ISO 8601 start, UTC (default: to - 24h)")
    parser.add_argument("--to", dest="end", help="ISO 8601 end, exclusive (default: now)")


def _format_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")


def _pipeline() -> Any:
    from .ingest import Pipeline
    from .settings import Settings

    return Pipeline(Settings.load())


def _activity(args: argparse.Namespace, out: TextIO) -> int:
    from . import queries

    params = {"user": args.user, "vm": args.vm, "ip": args.ip, "outcome": args.outcome}
    params |= {"from": args.start, "to": args.end}
    if args.limit is not None and args.limit < 1:
        raise queries.BadQuery("--limit must be at least 1")
    query = queries.parse_activity(params)
    pipeline = _pipeline()
    try:
        rows: Iterable[dict[str, Any]] = queries.activity_rows(pipeline.storage, query)
        if args.limit is not None:
            rows = _take(rows, args.limit)
        write(rows, ACTIVITY_COLUMNS, args.format, out)
    finally:
        pipeline.storage.close()
    return 0


def _alerts(args: argparse.Namespace, out: TextIO) -> int:
    from . import queries

    query = queries.parse_alerts({"status": args.status, "from": args.start, "to": args.end})
    pipeline = _pipeline()
    try:
        write(queries.alert_rows(pipeline.storage, query), ALERT_COLUMNS, args.format, out)
    finally:
        pipeline.storage.close()
    return 0


def _report(args: argparse.Namespace, out: TextIO) -> int:
    from . import report

    start, end = report.parse({"from": args.start, "to": args.end})
    pipeline = _pipeline()
    try:
        page = report.build(pipeline.storage, start, end)
    finally:
        pipeline.storage.close()
    if args.output == "-":
        out.write(page)
    else:
        Path(args.output).write_text(page, encoding="utf-8")
        print(f"wrote {args.output}", file=out)
    return 0


def _ingest(args: argparse.Namespace, out: TextIO) -> int:
    from .settings import LOGS_CONTAINER

    pipeline = _pipeline()
    try:
        container = pipeline.storage.blobs.get_container_client(LOGS_CONTAINER)
        local = Path(args.source)
        if local.exists():
            if not container.exists():
                container.create_container()
            names = []
            for path, name in local_files(local, args.prefix):
                with path.open("rb") as data:
                    container.upload_blob(name, data, overwrite=True)
                names.append(name)
            print(f"uploaded {len(names)} file(s) to {LOGS_CONTAINER}/", file=out)
        else:
            names = [b.name for b in container.list_blobs(name_starts_with=args.source)]
        if not names:
            print(f"nothing to ingest for {args.source!r}", file=sys.stderr)
            return 1
        totals = dict.fromkeys(("read", "stored", "quarantined", "skipped"), 0)
        alerts = 0
        for name in names:
            summary = pipeline.ingest(container.get_blob_client(name))
            print(_printable(summary.line()), file=out)
            for key in totals:
                totals[key] += getattr(summary, key)
            alerts += len(summary.alerts)
        print(
            f"total: blobs={len(names)} "
            + " ".join(f"{k}={v}" for k, v in totals.items())
            + f" new_alerts={alerts}",
            file=out,
        )
    finally:
        pipeline.storage.close()
    return 0


def local_files(root: Path, prefix: str = "") -> Iterator[tuple[Path, str]]:
    """(file, blob name) for a file (its path relative to the working folder when inside it,
    else its name) or for every `*.json` file below a folder (relative to that folder)."""
    if root.is_file():
        absolute = root.resolve()
        try:
            rel = absolute.relative_to(Path.cwd().resolve())
        except ValueError:
            rel = Path(absolute.name)
        yield root, prefix + rel.as_posix()
        return
    for path in sorted(root.rglob("*.json")):
        if path.is_file():
            yield path, prefix + path.relative_to(root).as_posix()


_COMMANDS = {"activity": _activity, "alerts": _alerts, "ingest": _ingest, "report": _report}


# -- output ---------------------------------------------------------------------------------
def _take(rows: Iterable[dict[str, Any]], n: int) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(rows):
        if i >= n:
            return
        yield row


def _printable(text: str) -> str:
    """Control characters (terminal escapes in a user name, say) shown as `\\xNN`."""
    return "".join(
        f"\\x{ord(c):02x}" if unicodedata.category(c) in ("Cc", "Cf") else c for c in text
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _csv_safe(text: str) -> str:
    """Spreadsheets run cells starting with = + - @ as formulas: quote them as text."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write(rows: Iterable[dict[str, Any]], columns: list[tuple[str, str]], fmt: str, out: TextIO):
    """Print rows as an aligned table, a JSON array (every field) or CSV (the columns)."""
    if fmt == "json":
        count = 0
        for count, row in enumerate(rows, 1):
            out.write(("[\n  " if count == 1 else ",\n  ") + orjson.dumps(row).decode())
        out.write("\n]\n" if count else "[]\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow([_csv_safe(_cell(row.get(key))) for key, _ in columns])
        return
    table = [[_printable(_cell(row.get(key))) for key, _ in columns] for row in rows]
    if not table:
        print("(no results)", file=out)
        return
    heads = [head for _, head in columns]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(heads)]
    widths[-1] = len(heads[-1])  # the last column is not padded
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print(f"({len(table)} rows)", file=out)
