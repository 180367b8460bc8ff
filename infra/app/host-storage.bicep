// The function app's own storage account: AzureWebJobsStorage (host locks, timer state, keys,
// the blob trigger's internal queue), the Flex Consumption deployment container and the Event
// Grid dead-letter container. Shared keys are off; every data role on it is scoped to one of the
// containers or queues declared here (host-access.bicep).
//
// Network: Flex Consumption reaches its host storage either over the public endpoint or, with
// virtual network integration, through private endpoints; it is not a "trusted Azure service"
// for the storage firewall. So without `privateNetworking` the public endpoint must stay open
// (identity-only: no shared keys, no anonymous blobs, TLS 1.2). With it, the firewall denies
// everything except the private endpoints (host-network.bicep) and trusted Azure services, which
// Event Grid needs to write dead letters with its managed identity.
param location string
param tags object = {}
param name string
param deploymentContainerName string
param deadLetterContainerName string

@description('Host ID of the function app (AzureFunctionsWebHost__hostid); names the blob trigger\'s internal queue.')
param hostId string

@description('Deny public network access except trusted Azure services; the app then reaches the account through private endpoints.')
param privateNetworking bool = false

// Containers and queues the Functions host uses in AzureWebJobsStorage, declared so that roles
// can be scoped to them (azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.Storage.*:
// HostContainerNames.Hosts, HostQueueNames; azure-functions-host: secrets in
// azure-webjobs-secrets).
var hostContainers = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]
// The Event Grid-source blob trigger enqueues each event here before running the function;
// webjobs-blobtrigger-poison is the host account's fallback poison queue.
var hostQueues = [
  'azure-webjobs-blobtrigger-${hostId}'
  'webjobs-blobtrigger-poison'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
    }
  }
}

// Child resources are declared with `parent:` (not nested): the tests' Bicep parser keeps only
// one nested child per parent.
resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queueServices 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource hostContainerResources 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in hostContainers: {
    parent: blobServices
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource hostQueueResources 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in hostQueues: {
    parent: queueServices
    name: queue
  }
]

output name string = storage.name
output id string = storage.id
output primaryBlobEndpoint string = storage.properties.primaryEndpoints.blob
output hostContainers array = hostContainers
output hostQueues array = hostQueues
