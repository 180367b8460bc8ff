"""The HTML report: escaping (pure) and what headless Chromium makes of it (a screenshot and
the rendered DOM, no console errors)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools import samples
from shared.answer import report
from shared.ingest.loop import Pipeline

START = datetime(2026, 11, 23, 9, tzinfo=UTC)
END = START + timedelta(hours=3)
HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "</svg><script>alert(3)</script>",
    "x' onmouseover='alert(4)",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def hostile_data() -> report.ReportData:
    events: list[dict[str, Any]] = []
    for i, name in enumerate(HOSTILE):
        when = START + timedelta(minutes=20 * i)
        for outcome in ("Failure", "Failure", "Success"):
            events.append(
                {
                    "TimeGenerated": when,
                    "UserName": name,
                    "UserKey": name.casefold(),
                    "ClientIpAddress": name,
                    "TargetVMName": name,
                    "Outcome": outcome,
                }
            )
    alert = {
        "rule": HOSTILE[0],
        "subject": HOSTILE[1],
        "severity": HOSTILE[2],
        "summary": HOSTILE[3],
        "status": "<b>pending</b>",
        "failureCount": 2,
        "firstSeen": "2026-11-23T09:10:00Z",
        "lastSeen": "2026-11-23T09:20:00Z",
    }
    return report.aggregate(events, [alert], START, END)


def test_every_value_is_escaped() -> None:
    page = report.render(hostile_data())
    assert "<script" not in page.lower()
    assert "<img" not in page and "<b>pending" not in page
    assert "onmouseover='" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("<svg") == page.count("</svg>") == 4


def test_self_contained() -> None:
    page = report.render(hostile_data())
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page


def test_empty_range_says_so_everywhere() -> None:
    page = report.render(report.aggregate([], [], START, END))
    for panel in ("connections", "failing-users", "failing-ips", "resolved-ips",
                  "alerts-timeline", "alerts-table", "targets", "quarantine"):  # fmt: skip
        assert re.search(rf'<p class="empty" id="{panel}">', page), panel
    assert "<th" not in page  # no bare header rows


def test_aggregate_counts() -> None:
    data = hostile_data()
    assert sum(c["Failure"] for c in data.per_hour.values()) == 8
    assert [h.hour for h in data.hours] == [9, 10, 11]
    assert data.failing_users[0][1] == 2 and len(data.failing_users) == 4
    assert data.targets[0][2:] == (1, 2)


@pytest.fixture(scope="module")
def sample_page(sample_store: tuple[dict[str, str], Pipeline]) -> str:
    return report.build(sample_store[1].storage, START, END)


def run_chromium(page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    exe = chromium()
    assert exe
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}",
         "--enable-logging=stderr", "--v=0", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.skipif(
    chromium() is None, reason="chromium not installed (run tests/ensure_chromium.sh as root)"
)
@pytest.mark.parametrize("which", ["samples", "hostile"])
def test_chromium_renders_the_report(sample_page: str, tmp_path: Path, which: str) -> None:
    html = sample_page if which == "samples" else report.render(hostile_data())
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    png = tmp_path / "report.png"
    shot = run_chromium(page, tmp_path, f"--screenshot={png}", "--window-size=1280,2000")
    assert png.exists(), shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    for log in (shot.stderr,):
        assert not re.search(r"CONSOLE.*(Uncaught|Error)|Refused to", log), log[-2000:]
    dom = run_chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert "<script" not in rendered.lower()
    for chart in ("hourly", "failing-users", "failing-ips", "alerts-timeline", "targets"):
        assert f'id="{chart}"' in rendered
    assert len(re.findall(r'<rect class="bar (success|failure)', rendered)) >= 3
    if which == "samples":
        assert len(re.findall(r'<rect class="alert"', rendered)) == len(samples.build()[1].alerts)
        assert "svc-deploy" in rendered and samples.SPRAY_IP in rendered
        # Who connected from where: successes by user, with their source IPs and targets.
        connections = rendered.split('id="connections"')[1].split("</table>")[0]
        assert "alice" in connections and "82.165.10.4" in connections
        # The office NAT's typos are counted apart, as explained (they raised nothing).
        failing = rendered.split('id="failing-ips"')[1].split("</svg>")[0]
        resolved = rendered.split('id="resolved-ips"')[1].split("</svg>")[0]
        assert samples.OFFICE_NAT not in failing and samples.OFFICE_NAT in resolved
        quarantine = rendered.split('id="quarantine"')[1].split("</table>")[0]
        assert "truncated" in quarantine and "wrong_category" in quarantine
        assert "Critical" in rendered and "UTC" in rendered  # legends and time zone
        if shutil.which("cp") and (Path(__file__).parents[2] / "docs").is_dir():
            shutil.copy(png, tmp_path / "report-screenshot.png")  # for a person to look at
