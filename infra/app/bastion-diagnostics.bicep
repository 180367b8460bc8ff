// Optional: archive the Bastion host's audit logs (category BastionAuditLogs) to the logs
// storage account. Deployed into the Bastion host's resource group. The account must be in the
// same region as the Bastion host; Premium accounts are not supported.
param bastionHostName string
param storageAccountId string
param settingName string = 'bastion-audit-to-storage'

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
