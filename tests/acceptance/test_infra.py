"""The azd/Bicep deployment declares what the app needs, no more, and the settings files mirror
DEFAULTS.

Bicep is only parsed (pycep-parser, syntax only): no Bicep compiler or ARM what-if runs here.
pycep turns both string literals and identifiers into plain strings, so a value that names a
variable or parameter of the same file is resolved through it (`_resolve`). pycep keeps only one
nested child resource per parent, so the templates declare child resources with `parent:`.

What a cloud-security reviewer checks (GitHub issue 13), each point a test below:
- data-plane roles scoped to one container / table / queue, never an account or its services;
  read-only on the Bastion logs container; a table-scoped role for every *_TABLE setting;
- App Service Authentication (authsettingsV2) with Microsoft Entra ID, as the code expects it;
- basic-auth publishing (SCM and FTP) off; webhook URLs in an RBAC Key Vault, referenced from
  the app settings; host storage locked to identities (and to private endpoints on request);
- Event Grid dead-lettering and a retry time-to-live no longer than the sweep's look-back;
- Python 3.12 or later, and no later than the pinned azure-functions supports.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from shared.core.settings import CONNECTION, DEFAULTS, LOGS_CONTAINER

pycep = pytest.importorskip("pycep")

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
HOOKS = INFRA / "hooks"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Built-in role IDs (Microsoft Learn, "Azure built-in roles").
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
STORAGE_QUEUE_DATA_MESSAGE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"

#: Every role the templates may assign, with its name (docs/deploy.md explains each one).
KNOWN_ROLES = {
    STORAGE_BLOB_DATA_READER: "Storage Blob Data Reader",
    STORAGE_BLOB_DATA_CONTRIBUTOR: "Storage Blob Data Contributor",
    STORAGE_BLOB_DATA_OWNER: "Storage Blob Data Owner",
    STORAGE_TABLE_DATA_CONTRIBUTOR: "Storage Table Data Contributor",
    STORAGE_QUEUE_DATA_CONTRIBUTOR: "Storage Queue Data Contributor",
    STORAGE_QUEUE_DATA_MESSAGE_SENDER: "Storage Queue Data Message Sender",
    KEY_VAULT_SECRETS_USER: "Key Vault Secrets User",
    MONITORING_READER: "Monitoring Reader",
    MONITORING_METRICS_PUBLISHER: "Monitoring Metrics Publisher",
    READER: "Reader",
}
#: Roles that can write or delete storage data.
STORAGE_WRITE_ROLES = {
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_OWNER,
    STORAGE_TABLE_DATA_CONTRIBUTOR,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    STORAGE_QUEUE_DATA_MESSAGE_SENDER,
}
STORAGE_DATA_ROLES = STORAGE_WRITE_ROLES | {STORAGE_BLOB_DATA_READER}
#: The only resource types a storage data role may be scoped to.
ITEM_SCOPES = {
    "Microsoft.Storage/storageAccounts/blobServices/containers",
    "Microsoft.Storage/storageAccounts/tableServices/tables",
    "Microsoft.Storage/storageAccounts/queueServices/queues",
}
#: Roles no template may assign anywhere: Owner, Contributor, User Access Administrator, Role
#: Based Access Control Administrator.
BROAD_ROLES = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}

#: Settings whose default (made for local runs) is not what Azure runs with.
AZURE_VALUES = {
    "BLOB_TRIGGER_SOURCE": "EventGrid",  # Flex Consumption supports only the Event Grid source.
}
#: Settings the template computes (resource ids, the cloud's ARM endpoint): what each names.
AZURE_EXPRESSIONS = {
    "BASTION_RESOURCE_IDS": ("Microsoft.Network/bastionHosts", "bastionHostName"),
    "LOGS_STORAGE_ACCOUNT_ID": ("Microsoft.Storage/storageAccounts", "logsStorageAccountName"),
    "ARM_ENDPOINT": ("resourceManager",),
    "COVERAGE_SUBSCRIPTIONS": ("join", "coverageSubscriptions"),
}
#: Settings whose local value (local.settings.sample.json) is not the default.
LOCAL_VALUES = {"API_AUTH": "none"}  # `func start` has no App Service Authentication
#: Webhook settings: Key Vault references to these secrets (or empty when no URL is given).
WEBHOOK_SECRETS = {
    "ALERT_WEBHOOK_URL": ("alert-webhook-url", "alertWebhookUrl"),
    "ALERT_TEAMS_WEBHOOK_URL": ("alert-teams-webhook-url", "alertTeamsWebhookUrl"),
    "ALERT_SLACK_WEBHOOK_URL": ("alert-slack-webhook-url", "alertSlackWebhookUrl"),
}
#: Settings only the Bicep declares (none: shared/core/settings.py DEFAULTS lists every setting).
BICEP_ONLY_SETTINGS: dict[str, str] = {}
#: The identity-based connection group for the logs account (host trigger + our SDK clients).
CONNECTION_SETTINGS = {
    f"{CONNECTION}__blobServiceUri",
    f"{CONNECTION}__queueServiceUri",
    f"{CONNECTION}__tableServiceUri",
    f"{CONNECTION}__credential",
}
READER_ROLE = "BastionAudit.Read"


# -- parsing helpers ------------------------------------------------------------------------


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
    """A bare identifier naming a variable (its value) or parameter (its default) of `doc`;
    `string(x)` and `x * n` of such values are evaluated."""
    if isinstance(value, str):
        if value in doc.get("variables", {}):
            return _resolve(doc, doc["variables"][value]["value"])
        if value in doc.get("parameters", {}):
            return doc["parameters"][value].get("default")
        return value
    if isinstance(value, dict) and "function" in value:
        function = value["function"]
        if function["type"] == "string":
            return str(_resolve(doc, function["parameters"]["value_to_convert"]))
    if isinstance(value, dict) and "operator" in value:
        operator = value["operator"]
        if operator["type"] == "multiply":
            a, b = (_resolve(doc, v) for v in operator["operands"].values())
            return int(a) * int(b)
    return value


def _union(doc: dict[str, Any], value: Any) -> dict[str, Any]:
    """An object literal, or `union(...)` of object literals and variables naming them."""
    value = doc["variables"][value]["value"] if isinstance(value, str) else value
    if "function" in value and value["function"]["type"] == "union":
        merged: dict[str, Any] = {}
        for arg in value["function"]["parameters"].values():
            merged.update(_union(doc, arg))
        return merged
    return value


def _resources(doc: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in doc.get("resources", {}).items() if r["type"] == type_}


def _one(relative: str, type_: str) -> dict[str, Any]:
    found = [r for r in _resources(bicep(relative), type_).values() if not r["existing"]]
    assert len(found) == 1, f"{relative}: expected one {type_}, found {len(found)}"
    return _body(found[0])


def _module(name: str) -> dict[str, Any]:
    return _body(bicep("main.bicep")["modules"][name])


def _module_file(name: str) -> str:
    return bicep("main.bicep")["modules"][name]["detail"]["path"]


def _is_secure(param: dict[str, Any]) -> bool:
    return any(d["type"] == "secure" for d in param["decorators"])


def _conditional(value: Any) -> dict[str, Any]:
    assert isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional", value
    return value["operator"]["operands"]


def _accessor(value: Any) -> list[str]:
    """`a.b.c` -> ["a", "b", "c"]."""
    if isinstance(value, str):
        return [value]
    operator = value["operator"]
    assert operator["type"] == "property_accessor", value
    return [operator["operands"]["operand_1"], *_accessor(operator["operands"]["operand_2"])]


# -- role assignments -----------------------------------------------------------------------


def _scope_resource(doc: dict[str, Any], scope: Any) -> str | None:
    """The symbolic name of the resource a role assignment is scoped to (None: the deployment's
    resource group)."""
    if scope is None:
        return None
    if isinstance(scope, str):
        return scope
    operator = scope["operator"]
    if operator["type"] == "index_accessor":  # tableResources[i]
        return operator["operands"]["operand_1"]
    raise AssertionError(f"unrecognised role assignment scope {scope!r}")


def role_assignments(relative: str) -> list[dict[str, Any]]:
    """Every role assignment of a file: role ID, scope resource (name, type, name expression),
    principal expression, and the loop it runs in."""
    doc = bicep(relative)
    found = []
    for key, entry in _resources(doc, "Microsoft.Authorization/roleAssignments").items():
        body = _body(entry)
        role_ref = body["properties"]["roleDefinitionId"]["function"]
        assert role_ref["type"] == "subscription_resource_id", (relative, key)
        role = _resolve(doc, role_ref["parameters"]["resource_name_1"])
        if isinstance(role, dict):  # `someRole.name`: a custom role defined in this file
            role = "custom:" + _accessor(role)[0]
        scope_name = _scope_resource(doc, body.get("scope"))
        scope = doc["resources"][scope_name] if scope_name else None
        found.append(
            {
                "file": relative,
                "key": key,
                "role": role,
                "scope_name": scope_name,
                "scope_type": scope["type"] if scope else None,
                "scope_resource": scope,
                "principal": body["properties"]["principalId"],
                "principal_type": body["properties"].get("principalType"),
                "loop": entry["config"].get("loop_type"),
            }
        )
    return found


def all_role_assignments() -> list[dict[str, Any]]:
    return [a for path in BICEP_FILES for a in role_assignments(str(path.relative_to(INFRA)))]


def _assignment(relative: str, key: str) -> dict[str, Any]:
    return next(a for a in role_assignments(relative) if a["key"] == key)


# -- structure --------------------------------------------------------------------------------


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
    assert config["runtime"]["name"] == "python"
    deployment = config["deployment"]["storage"]
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {"type": "SystemAssignedIdentity"}
    assert site["properties"]["httpsOnly"] is True
    assert site["properties"]["siteConfig"]["minTlsVersion"] == "1.2"
    assert site["properties"]["siteConfig"]["ftpsState"] == "Disabled"
    # azd finds the app through this tag; it must name the service in azure.yaml.
    tag = site["tags"]["function"]["parameters"]["arg_2"]["'azd-service-name'"]
    assert tag == "serviceName"
    service = _module("functionApp")["params"]["serviceName"]
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(rf"^services:\n  {re.escape(service)}:\n", azure_yaml, re.M), service
    scale = config["scaleAndConcurrency"]
    assert 40 <= _resolve(doc, scale["maximumInstanceCount"]) <= 1000


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_python_runtime_is_312_or_later_and_supported_by_the_pins() -> None:
    """Flex Consumption's default is 3.12 and 3.11 leaves support first. azure-functions 1.x
    (requirements.txt) declares Requires-Python <3.13, so 3.13 waits for azure-functions 2.x."""
    doc = bicep("app/function-app.bicep")
    site = _one("app/function-app.bicep", "Microsoft.Web/sites")
    assert site["properties"]["functionAppConfig"]["runtime"]["version"] == "pythonVersion"
    allowed = next(
        d["argument"]
        for d in doc["parameters"]["pythonVersion"]["decorators"]
        if d["type"] == "allowed"
    )
    assert all(_version(v) >= (3, 12) for v in allowed), allowed
    main = bicep("main.bicep")
    deployed = _resolve(main, _module("functionApp")["params"]["pythonVersion"])
    assert deployed in allowed
    assert _version(deployed) >= (3, 12), deployed
    pins = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    functions_pin = re.search(r"^azure-functions==(\d+)\.", pins, re.M)
    assert functions_pin, "requirements.txt must pin azure-functions"
    if int(functions_pin.group(1)) < 2:
        assert _version(deployed) < (3, 13), "azure-functions 1.x does not support Python 3.13"


def test_azure_yaml_deploys_python_function() -> None:
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^    project: \.$", text, re.M)
    assert re.search(r"^    language: python$", text, re.M)
    assert re.search(r"^    host: function$", text, re.M)
    # The postdeploy hook turns the Event Grid subscription on once the code (and its
    # blobs_extension key) exists.
    assert "postdeploy:" in text
    assert "azd env set EVENTGRID_SUBSCRIPTION_ENABLED true" in text


def test_app_settings_are_written_after_the_roles_they_need() -> None:
    """Key Vault references resolve only once the app may read the vault."""
    depends = set(_module("appSettings")["dependsOn"])
    assert {"keyVault", "hostAccess", "logsStorage"} <= depends, depends


def test_host_storage_is_identity_based() -> None:
    settings = _one("app/app-settings.bicep", "Microsoft.Web/sites/config")
    assert settings["name"] == "appsettings"
    own = settings["properties"]["function"]["parameters"]["arg_2"]
    assert "AzureWebJobsStorage__accountName" in own
    assert own["AzureWebJobsStorage__credential"] == "managedidentity"
    assert own["AzureFunctionsWebHost__hostid"] == "hostId"
    assert own["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    # Flex Consumption rejects these; the runtime comes from functionAppConfig.
    assert "FUNCTIONS_WORKER_RUNTIME" not in own
    assert "FUNCTIONS_EXTENSION_VERSION" not in own
    app = bicep("app/app-settings.bicep")["parameters"]["appSettings"]
    assert _is_secure(app)


def test_no_keys_or_connection_strings_in_settings() -> None:
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        assert "AccountKey=" not in text, path
        assert "SharedAccessSignature" not in text, path
        assert "listKeys(" not in text or path.name == "eventgrid-subscription.bicep", path
        assert "listKeys()" not in text, path


# -- 1. scoped roles --------------------------------------------------------------------------


def test_every_role_is_known_and_none_is_broad() -> None:
    for path in BICEP_FILES:
        text = path.read_text(encoding="utf-8")
        for role in BROAD_ROLES:
            assert role not in text, (path, role)
    assignments = all_role_assignments()
    assert assignments
    for a in assignments:
        assert a["role"] in KNOWN_ROLES or a["role"].startswith("custom:"), a
        assert a["principal_type"] == "ServicePrincipal", a
    custom = [a for a in assignments if a["role"].startswith("custom:")]
    assert [(a["file"], a["scope_name"]) for a in custom] == [
        ("app/bastion-response.bicep", "bastion")
    ]


def test_active_response_role_has_the_two_session_actions_only_when_asked() -> None:
    """Issue 27: a custom role of exactly Bastion's two session actions (in dry-run, the one
    that lists), assignable in the host's resource group, assigned on the host; deployed only
    when `activeResponse` is not `off` and a host is named."""
    doc = bicep("app/bastion-response.bicep")
    (role,) = _resources(doc, "Microsoft.Authorization/roleDefinitions").values()
    body = _body(role)
    (permissions,) = body["properties"]["permissions"]
    named = {_resolve(doc, v) for v in ("listSessions", "endSessions")}
    assert named == {
        "Microsoft.Network/bastionHosts/getactivesessions/action",
        "Microsoft.Network/bastionHosts/disconnectactivesessions/action",
    }
    assert permissions["dataActions"] == [] and permissions["notActions"] == []
    text = json.dumps(permissions["actions"])
    assert "listSessions" in text and "endSessions" in text and '"on"' in text
    assert "resource_group" in json.dumps(body["properties"]["assignableScopes"])
    module = bicep("main.bicep")["modules"]["bastionResponse"]
    condition = json.dumps(module["config"]["condition"])
    assert "activeResponse" in condition and "off" in condition and "bastionHostName" in condition
    assert bicep("main.bicep")["parameters"]["activeResponse"]["default"] == "off"


def test_no_storage_data_role_at_account_or_service_scope() -> None:
    """Any Storage * Data role is scoped to one container, table or queue, so the app can never
    reach a container (such as another insights-logs-* one) it was not given."""
    for a in all_role_assignments():
        if a["role"] in STORAGE_DATA_ROLES:
            assert a["scope_type"] in ITEM_SCOPES, (
                f"{a['file']}: {a['key']} gives {KNOWN_ROLES[a['role']]} on "
                f"{a['scope_type'] or 'the resource group'}"
            )
    # The queue roles are where queues are, and so on.
    for a in all_role_assignments():
        if a["role"] in (STORAGE_QUEUE_DATA_CONTRIBUTOR, STORAGE_QUEUE_DATA_MESSAGE_SENDER):
            assert a["scope_type"].endswith("/queues"), a
        if a["role"] == STORAGE_TABLE_DATA_CONTRIBUTOR:
            assert a["scope_type"].endswith("/tables"), a
        if a["role"] in (STORAGE_BLOB_DATA_CONTRIBUTOR, STORAGE_BLOB_DATA_OWNER):
            assert a["scope_type"].endswith("/containers"), a


def _logs_container_names() -> dict[str, str]:
    """Container resources of logs-storage.bicep -> the container name they resolve to."""
    doc = bicep("app/logs-storage.bicep")
    params = _module("logsStorage")["params"]
    main = bicep("main.bicep")
    names = {}
    for key, entry in _resources(
        doc, "Microsoft.Storage/storageAccounts/blobServices/containers"
    ).items():
        name = _body(entry)["name"]
        names[key] = _resolve(main, params[name]) if name in params else _resolve(doc, name)
    return names


def test_logs_container_is_read_only() -> None:
    """The app reads the Bastion audit logs and can neither change nor delete them."""
    containers = _logs_container_names()
    logs = [key for key, name in containers.items() if name == LOGS_CONTAINER]
    assert len(logs) == 1, containers
    on_logs = [a for a in role_assignments("app/logs-storage.bicep") if a["scope_name"] == logs[0]]
    assert [a["role"] for a in on_logs] == [STORAGE_BLOB_DATA_READER], on_logs
    for a in all_role_assignments():
        if a["role"] in STORAGE_WRITE_ROLES and a["file"] == "app/logs-storage.bicep":
            assert a["scope_name"] != logs[0], a
    # The same app identity as everywhere.
    assert "functionApp" in json.dumps(_module("logsStorage")["params"]["principalId"])
    module = _module("logsStorage")
    scope = module["scope"]["function"]
    assert scope["type"] == "resource_group"
    assert scope["parameters"]["resource_group_name"] == "logsStorageResourceGroupName"


def test_quarantine_container_and_queues_on_the_logs_account() -> None:
    containers = _logs_container_names()
    doc = bicep("app/logs-storage.bicep")
    granted = {
        (a["scope_name"], a["role"])
        for a in role_assignments("app/logs-storage.bicep")
        if not a["loop"]
    }
    quarantine = next(k for k, v in containers.items() if v == DEFAULTS["QUARANTINE_CONTAINER"])
    assert (quarantine, STORAGE_BLOB_DATA_CONTRIBUTOR) in granted
    queues = _resources(doc, "Microsoft.Storage/storageAccounts/queueServices/queues")
    params = _module("logsStorage")["params"]
    main = bicep("main.bicep")
    names = {}
    for key, entry in queues.items():
        name = _body(entry)["name"]
        names[key] = _resolve(main, params[name]) if name in params else _resolve(doc, name)
    assert set(names.values()) == {DEFAULTS["ALERT_QUEUE"], "webjobs-blobtrigger-poison"}, names
    for key in names:
        # Send only: no peek, receive, delete, or queue management.
        assert (key, STORAGE_QUEUE_DATA_MESSAGE_SENDER) in granted, key
        assert (key, STORAGE_QUEUE_DATA_CONTRIBUTOR) not in granted, key


def test_every_table_setting_gets_a_table_scoped_role() -> None:
    """One variable lists the tables; the tables and their roles both iterate it."""
    main = bicep("main.bicep")
    tables = main["variables"]["logsTables"]["value"]
    expected = {k: v for k, v in DEFAULTS.items() if k.endswith("_TABLE")}
    assert expected, "DEFAULTS lists no *_TABLE setting"
    for key, default in expected.items():
        assert tables.get(key) == default, (key, tables)
    assert _module("logsStorage")["params"]["tables"] == "logsTables"
    doc = bicep("app/logs-storage.bicep")
    table_resources = _resources(doc, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert list(table_resources) == ["tableResources"]
    loop = table_resources["tableResources"]["config"]["loop_type"]["detail"]
    assert loop["array_name"] == {"function": {"type": "items", "parameters": {"arg_1": "tables"}}}
    assert _body(table_resources["tableResources"])["name"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {"operand_1": loop["item_name"], "operand_2": "value"},
        }
    }
    roles = [
        a for a in role_assignments("app/logs-storage.bicep") if a["scope_name"] == "tableResources"
    ]
    assert len(roles) == 1, roles
    role = roles[0]
    assert role["role"] == STORAGE_TABLE_DATA_CONTRIBUTOR
    assert role["loop"]["type"] == "array_index"
    assert role["loop"]["detail"]["array_name"] == loop["array_name"]
    scope = _body(doc["resources"][role["key"]])["scope"]["operator"]["operands"]
    assert scope == {
        "operand_1": "tableResources",
        "operand_2": role["loop"]["detail"]["index_name"],
    }
    # Nothing else on the tables: no account-wide Table role.
    assert [a for a in all_role_assignments() if a["role"] == STORAGE_TABLE_DATA_CONTRIBUTOR] == [
        role
    ]


def test_host_storage_roles_cover_what_the_functions_host_uses() -> None:
    """AzureWebJobsStorage: container / queue scoped roles on exactly what the host uses."""
    storage = bicep("app/host-storage.bicep")
    containers = _resolve(storage, "hostContainers")
    queues = _resolve(storage, "hostQueues")
    assert containers == ["azure-webjobs-hosts", "azure-webjobs-secrets"]
    # The Event Grid-source blob trigger queues every event in azure-webjobs-blobtrigger-<hostId>.
    assert queues == ["azure-webjobs-blobtrigger-${hostId}", "webjobs-blobtrigger-poison"]
    params = _module("hostAccess")["params"]
    assert "hostStorage" in json.dumps(params["hostContainers"])
    assert "hostStorage" in json.dumps(params["hostQueues"])
    # The host ID that names the queue is the one the app runs with.
    main = bicep("main.bicep")
    assert _module("hostStorage")["params"]["hostId"] == "hostId"
    assert _module("appSettings")["params"]["hostId"] == "hostId"
    host_id = main["variables"]["hostId"]["value"]["function"]
    assert host_id["type"] == "take" and 32 in host_id["parameters"].values(), host_id
    access = {a["key"]: a for a in role_assignments("app/host-access.bicep")}
    assert access["hostContainerRoles"]["role"] == STORAGE_BLOB_DATA_OWNER
    assert access["hostContainerRoles"]["loop"]["detail"]["array_name"] == "hostContainers"
    assert access["hostQueueRoles"]["role"] == STORAGE_QUEUE_DATA_CONTRIBUTOR
    assert access["hostQueueRoles"]["loop"]["detail"]["array_name"] == "hostQueues"
    assert access["deploymentRole"]["role"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert access["deploymentRole"]["scope_name"] == "deploymentContainer"
    assert access["telemetryRole"]["role"] == MONITORING_METRICS_PUBLISHER
    assert access["telemetryRole"]["scope_name"] == "applicationInsights"
    for key in ("hostContainerRoles", "hostQueueRoles", "deploymentRole", "telemetryRole"):
        assert access[key]["principal"] == "principalId", key
    assert "functionApp" in json.dumps(params["principalId"])


# -- 2. Entra ID in front of people-facing endpoints ------------------------------------------


def test_app_service_authentication_with_entra_id() -> None:
    """authsettingsV2 as the code expects it: the platform signs callers in and passes
    X-MS-CLIENT-PRINCIPAL; the code answers unauthenticated calls (302 / 401 / 403)."""
    auth = _one("app/function-app.bicep", "Microsoft.Web/sites/config")
    assert auth["name"] == "authsettingsV2"
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    validation = props["globalValidation"]
    assert validation["requireAuthentication"] is False
    assert validation["unauthenticatedClientAction"] == "AllowAnonymous"
    assert validation["redirectToProvider"] == "azureActiveDirectory"
    assert props["httpSettings"]["requireHttps"] is True
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "apiClientId"
    doc = bicep("app/function-app.bicep")
    issuer = doc["variables"][aad["registration"]["openIdIssuer"]]["value"]
    assert issuer == "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    # Machine clients ask for api://<clientId>/.default: v1 tokens carry the App ID URI as
    # audience, v2 tokens the client ID.
    audiences = aad["validation"]["allowedAudiences"]
    assert set(audiences) == {"api://${apiClientId}", "apiClientId"}
    # No other identity provider.
    assert set(props["identityProviders"]) == {"azureActiveDirectory"}
    login = props["login"]
    assert login["allowedExternalRedirectUrls"] == []
    assert login["tokenStore"]["enabled"] is False
    # The client ID comes from the azd environment (the preprovision hook or you).
    main = bicep("main.bicep")
    assert _module("functionApp")["params"]["apiClientId"] == "apiClientId"
    assert main["parameters"]["apiClientId"].get("default") is None
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert given["apiClientId"]["value"] == "${API_CLIENT_ID}"
    assert main["parameters"]["apiReaderRole"]["default"] == READER_ROLE


def test_api_settings_for_the_code() -> None:
    declared = _union(bicep("main.bicep"), "bastionAuditSettings")
    assert declared["API_AUTH"] == "entra"
    assert declared["API_READER_ROLE"] == "apiReaderRole"
    app = _one("app/app-settings.bicep", "Microsoft.Web/sites/config")
    own = app["properties"]["function"]["parameters"]["arg_2"]
    assert "tenantId" in json.dumps(own["WEBSITE_AUTH_AAD_ALLOWED_TENANTS"])
    # The platform injects WEBSITE_AUTH_ENABLED when App Service Authentication really runs; the
    # code may rely on it to refuse X-MS-* headers otherwise, so no template may fake it.
    for path in BICEP_FILES:
        assert "WEBSITE_AUTH_ENABLED" not in path.read_text(encoding="utf-8"), path


def test_app_registration_hooks() -> None:
    """Bicep cannot create the app registration: the preprovision hook makes (or checks) it with
    the reader app role, the postprovision hook adds the sign-in redirect URI."""
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    for hook in ("preprovision", "postprovision"):
        assert re.search(rf"^  {hook}:$", text, re.M), hook
        assert f"infra/hooks/entra-app.sh {hook}" in text, hook
        assert f"infra/hooks/entra-app.ps1 {hook}" in text, hook
    sh = (HOOKS / "entra-app.sh").read_text(encoding="utf-8")
    ps1 = (HOOKS / "entra-app.ps1").read_text(encoding="utf-8")
    assert os.access(HOOKS / "entra-app.sh", os.X_OK)
    for script in (sh, ps1):
        assert "az ad app create" in script
        assert "azd env set API_CLIENT_ID" in script
        assert "API_READER_ROLE" in script
        assert READER_ROLE in script
        assert "appRoleAssignmentRequired" in script
        assert "requestedAccessTokenVersion" in script
        assert "/.auth/login/aad/callback" in script


def test_postdeploy_checks_forged_identity_headers() -> None:
    """After each deploy, a forged X-MS-CLIENT-PRINCIPAL must not open the API."""
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert "infra/hooks/check-auth.sh" in text
    assert "infra/hooks/check-auth.ps1" in text
    assert os.access(HOOKS / "check-auth.sh", os.X_OK)
    for name in ("check-auth.sh", "check-auth.ps1"):
        script = (HOOKS / name).read_text(encoding="utf-8")
        assert "X-MS-CLIENT-PRINCIPAL" in script
        assert READER_ROLE in script or "API_READER_ROLE" in script


# -- 3. hardening -----------------------------------------------------------------------------


def test_basic_publishing_credentials_are_off() -> None:
    doc = bicep("app/function-app.bicep")
    policies = _resources(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    bodies = {_body(p)["name"]: _body(p) for p in policies.values()}
    assert set(bodies) == {"ftp", "scm"}
    for name, body in bodies.items():
        assert body["properties"] == {"allow": False}, name
        assert body["parent"] == "site", name


def test_webhook_urls_are_key_vault_references() -> None:
    main = bicep("main.bicep")
    declared = _union(main, "bastionAuditSettings")
    stored = main["variables"]["storedWebhookSecrets"]["value"]["function"]["parameters"].values()
    stored_by_param = {}
    for branch in stored:
        operands = _conditional(branch)
        assert operands["true_value"] == {}
        ((secret, param),) = operands["false_value"].items()
        assert operands["condition"]["function"]["parameters"]["item_to_test"] == param
        stored_by_param[param] = secret.strip("'")
    for key, (secret, param) in WEBHOOK_SECRETS.items():
        assert _is_secure(main["parameters"][param]), param
        operands = _conditional(declared[key])
        assert operands["condition"]["function"] == {
            "type": "empty",
            "parameters": {"item_to_test": param},
        }, key
        assert operands["true_value"] == "", key
        reference = operands["false_value"]
        assert reference == f"@Microsoft.KeyVault(VaultName=${{keyVaultName}};SecretName={secret})"
        assert stored_by_param[param] == secret, key
        # The URL itself reaches only the Key Vault module.
        for name, module in main["modules"].items():
            if name != "keyVault":
                assert param not in json.dumps(_body(module).get("params", {})), (name, param)
    assert _module("keyVault")["params"]["secrets"] == "storedWebhookSecrets"
    assert _module("keyVault")["params"]["name"] == "keyVaultName"
    assert _is_secure(bicep("app/key-vault.bicep")["parameters"]["secrets"])


def test_key_vault_uses_rbac_and_the_app_reads_secrets_only() -> None:
    vault = _one("app/key-vault.bicep", "Microsoft.KeyVault/vaults")
    props = vault["properties"]
    assert props["enableRbacAuthorization"] is True
    assert "accessPolicies" not in props
    assert props["enableSoftDelete"] is True
    roles = role_assignments("app/key-vault.bicep")
    assert [(a["role"], a["scope_name"], a["principal"]) for a in roles] == [
        (KEY_VAULT_SECRETS_USER, "vault", "principalId")
    ]
    assert "functionApp" in json.dumps(_module("keyVault")["params"]["principalId"])
    secrets = _resources(bicep("app/key-vault.bicep"), "Microsoft.KeyVault/vaults/secrets")
    (secret,) = secrets.values()
    assert _body(secret)["parent"] == "vault"


def test_host_storage_network_and_auth() -> None:
    """Identity only (no shared keys, no anonymous blobs); the firewall denies public access when
    privateNetworking is on (Flex Consumption then reaches the account through private
    endpoints; it is not a trusted service for the firewall)."""
    account = _one("app/host-storage.bicep", "Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    acls = props["networkAcls"]
    # Event Grid writes dead letters as a trusted service with its managed identity.
    assert acls["bypass"] == "AzureServices"
    operands = _conditional(acls["defaultAction"])
    assert operands == {
        "condition": "privateNetworking",
        "true_value": "Deny",
        "false_value": "Allow",
    }
    main = bicep("main.bicep")
    assert _module("hostStorage")["params"]["privateNetworking"] == "privateNetworking"
    assert main["modules"]["hostNetwork"]["config"]["condition"] == "privateNetworking"
    subnet = _conditional(_module("functionApp")["params"]["virtualNetworkSubnetId"])
    assert subnet["condition"] == "privateNetworking"
    assert "hostNetwork" in json.dumps(subnet["true_value"])
    network = bicep("app/host-network.bicep")
    assert _resolve(network, "storageServices") == ["blob", "queue"]
    vnet = _one("app/host-network.bicep", "Microsoft.Network/virtualNetworks")
    delegations = [
        d["properties"]["serviceName"]
        for s in vnet["properties"]["subnets"]
        for d in s["properties"].get("delegations", [])
    ]
    assert delegations == ["Microsoft.App/environments"]


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
    params = _module("eventSubscription")["params"]
    main = bicep("main.bicep")
    assert _resolve(main, params["containerName"]) == LOGS_CONTAINER
    assert params["functionName"] == "ingest_blob"
    condition = main["modules"]["eventSubscription"]["config"]["condition"]
    assert condition == "eventGridSubscriptionEnabled"


def test_event_grid_dead_letters_and_retries_within_the_sweep_window() -> None:
    """Undelivered events are dead-lettered (with the topic's identity) into the app's own
    storage, and Event Grid stops retrying no later than the sweep's look-back ends."""
    props = _one(
        "app/eventgrid-subscription.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    )["properties"]
    assert "deadLetterDestination" not in props  # key-based; the host account has no keys
    dead_letter = props["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    destination = dead_letter["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"
    assert destination["properties"] == {
        "resourceId": "deadLetterStorageAccountId",
        "blobContainerName": "deadLetterContainerName",
    }
    retry = props["retryPolicy"]
    assert retry == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    main = bicep("main.bicep")
    params = _module("eventSubscription")["params"]
    assert params["deadLetterStorageAccountId"] == {
        "operator": {
            "type": "property_accessor",
            "operands": {
                "operand_1": "hostStorage",
                "operand_2": {
                    "operator": {
                        "type": "property_accessor",
                        "operands": {"operand_1": "outputs", "operand_2": "id"},
                    }
                },
            },
        }
    }
    assert params["deadLetterContainerName"] == "deadLetterContainerName"
    ttl_minutes = _resolve(main, params["eventTimeToLiveInMinutes"])
    lookback_hours = int(
        _resolve(main, _union(main, "bastionAuditSettings")["SWEEP_LOOKBACK_HOURS"])
    )
    assert lookback_hours == int(DEFAULTS["SWEEP_LOOKBACK_HOURS"])
    assert 0 < ttl_minutes <= lookback_hours * 60, (ttl_minutes, lookback_hours)
    # The topic writes dead letters with its identity, allowed on that one container only.
    topic = _one("app/eventgrid-topic.bicep", "Microsoft.EventGrid/systemTopics")
    assert topic["identity"] == {"type": "SystemAssigned"}
    writer = _assignment("app/host-access.bicep", "deadLetterWriter")
    assert writer["role"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert writer["scope_name"] == "deadLetterContainer"
    assert writer["principal"] == "eventGridPrincipalId"
    assert "systemTopic" in json.dumps(_module("hostAccess")["params"]["eventGridPrincipalId"])
    assert "hostAccess" in _module("eventSubscription")["dependsOn"]
    # The gap, and what to do with dead letters, is explained to operators.
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    assert "dead-letter" in doc.lower() and "SWEEP_LOOKBACK_HOURS" in doc


def test_system_topic_on_logs_account() -> None:
    topic = _one("app/eventgrid-topic.bicep", "Microsoft.EventGrid/systemTopics")
    assert topic["properties"]["topicType"] == "Microsoft.Storage.StorageAccounts"
    params = _module("systemTopic")["params"]
    assert "logsStorage" in json.dumps(params["sourceId"])
    assert "logsStorage" in json.dumps(params["location"])  # same region as the account
    assert params["existingName"] == "existingSystemTopicName"


def test_bastion_diagnostic_setting_and_read_access() -> None:
    setting = _one("app/bastion-diagnostics.bicep", "Microsoft.Insights/diagnosticSettings")
    assert setting["scope"] == "bastion"
    assert setting["properties"]["logs"] == [{"category": "BastionAuditLogs", "enabled": True}]
    module = bicep("main.bicep")["modules"]["bastionDiagnostics"]
    assert "bastionHostName" in json.dumps(module["config"]["condition"])
    # Issue 16: read the diagnostic setting through ARM, on the Bastion host only.
    (reader,) = role_assignments("app/bastion-diagnostics.bicep")
    assert reader["role"] == MONITORING_READER
    assert reader["scope_name"] == "bastion"
    assert "functionApp" in json.dumps(_module("bastionDiagnostics")["params"]["principalId"])


def test_reader_only_on_the_covered_subscriptions_and_only_when_asked() -> None:
    """Issue 27: Reader is the only right the coverage check adds, on each subscription named in
    `coverageSubscriptions` and on no other scope: none when the list is empty."""
    (reader,) = role_assignments("app/subscription-reader.bicep")
    assert reader["role"] == READER and reader["scope_name"] is None  # the module's subscription
    doc = bicep("app/subscription-reader.bicep")
    assert doc["globals"]["scope"]["value"] == "subscription"
    module = bicep("main.bicep")["modules"]["coverageReaders"]
    loop = json.dumps(module["config"])
    assert "coverageSubscriptions" in loop and "subscription" in json.dumps(module)
    assert bicep("main.bicep")["parameters"]["coverageSubscriptions"]["default"] == []
    assert READER in {a["role"] for a in all_role_assignments()}
    others = [a for a in all_role_assignments() if a["role"] == READER]
    assert [a["file"] for a in others] == ["app/subscription-reader.bicep"]


# -- settings ---------------------------------------------------------------------------------


def test_every_setting_the_code_reads_is_declared() -> None:
    main = bicep("main.bicep")
    declared = _union(main, "bastionAuditSettings")
    missing = set(DEFAULTS) - set(declared)
    assert not missing, missing
    assert set(declared) - set(DEFAULTS) == set(BICEP_ONLY_SETTINGS) - set(DEFAULTS)
    for key, default in DEFAULTS.items():
        if key in WEBHOOK_SECRETS:
            continue  # Key Vault references: test_webhook_urls_are_key_vault_references
        if key in AZURE_EXPRESSIONS:
            text = json.dumps(declared[key])
            assert all(word in text for word in AZURE_EXPRESSIONS[key]), (key, text)
            continue
        expected = AZURE_VALUES.get(key, default)
        assert _resolve(main, declared[key]) == expected, key
    for key, value in BICEP_ONLY_SETTINGS.items():
        if key not in DEFAULTS:
            assert declared[key] == value, key
    connection = main["variables"]["connectionSettings"]["value"]
    assert set(connection) == CONNECTION_SETTINGS
    assert connection[f"{CONNECTION}__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        uri = _resolve(main, connection[f"{CONNECTION}__{service}ServiceUri"])
        assert uri.startswith("https://${logsStorageAccountName}." + service + "."), uri
    merged = _module("appSettings")["params"]["appSettings"]["function"]
    assert merged["type"] == "union"
    assert set(merged["parameters"].values()) == {"bastionAuditSettings", "connectionSettings"}


def test_timer_schedules_are_set() -> None:
    """%SWEEP_SCHEDULE% / %ALERT_RETRY_SCHEDULE% fail the host at start-up when unset."""
    declared = _union(bicep("main.bicep"), "bastionAuditSettings")
    for key in ("SWEEP_SCHEDULE", "ALERT_RETRY_SCHEDULE"):
        assert len(declared[key].split()) == 6, f"{key} is not a six-field NCRONTAB"


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
        assert values[key] == LOCAL_VALUES.get(key, default), key
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


# -- docs -------------------------------------------------------------------------------------


def test_deploy_doc_explains_roles_sign_in_and_machine_clients() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    used = {a["role"] for a in all_role_assignments() if not a["role"].startswith("custom:")}
    assert "Bastion Audit session responder" in doc and "getactivesessions/action" in doc
    for role in used:
        assert KNOWN_ROLES[role] in doc, f"docs/deploy.md does not explain {KNOWN_ROLES[role]}"
        assert role in doc, f"docs/deploy.md does not give the ID of {KNOWN_ROLES[role]}"
    for needle in (
        "/.auth/login/aad",
        "api://",
        "/.default",
        READER_ROLE,
        "az ad app create",
        "API_CLIENT_ID",
        "webjobs-blobtrigger-poison",
        "azure-webjobs-blobtrigger-",
        "privateNetworking",
        "PRIVATE_NETWORKING",
    ):
        assert needle in doc, needle


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
