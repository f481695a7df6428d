// kvwatch's own small Key Vault: the Teams Workflows webhook URL (it carries
// the flow's signature) and mail credentials. RBAC authorization (no access
// policies), soft delete and purge protection. The Function app reads the
// secrets through Key Vault references in its app settings, with Key Vault
// Secrets User on this vault (rbac-app.bicep).
//
// Secrets are written only when a value is given; a later deployment without
// the value leaves the secret as it is (rotate it with
// `az keyvault secret set`).

param location string
param tags object

@maxLength(24)
param name string

@secure()
param teamsWebhookUrl string

@secure()
param smtpPassword string

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
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource teamsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(teamsWebhookUrl)) {
  parent: vault
  name: 'teams-webhook-url'
  properties: {
    value: teamsWebhookUrl
    contentType: 'text/plain'
  }
}

resource smtpSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(smtpPassword)) {
  parent: vault
  name: 'smtp-password'
  properties: {
    value: smtpPassword
    contentType: 'text/plain'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
