// Optional archive of the audit logs in one region: a Standard (not premium)
// storage account in the vaults' own region, which diagnostic settings write
// PT1H.json append blobs to (`kvwatch replay` reads them).
//
// The two containers Azure Monitor writes (insights-logs-auditevent and
// insights-metrics-pt1m) are created here so that they carry a time-based
// immutability policy from the start. The policy allows protected append
// writes: Azure Monitor appends to each hour's blob, and without it archiving
// stops. The policy is left unlocked; lock it (az storage container
// immutability-policy lock) once you have checked it, knowing that a locked
// policy can be extended but never shortened or removed, then deploy with
// archiveImmutabilityLocked = true: the policy is no longer part of the
// deployment (a PUT on a locked policy fails).
//
// A lifecycle rule deletes blobs retentionDays after their last write
// (0: keep them). Immutability never outlasts retention (main.bicep caps it).

param location string
param tags object

@maxLength(24)
param name string

@description('Days after the last write before a blob is deleted; 0 keeps it.')
param retentionDays int

@description('Days a blob is protected from change and deletion.')
param immutabilityDays int

param allowSharedKeyAccess bool

@description('''The immutability policies were locked (az storage container immutability-policy lock): this
deployment leaves them alone. A locked policy can only be extended, and a PUT of it fails, so a redeploy that
touches it would fail.''')
param immutabilityLocked bool

@description('IPv4 addresses or CIDR ranges admitted through the firewall (people reading the archive with kvwatch replay); Azure Monitor writes as a trusted Microsoft service.')
param allowedIpRanges string[]

var containerNames = [
  'insights-logs-auditevent'
  'insights-metrics-pt1m'
]

resource archive 'Microsoft.Storage/storageAccounts@2024-01-01' = {
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
    allowSharedKeyAccess: allowSharedKeyAccess
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    // Nothing but Azure Monitor writes here, as a trusted Microsoft service
    // (bypass AzureServices); readers come from allowedIpRanges.
    networkAcls: {
      defaultAction: 'Deny'
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
  parent: archive
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource immutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2024-01-01' = [
  for (containerName, i) in containerNames: if (!immutabilityLocked) {
    parent: containers[i]
    name: 'default'
    properties: {
      immutabilityPeriodSinceCreationInDays: immutabilityDays
      allowProtectedAppendWrites: true
      allowProtectedAppendWritesAll: false
    }
  }
]

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2024-01-01' = if (retentionDays > 0) {
  parent: archive
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'kvwatch-archive-retention'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'appendBlob'
                'blockBlob'
              ]
              prefixMatch: [for containerName in containerNames: '${containerName}/']
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

output id string = archive.id
output name string = archive.name
