// BlobCreated events for the Bastion logs container -> the blob trigger's Event Grid endpoint.
// The endpoint key is the host's `blobs_extension` system key, read with listKeys at deployment
// time (it exists only after code with an Event Grid-source blob trigger has been deployed).
// Event Grid validates the webhook when the subscription is created.
//
// Delivery: the endpoint answers 202 once the event is queued in the host's storage
// (azure-webjobs-blobtrigger-<hostId>); from there the host retries and poisons. So Event Grid
// retries only while the app itself is unreachable. An event it cannot deliver within the
// time-to-live is dead-lettered (never dropped) as a JSON blob in the dead-letter container of
// the app's own storage account, written with the topic's managed identity.
// The time-to-live equals the sweep's look-back (SWEEP_LOOKBACK_HOURS): when Event Grid gives
// up on an event, its blob is still inside the window the sweep re-reads every SWEEP_SCHEDULE,
// so a sweep that runs catches it; the dead letter is the record that it had to (docs/deploy.md).
param systemTopicName string
param functionAppResourceGroupName string
param functionAppName string
param functionAppHostName string
@description('Name of the blob-triggered function (function_app.py).')
param functionName string
param containerName string

@description('Resource ID of the storage account that receives dead-lettered events.')
param deadLetterStorageAccountId string
param deadLetterContainerName string

@description('How long Event Grid retries an undelivered event before dead-lettering it.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int

@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

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
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = eventSubscription.name
