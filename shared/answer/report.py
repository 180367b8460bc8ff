"""The activity report: one self-contained HTML page with server-drawn SVG charts.

No scripts, fonts or style sheets from anywhere else, and no JavaScript at all: the charts are
SVG drawn here (hover titles are SVG `<title>`s), so the page renders the same in a browser, a
mail client or an archive, and can be served with a `default-src 'none'` Content-Security-Policy.
Every value from the logs goes through `esc()`. `aggregate` and `render` are pure; `build`
reads the tables.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.answer import queries, sessions
from shared.core import catalog, domain, text
from shared.detect import windows
from shared.ingest import normalize
from shared.store import keys
from shared.store.layout import Resolution
from shared.store.tables import Storage

#: Longest range a report covers (one bar per hour; it reads each day's events whole).
MAX_DAYS = queries.MAX_SCAN_DAYS
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
COLORS = {"Success": "#2e7d32", "Failure": "#c62828", "Other": "#9e9e9e"}
SEVERITY = {"critical": "#6a1b9a", "high": "#c62828", "medium": "#ef6c00", "low": "#f9a825"}
TOP = 10


Target = tuple[str, list[tuple[str, int, int]], int, int]
#: user, sign-ins, [(source IP, sign-ins)], [(VM, sign-ins)]
Connection = tuple[str, int, list[tuple[str, int]], list[tuple[str, int]]]


@dataclass
class ReportData:
    start: datetime
    end: datetime
    hours: list[datetime]
    per_hour: dict[datetime, Counter[str]]
    failing_users: list[tuple[str, int]]
    failing_ips: list[tuple[str, int]]  # unresolved failures per source IP
    targets: list[Target]  # user, [(vm, ok, fail)], sign-ins, failures
    alerts: list[Mapping[str, Any]]
    totals: Counter[str] = field(default_factory=Counter)
    users: int = 0  # people who connected (at least one success)
    tried: int = 0  # accounts with failures only
    #: user, successes, [(source ip, count)], [(target, count)]
    connections: list[Connection] = field(default_factory=list)
    resolved_ips: list[tuple[str, int]] = field(default_factory=list)  # typos then a sign-in
    quarantined: list[tuple[str, int]] = field(default_factory=list)  # reason, pieces
    person: Resolution | None = None  # a report about one person: the accounts it covers
    others: list[tuple[str, int]] = field(default_factory=list)  # `Other` message, records
    #: host, records with no identity, all its records (a rising share is worth knowing)
    no_identity: list[tuple[str, int, int]] = field(default_factory=list)
    #: Every Bastion host of the covered subscriptions (`queries.coverage_items`), or None in
    #: a report about one person (coverage is nobody's in particular).
    coverage: list[dict[str, Any]] | None = None
    #: The range's sessions (`sessions.build`), and how the report picks them out.
    sessions: list[sessions.Session] = field(default_factory=list)
    open_limit: timedelta = timedelta(hours=12)
    working_hours: tuple[int, int] = (7, 19)


def esc(value: object) -> str:
    """HTML-escaped, invisible and bidi characters shown as `\\uXXXX` (they steer layout)."""
    return html.escape(text.visible("" if value is None else str(value)), quote=True)


def _hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def aggregate(
    events: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    start: datetime,
    end: datetime,
    quarantined: Iterable[Mapping[str, Any]] = (),
) -> ReportData:
    """Count events (stored entities), take alert items (`queries.alert_item` shape) and
    quarantine items (`queries.quarantine_items` shape)."""
    hours = _hours(start, end)
    per_hour: dict[datetime, Counter[str]] = {h: Counter() for h in hours}
    rows = [e for e in events if start <= e["TimeGenerated"] < end]
    typos = _typos(rows)
    fail_users: Counter[str] = Counter()
    fail_ips: Counter[str] = Counter()
    resolved_ips: Counter[str] = Counter()
    by_user: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    sources: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for i, e in enumerate(rows):
        outcome = e.get("Outcome") or "Other"
        per_hour.setdefault(_hour(e["TimeGenerated"]), Counter())[outcome] += 1
        totals[outcome] += 1
        user = keys.shown(e.get("UserName") or "", e.get("UserKey") or "")
        ip = e.get("ClientIpAddress") or "(none)"
        cell = by_user[user][e.get("TargetVMName") or "(unknown)"]
        if outcome == "Failure":
            fail_users[user] += 1
            (resolved_ips if i in typos else fail_ips)[ip] += 1
            cell[1] += 1
        elif outcome == "Success":
            cell[0] += 1
            sources[user][ip] += 1
    targets, connections = _tables(by_user, sources)
    reasons: Counter[str] = Counter()
    for q in quarantined:
        reasons[str(q.get("reason", "")).split(":", 1)[0] or "?"] += int(q.get("count") or 1)
    return ReportData(
        start=start,
        end=end,
        hours=hours,
        per_hour=per_hour,
        failing_users=_top(fail_users),
        failing_ips=_top(fail_ips),
        targets=targets,
        alerts=sorted(alerts, key=lambda a: (a["firstSeen"], a["rule"])),
        totals=totals,
        users=len(connections),
        tried=sum(1 for t in targets if not t[2]),
        connections=connections,
        resolved_ips=_top(resolved_ips),
        quarantined=sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        others=_others(rows),
        no_identity=_no_identity(rows),
    )


def _others(rows: list[Mapping[str, Any]]) -> list[tuple[str, int]]:
    """The most frequent messages that are no documented outcome, per text (as `status`)."""
    other = domain.Outcome.OTHER.value
    texts = (
        normalize.other_text(e.get("Message") or "") for e in rows if e.get("Outcome") == other
    )
    return _top(Counter(texts), 2 * TOP)


def _no_identity(rows: list[Mapping[str, Any]]) -> list[tuple[str, int, int]]:
    """Per host with any: records with no user name and no e-mail, and all its records."""
    total: Counter[str] = Counter()
    anonymous: Counter[str] = Counter()
    for e in rows:
        host = str(e.get("BastionHostName") or "(unknown)")
        total[host] += 1
        anonymous[host] += not keys.identified(str(e.get("UserKey") or ""))
    return [(h, n, total[h]) for h, n in sorted(anonymous.items()) if n]


def _hours(start: datetime, end: datetime) -> list[datetime]:
    hours, h = [], _hour(start)
    while h < end:
        hours.append(h)
        h += timedelta(hours=1)
    return hours


def _tables(
    by_user: dict[str, dict[str, list[int]]], sources: dict[str, Counter[str]]
) -> tuple[list[Target], list[Connection]]:
    """Targets per user (with sign-ins and failures) and who connected from where, busiest
    first."""
    targets: list[Target] = []
    connections: list[Connection] = []
    for user, vms in by_user.items():
        rows = sorted(((vm, ok, bad) for vm, (ok, bad) in vms.items()), key=lambda r: r[0])
        targets.append((user, rows, sum(r[1] for r in rows), sum(r[2] for r in rows)))
        if sources[user]:
            used = sorted(((vm, ok) for vm, ok, _ in rows if ok), key=lambda r: (-r[1], r[0]))
            connections.append((user, sum(sources[user].values()), _top(sources[user]), used))
    targets.sort(key=lambda t: (-(t[2] + t[3]), t[0].casefold()))
    connections.sort(key=lambda c: (-c[1], c[0].casefold()))
    return targets, connections


def _typos(rows: list[Mapping[str, Any]]) -> set[int]:
    """Indices of failures that detection explains as typos (a user's own few failures, then
    that user's sign-in from the same IP, outside a burst): they raised nothing."""
    by_ip: dict[str, list[tuple[int, domain.Event]]] = defaultdict(list)
    for i, e in enumerate(rows):
        outcome = e.get("Outcome")
        if outcome not in ("Success", "Failure"):
            continue
        ip = str(e.get("ClientIpKey") or e.get("ClientIpAddress") or "")
        event = domain.Event(e["TimeGenerated"], str(i), str(e.get("UserKey") or ""), ip,
                                outcome == "Success")  # fmt: skip
        by_ip[ip].append((i, event))
    t = catalog.Thresholds()
    out: set[int] = set()
    for pairs in by_ip.values():
        events = sorted((e for _, e in pairs), key=lambda e: e.time)
        out.update(int(k) for k in windows.resolved(events, t.window, t.resolve_max, t.failures))
    return out


def _top(counts: Counter[str], limit: int = TOP) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


# -- SVG ------------------------------------------------------------------------------------
def _nice(n: int) -> int:
    """A round axis maximum >= n with four whole-number steps."""
    raw = max(n, 1) / 4
    magnitude = 10 ** max(int(math.log10(raw)), 0) if raw >= 1 else 1
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= raw and float(step * magnitude).is_integer():
            return int(4 * step * magnitude)
    return 4 * 10 * magnitude


def hourly_chart(data: ReportData) -> str:
    """Stacked bars per UTC hour: successes, failures, other."""
    width, height, left, bottom, top = 1160, 280, 48, 40, 12
    plot_w, plot_h = width - left - 10, height - bottom - top
    n = max(len(data.hours), 1)
    peak = _nice(max((sum(c.values()) for c in data.per_hour.values()), default=0))
    slot = plot_w / n
    bar = max(slot * 0.8, 1.0)
    parts = [
        f'<svg class="chart" id="hourly" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Connections per hour" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i in range(5):  # grid and y labels
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">'
            f"{value:g}</text>"
        )
    label_every = max(1, math.ceil(n / 24))
    for i, hour in enumerate(data.hours):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        counts = data.per_hour.get(hour, Counter())
        for outcome in ("Success", "Failure", "Other"):
            count = counts.get(outcome, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect class="bar {outcome.lower()}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{COLORS[outcome]}">'
                f"<title>{esc(f'{hour:%Y-%m-%d %H}:00 UTC: {count} {outcome.lower()}')}</title>"
                "</rect>"
            )
        if i % label_every == 0:
            text = f"{hour:%H}h" if hour.hour or n <= 24 else f"{hour:%m-%d}"
            if hour.hour == 0 and n > 24:
                text = f"{hour:%m-%d}"
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" class="axis" '
                f'text-anchor="middle">{esc(text)}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{height - 4}" class="axis">'
        f"{esc(f'{data.start:%Y-%m-%d %H:%M} UTC')}</text>"
        f'<text x="{width - 10}" y="{height - 4}" class="axis" text-anchor="end">'
        f"{esc(f'{data.end:%Y-%m-%d %H:%M} UTC')}</text></svg>"
    )
    return "".join(parts)


def bar_list(chart_id: str, rows: list[tuple[str, int]], color: str, label: str) -> str:
    """Horizontal bars, one per (name, count)."""
    if not rows:
        return f'<p class="empty" id="{chart_id}">No failures in this range.</p>'
    width, row_h, name_w = 560, 26, 210
    height = row_h * len(rows) + 8
    peak = max(c for _, c in rows)
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (name, count) in enumerate(rows):
        y = 4 + i * row_h
        w = max((width - name_w - 50) * count / peak, 2)
        short = name if len(name) <= 28 else name[:27] + "…"
        parts.append(
            f'<text x="{name_w - 8}" y="{y + 17}" class="label" text-anchor="end">'
            f"{esc(short)}<title>{esc(name)}</title></text>"
            f'<rect class="bar" x="{name_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" '
            f'fill="{color}"><title>{esc(f"{name}: {count}")}</title></rect>'
            f'<text x="{name_w + w + 6:.1f}" y="{y + 17}" class="value">{count}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def alerts_timeline(data: ReportData) -> str:
    """One row per alert: a bar from first to last seen, coloured by severity."""
    if not data.alerts:
        return '<p class="empty" id="alerts-timeline">No alerts in this range.</p>'
    width, row_h, left, top = 1160, 24, 330, 22
    height = top + row_h * len(data.alerts) + 8
    span = (data.end - data.start).total_seconds() or 1
    plot_w = width - left - 10

    def x(when: datetime) -> float:
        seconds = (min(max(when, data.start), data.end) - data.start).total_seconds()
        return left + plot_w * seconds / span

    parts = [
        f'<svg class="chart" id="alerts-timeline" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Alerts timeline" xmlns="http://www.w3.org/2000/svg">'
    ]
    ticks = min(len(data.hours), 12) or 1
    for i in range(ticks + 1):
        when = data.start + (data.end - data.start) * i / ticks
        xi = x(when)
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(
            f'<line x1="{xi:.1f}" x2="{xi:.1f}" y1="{top - 4}" y2="{height}" class="grid"/>'
            f'<text x="{xi:.1f}" y="{top - 8}" class="axis" text-anchor="{anchor}">'
            f"{esc(f'{when:%m-%d %H:%M}')} UTC</text>"
        )
    for i, alert in enumerate(data.alerts):
        y = top + i * row_h
        first = queries.parse_time(alert["firstSeen"], "firstSeen")
        last = queries.parse_time(alert["lastSeen"], "lastSeen")
        x0, x1 = x(first), x(last)
        color = SEVERITY.get(str(alert["severity"]).lower(), "#616161")
        name = f"{alert['rule']}: {alert['subject']}"
        short = name if len(name) <= 44 else name[:43] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" class="label" text-anchor="end">{esc(short)}'
            f"<title>{esc(name)}</title></text>"
            f'<rect class="alert" x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 4):.1f}" '
            f'height="{row_h - 8}" rx="3" fill="{color}"><title>{esc(alert["summary"])}</title>'
            "</rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- page -----------------------------------------------------------------------------------
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
background:#f4f5f7;color:#1f2328}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;opacity:.85}
main{padding:18px 28px;max-width:1240px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);
padding:14px 18px;margin-bottom:18px}
h2{font-size:17px;margin:0 0 10px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:18px}
.card{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:10px 18px;
min-width:130px}.card b{display:block;font-size:26px}.card span{color:#57606a;font-size:13px}
.row{display:flex;gap:18px;flex-wrap:wrap}.row section{flex:1;min-width:480px}
svg.chart{width:100%;height:auto;display:block}
.grid{stroke:#e1e4e8;stroke-width:1}.axis{font-size:11px;fill:#57606a}
.label{font-size:12px;fill:#1f2328}.value{font-size:12px;fill:#57606a}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eaecef;vertical-align:top}
th{background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
h3{font-size:14px;margin:14px 0 6px}.note{color:#57606a;font-size:13px;margin:0 0 8px}
.bad{color:#c62828;font-weight:600}.ok{color:#2e7d32}.empty{color:#57606a;font-style:italic}
.sev{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px}
footer{color:#57606a;font-size:12px;padding:0 28px 18px}
"""


def _cards(data: ReportData) -> str:
    t = data.totals
    failed = t.get("Failure", 0)
    cards = [
        ("Successful connections", t.get("Success", 0), ""),
        ("Failed sign-ins", failed, "bad" if failed else ""),
        ("People who connected", data.users, ""),
        ("Accounts tried, never in", data.tried, "bad" if data.tried else ""),
        ("Incidents", len(data.alerts), "bad" if data.alerts else ""),
        ("Quarantined pieces", sum(n for _, n in data.quarantined), ""),
    ]
    return "".join(
        f'<div class="card"><b class="{c}">{v}</b><span>{esc(k)}</span></div>' for k, v, c in cards
    )


def _legend(items: Iterable[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><i style="background:{color}"></i>{esc(name)}</span>' for name, color in items
        )
        + "</div>"
    )


def _table(table_id: str, heads: list[tuple[str, bool]], rows: list[list[str]], empty: str) -> str:
    """A table (heads: (title, numeric)); cells are already escaped HTML. Empty: a sentence."""
    if not rows:
        return f'<p class="empty" id="{table_id}">{esc(empty)}</p>'
    head = "".join(f'<th class="n">{esc(h)}</th>' if n else f"<th>{esc(h)}</th>" for h, n in heads)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if numeric else f"<td>{cell}</td>"
            for cell, (_, numeric) in zip(row, heads, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _pairs(pairs: Iterable[tuple[str, int]], limit: int = 5) -> str:
    items = list(pairs)
    shown = ", ".join(f"{esc(name)} ({n})" for name, n in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _connections(data: ReportData) -> str:
    rows = [
        [esc(user), str(ok), _pairs(ips), _pairs(vms)]
        for user, ok, ips, vms in data.connections[:50]
    ]
    heads = [("User", False), ("Connections", True), ("From (source IP, connections)", False),
             ("To (target, connections)", False)]  # fmt: skip
    return _table("connections", heads, rows, "Nobody connected in this range.")


def _alerts_table(data: ReportData) -> str:
    rows = []
    for a in data.alerts:
        color = SEVERITY.get(str(a["severity"]).lower(), "#616161")
        badge = f'<span class="sev" style="background:{color}">{esc(a["severity"])}</span>'
        first = esc(str(a["firstSeen"])[:16].replace("T", " "))
        said = a.get("response") or {}
        response = f'<br><span class="note">{esc(said["summary"])}</span>' if said else ""
        rows.append([badge, first, esc(a["rule"]), esc(a["subject"]), esc(a["failureCount"]),
                     esc(a["status"]), esc(a["summary"]) + response])  # fmt: skip
    heads = [("Severity", False), ("First seen (UTC)", False), ("Rule", False),
             ("Subject", False), ("Failures", True), ("Status", False),
             ("Summary", False)]  # fmt: skip
    return _table("alerts-table", heads, rows, "No incident in this range.")


def _targets(data: ReportData) -> str:
    rows = []
    for user, cells, ok_total, bad_total in data.targets:
        used = ", ".join(f"{esc(vm)} ({ok})" for vm, ok, _ in cells if ok) or "-"
        bad = f'<span class="bad">{bad_total}</span>' if bad_total else "0"
        rows.append([esc(user), used, str(ok_total), bad])
    heads = [("User", False), ("Targets reached (connections)", False), ("Connected", True),
             ("Failed", True)]  # fmt: skip
    return _table("targets", heads, rows, "No sign-in in this range.")


def _quarantine(data: ReportData) -> str:
    rows = [[esc(reason), str(n)] for reason, n in data.quarantined]
    return _table("quarantine", [("Reason", False), ("Pieces", True)], rows,
                  "Nothing was quarantined in this range.")  # fmt: skip


def _person(data: ReportData) -> str:
    """The line that says whose report this is and which accounts it covers."""
    found = data.person
    if found is None:
        return ""
    if not found.widened:
        return f'<p id="person">Only the account {esc(found.literal)}.</p>'
    return f'<p id="person">Accounts: {esc(found.note())}.</p>'


def _census(data: ReportData) -> str:
    """Messages that are no documented outcome, and records with no identity per host."""
    others = [[esc(text.plain(m, normalize.MAX_OTHER_CHARS)), str(n)] for m, n in data.others]
    hosts = [
        [esc(h), str(n), str(total), f"{100 * n / total:.0f}%"] for h, n, total in data.no_identity
    ]
    note = (
        '<p class="note">Messages Bastion does not document as a sign-in or a failure: '
        "stored, never counted as either.</p>"
    )
    other_heads = [("Message", False), ("Records", True)]
    host_heads = [("Bastion host", False), ("Records", True), ("Of", True), ("Share", True)]
    return (
        note
        + _table("other-messages", other_heads, others, "No other message in this range.")
        + "<h3>Records with no identity (no user name, no e-mail), per host</h3>"
        + _table("no-identity", host_heads, hosts, "Every record in this range named its user.")
    )


def _session_rows(found: list[sessions.Session]) -> list[list[str]]:
    def length(s: sessions.Session) -> str:
        return "open" if s.length is None else str(s.length).split(".")[0]

    return [[esc(s.account), esc(s.source), esc(s.client), esc(s.target), esc(s.protocol),
             esc(text.utc(s.start)), esc(text.utc(s.end) or "-"), esc(length(s))]
            for s in found[:TOP]]  # fmt: skip


def _sessions(data: ReportData) -> str:
    """The longest sessions, those open past the limit, those begun out of hours."""
    heads = [("Account", False), ("From", False), ("Client", False), ("Target", False),
             ("Protocol", False), ("Start", False), ("End", False), ("Length", False)]  # fmt: skip
    now = max(data.end, max((s.start for s in data.sessions), default=data.end))
    late = sessions.open_past(data.sessions, now, data.open_limit)
    night = sessions.out_of_hours(data.sessions, data.working_hours)
    first, last = data.working_hours
    ended = "No session in this range has a recorded end."
    longest = _session_rows(sessions.longest(data.sessions))
    return (
        f'<p class="note">{len(data.sessions)} session(s) in this range; '
        f"{sum(1 for s in data.sessions if s.end is None)} with no end recorded.</p>"
        "<h3>Longest sessions</h3>"
        + _table("sessions-longest", heads, longest, ended)
        + f"<h3>Open past {esc(str(data.open_limit))} (no end recorded)</h3>"
        + _table("sessions-open", heads, _session_rows(late), "None.")
        + f"<h3>Begun outside working hours ({first:02d}:00-{last:02d}:00 UTC)</h3>"
        + _table("sessions-out-of-hours", heads, _session_rows(night), "None.")
    )


def _coverage(data: ReportData) -> str:
    """Is every Bastion host of the covered subscriptions covered (the health timer's last word)."""
    if data.coverage is None:
        return ""
    rows = [
        [esc(c["host"]), esc(c["sku"] or "?"),
         f'<span class="{"ok" if c["covered"] else "bad"}">{esc(c["verdict"])}</span>',
         esc(c["since"] or ""), esc(c["detail"])]
        for c in data.coverage
    ]  # fmt: skip
    heads = [("Bastion host", False), ("SKU", False), ("Verdict", False), ("Since", False),
             ("What it means", False)]  # fmt: skip
    empty = "No coverage check: COVERAGE_SUBSCRIPTIONS names no subscription."
    return (
        "<section><h2>Coverage of the Bastion hosts</h2>"
        + _table("coverage", heads, rows, empty)
        + "</section>"
    )


def render(data: ReportData, generated: datetime | None = None) -> str:
    generated = generated or datetime.now(UTC)
    period = f"{data.start:%Y-%m-%d %H:%M} – {data.end:%Y-%m-%d %H:%M} UTC"
    outcomes = _legend((o, COLORS[o]) for o in ("Success", "Failure", "Other"))
    severities = _legend((s.capitalize(), c) for s, c in SEVERITY.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Bastion activity {esc(period)}</title><style>{STYLE}</style></head>
<body><header><h1>Azure Bastion activity</h1><p>{esc(period)} (all times UTC)</p>
{_person(data)}</header><main>
<div class="cards">{_cards(data)}</div>
<section><h2>Connections per hour (UTC)</h2>{outcomes}{hourly_chart(data)}</section>
<section><h2>Who connected, from where, to what</h2>{_connections(data)}</section>
<div class="row"><section><h2>Top failing users</h2>
{bar_list("failing-users", data.failing_users, COLORS["Failure"], "Top failing users")}</section>
<section><h2>Top failing source IPs</h2>
<p class="note">Failures nothing explains. Typos followed by the same user's sign-in from the
same address (outside a burst) raise nothing and are counted apart below.</p>
{bar_list("failing-ips", data.failing_ips, "#ad1457", "Top failing source IPs")}
<h3>Typos followed by a sign-in (no alert)</h3>
{bar_list("resolved-ips", data.resolved_ips, COLORS["Other"], "Resolved failures per source IP")}
</section></div>
<section><h2>Incidents</h2>{severities}{alerts_timeline(data)}
{_alerts_table(data)}</section>
<section><h2>Sessions (who was connected, from when to when)</h2>{_sessions(data)}</section>
<section><h2>Targets per user</h2>{_targets(data)}</section>
<section><h2>Other messages and records with no identity</h2>{_census(data)}</section>
<section><h2>Quarantined (set aside, with the reason: <code>python -m shared quarantine</code>)</h2>
{_quarantine(data)}</section>
{_coverage(data)}
</main><footer>Generated {esc(f"{generated:%Y-%m-%d %H:%M:%S} UTC")} by bastion-audit.</footer>
</body></html>
"""


def build(storage: Storage, start: datetime, end: datetime, user: str | None = None) -> str:
    """Read the events (one scan, see `queries`), incidents and quarantine in range; render.
    With `user`, only the accounts it resolves to (`queries.resolve`) and the incidents that
    name them; quarantined raw text is nobody's in particular, so it is left out."""
    alert_query = queries.AlertQuery(start, end, limit=queries.MAX_LIMIT)
    alerts: Iterable[Mapping[str, Any]] = queries.alert_rows(storage, alert_query)
    if not user:
        events = queries.report_events(storage, start, end)
        quarantined = queries.quarantine_items(storage, start, end, by_source_hour=True)
        whole = aggregate(events, alerts, start, end, quarantined)
        whole.coverage = queries.coverage_items(storage)
        return render(_with_sessions(whole, storage, None))
    found = queries.resolve(storage, user)
    events = queries.person_events(storage, found.accounts, start, end)
    alerts = (a for a in alerts if queries.names_any(a, found.accounts))
    data = aggregate(events, alerts, start, end)
    data.person = found
    return render(_with_sessions(data, storage, user))


def _with_sessions(data: ReportData, storage: Storage, user: str | None) -> ReportData:
    s = storage.settings
    query = queries.SessionQuery(data.start, data.end, user, queries.MAX_LIMIT)
    data.sessions = sessions.build(queries.session_rows(storage, query))
    data.open_limit = timedelta(hours=s.session_open_limit_hours)
    data.working_hours = s.working_hours
    return data


def parse(
    params: Mapping[str, str | None], now: datetime | None = None
) -> tuple[datetime, datetime]:
    """`from`/`to` of a report (default: the last 24 hours), at most `MAX_DAYS`."""
    return queries.parse_range(params, now or datetime.now(UTC), MAX_DAYS)
