// Parameters for infra/main.bicep. Edit the vault list, then deploy with
//   az deployment group create -g <resource group> -f infra/main.bicep -p infra/main.bicepparam
// or `azd up` (which reads AZURE_LOCATION and the other values below from its
// environment). See docs/deploy.md.
using './main.bicep'

param namePrefix = 'kvwatch'

param location = readEnvironmentVariable('AZURE_LOCATION', 'westeurope')

// One entry per region that has vaults; the Function app reads every one (one
// trigger per region, which `make package` builds from this list: write each
// location as a string literal or readEnvironmentVariable, and package what
// you deploy). Vault resource IDs may be in any resource group or subscription
// of the tenant.
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
param devConsumerGroupName = 'kvwatch-dev'
param partitionCount = 2
param messageRetentionInDays = 7

// Archive: immutable PT1H.json blobs in each region, deleted after
// archiveRetentionDays (0 keeps them).
param archiveEnabled = false
param archiveRetentionDays = 365
param archiveImmutabilityDays = 365
// Set to true once you have locked the immutability policies.
param archiveImmutabilityLocked = false

// An existing workspace (for example Microsoft Sentinel's), or '' for a small one.
param logAnalyticsWorkspaceId = ''
param sendToWorkspace = false
// Vaults whose logs already reach that workspace (Sentinel's connector...).
param workspaceSinkSkipVaults = []

// Alerts on kvwatch itself go to this address (required: azd env set
// KVWATCH_ALERT_EMAIL ..., or export it).
param alertEmails = [
  readEnvironmentVariable('KVWATCH_ALERT_EMAIL')
]
param monitorKvwatch = true

// Every vault of each region in this subscription, by Azure Policy.
param policyAssignmentEnabled = false

// Secrets go to kvwatch's own Key Vault; never write them in this file. A
// deployment without them keeps the secrets and their settings.
param teamsWebhookUrl = readEnvironmentVariable('KVWATCH_TEAMS_WEBHOOK_URL', '')
param smtpPassword = readEnvironmentVariable('KVWATCH_SMTP_PASSWORD', '')

// Email through Azure Communication Services with the app's identity.
param acsResourceId = ''
param acsEndpoint = ''

// The shipped configuration emails high and critical alerts once a sender and
// a recipient are set (and acsEndpoint, or smtpHost with smtpPassword).
param emailFrom = readEnvironmentVariable('KVWATCH_EMAIL_FROM', '')
param emailTo = readEnvironmentVariable('KVWATCH_EMAIL_TO', '')
param smtpHost = readEnvironmentVariable('KVWATCH_SMTP_HOST', '')''

// Plain settings your kvwatch.yaml references as ${NAME}.
param extraAppSettings = {}

param logLevel = 'info'

// Object IDs of the groups who read the logs.
param logViewerPrincipalIds = []
param logAnalystPrincipalIds = []
param logManagerPrincipalIds = []
