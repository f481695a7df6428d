// The diagnostic setting on one vault, deployed at the vault's resource group
// (main.bicep sets the module's scope from the vault's resource ID, so vaults
// may sit in other resource groups and subscriptions).
//
// Category group `audit` (the AuditEvent category) and AllMetrics go to the
// audit hub; optionally also to the archive account of the vault's region and
// to a Log Analytics workspace. Category groups need
// Microsoft.Insights/diagnosticSettings 2021-05-01-preview or later.
// The workspace receives them in AzureDiagnostics (the default destination
// type), the table the KQL in every kvwatch finding queries.

@description('Name of the Key Vault, in this deployment\'s resource group.')
param vaultName string

@description('Namespace authorization rule (Manage, Send, Listen) in the vault\'s region.')
param eventHubAuthorizationRuleId string

param eventHubName string

@description('Archive account in the vault\'s region; empty: none.')
param archiveStorageAccountId string

@description('Log Analytics workspace; empty: none.')
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource setting 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'kvwatch'
  scope: vault
  properties: {
    eventHubAuthorizationRuleId: eventHubAuthorizationRuleId
    eventHubName: eventHubName
    storageAccountId: empty(archiveStorageAccountId) ? null : archiveStorageAccountId
    workspaceId: empty(workspaceId) ? null : workspaceId
    logAnalyticsDestinationType: empty(workspaceId) ? null : 'AzureDiagnostics'
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = setting.id
