// BlobCreated events for the Bastion logs container -> the blob trigger's Event Grid endpoint.
// The endpoint key is the host's `blobs_extension` system key, read with listKeys at deployment
// time (it exists only after code with an Event Grid-source blob trigger has been deployed).
// Event Grid validates the webhook when the subscription is created.
param systemTopicName string
param functionAppResourceGroupName string
param functionAppName string
param functionAppHostName string
@description('Name of the blob-triggered function (function_app.py).')
param functionName string
param containerName string

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

var hostKeysId = resourceId(
  subscription().subscriptionId,
  functionAppResourceGroupName,
  'Microsoft.Web/sites/host',
  functionAppName,
  'default'
)
var blobsExtensionKey = listKeys(hostKeysId, '2024-04-01').systemKeys.blobs_extension

resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'bastion-audit-${functionName}'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionAppHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${containerName}/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

output name string = eventSubscription.name
