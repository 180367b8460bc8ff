// Optional (issue 27, part 2): Reader on one subscription, so the health timer can list its
// Bastion hosts (Microsoft.Network/bastionHosts/read) and ask each one's diagnostic settings
// (Microsoft.Insights/diagnosticSettings/read) to prove every host is covered. Deployed once per
// subscription named in `coverageSubscriptions`, and only then: read-only, no data plane. Role
// ID: MicrosoftDocs/azure-docs, built-in-roles (Reader, "View all resources").
targetScope = 'subscription'

@description('Principal ID of the function app\'s identity (read-only access to the subscription).')
param principalId string

var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

resource coverageReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
