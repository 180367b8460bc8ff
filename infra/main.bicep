// bastion-audit: everything `azd up` needs in Azure.
//
// Creates a resource group with a Flex Consumption function app (Python 3.11, system-assigned
// identity), its own storage account, Application Insights and Log Analytics; grants the app's
// identity data-plane roles on the EXISTING storage account that holds the Bastion audit logs;
// wires Event Grid (system topic + BlobCreated subscription) from that account to the blob
// trigger; optionally turns on the Bastion host's diagnostic setting.
//
// The Event Grid subscription needs the `blobs_extension` system key, which exists only once the
// code is deployed, so it is created on a second provision that the `postdeploy` hook in
// azure.yaml runs (EVENTGRID_SUBSCRIPTION_ENABLED=true).
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

@description('Name of an Event Grid system topic that already exists for the logs account (an account can have only one). Leave empty to create one.')
param existingSystemTopicName string = ''

@description('Resource group of that existing system topic. Defaults to the logs account resource group.')
param existingSystemTopicResourceGroupName string = ''

@description('Create the Event Grid subscription. Set to true by the postdeploy hook, after the code (and so the blobs_extension key) exists.')
param eventGridSubscriptionEnabled bool = false

@secure()
@description('Generic JSON webhook for alerts (optional).')
param alertWebhookUrl string = ''

@secure()
@description('Microsoft Teams incoming webhook for alerts (optional).')
param alertTeamsWebhookUrl string = ''

@secure()
@description('Slack incoming webhook for alerts (optional).')
param alertSlackWebhookUrl string = ''

@description('Comma-separated IPs/CIDRs whose failures never raise alerts (IP_ALLOWLIST).')
param ipAllowlist string = ''

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
var functionAppName = 'func-bastion-audit-${resourceToken}'
var hostStorageAccountName = take('stba${resourceToken}', 24)
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var systemTopicName = 'evgt-bastion-logs-${resourceToken}'
var logsContainer = 'insights-logs-bastionauditlogs'

// Table, queue and container names: the defaults of shared/settings.py (DEFAULTS).
var eventsTable = 'BastionAuditEvents'
var indexTable = 'BastionAuditIndex'
var stateTable = 'BastionAuditState'
var alertsTable = 'BastionAuditAlerts'
var quarantineContainer = 'bastion-audit-quarantine'
var alertQueue = 'bastion-alerts'

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
  }
}

// The logs account must exist already (it is where the Bastion diagnostic setting writes).
// This module runs in ITS resource group: role assignments, our tables/queue/container.
module logsStorage 'app/logs-storage.bicep' = {
  name: 'logsStorage'
  scope: resourceGroup(logsStorageResourceGroupName)
  params: {
    storageAccountName: logsStorageAccountName
    principalId: functionApp.outputs.principalId
    tables: [
      eventsTable
      indexTable
      stateTable
      alertsTable
    ]
    queues: [
      alertQueue
    ]
    containers: [
      quarantineContainer
    ]
  }
}

// Every setting shared/settings.py reads (DEFAULTS), with the values Azure needs.
// Timer schedules are %SWEEP_SCHEDULE% / %ALERT_RETRY_SCHEDULE% expressions: they MUST be set.
var bastionAuditSettings = {
  BLOB_TRIGGER_SOURCE: 'EventGrid' // Flex Consumption supports only the Event Grid source.
  EVENTS_TABLE: eventsTable
  INDEX_TABLE: indexTable
  STATE_TABLE: stateTable
  ALERTS_TABLE: alertsTable
  QUARANTINE_CONTAINER: quarantineContainer
  ALERT_QUEUE: alertQueue
  ALERT_WEBHOOK_URL: alertWebhookUrl
  ALERT_TEAMS_WEBHOOK_URL: alertTeamsWebhookUrl
  ALERT_SLACK_WEBHOOK_URL: alertSlackWebhookUrl
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
  SWEEP_SCHEDULE: '0 * * * * *'
  SWEEP_LOOKBACK_HOURS: '3'
  ALERT_RETRY_SCHEDULE: '0 */5 * * * *'
  MAX_RECORD_BYTES: '32768'
  READ_CHUNK_BYTES: '4194304'
  WRITE_CONCURRENCY: '4'
}

// Identity-based connection to the logs account (no keys): used by the Functions host for the
// blob trigger (blob + queue for poison messages) and by our code through DefaultAzureCredential.
var logsBlobServiceUri = 'https://${logsStorageAccountName}.blob.${environment().suffixes.storage}'
var logsQueueServiceUri = 'https://${logsStorageAccountName}.queue.${environment().suffixes.storage}'
var logsTableServiceUri = 'https://${logsStorageAccountName}.table.${environment().suffixes.storage}'
var connectionSettings = {
  BastionLogsStorage__blobServiceUri: logsBlobServiceUri
  BastionLogsStorage__queueServiceUri: logsQueueServiceUri
  BastionLogsStorage__tableServiceUri: logsTableServiceUri
  BastionLogsStorage__credential: 'managedidentity'
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
    storageAccountName: hostStorage.outputs.name
    deploymentContainerUrl: '${hostStorage.outputs.primaryBlobEndpoint}${deploymentContainerName}'
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: union(bastionAuditSettings, connectionSettings)
  }
}

// Roles on the app's own storage account and on Application Insights.
module hostAccess 'app/host-access.bicep' = {
  name: 'hostAccess'
  scope: rg
  params: {
    storageAccountName: hostStorage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: functionApp.outputs.principalId
  }
}

var existingTopicResourceGroupName = empty(existingSystemTopicResourceGroupName) ? logsStorageResourceGroupName : existingSystemTopicResourceGroupName
var topicResourceGroupName = empty(existingSystemTopicName) ? rg.name : existingTopicResourceGroupName

module systemTopic 'app/eventgrid-topic.bicep' = if (empty(existingSystemTopicName)) {
  name: 'eventGridSystemTopic'
  scope: rg
  params: {
    name: systemTopicName
    location: logsStorage.outputs.location
    tags: tags
    sourceId: logsStorage.outputs.id
  }
}

module eventSubscription 'app/eventgrid-subscription.bicep' = if (eventGridSubscriptionEnabled) {
  name: 'eventGridSubscription'
  scope: resourceGroup(topicResourceGroupName)
  params: {
    systemTopicName: empty(existingSystemTopicName) ? systemTopicName : existingSystemTopicName
    functionAppResourceGroupName: rg.name
    functionAppName: functionApp.outputs.name
    functionAppHostName: functionApp.outputs.defaultHostName
    functionName: 'ingest_blob'
    containerName: logsContainer
  }
  dependsOn: [
    systemTopic
    logsStorage
    hostAccess
  ]
}

module bastionDiagnostics 'app/bastion-diagnostics.bicep' = if (!empty(bastionHostName)) {
  name: 'bastionDiagnostics'
  scope: resourceGroup(empty(bastionResourceGroupName) ? logsStorageResourceGroupName : bastionResourceGroupName)
  params: {
    bastionHostName: bastionHostName
    storageAccountId: logsStorage.outputs.id
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_BASTION_AUDIT_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_HOST_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name
output BASTION_LOGS_STORAGE_ACCOUNT string = logsStorageAccountName
output BASTION_LOGS_RESOURCE_GROUP string = logsStorageResourceGroupName
output EVENTGRID_SYSTEM_TOPIC_NAME string = empty(existingSystemTopicName) ? systemTopicName : existingSystemTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
