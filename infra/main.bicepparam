// Parameters for infra/main.bicep. Edit the vault list, then deploy with
//   az deployment group create -g <resource group> -f infra/main.bicep -p infra/main.bicepparam
// or `azd up` (which reads AZURE_LOCATION and the other values below from its
// environment). See docs/deploy.md.
using './main.bicep'

param namePrefix = 'kvwatch'

param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')

// One entry per region that has vaults; the Function app consumes the first.
// Vault resource IDs may be in any resource group or subscription of the tenant.
param regions = [
  {
    location: readEnvironmentVariable('AZURE_LOCATION', 'westeurope')
    vaults: [
      // '/subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.KeyVault/vaults/<vault>'
    ]
  }
]

param auditHubName = 'insights-logs-auditevent'
param consumerGroupName = 'kvwatch'
param partitionCount = 2
param messageRetentionInDays = 7

// Archive: immutable PT1H.json blobs in each region, deleted after
// archiveRetentionDays (0 keeps them).
param archiveEnabled = false
param archiveRetentionDays = 365
param archiveImmutabilityDays = 365

// An existing workspace (for example Microsoft Sentinel's), or '' for a small one.
param logAnalyticsWorkspaceId = ''
param sendToWorkspace = false

// Secrets go to kvwatch's own Key Vault; never write them in this file.
param teamsWebhookUrl = readEnvironmentVariable('KVWATCH_TEAMS_WEBHOOK_URL', '')
param smtpPassword = readEnvironmentVariable('KVWATCH_SMTP_PASSWORD', '')

// Email through Azure Communication Services with the app's identity.
param acsResourceId = ''
param acsEndpoint = ''

// Plain settings your kvwatch.yaml references as ${NAME}.
param extraAppSettings = {}

param logLevel = 'info'

// Object IDs of the groups who read the logs.
param logViewerPrincipalIds = []
param logAnalystPrincipalIds = []
param logManagerPrincipalIds = []
