"""Command line of the app: `python -m shared COMMAND` (see README, "Try the command line").

  activity    who connected to what, in time order (--user --vm --ip --outcome --from --to)
  alerts      incidents by status and first-seen time (--status --from --to)
  status      is it working? per Bastion host: last record, how far behind, verdict
  quarantine  what was set aside and why (--from --to --blob)
  ingest      backfill: upload a local file or folder and ingest it, or ingest a blob prefix
  report      write the HTML activity report (--from --to --output)
  erase       erase one person: events, index rows, baseline; alerts keep a marker (--user)
  aliases     backfill: let --user and --vm find records stored before their index rows
  retain      delete now what is older than its retention (the daily timer does it too)

Settings come from the environment, as the app's own (README, "Settings"); at least
`BastionLogsStorage`: a connection string, `UseDevelopmentStorage=true` for a local Azurite
(`make azurite`), or the identity-based `BastionLogsStorage__*` group with `az login`.

Times are ISO 8601 (2026-11-23, 2026-11-23T09:30Z) and UTC when no offset is given; ranges are
[from, to), to = now and from = to - 24 h by default; activity and report cover at most 7 days
without --user/--vm/--ip (31 with), alerts and quarantine at most 366.

Exit codes: 0 done, 1 the operation failed (storage unreachable or refused, nothing found),
2 the command, a value or a setting is wrong (a bad date or number, a file that cannot be
written), 141 the reader of the output went away (`... | head -1`: nothing more is printed).
Errors are one line on stderr; --debug (before or after the command) adds a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import orjson

from shared.core.settings import CONNECTION, LOGS_CONTAINER, Settings, SettingsError

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
    ("firstSeen", "First seen (UTC)"),
    ("severity", "Severity"),
    ("rule", "Rule"),
    ("subject", "Subject"),
    ("failureCount", "Failures"),
    ("status", "Status"),
    ("summary", "Summary"),
]
SESSION_COLUMNS = [
    ("start", "Start (UTC)"),
    ("end", "End (UTC)"),
    ("lengthSeconds", "Seconds"),
    ("state", "State"),
    ("account", "Account"),
    ("sourceIp", "From"),
    ("client", "Client"),
    ("target", "Target"),
    ("protocol", "Protocol"),
    ("bastionHost", "Bastion"),
    ("openNow", "Open now (Bastion)"),
]
STATUS_COLUMNS = [
    ("host", "Bastion host"),
    ("verdict", "Verdict"),
    ("lastRecord", "Last record (UTC)"),
    ("bytesBehind", "Bytes behind"),
    ("stored24h", "Stored 24h"),
    ("quarantined24h", "Quarantined 24h"),
    ("other24h", "Other 24h"),
    ("noIdentity24h", "No identity 24h"),
    ("why", "Why"),
]
QUARANTINE_COLUMNS = [
    ("time", "Quarantined (UTC)"),
    ("reason", "Reason"),
    ("blob", "Blob (host, hour)"),
    ("offset", "Offset"),
    ("count", "Pieces"),
    ("excerpt", "Excerpt"),
]


DEBUG = "show tracebacks and storage requests"
#: `... | head -1`: the reader went away. 128 + SIGPIPE, what `cat` or `git log` end with.
BROKEN_PIPE = 141


class Failed(Exception):
    """The operation failed for a reason the message explains (exit code 1)."""


class Wrong(Exception):
    """The command asked for something it cannot have, say a file it cannot write (exit 2)."""


def count(raw: str) -> int:
    """`--limit`: ASCII digits only (`int("٣")` is 3 and `"²".isdigit()` is true)."""
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise argparse.ArgumentTypeError(f"not a whole number: {raw[:20]!r}")
    return int(raw)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as every other error is;
    `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        hint = f"{self.prog} --help shows the usage"
        self.exit(2, f"error: {_printable(message)[:300]} ({hint})\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="python -m shared",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--debug", action="store_true", help=DEBUG)
    sub = top.add_subparsers(dest="command", required=True)
    _commands(sub)
    for command in sub.choices.values():  # `activity --debug` as well as `--debug activity`
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG)
    return top


def _commands(sub: Any) -> None:
    """One sub-parser per command, with its options."""
    act = sub.add_parser("activity", help="who connected to what, in time order")
    act.add_argument(
        "--user",
        help="user name, e-mail or DOMAIN\\name (compared without case; a bare name or e-mail "
        "also finds the DOMAIN\\name accounts whose records carry it, and says which)",
    )
    act.add_argument("--vm", help="target VM name (compared without case)")
    act.add_argument("--ip", help="client IP address")
    act.add_argument("--outcome", help="Success, Failure or Other")
    _range_args(act, "at most 7 days, or 31 with --user/--vm/--ip")
    act.add_argument("--limit", type=count, help="print at most this many events")
    _format_arg(act)
    ses = sub.add_parser("sessions", help="who was connected to what, from when to when")
    ses.add_argument("--user", help="user name, e-mail or DOMAIN\\name (as for activity)")
    _range_args(ses, "at most 7 days, or 31 with --user")
    ses.add_argument("--limit", type=count, help="print at most this many sessions (1000)")
    _format_arg(ses)
    alr = sub.add_parser("alerts", help="incidents first seen in a time range")
    alr.add_argument("--status", help="pending, delivered or withdrawn")
    _range_args(alr, "of the incident's first record, at most 366 days")
    _format_arg(alr)
    sta = sub.add_parser("status", help="is it working? per Bastion host, the last 24 hours")
    _format_arg(sta)
    qua = sub.add_parser("quarantine", help="records set aside, with the reason and where")
    qua.add_argument("--blob", default="", help="only pieces of source blobs with this prefix")
    _range_args(qua, "when they were quarantined, at most 366 days")
    _format_arg(qua)
    ing = sub.add_parser("ingest", help="backfill from a local file/folder or a blob prefix")
    ing.add_argument(
        "source",
        metavar="PATH_OR_BLOB_PREFIX",
        help="a local file or folder (its *.json files are uploaded to the logs container under "
        "their path relative to it, then ingested) or, if no such path exists, a blob-name "
        "prefix in the logs container",
    )
    ing.add_argument("--prefix", default="", help="blob-name prefix for uploaded local files")
    rep = sub.add_parser("report", help="write the HTML activity report")
    _range_args(rep, "at most 7 days")
    rep.add_argument("--user", help="only this person (as activity --user; says which accounts)")
    rep.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    _erase_args(sub.add_parser("erase", help="erase one person's records (alerts keep a marker)"))
    sub.add_parser(
        "aliases",
        help="index the e-mails and bare names, and the machine keys, of records stored "
        "before bastion-audit kept them, so --user and --vm find those records too (once; "
        "harmless to repeat)",
    )
    ret = sub.add_parser("retain", help="delete now what is older than its retention")
    ret.add_argument(
        "--since",
        help="look again from this day (after a backfill of records older than the retention)",
    )


def _erase_args(era: argparse.ArgumentParser) -> None:
    """`erase`: whom, and what to do when the name reaches several accounts."""
    era.add_argument(
        "--user",
        required=True,
        help="user name, e-mail or DOMAIN\\name (compared without case; also the accounts "
        "whose records carry it as e-mail or bare name)",
    )
    era.add_argument(
        "--all-matches",
        action="store_true",
        help="erase every account the name matched, when more than one holds records",
    )
    era.add_argument(
        "--exact", action="store_true", help="erase only the account of that very name"
    )


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = parser().parse_args(argv)  # usage errors: one line on stderr, SystemExit(2)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        code = _COMMANDS[args.command](args, out)
        out.flush()  # a reader that went away shows here, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence(out)
        return BROKEN_PIPE
    except Exception as exc:
        code, message = explain(exc)
        if args.debug:
            logging.getLogger(__name__).exception("traceback")
        print(f"error: {message}", file=sys.stderr)
        return code


def _silence(out: TextIO) -> None:
    """The standard way after a broken pipe (Python docs, "Note on SIGPIPE"): point stdout at
    devnull, so the interpreter's last flush at exit does not fail again."""
    if out is sys.stdout and out is sys.__stdout__:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line) for any failure a newcomer can cause."""
    if isinstance(exc, ImportError):
        return 2, (
            f"a package the app needs is missing ({exc.name}): activate the venv "
            "(. .venv/bin/activate) or run make demo once to create it"
        )
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    from shared.answer.queries import BadQuery

    if isinstance(exc, (BadQuery, SettingsError, Wrong)):
        return 2, _first(exc)
    if isinstance(exc, OSError) and exc.filename is not None:  # a local file of the command's
        return 2, _printable(f"{exc.filename}: {exc.strerror or type(exc).__name__}"[:300])
    if isinstance(exc, Failed):
        return 1, str(exc)
    if isinstance(exc, ServiceRequestError):
        return (
            1,
            f"cannot reach storage (is {CONNECTION} right, is Azurite running?): {_first(exc)}",
        )
    if isinstance(exc, ClientAuthenticationError):
        return (
            1,
            f"storage refused the credentials (run `az login`, check the roles): {_first(exc)}",
        )
    if isinstance(exc, ResourceNotFoundError) and "ContainerNotFound" in str(exc):
        return 1, (
            f"the container does not exist in that account: is {CONNECTION} the logs account? "
            f"Locally, `python -m shared ingest <folder>` creates {LOGS_CONTAINER}"
        )
    if isinstance(exc, HttpResponseError):
        text = str(exc)
        if "API version" in text and "not supported by Azurite" in text:
            return (
                1,
                "this Azurite rejects the SDK's API version: start it with "
                "--skipApiVersionCheck (make azurite does)",
            )
        code = getattr(exc, "error_code", None) or ""
        return 1, f"storage answered {exc.status_code} {code}: {_first(exc)}".replace("  ", " ")
    return 1, f"unexpected {type(exc).__name__}: {_first(exc)} (--debug shows the traceback)"


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _printable(text[0][:300]) if text else type(exc).__name__


def _range_args(parser: argparse.ArgumentParser, limit: str) -> None:
    parser.add_argument("--from", dest="start", help=f"ISO 8601 start, UTC ({limit})")
    parser.add_argument("--to", dest="end", help="ISO 8601 end, exclusive (default: now)")


def _format_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")


class _App:
    """The storage clients for one command, closed afterwards."""

    def __enter__(self) -> Any:
        from shared.store.tables import Storage

        settings = Settings.load()
        if not settings.connection and not settings.connection_parts:
            raise SettingsError(
                f"{CONNECTION} is not set: export {CONNECTION}=UseDevelopmentStorage=true for a "
                "local Azurite (make azurite), or a connection string"
            )
        try:
            self.storage = Storage(settings, connect_retries=0)  # refused: say so at once
        except ValueError as exc:  # the SDKs' word for a malformed connection string
            raise SettingsError(f"{CONNECTION} is not a usable connection string: {exc}") from None
        return self.storage

    def __exit__(self, *exc: object) -> None:
        self.storage.close()


def _activity(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import queries

    params = {"user": args.user, "vm": args.vm, "ip": args.ip, "outcome": args.outcome}
    params |= {"from": args.start, "to": args.end}
    if args.limit is not None and args.limit < 1:
        raise queries.BadQuery("--limit must be at least 1")
    query = queries.parse_activity(params)
    with _App() as storage:
        query, found = queries.resolved(storage, query)
        if found is not None and found.widened:
            _matched(found.note(), args.format, out)
        rows: Iterable[dict[str, Any]] = queries.activity_rows(storage, query)
        if args.limit is not None:
            rows = _take(rows, args.limit)
        write(rows, ACTIVITY_COLUMNS, args.format, out)
    return 0


def _sessions(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import queries

    params = {"user": args.user, "from": args.start, "to": args.end}
    query = queries.parse_sessions(params | ({"limit": str(args.limit)} if args.limit else {}))
    with _App() as storage, queries.sessions_asker(storage.settings) as ask:
        found = queries.session_list(storage, query, ask)
    if args.format == "json":
        out.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    write(found["items"], SESSION_COLUMNS, args.format, out)
    if args.format == "table":
        print(f"sessions: {found['total']}, open: {found['open']}"
              + (f"; open now asked of {found['openNowFrom']}" if found["openNowFrom"] else ""),
              file=out)  # fmt: skip
    return 0


def _matched(note: str, fmt: str, out: TextIO) -> None:
    """Which accounts a name reached: a header line above a table, on stderr beside JSON or
    CSV (which stay machine-readable)."""
    print(_printable(f"matched: {note}"), file=out if fmt == "table" else sys.stderr)


def _alerts(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import queries

    query = queries.parse_alerts({"status": args.status, "from": args.start, "to": args.end})
    with _App() as storage:
        write(queries.alert_rows(storage, query), ALERT_COLUMNS, args.format, out)
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import status

    with _App() as storage:
        report = status.collect(storage, storage.logs())
    body = report.json()
    if args.format == "json":
        out.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    write(body["hosts"], STATUS_COLUMNS, args.format, out)
    if args.format == "table":
        poison = body["poisonMessages"]
        print(
            f"alerts pending delivery: {body['pendingAlerts']}; detection retries queued: "
            f"{body['detectionRetries']}; poison queue: "
            f"{'unknown (not readable)' if poison is None else poison}",
            file=out,
        )
        for stuck in body["alertsPastRetryHorizon"]:
            print(
                f"not delivered, past ALERT_RETRY_HOURS: {stuck['alertId']} ({stuck['event']}, "
                f"{stuck['severity']}) pending since {stuck['pendingSince']}, "
                f"{stuck['attempts']} attempt(s), last error: {stuck['lastError'] or '-'}",
                file=out,
            )
        _print_others(body, out)
        _print_coverage(body, out)
    return 0


def _print_coverage(body: dict[str, Any], out: TextIO) -> None:
    """One line per Bastion host of the covered subscriptions, the uncovered first."""
    for item in body["coverage"]:
        mark = "covered" if item["covered"] else "NOT COVERED"
        print(f"coverage: {item['host']} ({item['sku'] or 'sku?'}): {mark}, {item['verdict']} "
              f"since {item['since']}: {item['detail']}", file=out)  # fmt: skip


def _print_others(body: dict[str, Any], out: TextIO) -> None:
    """One line per message that is no documented outcome (text already neutralised), so a
    value Bastion starts writing is seen the day it appears."""
    for item in body["otherMessages24h"]:
        print(f'other message, 24h: {item["count"]} x "{item["message"]}"', file=out)
    if body["otherMessagesUnlisted24h"]:
        print(f"other messages not listed, 24h: {body['otherMessagesUnlisted24h']}", file=out)


def _quarantine(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import queries

    start, end = queries.parse_range({"from": args.start, "to": args.end}, datetime.now(UTC), 366)
    with _App() as storage:
        items = queries.quarantine_items(storage, start, end, _blob_name(args.blob, "--blob"))
        write(items, QUARANTINE_COLUMNS, args.format, out)
    return 0


def _report(args: argparse.Namespace, out: TextIO) -> int:
    from shared.answer import report

    start, end = report.parse({"from": args.start, "to": args.end})
    with _App() as storage:
        page = report.build(storage, start, end, (args.user or "").strip() or None)
    if args.output == "-":
        out.write(page)
        return 0
    try:
        Path(args.output).write_text(page, encoding="utf-8")
    except (OSError, ValueError) as exc:  # no such folder, no right, a NUL in the name
        reason = getattr(exc, "strerror", None) or str(exc)
        raise Wrong(f"cannot write {args.output!r}: {reason}") from None
    print(f"wrote {args.output}", file=out)
    return 0


def _ingest(args: argparse.Namespace, out: TextIO) -> int:
    from shared.ingest.loop import Summary
    from shared.services import Services

    if not args.source.strip():  # Path("") is the working folder: not what anyone means
        raise Wrong("PATH_OR_BLOB_PREFIX is empty: name a file, a folder or a blob prefix")
    _blob_name(args.prefix, "--prefix")
    with _App() as storage:
        container = storage.logs()
        local = Path(args.source)
        if local.exists():
            names = _upload(container, local, args.prefix, out)
        else:
            prefix = _blob_name(args.source, "PATH_OR_BLOB_PREFIX")
            names = [b.name for b in container.list_blobs(name_starts_with=prefix)]
        if not names:
            raise Failed(f"nothing to ingest: no *.json file or blob under {args.source!r}")
        services = Services.build(storage)
        summaries = []
        try:
            for name in names:
                summaries.append(services.pipeline.ingest(container.get_blob_client(name)))
                print(_printable(summaries[-1].line()), file=out)
        finally:
            services.detector.close()
        total = Summary.total(summaries)
        counts = f"read={total.read} stored={total.stored} quarantined={total.quarantined}"
        print(
            f"total: blobs={len(names)} {counts} skipped={total.skipped} "
            f"new_alerts={len(total.alerts)}",
            file=out,
        )
    return 0


def _blob_name(value: str, what: str) -> str:
    """A blob name or prefix the service can take: at most 1024 characters, no control
    characters (Azure Monitor writes none; Azurite answers 500 to them)."""
    if len(value) > 1024 or any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise Wrong(
            f"{what} must be part of a blob name (at most 1024 characters, no control "
            f"characters), got {_printable(value[:40])!r}"
        )
    return value


def _upload(container: Any, local: Path, prefix: str, out: TextIO) -> list[str]:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):  # the first backfill into a fresh account
        container.create_container()
    names = []
    for path, name in local_files(local, prefix):
        with path.open("rb") as data:
            container.upload_blob(name, data, overwrite=True)
        names.append(name)
    print(f"uploaded {len(names)} file(s) to {LOGS_CONTAINER}/", file=out)
    return names


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


def _erase(args: argparse.Namespace, out: TextIO) -> int:
    from shared.keep.expiry import Eraser
    from shared.keep.policy import NoSuchAccount

    with _App() as storage:
        eraser = Eraser(storage)
        try:
            removed = eraser.erase(args.user, all_matches=args.all_matches, exact=args.exact)
        except NoSuchAccount as exc:
            print(_printable(f"error: {exc}"), file=sys.stderr)
            return 1
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    if eraser.found.widened:
        print(_printable(f"matched: {eraser.found.note()}"), file=out)
    _counts("erased", removed, out)
    return 0


def _aliases(args: argparse.Namespace, out: TextIO) -> int:
    from shared.ingest.chunks import backfill_aliases, backfill_vm_keys

    with _App() as storage:
        written = backfill_aliases(storage)
        keyed = backfill_vm_keys(storage)
    print(f"aliases: {written} (e-mail or bare name, account) row(s) written", file=out)
    print(f"machines: {keyed} index row(s) given their machine key", file=out)
    return 0


def _retain(args: argparse.Namespace, out: TextIO) -> int:
    from shared.keep.expiry import Expirer

    since = _since(args.since) if args.since is not None else None
    with _App() as storage:
        expirer = Expirer(storage)
        if since:
            _look_back(storage, expirer, since)
        removed = expirer.run()
    for line in retain_report(removed):
        print(line, file=out)
    return 0


def retain_report(counts: Mapping[str, int]) -> list[str]:
    """What a retention run removed (rows and blobs), then apart how many expired days of each
    class it looked at: a day examined is not a day of data destroyed."""
    removed = " ".join(f"{k}={v}" for k, v in sorted(counts.items())
                       if v and not k.startswith("days_"))  # fmt: skip
    days = ", ".join(f"{k[len('days_') :]} {v}" for k, v in sorted(counts.items())
                     if v and k.startswith("days_"))  # fmt: skip
    none = "none (nothing had expired since the last run)"
    return [f"removed: {removed or 'nothing'}", f"days examined: {days or none}"]


def _look_back(storage: Any, expirer: Any, since: str) -> None:
    """Move each class's watermark back to the day before `since`, never forward (a day
    skipped would stay for ever) and never before the oldest day stored (nothing is there);
    a class without a watermark starts at its oldest day anyway."""
    from shared.keep import policy

    for kind in policy.CLASSES:
        row = storage.state.get(policy.WATERMARK_PARTITION, kind)
        oldest = expirer.oldest(kind) if row is not None else None
        if row is None or oldest is None:
            continue
        before = policy.next_day(max(since, oldest), -1)
        if str(row["Through"]) > before:
            storage.state.put(policy.watermark(kind, before, {}))


def _since(raw: str) -> str:
    """`retain --since`: a day (or a time, whose UTC day counts), not after today."""
    from shared.answer.queries import BadQuery, parse_time

    day = parse_time(raw, "--since").date().isoformat()  # says what is wrong: form or range
    if day > datetime.now(UTC).date().isoformat():
        raise BadQuery(f"--since must not be after today, got {day}")
    return day


def _counts(verb: str, counts: Any, out: TextIO) -> None:
    text = " ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v)
    print(f"{verb}: {text or 'nothing'}", file=out)


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "activity": _activity,
    "sessions": _sessions,
    "alerts": _alerts,
    "status": _status,
    "quarantine": _quarantine,
    "ingest": _ingest,
    "report": _report,
    "erase": _erase,
    "aliases": _aliases,
    "retain": _retain,
}


# -- output ---------------------------------------------------------------------------------
def _take(rows: Iterable[dict[str, Any]], n: int) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(rows):
        if i >= n:
            return
        yield row


def _printable(text: str) -> str:
    """Control and format characters (terminal escapes, bidi overrides) shown as `\\xNN`."""
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


def write(
    rows: Iterable[dict[str, Any]], columns: list[tuple[str, str]], fmt: str, out: TextIO
) -> None:
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
