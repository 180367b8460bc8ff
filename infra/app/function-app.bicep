// Flex Consumption plan (FC1) + Python function app with a system-assigned identity, App Service
// Authentication (Microsoft Entra ID) in front of it, and basic-auth publishing turned off.
// The app settings are written by app-settings.bicep, after the roles they rely on exist.
param location string
param tags object = {}
param name string
param planName string
@description('azd service name (azure.yaml) this app hosts.')
param serviceName string
param deploymentContainerUrl string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

@description('Python version. 3.12: the newest Flex Consumption version that azure-functions 1.x (requirements.txt) supports; 3.13 needs azure-functions 2.x.')
@allowed([
  '3.12'
  '3.13'
])
param pythonVersion string = '3.12'

@description('Client (application) ID of the Entra ID app registration that represents the API.')
param apiClientId string

@description('Subnet (delegated to Microsoft.App/environments) for virtual network integration; empty for none.')
param virtualNetworkSubnetId string = ''

// Tokens are accepted from this tenant's v2.0 issuer; an app registration with
// api.requestedAccessTokenVersion = 2 (what the preprovision hook sets) issues only v2 tokens.
var openIdIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// No publishing with user/site credentials (FTP or the SCM/Kudu site): deployments use Entra
// ID (azd deploy signs in with your account).
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// App Service Authentication with Microsoft Entra ID. The platform validates the sign-in
// session or bearer token and passes the caller to the code in X-MS-CLIENT-PRINCIPAL (claims,
// including `roles`); callers cannot set that header themselves. Unauthenticated requests are
// let through on purpose (AllowAnonymous): the code answers them (302 to /.auth/login/aad for
// browsers, 401 for API calls, 403 without the reader role), and the Event Grid webhook
// (/runtime/webhooks/blobs, guarded by the blobs_extension key) must stay reachable.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
      runtimeVersion: '~1'
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
      redirectToProvider: 'azureActiveDirectory'
    }
    httpSettings: {
      requireHttps: true
      routes: {
        apiPrefix: '/.auth'
      }
      forwardProxy: {
        convention: 'NoProxy'
      }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: openIdIssuer
        }
        validation: {
          // v2 access tokens carry the client ID as audience, v1 tokens the App ID URI;
          // machine clients ask for api://<clientId>/.default.
          allowedAudiences: [
            'api://${apiClientId}'
            apiClientId
          ]
        }
        login: {
          disableWWWAuthenticate: false
        }
      }
    }
    login: {
      // The code needs only X-MS-CLIENT-PRINCIPAL; keeping no tokens means none to leak.
      tokenStore: {
        enabled: false
      }
      // post_login_redirect_uri may only point back to this app.
      allowedExternalRedirectUrls: []
      preserveUrlFragmentsForLogins: false
      cookieExpiration: {
        convention: 'FixedTime'
        timeToExpiration: '08:00:00'
      }
      nonce: {
        validateNonce: true
      }
    }
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
