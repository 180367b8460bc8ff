// Deployed into the resource group of the EXISTING logs storage account (the one the Bastion
// diagnostic setting writes to). Grants the app's identity only the data roles it needs there
// and declares the tables, queue and quarantine container the app writes. Nothing here is
// removed by `azd down`: the audit data outlives the app.
param storageAccountName string
param principalId string
param tables array
param queues array
param containers array

// Reads insights-logs-bastionauditlogs, writes bastion-audit-quarantine; the blob trigger host
// needs it too.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// BastionAuditEvents/Index/State/Alerts.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// The bastion-alerts queue, and the blob trigger's webjobs-blobtrigger-poison queue.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'

resource logs 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: logs
  name: 'default'
}

resource tableServices 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: logs
  name: 'default'
}

resource queueServices 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: logs
  name: 'default'
}

resource roles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in [storageBlobDataContributor, storageTableDataContributor, storageQueueDataContributor]: {
    name: guid(logs.id, principalId, roleId)
    scope: logs
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource tableResources 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableServices
    name: table
  }
]

resource queueResources 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueServices
    name: queue
  }
]

resource containerResources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in containers: {
    parent: blobServices
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

output id string = logs.id
output location string = logs.location
