// Roles on the app's own storage account, on Application Insights and for Event Grid's
// dead-lettering. Every storage role is scoped to one container or queue, never to the account
// or one of its services.
//
// App identity (AzureWebJobsStorage, "Connecting to host storage with an identity",
// MicrosoftDocs/azure-docs articles/azure-functions/functions-reference.md):
// - Storage Blob Data Owner on azure-webjobs-hosts and azure-webjobs-secrets: host locks, timer
//   schedule state, host ID check, function keys (the role the docs name, narrowed to the two
//   containers the host uses);
// - Storage Blob Data Contributor on the deployment container: Flex Consumption reads (and the
//   deployment service writes) the app package with the app's identity;
// - Storage Queue Data Contributor on azure-webjobs-blobtrigger-<hostId>: the Event Grid-source
//   blob trigger enqueues every event there and processes it from there (receive, update,
//   delete), and on webjobs-blobtrigger-poison, the host account's fallback poison queue;
// - Monitoring Metrics Publisher on Application Insights (local auth is disabled).
// Event Grid system topic identity:
// - Storage Blob Data Contributor on the dead-letter container only.
param storageAccountName string
param applicationInsightsName string
param principalId string
param deploymentContainerName string
param deadLetterContainerName string
param hostContainers array
param hostQueues array

@description('Principal ID of the Event Grid system topic\'s managed identity (dead-lettering).')
param eventGridPrincipalId string

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource queueServices 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobServices
  name: deploymentContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobServices
  name: deadLetterContainerName
}

resource hostContainerResources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for container in hostContainers: {
    parent: blobServices
    name: container
  }
]

resource hostQueueResources 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queue in hostQueues: {
    parent: queueServices
    name: queue
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource hostContainerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (container, i) in hostContainers: {
    name: guid(hostContainerResources[i].id, principalId, storageBlobDataOwner)
    scope: hostContainerResources[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource deploymentRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, principalId, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hostQueueRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queue, i) in hostQueues: {
    name: guid(hostQueueResources[i].id, principalId, storageQueueDataContributor)
    scope: hostQueueResources[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
