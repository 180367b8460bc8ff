// Event Grid system topic for the logs storage account (must be in the account's region), with a
// system-assigned identity: the event subscription dead-letters with it (Storage Blob Data
// Contributor on the dead-letter container only, host-access.bicep).
// An account can have only one system topic. If it already has one, set `existingName`: the
// topic is then only read, and it must have a system-assigned identity already
// (`az eventgrid system-topic update --identity systemassigned`, see docs/deploy.md).
param name string
param location string
param tags object = {}
@description('Resource ID of the logs storage account.')
param sourceId string

@description('Name of a system topic that already exists in this resource group (empty: create `name`).')
param existingName string = ''

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (empty(existingName)) {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: sourceId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource existingTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = if (!empty(existingName)) {
  name: existingName
}

output name string = empty(existingName) ? topic.name : existingTopic.name
output principalId string = empty(existingName) ? topic.identity.principalId : existingTopic.identity.principalId
