// Deployed into the resource group of the EXISTING logs storage account (the one the Bastion
// diagnostic setting writes to). Declares what the app writes there and grants the app's
// identity data roles on exactly those containers, tables and queues. No role here is scoped to
// the account or to one of its services: the app can read the Bastion audit logs but cannot
// change or delete them, and it cannot touch any other `insights-logs-*` container.
// Nothing here is removed by `azd down`: the audit data outlives the app.
//
// Role IDs: Microsoft Learn, "Azure built-in roles" (MicrosoftDocs/azure-docs,
// articles/role-based-access-control/built-in-roles.md, Storage section).
param storageAccountName string
param principalId string

@description('Container Azure Monitor writes the Bastion audit logs to (read-only for the app).')
param logsContainerName string

@description('The app\'s tables: app setting name -> table name (one entry per table).')
param tables object

@description('Queue the app sends alerts to (send-only).')
param alertQueueName string

@description('Container the app writes unparseable records to.')
param quarantineContainerName string

@description('Poison queue of the blob trigger; the Functions host puts it in the trigger connection\'s account.')
param poisonQueueName string = 'webjobs-blobtrigger-poison'

// Read blobs and list the container: the blob trigger, the sweep and the backfill only read.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// Write quarantined records (PutBlob/PutBlockList) into the quarantine container only.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Upsert/query/delete entities in our own tables, one assignment per table.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Add messages only (no peek, receive, delete or queue management).
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

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

// Azure Monitor creates this container with the first records, which can be hours after the
// diagnostic setting exists. Declaring it here (an idempotent PUT, private) lets the read-only
// role assignment below be scoped to it on the first provision.
resource logsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: logsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource quarantineContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: quarantineContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableResources 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in items(tables): {
    parent: tableServices
    name: table.value
  }
]

resource alertQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueServices
  name: alertQueueName
}

// Created here so the host only ever needs to SEND to it: it creates the queue only when a send
// returns 404 QueueNotFound (StorageQueueExtensions.AddMessageAndCreateIfNotExistsAsync).
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueServices
  name: poisonQueueName
}

resource logsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logsContainer.id, principalId, storageBlobDataReader)
  scope: logsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource quarantineWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(quarantineContainer.id, principalId, storageBlobDataContributor)
  scope: quarantineContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (table, i) in items(tables): {
    name: guid(tableResources[i].id, principalId, storageTableDataContributor)
    scope: tableResources[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource alertSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(alertQueue.id, principalId, storageQueueDataMessageSender)
  scope: alertQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource poisonSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, principalId, storageQueueDataMessageSender)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = logs.id
output location string = logs.location
