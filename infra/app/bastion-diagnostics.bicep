// Optional: archive the Bastion host's audit logs (category BastionAuditLogs) to the logs
// storage account. Deployed into the Bastion host's resource group. The account must be in the
// same region as the Bastion host; Premium accounts are not supported.
//
// Also grants the app's identity Monitoring Reader on the Bastion host only: read-only, it
// includes Microsoft.Insights/diagnosticSettings/read, so a timer can check through ARM that the
// diagnostic setting still exists and still points at the logs account (issue 16: a removed
// setting must raise an alert, not look like a quiet day). Role ID: MicrosoftDocs/azure-docs,
// built-in-roles (Monitoring Reader, "Can read all monitoring data").
param bastionHostName string
param storageAccountId string
param settingName string = 'bastion-audit-to-storage'

@description('Principal ID of the function app\'s identity (read-only access to the Bastion host).')
param principalId string

var monitoringReader = '43d0d8ad-25c7-4714-9337-8ba259a9fe05'

resource bastion 'Microsoft.Network/bastionHosts@2024-05-01' existing = {
  name: bastionHostName
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: bastion
  properties: {
    storageAccountId: storageAccountId
    logs: [
      {
        category: 'BastionAuditLogs'
        enabled: true
      }
    ]
  }
}

resource diagnosticsReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(bastion.id, principalId, monitoringReader)
  scope: bastion
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output diagnosticSettingName string = diagnostics.name
