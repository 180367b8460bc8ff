// Optional (issue 27, part 1): active response. A custom role with exactly the Bastion session
// actions active response uses, assignable in the Bastion host's resource group only, and
// assigned to the app's identity on the Bastion host only. In `dry-run` it lists sessions and
// cannot end them; in `on` it can do both. Deployed only when `activeResponse` is not `off`.
// Actions: Azure REST reference, Network, Bastion Hosts (getActiveSessions,
// disconnectActiveSessions); RBAC names as the resource provider operations list them.
param bastionHostName string

@description('Principal ID of the function app\'s identity.')
param principalId string

@allowed(['dry-run', 'on'])
param mode string

var listSessions = 'Microsoft.Network/bastionHosts/getactivesessions/action'
var endSessions = 'Microsoft.Network/bastionHosts/disconnectactivesessions/action'

resource bastion 'Microsoft.Network/bastionHosts@2024-05-01' existing = {
  name: bastionHostName
}

resource responderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'bastion-audit-session-responder', mode)
  properties: {
    roleName: 'Bastion Audit session responder (${mode}, ${uniqueString(resourceGroup().id)})'
    description: 'bastion-audit active response: list (and, when on, end) Bastion sessions.'
    type: 'CustomRole'
    permissions: [
      {
        actions: mode == 'on' ? [listSessions, endSessions] : [listSessions]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource responder 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(bastion.id, principalId, responderRole.name)
  scope: bastion
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', responderRole.name)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
