// Key Vault for the alert webhook URLs (their path is the credential). Azure RBAC only (no access
// policies); the app's identity gets Key Vault Secrets User and reads them through Key Vault
// references in its app settings (`@Microsoft.KeyVault(VaultName=...;SecretName=...)`, no
// version: the platform picks up a rotated secret within 24 hours, or at once on a restart).
//
// Network: Flex Consumption cannot resolve Key Vault references when the vault is network
// restricted, even with virtual network integration (MicrosoftDocs/azure-docs
// articles/azure-functions/flex-consumption-plan.md, "Considerations"), so the vault keeps its
// public endpoint; RBAC is what protects it. Secrets are written through ARM (control plane) by
// whoever runs `azd provision`; nobody gets a data-plane role here except the app.
param location string
param tags object = {}
param name string
param principalId string

@description('Secret name -> value (main.bicep passes only the non-empty ones).')
@secure()
param secrets object

@description('Keep deleted secrets and the vault recoverable and unpurgeable for the retention period.')
param purgeProtection bool = true

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secretResources 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for secret in items(secrets): {
    parent: vault
    name: secret.key
    properties: {
      value: secret.value
      contentType: 'text/uri'
    }
  }
]

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output id string = vault.id
