// kvwatch: everything it needs in Azure, deployed into one resource group.
//
//   Key Vaults ──diagnostic settings (audit + AllMetrics)──▶ Event Hub (one namespace per region)
//        │                                                        │ kvwatch consumer group
//        ├──▶ archive storage account (optional, per region)      ▼
//        └──▶ Log Analytics workspace (optional)          Function app (Flex Consumption, custom handler)
//                                                                 │ state: Table Storage (identity)
//                                                                 └▶ Teams / email / webhooks
//
// Nothing here was compiled by the Bicep CLI (none was reachable when this was
// written): every resource type, API version and property was checked by hand
// against Microsoft's template reference or Azure Verified Modules, and
// internal/contract checks the contract between this and the code. See
// docs/deploy.md, "What was validated".

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- parameters

@description('Short name put in front of resource names: lower-case letters and digits only.')
@minLength(3)
@maxLength(11)
param namePrefix string = 'kvwatch'

@description('Region of the Function app, its storage, its Key Vault and Application Insights.')
param location string = resourceGroup().location

@description('Tags for every resource kvwatch creates.')
param tags object = {}

@description('''Event Hubs namespaces, one per region that has vaults: diagnostic settings can only stream to a
namespace in the vault's own region. Each entry is { location, vaults }, vaults being Key Vault resource IDs (any
resource group or subscription of this tenant). The Function app consumes the FIRST entry's hub; see
docs/deploy.md, "Vaults in several regions".''')
@minLength(1)
param regions regionType[]

@description('Name of the audit event hub in every namespace. KVWATCH_EVENTHUB_NAME is set to it.')
param auditHubName string = 'insights-logs-auditevent'

@description('Consumer group kvwatch reads with. KVWATCH_CONSUMER_GROUP is set to it.')
param consumerGroupName string = 'kvwatch'

@description('Partitions of the audit hub. Cannot be lowered later on Standard; 2 carries thousands of records a second.')
@minValue(1)
@maxValue(32)
param partitionCount int = 2

@description('How long the hub keeps events (Standard: at most 7 days). A batch the Function cannot process holds its partition for at most this long.')
@minValue(1)
@maxValue(7)
param messageRetentionInDays int = 7

@description('Also archive the audit logs to a storage account in each region (immutable, append-only).')
param archiveEnabled bool = false

@description('Days the archive keeps a blob before the lifecycle rule deletes it; 0 keeps it forever.')
@minValue(0)
param archiveRetentionDays int = 365

@description('Days a blob is protected by the time-based immutability policy (never longer than archiveRetentionDays when that is not 0).')
@minValue(1)
@maxValue(146000)
param archiveImmutabilityDays int = 365

@description('Shared Key access on the archive accounts. Off by default; Azure Monitor is not documented to need it. Turn it on only if archiving fails.')
param archiveAllowSharedKeyAccess bool = false

@description('Resource ID of an existing Log Analytics workspace (for example Microsoft Sentinel\'s). Empty: kvwatch creates a small one for Application Insights.')
param logAnalyticsWorkspaceId string = ''

@description('Also send the vaults\' audit logs to the Log Analytics workspace (table AzureDiagnostics, which the KQL in every finding reads).')
param sendToWorkspace bool = false

@description('Retention of the workspace kvwatch creates (ignored with logAnalyticsWorkspaceId).')
@minValue(30)
@maxValue(730)
param workspaceRetentionInDays int = 90

@description('Teams Workflows webhook URL ("When a Teams webhook request is received"). Stored in kvwatch\'s Key Vault; the app setting KVWATCH_TEAMS_WEBHOOK_URL references it.')
@secure()
param teamsWebhookUrl string = ''

@description('SMTP password. Stored in kvwatch\'s Key Vault; the app setting KVWATCH_SMTP_PASSWORD references it.')
@secure()
param smtpPassword string = ''

@description('More Key Vault references: { APP_SETTING_NAME: \'secret-name\' } for secrets you put in kvwatch\'s vault yourself.')
param secretAppSettings object = {}

@description('Resource ID of an Azure Communication Services resource kvwatch sends email through with its managed identity (acs.use_identity). Empty: none.')
param acsResourceId string = ''

@description('Endpoint of that resource, https://<name>.communication.azure.com; sets KVWATCH_ACS_ENDPOINT.')
param acsEndpoint string = ''

@description('Assign the built-in "Communication and Email Service Owner" role instead of the narrower custom role Microsoft documents for sending.')
param acsUseBuiltInRole bool = false

@description('More plain app settings, for \${NAME} references in your kvwatch.yaml (recipients, SMTP host and user...). They cannot override the ones this template sets.')
param extraAppSettings object = {}

@description('NCRONTAB schedule of LoggingSilence (vaults whose logs stopped).')
param silenceSchedule string = '0 */5 * * * *'

@description('NCRONTAB schedule of Digest (hourly; kvwatch decides by the configured zone when to send).')
param digestSchedule string = '0 5 * * * *'

@description('NCRONTAB schedule of Housekeeping (outbox retries, pruning).')
param housekeepingSchedule string = '0 */10 * * * *'

@description('kvwatch log level: debug, info, warn, error.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('kvwatch.yaml, relative to the app root (the package ships one); sets KVWATCH_CONFIG.')
param configPath string = 'kvwatch.yaml'

@description('Prefix of kvwatch\'s table names (letters and digits, starting with a letter).')
param tablePrefix string = 'kvwatch'

@description('Flex Consumption: most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: instance memory.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Flex Consumption runtime version of "custom" (az functionapp list-flexconsumption-runtimes --location <region> --runtime custom).')
param customRuntimeVersion string = '1.0'

@description('Object IDs (groups preferably) given the kvwatch Log Viewer role on the archive and the workspace.')
param logViewerPrincipalIds string[] = []

@description('Object IDs given the kvwatch Log Analyst role (viewer + queries).')
param logAnalystPrincipalIds string[] = []

@description('Object IDs given the kvwatch Log Manager role (full control of the archive and the workspace).')
param logManagerPrincipalIds string[] = []

type regionType = {
  @description('Region of these vaults, of their Event Hubs namespace and of their archive account.')
  location: string

  @description('Resource IDs of the Key Vaults in this region.')
  vaults: string[]
}

// ---------------------------------------------------------------- names

var suffix = uniqueString(resourceGroup().id, namePrefix)
var appName = '${namePrefix}-${suffix}'
var storageName = take('st${namePrefix}${suffix}', 24)
var keyVaultName = take('kv-${namePrefix}-${suffix}', 24)
var deploymentContainerName = 'app-package'
var ownWorkspace = empty(logAnalyticsWorkspaceId)

// Subscription and resource group of optional resources given by ID (a
// placeholder in this resource group when absent, so that the scope of a
// module that is not deployed still evaluates).
var acsIdParts = split(empty(acsResourceId) ? '${resourceGroup().id}/providers/Microsoft.Communication/communicationServices/none' : acsResourceId, '/')
var workspaceIdParts = split(ownWorkspace ? '${resourceGroup().id}/providers/Microsoft.OperationalInsights/workspaces/none' : logAnalyticsWorkspaceId, '/')

// One entry per vault, with the index of its region.
var vaultTargets = flatten(map(range(0, length(regions)), i => map(regions[i].vaults, v => {
  regionIndex: i
  vaultId: v
})))

// ---------------------------------------------------------------- resources

module monitoring 'modules/monitoring.bicep' = {
  name: 'kvwatch-monitoring'
  params: {
    location: location
    tags: tags
    workspaceName: 'log-${appName}'
    appInsightsName: 'appi-${appName}'
    existingWorkspaceId: logAnalyticsWorkspaceId
    workspaceRetentionInDays: workspaceRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'kvwatch-storage'
  params: {
    location: location
    tags: tags
    name: storageName
    deploymentContainerName: deploymentContainerName
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'kvwatch-keyvault'
  params: {
    location: location
    tags: tags
    name: keyVaultName
    teamsWebhookUrl: teamsWebhookUrl
    smtpPassword: smtpPassword
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'kvwatch-functionapp'
  params: {
    location: location
    tags: tags
    appName: appName
    planName: 'plan-${appName}'
    deploymentBlobContainerUrl: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
    customRuntimeVersion: customRuntimeVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

// One namespace per region; the app's identity may receive from every hub.
module eventHubs 'modules/eventhub.bicep' = [
  for (region, i) in regions: {
    name: 'kvwatch-eventhub-${i}'
    params: {
      location: region.location
      tags: tags
      namespaceName: take('${namePrefix}-${region.location}-${suffix}', 50)
      eventHubName: auditHubName
      consumerGroupName: consumerGroupName
      partitionCount: partitionCount
      messageRetentionInDays: messageRetentionInDays
      receiverPrincipalId: functionApp.outputs.principalId
    }
  }
]

module archives 'modules/archive.bicep' = [
  for (region, i) in regions: if (archiveEnabled) {
    name: 'kvwatch-archive-${i}'
    params: {
      location: region.location
      tags: tags
      name: 'arc${uniqueString(resourceGroup().id, namePrefix, region.location)}'
      retentionDays: archiveRetentionDays
      immutabilityDays: archiveRetentionDays == 0 ? archiveImmutabilityDays : min(archiveImmutabilityDays, archiveRetentionDays)
      allowSharedKeyAccess: archiveAllowSharedKeyAccess
    }
  }
]

// Diagnostic settings live on the vaults, so each is deployed at the vault's
// own resource group (and subscription).
module diagnostics 'modules/diagnostics.bicep' = [
  for (target, i) in vaultTargets: {
    name: 'kvwatch-diag-${i}'
    scope: resourceGroup(split(target.vaultId, '/')[2], split(target.vaultId, '/')[4])
    params: {
      vaultName: last(split(target.vaultId, '/'))
      eventHubAuthorizationRuleId: eventHubs[target.regionIndex].outputs.authorizationRuleId
      eventHubName: auditHubName
      archiveStorageAccountId: archiveEnabled ? archives[target.regionIndex].outputs.id : ''
      workspaceId: sendToWorkspace ? monitoring.outputs.workspaceId : ''
    }
  }
]

module appRoles 'modules/rbac-app.bicep' = {
  name: 'kvwatch-rbac-app'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.name
  }
}

module acsRole 'modules/rbac-acs.bicep' = if (!empty(acsResourceId)) {
  name: 'kvwatch-rbac-acs'
  scope: resourceGroup(acsIdParts[2], acsIdParts[4])
  params: {
    principalId: functionApp.outputs.principalId
    communicationServiceName: last(acsIdParts)
    useBuiltInRole: acsUseBuiltInRole
  }
}

module logRoles 'modules/rbac-logs.bicep' = {
  name: 'kvwatch-rbac-logs'
  params: {
    archiveAccountNames: [for (region, i) in regions: archiveEnabled ? archives[i].outputs.name : '']
    workspaceName: ownWorkspace ? monitoring.outputs.workspaceName : ''
    viewerPrincipalIds: logViewerPrincipalIds
    analystPrincipalIds: logAnalystPrincipalIds
    managerPrincipalIds: logManagerPrincipalIds
  }
}

// With a workspace of your own elsewhere, the log roles are defined there too
// and assigned on it.
module logRolesExternalWorkspace 'modules/rbac-logs.bicep' = if (!ownWorkspace) {
  name: 'kvwatch-rbac-logs-workspace'
  scope: resourceGroup(workspaceIdParts[2], workspaceIdParts[4])
  params: {
    archiveAccountNames: []
    workspaceName: last(workspaceIdParts)
    viewerPrincipalIds: logViewerPrincipalIds
    analystPrincipalIds: logAnalystPrincipalIds
    managerPrincipalIds: logManagerPrincipalIds
  }
  dependsOn: [
    logRoles // same role definitions when the workspace is in this resource group
  ]
}

// The app settings come last: Key Vault references and the Event Hubs trigger
// resolve at start-up, so the roles they need are assigned first.
module appSettings 'modules/appsettings.bicep' = {
  name: 'kvwatch-appsettings'
  params: {
    appName: functionApp.outputs.name
    storageAccountName: storage.outputs.name
    tableEndpoint: storage.outputs.tableEndpoint
    appInsightsConnectionString: monitoring.outputs.connectionString
    eventHubNamespace: eventHubs[0].outputs.fullyQualifiedNamespace
    eventHubName: auditHubName
    consumerGroupName: consumerGroupName
    keyVaultName: keyVault.outputs.name
    hasTeamsWebhook: !empty(teamsWebhookUrl)
    hasSmtpPassword: !empty(smtpPassword)
    secretAppSettings: secretAppSettings
    acsEndpoint: acsEndpoint
    extraAppSettings: extraAppSettings
    silenceSchedule: silenceSchedule
    digestSchedule: digestSchedule
    housekeepingSchedule: housekeepingSchedule
    logLevel: logLevel
    configPath: configPath
    tablePrefix: tablePrefix
  }
  dependsOn: [
    appRoles
    acsRole
    eventHubs
  ]
}

// ---------------------------------------------------------------- outputs

@description('Name of the Function app (func azure functionapp publish <this>).')
output functionAppName string = functionApp.outputs.name

@description('Resource group of the Function app.')
output resourceGroupName string = resourceGroup().name

@description('Event Hubs namespaces and the audit hub, per region; kvwatch consumes the first.')
output eventHubs array = [
  for (region, i) in regions: {
    location: region.location
    namespace: eventHubs[i].outputs.fullyQualifiedNamespace
    hub: auditHubName
    consumerGroup: consumerGroupName
  }
]

@description('kvwatch\'s own Key Vault (Teams webhook URL, mail credentials).')
output keyVaultName string = keyVault.outputs.name

@description('What the Teams Workflows flow needs.')
output teamsWorkflowSetup string = 'In Teams > Workflows, create a flow from the template "Post to a channel when a webhook request is received" (trigger "When a Teams webhook request is received"; it posts each of triggerBody()?[\'attachments\'] as a card with "Post card in a chat or channel"). kvwatch posts {"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":<Adaptive Card 1.4>}]}. Copy the flow\'s HTTP URL into the teamsWebhookUrl parameter (or set secret "teams-webhook-url" in ${keyVault.outputs.name}) and reference it in kvwatch.yaml as \${KVWATCH_TEAMS_WEBHOOK_URL}.'

// azd reads these.
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
