// The function app's app settings, written after the Key Vault role assignment so that the
// platform can resolve the Key Vault references the first time it reads them.
// No keys or connection strings: AzureWebJobsStorage uses the app's identity; Application
// Insights uses Entra ID auth. Flex Consumption sets the runtime in functionAppConfig, so there
// is no FUNCTIONS_WORKER_RUNTIME or FUNCTIONS_EXTENSION_VERSION here (the platform rejects them).
param functionAppName string
param storageAccountName string
param applicationInsightsName string

@description('Host ID of the app; the blob trigger\'s internal queue is named after it (host-storage.bicep).')
param hostId string

@secure()
@description('App settings of the app itself (bastion-audit settings and connection groups).')
param appSettings object

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, {
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureFunctionsWebHost__hostid: hostId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    // App Service Authentication accepts tokens from this tenant only.
    WEBSITE_AUTH_AAD_ALLOWED_TENANTS: tenant().tenantId
  })
}
