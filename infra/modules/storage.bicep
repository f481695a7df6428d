// The Function app's storage account: the host's AzureWebJobsStorage (blobs
// for timer schedules, locks and Event Hubs checkpoints; queues), kvwatch's
// tables (state, findings, dead letters, outbox) and the Flex Consumption
// deployment container. Identity only: Shared Key is off, so no connection
// string or account key exists anywhere; the app's identity gets data roles in
// rbac-app.bicep and Flex's deployment storage authenticates with it too.

param location string
param tags object

@maxLength(24)
param name string

param deploymentContainerName string

@description('Firewall default action: Allow unless the app reaches storage through a virtual network.')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string

@description('IPv4 addresses or CIDR ranges admitted when networkDefaultAction is Deny.')
param allowedIpRanges string[]

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    // The Flex platform (deployment package, host storage) and the app
    // reach this account over its public endpoint unless the app is
    // integrated in a virtual network with private endpoints (see
    // docs/deploy.md, "Private endpoints"): Deny would stop the app.
    networkAcls: {
      defaultAction: networkDefaultAction
      bypass: 'AzureServices'
      ipRules: [
        for ip in allowedIpRanges: {
          value: ip
          action: 'Allow'
        }
      ]
      virtualNetworkRules: []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output tableEndpoint string = storage.properties.primaryEndpoints.table
