// Event Grid system topic for the logs storage account (must be in the account's region).
param name string
param location string
param tags object = {}
@description('Resource ID of the logs storage account.')
param sourceId string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: sourceId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
