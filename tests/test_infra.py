"""The azd/Bicep deployment declares what the app needs, and the settings files mirror DEFAULTS.

Bicep is only parsed (pycep-parser, syntax only): no Bicep compiler or ARM what-if runs here.
pycep turns both string literals and identifiers into plain strings, so a value that names a
variable or parameter of the same file is resolved through it (`_resolve`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.settings import CONNECTION, DEFAULTS, LOGS_CONTAINER

pycep = pytest.importorskip("pycep")

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"

#: Settings whose default (made for local runs) is wrong on Flex Consumption.
AZURE_VALUES = {"BLOB_TRIGGER_SOURCE": "EventGrid"}
#: The identity-based connection group for the logs account (host trigger + our SDK clients).
CONNECTION_SETTINGS = {
    f"{CONNECTION}__blobServiceUri",
    f"{CONNECTION}__queueServiceUri",
    f"{CONNECTION}__tableServiceUri",
    f"{CONNECTION}__credential",
}


@cache
def bicep(relative: str) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=INFRA / relative)


def _body(entry: dict[str, Any]) -> dict[str, Any]:
    """The properties of a resource or module, looking through `if (...)` and `for` wrappers."""
    config = entry["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def _resolve(doc: dict[str, Any], value: Any) -> Any:
    """A bare identifier naming a variable (its value) or parameter (its default) of `doc`."""
    if isinstance(value, str):
        if value in doc.get("variables", {}):
            return _resolve(doc, doc["variables"][value]["value"])
        if value in doc.get("parameters", {}):
            return doc["parameters"][value].get("default")
    return value


def _resources(doc: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [r for r in doc.get("resources", {}).values() if r["type"] == type_]


def _one(relative: str, type_: str) -> dict[str, Any]:
    found = [r for r in _resources(bicep(relative), type_) if not r["existing"]]
    assert len(found) == 1, f"{relative}: expected one {type_}, found {len(found)}"
    return _body(found[0])


def _module(name: str) -> dict[str, Any]:
    return _body(bicep("main.bicep")["modules"][name])


def _is_secure(param: dict[str, Any]) -> bool:
    return any(d["type"] == "secure" for d in param["decorators"])


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_parses(path: Path) -> None:
    doc = bicep(str(path.relative_to(INFRA)))
    assert doc.get("resources") or doc.get("modules"), f"{path} declares nothing"


def test_main_wires_every_module_file() -> None:
    main = bicep("main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    used = {INFRA / m["detail"]["path"] for m in main["modules"].values()}
    assert all(path.is_file() for path in used), used
    assert used == set(BICEP_FILES) - {INFRA / "main.bicep"}, "unused or missing module files"


def test_flex_consumption_plan() -> None:
    plan = _one("app/function-app.bicep", "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True  # Linux


def test_function_app_identity_and_runtime() -> None:
    doc = bicep("app/function-app.bicep")
    site = _one("app/function-app.bicep", "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    assert site["identity"] == {"type": "SystemAssigned"}
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    deployment = config["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {"type": "SystemAssignedIdentity"}
    assert site["properties"]["httpsOnly"] is True
    # azd finds the app through this tag; it must name the service in azure.yaml.
    tag = site["tags"]["function"]["parameters"]["arg_2"]["'azd-service-name'"]
    assert tag == "serviceName"
    service = _module("functionApp")["params"]["serviceName"]
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^services:\n  {re.escape(service)}:\n", azure_yaml, re.M), service
    scale = config["scaleAndConcurrency"]
    assert 40 <= _resolve(doc, scale["maximumInstanceCount"]) <= 1000


def test_azure_yaml_deploys_python_function() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^    project: \.$", text, re.M)
    assert re.search(r"^    language: python$", text, re.M)
    assert re.search(r"^    host: function$", text, re.M)
    # The postdeploy hook turns the Event Grid subscription on once the code (and its
    # blobs_extension key) exists.
    assert "postdeploy:" in text
    assert "azd env set EVENTGRID_SUBSCRIPTION_ENABLED true" in text


def test_host_storage_is_identity_based() -> None:
    settings = _one("app/function-app.bicep", "Microsoft.Web/sites/config")
    assert settings["name"] == "appsettings"
    own = settings["properties"]["function"]["parameters"]["arg_2"]
    assert "AzureWebJobsStorage__accountName" in own
    assert own["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    # Flex Consumption rejects these; the runtime comes from functionAppConfig.
    assert "FUNCTIONS_WORKER_RUNTIME" not in own
    assert "FUNCTIONS_EXTENSION_VERSION" not in own
    account = _one("app/host-storage.bicep", "Microsoft.Storage/storageAccounts")
    assert account["properties"]["allowSharedKeyAccess"] is False


def test_no_keys_or_connection_strings_in_settings() -> None:
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        assert "AccountKey=" not in text, path
        assert "SharedAccessSignature" not in text, path
        assert "listKeys(" not in text or path.name == "eventgrid-subscription.bicep", path
        assert "listKeys()" not in text, path


def test_role_assignments_on_logs_account() -> None:
    doc = bicep("app/logs-storage.bicep")
    logs = doc["resources"]["logs"]
    assert logs["existing"] is True
    assert logs["type"] == "Microsoft.Storage/storageAccounts"
    roles = [
        r
        for r in doc["resources"].values()
        if r["type"] == "Microsoft.Authorization/roleAssignments"
    ]
    assert len(roles) == 1
    loop = roles[0]["config"]["loop_type"]["detail"]
    granted = {_resolve(doc, name) for name in loop["array_name"]}
    assert granted == {
        STORAGE_BLOB_DATA_CONTRIBUTOR,
        STORAGE_TABLE_DATA_CONTRIBUTOR,
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
    }
    body = _body(roles[0])
    assert body["scope"] == "logs"
    assert body["properties"]["principalType"] == "ServicePrincipal"
    role_id = body["properties"]["roleDefinitionId"]["function"]
    assert role_id["parameters"]["resource_name_1"] == loop["item_name"]
    # Deployed into the logs account's own resource group, for the app's identity.
    module = _module("logsStorage")
    scope = module["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"]["resource_group_name"] == "logsStorageResourceGroupName"
    assert "outputs" in json.dumps(module["params"]["principalId"])
    assert "functionApp" in json.dumps(module["params"]["principalId"])


def test_logs_account_resources_match_defaults() -> None:
    main = bicep("main.bicep")
    params = _module("logsStorage")["params"]
    tables = {_resolve(main, t) for t in params["tables"]}
    assert tables == {
        DEFAULTS[k] for k in ("EVENTS_TABLE", "INDEX_TABLE", "STATE_TABLE", "ALERTS_TABLE")
    }
    assert [_resolve(main, q) for q in params["queues"]] == [DEFAULTS["ALERT_QUEUE"]]
    assert [_resolve(main, c) for c in params["containers"]] == [DEFAULTS["QUARANTINE_CONTAINER"]]


def test_no_broad_roles_anywhere() -> None:
    owner, contributor = (
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "b24988ac-6180-42a3-9d69-4e1f4a6cd9f4",
    )
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        assert owner not in text and contributor not in text, path


def test_event_grid_subscription() -> None:
    doc = bicep("app/eventgrid-subscription.bicep")
    body = _one(
        "app/eventgrid-subscription.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    )
    props = body["properties"]
    assert props["filter"]["includedEventTypes"] == ["Microsoft.Storage.BlobCreated"]
    assert (
        props["filter"]["subjectBeginsWith"] == "/blobServices/default/containers/${containerName}/"
    )
    destination = props["destination"]
    assert destination["endpointType"] == "WebHook"
    assert destination["properties"]["endpointUrl"] == (
        "https://${functionAppHostName}/runtime/webhooks/blobs"
        "?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}"
    )
    key = json.dumps(doc["variables"]["blobsExtensionKey"])
    assert '"list_keys"' in key or "listKeys" in key, key
    assert "blobs_extension" in key
    assert "Microsoft.Web/sites/host" in json.dumps(doc["variables"]["hostKeysId"])
    main = bicep("main.bicep")
    params = _module("eventSubscription")["params"]
    assert _resolve(main, params["containerName"]) == LOGS_CONTAINER
    assert params["functionName"] == "ingest_blob"
    condition = bicep("main.bicep")["modules"]["eventSubscription"]["config"]["condition"]
    assert condition == "eventGridSubscriptionEnabled"


def test_system_topic_on_logs_account() -> None:
    topic = _one("app/eventgrid-topic.bicep", "Microsoft.EventGrid/systemTopics")
    assert topic["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    params = _module("systemTopic")["params"]
    assert "logsStorage" in json.dumps(params["sourceId"])
    assert "logsStorage" in json.dumps(params["location"])  # same region as the account


def test_bastion_diagnostic_setting() -> None:
    setting = _one("app/bastion-diagnostics.bicep", "Microsoft.Insights/diagnosticSettings")
    assert setting["scope"] == "bastion"
    assert setting["properties"]["logs"] == [{"category": "BastionAuditLogs", "enabled": True}]
    module = bicep("main.bicep")["modules"]["bastionDiagnostics"]
    assert "bastionHostName" in json.dumps(module["config"]["condition"])


def test_every_setting_the_code_reads_is_declared() -> None:
    main = bicep("main.bicep")
    declared = main["variables"]["bastionAuditSettings"]["value"]
    assert set(declared) == set(DEFAULTS), set(DEFAULTS) ^ set(declared)
    for key, default in DEFAULTS.items():
        expected = AZURE_VALUES.get(key, default)
        assert _resolve(main, declared[key]) == expected, key
    connection = main["variables"]["connectionSettings"]["value"]
    assert set(connection) == CONNECTION_SETTINGS
    assert connection[f"{CONNECTION}__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        uri = _resolve(main, connection[f"{CONNECTION}__{service}ServiceUri"])
        assert uri.startswith("https://${logsStorageAccountName}." + service + "."), uri
    merged = _module("functionApp")["params"]["appSettings"]["function"]
    assert merged["type"] == "union"
    assert set(merged["parameters"].values()) == {"bastionAuditSettings", "connectionSettings"}
    app = bicep("app/function-app.bicep")["parameters"]["appSettings"]
    assert _is_secure(app)


def test_timer_schedules_are_set() -> None:
    """%SWEEP_SCHEDULE% / %ALERT_RETRY_SCHEDULE% fail the host at start-up when unset."""
    declared = bicep("main.bicep")["variables"]["bastionAuditSettings"]["value"]
    for key in ("SWEEP_SCHEDULE", "ALERT_RETRY_SCHEDULE"):
        assert len(declared[key].split()) == 6, f"{key} is not a six-field NCRONTAB"


def test_alert_webhooks_are_secure_parameters() -> None:
    main = bicep("main.bicep")
    declared = main["variables"]["bastionAuditSettings"]["value"]
    for key in ("ALERT_WEBHOOK_URL", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_SLACK_WEBHOOK_URL"):
        param = main["parameters"][declared[key]]
        assert _is_secure(param), key


def test_parameters_file_matches_main() -> None:
    main = bicep("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(given) <= set(main), set(given) - set(main)
    required = {name for name, p in main.items() if p.get("default") is None}
    assert required <= set(given), required - set(given)
    for name, entry in given.items():
        assert re.fullmatch(r"\$\{[A-Z0-9_]+(=[^}]*)?\}", entry["value"]), name


def test_local_settings_sample_lists_every_default() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    assert sample["IsEncrypted"] is False
    values = sample["Values"]
    for key, default in DEFAULTS.items():
        assert key in values, key
        assert values[key] == default, key
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert values[CONNECTION] == "UseDevelopmentStorage=true"
    host_keys = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
    assert set(values) - set(DEFAULTS) - host_keys == {CONNECTION}


def test_readme_mentions_every_setting() -> None:
    readme = ROOT / "README.md"
    if not readme.exists():
        pytest.skip("no README.md yet")
    text = readme.read_text(encoding="utf-8")
    missing = [key for key in DEFAULTS if key not in text]
    assert not missing, f"README.md does not mention {missing}"


def test_funcignore_keeps_runtime_files() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, p.rstrip("/")) for p in patterns)

    for needed in ("function_app.py", "host.json", "requirements.txt", "shared"):
        assert not ignored(needed), needed
    for dropped in (
        "tests",
        "bench",
        "infra",
        "docs",
        "node_modules",
        ".venv",
        ".venv313",
        "local.settings.json",
        "package.json",
        "README.md",
        ".gitignore",
        "__pycache__",
        ".ci",
    ):
        assert ignored(dropped), dropped
