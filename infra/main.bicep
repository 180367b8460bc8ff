// bastion-audit: everything `azd up` needs in Azure. See docs/deploy.md for what each role is
// for and why it is scoped as it is.
//
// Creates a resource group with a Flex Consumption function app (Python 3.12, system-assigned
// identity, Microsoft Entra ID sign-in in front of it, basic-auth publishing off), its own
// storage account, a Key Vault for the alert webhook URLs, Application Insights and Log
// Analytics; grants the app's identity data-plane roles on single containers, tables and queues
// of the EXISTING storage account that holds the Bastion audit logs (read-only on the logs
// themselves); wires Event Grid (system topic + BlobCreated subscription with dead-lettering)
// from that account to the blob trigger; optionally turns on the Bastion host's diagnostic
// setting and grants read access to it.
//
// The Event Grid subscription needs the `blobs_extension` system key, which exists only once the
// code is deployed, so it is created on a second provision that the `postdeploy` hook in
// azure.yaml runs (EVENTGRID_SUBSCRIPTION_ENABLED=true). The Entra ID app registration is made
// (or checked, if you bring your own) by the `preprovision` hook: Bicep alone cannot create one.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used for the resource group name and a unique token.')
param environmentName string

@minLength(1)
@description('Region for the new resources. Use the region of the logs storage account and Bastion host.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the resource group to create. Defaults to rg-<environmentName>.')
param resourceGroupName string = ''

@minLength(3)
@maxLength(24)
@description('Name of the EXISTING storage account Azure Monitor writes the Bastion audit logs to.')
param logsStorageAccountName string

@minLength(1)
@description('Resource group of the existing logs storage account.')
param logsStorageResourceGroupName string

@description('Optional: name of the Bastion host whose BastionAuditLogs should be archived to the logs account.')
param bastionHostName string = ''

@description('Resource group of the Bastion host. Defaults to the logs account resource group.')
param bastionResourceGroupName string = ''

@description('Active response: end the Bastion sessions a CRITICAL compromise opened. off (the default), dry-run (say which sessions it would end; may list sessions only) or on (may list and end them). The custom role it needs is granted on the Bastion host only, and only when this is not off.')
@allowed(['off', 'dry-run', 'on'])
param activeResponse string = 'off'

@description('Accounts whose sessions active response never ends (comma-separated names or e-mails).')
param breakGlassAccounts string = ''

@description('Subscriptions whose every Bastion host the health timer checks is covered (its audit log reaches this app); the app gets Reader on each, and only on those. Empty: no coverage check.')
param coverageSubscriptions array = []

@description('Name of an Event Grid system topic that already exists for the logs account (an account can have only one). Leave empty to create one.')
param existingSystemTopicName string = ''

@description('Resource group of that existing system topic. Defaults to the logs account resource group.')
param existingSystemTopicResourceGroupName string = ''

@description('Create the Event Grid subscription. Set to true by the postdeploy hook, after the code (and so the blobs_extension key) exists.')
param eventGridSubscriptionEnabled bool = false

@minLength(36)
@maxLength(36)
@description('Client (application) ID of the Entra ID app registration for the API and report (API_CLIENT_ID; the preprovision hook creates one if unset).')
param apiClientId string

@minLength(1)
@description('App role a caller needs to read the audit data (API_READER_ROLE).')
param apiReaderRole string = 'BastionAudit.Read'

@secure()
@description('Generic JSON webhook for alerts (optional). Stored in Key Vault.')
param alertWebhookUrl string = ''

@secure()
@description('Microsoft Teams incoming webhook for alerts (optional). Stored in Key Vault.')
param alertTeamsWebhookUrl string = ''

@secure()
@description('Slack incoming webhook for alerts (optional). Stored in Key Vault.')
param alertSlackWebhookUrl string = ''

@description('Comma-separated IPs/CIDRs whose failures never raise alerts (IP_ALLOWLIST).')
param ipAllowlist string = ''

@description('Comma-separated CIDRs of your own egress (office NAT, VPN pools): a sign-in after failures from them is not from a new network (TRUSTED_NETWORKS).')
param trustedNetworks string = ''

@description('Put the app in a virtual network and reach its host storage only through private endpoints (the storage firewall then denies public access). Needs outbound internet from the subnet (docs/deploy.md).')
param privateNetworking bool = false

@description('Key Vault purge protection (recommended; a purged-protected vault blocks reusing its name for 7 days after `azd down`).')
param keyVaultPurgeProtection bool = true

@description('Maximum number of Flex Consumption instances (40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
// 32 characters: the whole name is also the Functions host ID (AzureFunctionsWebHost__hostid).
var functionAppName = 'func-bastion-audit-${resourceToken}'
var hostId = take(functionAppName, 32)
var hostStorageAccountName = take('stba${resourceToken}', 24)
var keyVaultName = 'kv-ba-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var deadLetterContainerName = 'eventgrid-deadletter'
var systemTopicName = 'evgt-bastion-logs-${resourceToken}'
var logsContainer = 'insights-logs-bastionauditlogs'
// Python for Flex Consumption: 3.12 is the newest version azure-functions 1.x supports
// (Requires-Python <3.13); 3.13 needs azure-functions 2.x and the azure-functions-runtime worker.
var pythonVersion = '3.12'

// The app's tables: setting name -> table name (the defaults of shared/core/settings.py). The table
// resources, their per-table role assignments and the app settings all come from this one
// variable: adding a table is one line here.
var logsTables = {
  EVENTS_TABLE: 'BastionAuditEvents'
  INDEX_TABLE: 'BastionAuditIndex'
  STATE_TABLE: 'BastionAuditState'
  ALERTS_TABLE: 'BastionAuditAlerts'
}
var quarantineContainer = 'bastion-audit-quarantine'
var alertQueue = 'bastion-alerts'

// How far back the sweep re-reads blobs. Event Grid keeps retrying an undelivered event for the
// same time before dead-lettering it (eventSubscription below).
var sweepLookbackHours = 3

// Webhook URLs are secrets (the path is the credential): they go to Key Vault and the app
// settings hold Key Vault references. An empty URL stays an empty setting.
var storedWebhookSecrets = union(
  empty(alertWebhookUrl) ? {} : { 'alert-webhook-url': alertWebhookUrl },
  empty(alertTeamsWebhookUrl) ? {} : { 'alert-teams-webhook-url': alertTeamsWebhookUrl },
  empty(alertSlackWebhookUrl) ? {} : { 'alert-slack-webhook-url': alertSlackWebhookUrl }
)

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-bastion-audit-${resourceToken}'
    applicationInsightsName: 'appi-bastion-audit-${resourceToken}'
  }
}

module hostStorage 'app/host-storage.bicep' = {
  name: 'hostStorage'
  scope: rg
  params: {
    location: location
    tags: tags
    name: hostStorageAccountName
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    hostId: hostId
    privateNetworking: privateNetworking
  }
}

module hostNetwork 'app/host-network.bicep' = if (privateNetworking) {
  name: 'hostNetwork'
  scope: rg
  params: {
    location: location
    tags: tags
    name: 'vnet-bastion-audit-${resourceToken}'
    storageAccountId: hostStorage.outputs.id
  }
}

module functionApp 'app/function-app.bicep' = {
  name: 'functionApp'
  scope: rg
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: 'plan-bastion-audit-${resourceToken}'
    serviceName: 'bastion-audit'
    deploymentContainerUrl: '${hostStorage.outputs.primaryBlobEndpoint}${deploymentContainerName}'
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    pythonVersion: pythonVersion
    apiClientId: apiClientId
    virtualNetworkSubnetId: privateNetworking ? hostNetwork.outputs.integrationSubnetId : ''
  }
}

// The logs account must exist already (it is where the Bastion diagnostic setting writes).
// This module runs in ITS resource group: our containers, tables and queues there, and roles
// scoped to each of them.
module logsStorage 'app/logs-storage.bicep' = {
  name: 'logsStorage'
  scope: resourceGroup(logsStorageResourceGroupName)
  params: {
    storageAccountName: logsStorageAccountName
    principalId: functionApp.outputs.principalId
    logsContainerName: logsContainer
    tables: logsTables
    alertQueueName: alertQueue
    quarantineContainerName: quarantineContainer
  }
}

var existingTopicResourceGroupName = empty(existingSystemTopicResourceGroupName) ? logsStorageResourceGroupName : existingSystemTopicResourceGroupName
var topicResourceGroupName = empty(existingSystemTopicName) ? rg.name : existingTopicResourceGroupName

// Creates the system topic (with a managed identity) or reads the existing one.
module systemTopic 'app/eventgrid-topic.bicep' = {
  name: 'eventGridSystemTopic'
  scope: resourceGroup(topicResourceGroupName)
  params: {
    name: systemTopicName
    existingName: existingSystemTopicName
    location: logsStorage.outputs.location
    tags: tags
    sourceId: logsStorage.outputs.id
  }
}

// Roles on the app's own storage account, on Application Insights, and Event Grid's
// dead-letter writer.
module hostAccess 'app/host-access.bicep' = {
  name: 'hostAccess'
  scope: rg
  params: {
    storageAccountName: hostStorage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: functionApp.outputs.principalId
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    hostContainers: hostStorage.outputs.hostContainers
    hostQueues: hostStorage.outputs.hostQueues
    eventGridPrincipalId: systemTopic.outputs.principalId
  }
}

module keyVault 'app/key-vault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    location: location
    tags: tags
    name: keyVaultName
    principalId: functionApp.outputs.principalId
    secrets: storedWebhookSecrets
    purgeProtection: keyVaultPurgeProtection
  }
}

// Every setting shared/core/settings.py reads (DEFAULTS), with the values Azure needs, plus the
// settings of the API's sign-in (API_AUTH, API_READER_ROLE).
// Timer schedules are %SWEEP_SCHEDULE% / %ALERT_RETRY_SCHEDULE% expressions: they MUST be set.
var bastionRgName = empty(bastionResourceGroupName) ? logsStorageResourceGroupName : bastionResourceGroupName

var bastionAuditSettings = union(logsTables, {
  BLOB_TRIGGER_SOURCE: 'EventGrid' // Flex Consumption supports only the Event Grid source.
  QUARANTINE_CONTAINER: quarantineContainer
  ALERT_QUEUE: alertQueue
  ALERT_WEBHOOK_URL: empty(alertWebhookUrl) ? '' : '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-webhook-url)'
  ALERT_TEAMS_WEBHOOK_URL: empty(alertTeamsWebhookUrl) ? '' : '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-teams-webhook-url)'
  ALERT_SLACK_WEBHOOK_URL: empty(alertSlackWebhookUrl) ? '' : '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=alert-slack-webhook-url)'
  WEBHOOK_TIMEOUT_SECONDS: '10'
  WEBHOOK_MAX_ATTEMPTS: '4'
  FAILURE_THRESHOLD: '5'
  FAILURE_WINDOW_MINUTES: '15'
  SPRAY_USER_THRESHOLD: '5'
  SPRAY_WINDOW_MINUTES: '20'
  INCIDENT_QUIET_MINUTES: '60'
  INCIDENT_MAX_HOURS: '24'
  NOTIFY_INTERVAL_MINUTES: '60'
  IP_ALLOWLIST: ipAllowlist
  TRUSTED_NETWORKS: trustedNetworks
  // Every minute in Azure: Event Grid fires when the hourly blob is created, not on appends.
  SWEEP_SCHEDULE: '0 * * * * *'
  SWEEP_LOOKBACK_HOURS: string(sweepLookbackHours)
  ALERT_RETRY_SCHEDULE: '0 */5 * * * *'
  ALERT_RETRY_HOURS: '72'
  MAX_RECORD_BYTES: '32768'
  READ_CHUNK_BYTES: '4194304'
  WRITE_CONCURRENCY: '4'
  SLOW_FAILURE_THRESHOLD: '10'
  SLOW_WINDOW_MINUTES: '180'
  SLOW_IP_THRESHOLD: '8'
  PERSON_RETRY_FAILURES: '10'
  RULE_OVERRIDES: ''
  BASELINE_DAYS: '7'
  SILENCE_HOURS: '3'
  HEALTH_SCHEDULE: '0 */15 * * * *'
  // The health timer checks this host's diagnostic setting (Monitoring Reader on it, below).
  BASTION_RESOURCE_IDS: empty(bastionHostName) ? '' : resourceId(bastionRgName, 'Microsoft.Network/bastionHosts', bastionHostName)
  // The health timer lists these subscriptions' Bastion hosts and proves each one is covered
  // (Reader on each, below).
  COVERAGE_SUBSCRIPTIONS: join(coverageSubscriptions, ',')
  // Active response (off unless asked): what it may do is granted below, on the host only.
  ACTIVE_RESPONSE: activeResponse
  ACTIVE_RESPONSE_SEVERITIES: 'critical'
  BREAK_GLASS_ACCOUNTS: breakGlassAccounts
  // The sessions view: open past this many hours, and the working day (UTC) for out-of-hours.
  SESSION_OPEN_LIMIT_HOURS: '12'
  WORKING_HOURS: '07-19'
  LOGS_STORAGE_ACCOUNT_ID: resourceId(logsStorageResourceGroupName, 'Microsoft.Storage/storageAccounts', logsStorageAccountName)
  ARM_ENDPOINT: environment().resourceManager
  DIGEST_SCHEDULE: '0 0 6 * * *'
  DIGEST_WEBHOOKS: 'false'
  API_AUTH: 'entra'
  API_READER_ROLE: apiReaderRole
  // Erasure over HTTP (POST /api/erase) needs this app role besides sign-in.
  API_ERASER_ROLE: 'BastionAudit.Erase'
  // Days kept (0: for ever); the retention timer deletes older days once a day.
  RETENTION_DAYS: '180'
  ALERT_RETENTION_DAYS: '400'
  QUARANTINE_RETENTION_DAYS: '30'
  RETENTION_SCHEDULE: '0 30 2 * * *'
})

// Identity-based connection to the logs account (no keys): used by the Functions host for the
// blob trigger (blob, plus the queue for poison messages) and by our code through
// DefaultAzureCredential.
var logsBlobServiceUri = 'https://${logsStorageAccountName}.blob.${environment().suffixes.storage}'
var logsQueueServiceUri = 'https://${logsStorageAccountName}.queue.${environment().suffixes.storage}'
var logsTableServiceUri = 'https://${logsStorageAccountName}.table.${environment().suffixes.storage}'
var connectionSettings = {
  BastionLogsStorage__blobServiceUri: logsBlobServiceUri
  BastionLogsStorage__queueServiceUri: logsQueueServiceUri
  BastionLogsStorage__tableServiceUri: logsTableServiceUri
  BastionLogsStorage__credential: 'managedidentity'
}

// Written after the roles the settings depend on (Key Vault references, host storage).
module appSettings 'app/app-settings.bicep' = {
  name: 'appSettings'
  scope: rg
  params: {
    functionAppName: functionApp.outputs.name
    storageAccountName: hostStorage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    hostId: hostId
    appSettings: union(bastionAuditSettings, connectionSettings)
  }
  dependsOn: [
    keyVault
    hostAccess
    logsStorage
  ]
}

module eventSubscription 'app/eventgrid-subscription.bicep' = if (eventGridSubscriptionEnabled) {
  name: 'eventGridSubscription'
  scope: resourceGroup(topicResourceGroupName)
  params: {
    systemTopicName: systemTopic.outputs.name
    functionAppResourceGroupName: rg.name
    functionAppName: functionApp.outputs.name
    functionAppHostName: functionApp.outputs.defaultHostName
    functionName: 'ingest_blob'
    containerName: logsContainer
    deadLetterStorageAccountId: hostStorage.outputs.id
    deadLetterContainerName: deadLetterContainerName
    eventTimeToLiveInMinutes: sweepLookbackHours * 60
  }
  dependsOn: [
    hostAccess
    appSettings
  ]
}

module bastionDiagnostics 'app/bastion-diagnostics.bicep' = if (!empty(bastionHostName)) {
  name: 'bastionDiagnostics'
  scope: resourceGroup(bastionRgName)
  params: {
    bastionHostName: bastionHostName
    storageAccountId: logsStorage.outputs.id
    principalId: functionApp.outputs.principalId
  }
}

// Active response's custom role on the Bastion host, only when it is asked for (issue 27).
module bastionResponse 'app/bastion-response.bicep' = if (activeResponse != 'off' && !empty(bastionHostName)) {
  name: 'bastionResponse'
  scope: resourceGroup(bastionRgName)
  params: {
    bastionHostName: bastionHostName
    principalId: functionApp.outputs.principalId
    mode: activeResponse
  }
}

// Reader on the covered subscriptions only, when there are any (issue 27, part 2).
module coverageReaders 'app/subscription-reader.bicep' = [for sub in coverageSubscriptions: {
  name: 'coverageReader-${sub}'
  scope: subscription(sub)
  params: {
    principalId: functionApp.outputs.principalId
  }
}]

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_BASTION_AUDIT_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output BASTION_LOGS_STORAGE_ACCOUNT string = logsStorageAccountName
output BASTION_LOGS_RESOURCE_GROUP string = logsStorageResourceGroupName
output EVENTGRID_SYSTEM_TOPIC_NAME string = systemTopic.outputs.name
output EVENTGRID_DEADLETTER_CONTAINER string = deadLetterContainerName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output API_CLIENT_ID string = apiClientId
output API_READER_ROLE string = apiReaderRole
