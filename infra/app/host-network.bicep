// Optional (privateNetworking): a virtual network for the function app's outbound traffic, with
// private endpoints for the blob and queue services of its host storage account, so that the
// account's firewall can deny public access. Flex Consumption integrates with a subnet delegated
// to Microsoft.App/environments (MicrosoftDocs/azure-docs flex-consumption-plan.md,
// "Considerations"; the Microsoft.App resource provider must be registered).
//
// Outbound internet access (Teams/Slack webhooks, the logs account's public endpoint, Key Vault,
// Entra ID, Application Insights) then leaves through this virtual network: if your policy gives
// new subnets no default outbound access, attach a NAT gateway to the integration subnet.
param location string
param tags object = {}
param name string
param storageAccountId string
param addressPrefix string = '10.40.0.0/16'
param integrationSubnetPrefix string = '10.40.1.0/24'
param privateEndpointSubnetPrefix string = '10.40.2.0/24'

// Host storage services the app uses (no tables: the host needs none, see host-access.bicep).
var storageServices = [
  'blob'
  'queue'
]

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: integrationSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource dnsZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [
  for service in storageServices: {
    name: 'privatelink.${service}.${environment().suffixes.storage}'
    location: 'global'
    tags: tags
  }
]

resource dnsLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [
  for (service, i) in storageServices: {
    parent: dnsZones[i]
    name: '${name}-link'
    location: 'global'
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: vnet.id
      }
    }
  }
]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [
  for service in storageServices: {
    name: 'pe-${last(split(storageAccountId, '/'))}-${service}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: '${vnet.id}/subnets/private-endpoints'
      }
      privateLinkServiceConnections: [
        {
          name: service
          properties: {
            privateLinkServiceId: storageAccountId
            groupIds: [
              service
            ]
          }
        }
      ]
    }
  }
]

resource dnsGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [
  for (service, i) in storageServices: {
    parent: endpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: service
          properties: {
            privateDnsZoneId: dnsZones[i].id
          }
        }
      ]
    }
  }
]

output integrationSubnetId string = '${vnet.id}/subnets/app'
