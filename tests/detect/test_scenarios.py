"""Every rule, a scenario that fires it and one that does not, as sample logs with the expected
result inline (as fail2ban keeps its sample logs): `tests/detect/scenarios/<rule>.fires.jsonl` and
`<rule>.quiet.jsonl`. The first line says what is expected and why; each other line is one or
more records (`n` of them, `every` seconds apart; `{i}` in a name or an address counts 1..n,
`{i%k}` cycles through 1..k), on `day` (0: 2026-11-02, a Monday) at `at` UTC; `settings` on the
first line are app settings for that scenario (`<rule>.<variant>.<expect>.jsonl`). They run through
the whole runner (ingest, baselines, detection) on in-memory storage; one test also walks the
registry of rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from devtools import azurite, memtables, samples
from shared.core import catalog, domain
from shared.core.settings import Settings
from shared.detect import windows
from shared.ingest.loop import Pipeline
from shared.store.tables import Storage

HERE = Path(__file__).parent / "scenarios"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "detection-quality.md"
DAY0 = datetime(2026, 11, 2, tzinfo=UTC)
#: Rules whose scenarios are not sample logs: they need a silent host's history and its timer,
#: or the Azure Resource Manager (tests/baselines/test_findings.py,
#: tests/hosts/test_diagnostics.py).
NOT_FROM_LOGS = {"host_silent", "diagnostic_setting_changed", "host_not_covered",
                 "host_covered_again"}  # fmt: skip
#: Findings of the baselines, which need weeks of history first (tests/baselines/test_findings.py,
#: tests/baselines/test_habits.py, tests/detect/test_retries.py).
FROM_BASELINES = {"new_source_success", "off_hours", "first_time_target", "failures_before"}
FILES = sorted(HERE.glob("*.jsonl"))


def expand(line: dict[str, Any]) -> list[dict[str, Any]]:
    """One scenario line: `n` records, `every` seconds apart."""
    start = datetime.combine(
        (DAY0 + timedelta(days=line.get("day", 0))).date(),
        datetime.strptime(line["at"], "%H:%M:%S").time(),
        UTC,
    )

    def fill(text: str, i: int) -> str:
        def one(m: re.Match[str]) -> str:
            return str(i % int(m.group(1)) + 1 if m.group(1) else i + 1)

        return re.sub(r"\{i(?:%(\d+))?\}", one, text)

    message = samples.OK if line["ok"] else samples.FAIL
    every = timedelta(seconds=line.get("every", 0))
    vm = line.get("vm", "LINUX-WEB-01")
    return [
        samples.record(
            start + every * i,
            fill(line["user"], i),
            message,
            fill(line["ip"], i),
            vm=vm,
            port=40000 + i,
        )
        for i in range(line.get("n", 1))
    ]


def rules_found(records: list[dict[str, Any]], overrides: dict[str, str]) -> set[str]:
    """Every rule of every incident the records make, through ingest on in-memory storage."""
    settings = Settings.from_env(azurite.isolated_env("UseDevelopmentStorage=true", **overrides))
    p = Pipeline(settings, Storage(settings, services=memtables.services()))
    blobs: dict[str, list[bytes]] = {}
    for r in sorted(records, key=lambda r: r["time"]):
        hour = datetime.fromisoformat(r["time"]).replace(minute=0, second=0, microsecond=0)
        blobs.setdefault(samples.blob_path("BASTION-PROD", hour), []).append(orjson.dumps(r))
    last = max(datetime.fromisoformat(r["time"]) for r in records)
    for name in sorted(blobs):
        data = b"\n".join(blobs[name]) + b"\n"
        p.ingest(memtables.MemoryBlob(data, blob_name=name), last + timedelta(days=1))  # type: ignore[arg-type]
    found = set()
    for row in p.storage.alerts.query("PartitionKey ge @lo", {"lo": ""}):
        if "FirstSeen" in row:
            found |= {row["Rule"], *str(row.get("Rules") or "").split(",")}
    p.detector.close()
    return found


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_scenario(path: Path) -> None:
    head, *lines = [orjson.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rule, *_, expect = path.stem.split(".")
    assert (rule, expect) == (head["rule"], head["expect"])
    found = rules_found([r for line in lines for r in expand(line)], head.get("settings", {}))
    if head["expect"] == "fires":
        assert head["rule"] in found, f"{head['why']}: found {sorted(found)}"
    else:
        assert head["rule"] not in found, f"{head['why']}: found {sorted(found)}"


def test_the_registry_of_rules() -> None:
    """Every rule and finding declared once (`core/catalog.py`): names unique, each with a
    severity and a sentence naming its subject, each named in docs/detection-quality.md; every
    rule that is not a finding has its logic, and its limits name `Thresholds` fields; every
    rule of the logs has a firing and a quiet scenario."""
    described = list(catalog.RULES)
    names = [r.name for r in described]
    assert len(names) == len(set(names)) == len(catalog.DESCRIBED)
    logic = {r.name: r for r in windows.RULES}
    assert set(logic) == {r.name for r in described if not r.finding}
    assert all(logic[n].spec is catalog.DESCRIBED[n] for n in logic)
    fields = set(catalog.Thresholds.__dataclass_fields__)
    assert all(set(limits) <= fields for limits in catalog.TUNABLE.values())
    assert {lim.field for lim in catalog.LIMITS} == fields - {"overrides"}
    doc = DOCS.read_text()
    for rule in described:
        assert isinstance(rule.severity, domain.Severity) and "{subject}" in rule.description
        assert f"`{rule.name}`" in doc, f"{rule.name} is not in docs/detection-quality.md"
    scenarios = {(p.stem.split(".")[0], p.stem.split(".")[-1]) for p in FILES}
    for name in set(names) - NOT_FROM_LOGS - FROM_BASELINES:
        assert {(name, "fires"), (name, "quiet")} <= scenarios, f"{name} needs both scenarios"
    assert {n for n, _ in scenarios} <= set(names), "a scenario for a rule that does not exist"
