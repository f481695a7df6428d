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

@description('''Short name put in front of resource names: lower-case letters and digits only, starting with a
letter. (Bicep has no pattern decorator: `make package` checks it in main.bicepparam, and the storage account
names built from it reject anything else.)''')
@minLength(3)
@maxLength(11)
param namePrefix string = 'kvwatch'

@description('Region of the Function app, its storage, its Key Vault and Application Insights.')
param location string = resourceGroup().location

@description('Tags for every resource kvwatch creates.')
param tags object = {}

@description('''Event Hubs namespaces, one per region that has vaults: diagnostic settings can only stream to a
namespace in the vault's own region. Each entry is { location, vaults }, vaults being Key Vault resource IDs (any
resource group or subscription of this tenant). The Function app reads every entry's hub: one Event Hubs trigger
per region, which `make package` generates from this list (REGIONS=, or main.bicepparam): package and deploy the
same list. A region listed twice fails the deployment (its modules would have the same name); see docs/deploy.md,
"Vaults in several regions".''')
@minLength(1)
@maxLength(10)
param regions regionType[]

@description('Name of the audit event hub in every namespace. KVWATCH_EVENTHUB_NAME is set to it.')
param auditHubName string = 'insights-logs-auditevent'

@description('Consumer group kvwatch reads with. KVWATCH_CONSUMER_GROUP is set to it.')
param consumerGroupName string = 'kvwatch'

@description('A second consumer group on every hub for local runs (local.settings.json uses it), so that a laptop never takes partitions from the app. Empty: none.')
param devConsumerGroupName string = 'kvwatch-dev'

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

@description('You locked the archive\'s immutability policies: the deployment stops touching them (a locked policy cannot be written again, and a redeploy that tried would fail).')
param archiveImmutabilityLocked bool = false

@description('IPv4 addresses or CIDR ranges that may read the archive accounts (their firewall denies everything else; Azure Monitor writes as a trusted Microsoft service).')
param archiveAllowedIpRanges string[] = []

@description('Event Hubs firewall: Allow (default: the Function app on Flex without a virtual network connects over the public endpoint) or Deny (only eventHubsAllowedIpRanges and trusted Microsoft services, Azure Monitor among them; needs the app in a virtual network).')
@allowed([
  'Allow'
  'Deny'
])
param eventHubsNetworkDefaultAction string = 'Allow'

@description('IPv4 addresses or CIDR ranges admitted by the Event Hubs firewall when it denies.')
param eventHubsAllowedIpRanges string[] = []

@description('App storage firewall: Allow (default), or Deny once the app reaches storage through a virtual network and private endpoints (docs/deploy.md, "Private endpoints").')
@allowed([
  'Allow'
  'Deny'
])
param storageNetworkDefaultAction string = 'Allow'

@description('IPv4 addresses or CIDR ranges admitted by the app storage firewall when it denies.')
param storageAllowedIpRanges string[] = []

@description('Resource ID of an existing Log Analytics workspace (for example Microsoft Sentinel\'s). Empty: kvwatch creates a small one for Application Insights.')
param logAnalyticsWorkspaceId string = ''

@description('Also send the vaults\' audit logs to the Log Analytics workspace (table AzureDiagnostics, which the KQL in every finding reads).')
param sendToWorkspace bool = false

@description('''Vault resource IDs whose audit logs already reach the workspace through another diagnostic setting
(Microsoft Sentinel's Key Vault connector, a policy): kvwatch's setting on them leaves the workspace out, since
Azure Monitor refuses two settings sending one category to the same destination. Find them with the command in
docs/deploy.md, "Sending to a workspace that already has the logs".''')
param workspaceSinkSkipVaults string[] = []

@description('Retention of the workspace kvwatch creates (ignored with logAnalyticsWorkspaceId).')
@minValue(30)
@maxValue(730)
param workspaceRetentionInDays int = 90

@description('Operator email addresses for the alerts on kvwatch itself (no events read, failures, partitions held by retries, dead letters).')
param alertEmails string[]

@description('Deploy the Azure Monitor alert rules on kvwatch itself and their action group.')
param monitorKvwatch bool = true

@description('''Also assign an Azure Policy (DeployIfNotExists) per region, at this deployment's subscription, that
puts the kvwatch diagnostic setting on every Key Vault of that region in the subscription (new and updated vaults;
run a remediation task for the existing ones). Needs Owner, or Resource Policy Contributor plus User Access
Administrator, on the subscription.''')
param policyAssignmentEnabled bool = false

@description('Salt for the name of kvwatch\'s Key Vault. A deleted vault keeps its name for the 90 days of soft delete (purge protection on): to deploy again into a new resource group of the same name sooner, give any new value.')
@maxLength(20)
param keyVaultNameSalt string = ''

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

@description('Sender address of the email receiver of the shipped configuration; sets KVWATCH_EMAIL_FROM. With emailTo and acsEndpoint or smtpHost, high and critical alerts are emailed as soon as the app is deployed.')
param emailFrom string = ''

@description('Recipient of the email receiver of the shipped configuration; sets KVWATCH_EMAIL_TO.')
param emailTo string = ''

@description('SMTP host of the SMTP email receiver of the shipped configuration (instead of ACS); sets KVWATCH_SMTP_HOST. Its password is smtpPassword.')
param smtpHost string = ''

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
  @description('Region of these vaults, of their Event Hubs namespace and of their archive account: Azure\'s location name, lower-case letters and digits (westeurope). It names the region\'s trigger function AuditEvents_<location>.')
  @minLength(2)
  @maxLength(40)
  location: string

  @description('Resource IDs of the Key Vaults in this region.')
  vaults: string[]
}

// ---------------------------------------------------------------- names

var suffix = uniqueString(resourceGroup().id, namePrefix)
var appName = '${namePrefix}-${suffix}'
var storageName = take('st${namePrefix}${suffix}', 24)
var keyVaultName = empty(keyVaultNameSalt) ? take('kv-${namePrefix}-${suffix}', 24) : take('kv-${namePrefix}-${uniqueString(resourceGroup().id, namePrefix, keyVaultNameSalt)}', 24)
var deploymentContainerName = 'app-package'
var ownWorkspace = empty(logAnalyticsWorkspaceId)

// Subscription and resource group of optional resources given by ID (a
// placeholder in this resource group when absent, so that the scope of a
// module that is not deployed still evaluates).
var acsIdParts = split(empty(acsResourceId) ? '${resourceGroup().id}/providers/Microsoft.Communication/communicationServices/none' : acsResourceId, '/')
var workspaceIdParts = split(ownWorkspace ? '${resourceGroup().id}/providers/Microsoft.OperationalInsights/workspaces/none' : logAnalyticsWorkspaceId, '/')

var workspaceSkip = map(workspaceSinkSkipVaults, v => toLower(v))

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
    networkDefaultAction: storageNetworkDefaultAction
    allowedIpRanges: storageAllowedIpRanges
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
    // Named after the region: a region listed twice is two modules of one
    // name, which Resource Manager refuses before deploying anything.
    name: 'kvwatch-eventhub-${region.location}'
    params: {
      location: region.location
      tags: tags
      namespaceName: take('${namePrefix}-${region.location}-${suffix}', 50)
      eventHubName: auditHubName
      consumerGroupName: consumerGroupName
      devConsumerGroupName: devConsumerGroupName
      partitionCount: partitionCount
      messageRetentionInDays: messageRetentionInDays
      receiverPrincipalId: functionApp.outputs.principalId
      networkDefaultAction: eventHubsNetworkDefaultAction
      allowedIpRanges: eventHubsAllowedIpRanges
    }
  }
]

module archives 'modules/archive.bicep' = [
  for (region, i) in regions: if (archiveEnabled) {
    name: 'kvwatch-archive-${region.location}'
    params: {
      location: region.location
      tags: tags
      name: 'arc${uniqueString(resourceGroup().id, namePrefix, region.location)}'
      retentionDays: archiveRetentionDays
      immutabilityDays: archiveRetentionDays == 0 ? archiveImmutabilityDays : min(archiveImmutabilityDays, archiveRetentionDays)
      allowSharedKeyAccess: archiveAllowSharedKeyAccess
      immutabilityLocked: archiveImmutabilityLocked
      allowedIpRanges: archiveAllowedIpRanges
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
      workspaceId: sendToWorkspace && !contains(workspaceSkip, toLower(target.vaultId)) ? monitoring.outputs.workspaceId : ''
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

// Log roles only when someone is to hold one.
var hasLogPrincipals = !empty(logViewerPrincipalIds) || !empty(logAnalystPrincipalIds) || !empty(logManagerPrincipalIds)

module logRoles 'modules/rbac-logs.bicep' = if (hasLogPrincipals) {
  name: 'kvwatch-rbac-logs'
  params: {
    archiveAccountNames: [for (region, i) in regions: archiveEnabled ? archives[i].outputs.name : '']
    workspaceName: ownWorkspace ? monitoring.outputs.workspaceName : ''
    workspaceOwned: true
    viewerPrincipalIds: logViewerPrincipalIds
    analystPrincipalIds: logAnalystPrincipalIds
    managerPrincipalIds: logManagerPrincipalIds
  }
}

// A workspace kvwatch does not own (Sentinel's): only the analysts get
// anything there, and only the AzureDiagnostics table (rbac-logs.bicep).
module logRolesExternalWorkspace 'modules/rbac-logs.bicep' = if (!ownWorkspace && !empty(logAnalystPrincipalIds)) {
  name: 'kvwatch-rbac-logs-workspace'
  scope: resourceGroup(workspaceIdParts[2], workspaceIdParts[4])
  params: {
    archiveAccountNames: []
    workspaceName: last(workspaceIdParts)
    workspaceOwned: false
    viewerPrincipalIds: []
    analystPrincipalIds: logAnalystPrincipalIds
    managerPrincipalIds: []
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
    eventHubNamespaces: [
      for (region, i) in regions: {
        location: region.location
        fullyQualifiedNamespace: eventHubs[i].outputs.fullyQualifiedNamespace
      }
    ]
    eventHubName: auditHubName
    consumerGroupName: consumerGroupName
    keyVaultName: keyVault.outputs.name
    hasTeamsWebhook: !empty(teamsWebhookUrl)
    hasSmtpPassword: !empty(smtpPassword)
    secretAppSettings: secretAppSettings
    acsEndpoint: acsEndpoint
    emailFrom: emailFrom
    emailTo: emailTo
    smtpHost: smtpHost
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

// kvwatch watched by Azure Monitor (alerts.bicep).
module alerts 'modules/alerts.bicep' = if (monitorKvwatch) {
  name: 'kvwatch-alerts'
  params: {
    location: location
    tags: tags
    namePrefix: namePrefix
    emails: alertEmails
    appInsightsName: monitoring.outputs.appInsightsName
    eventHubNamespaces: [
      for (region, i) in regions: {
        location: region.location
        name: eventHubs[i].outputs.namespaceName
      }
    ]
    eventHubName: auditHubName
  }
}

// Every vault of a region in this subscription, by policy (policy.bicep).
module policies 'modules/policy.bicep' = [
  for (region, i) in regions: if (policyAssignmentEnabled) {
    name: 'kvwatch-policy-${region.location}'
    scope: subscription()
    params: {
      region: region.location
      eventHubAuthorizationRuleId: eventHubs[i].outputs.authorizationRuleId
      eventHubName: auditHubName
      eventHubNamespaceId: eventHubs[i].outputs.namespaceId
    }
  }
]

module policyRoles 'modules/rbac-policy.bicep' = [
  for (region, i) in regions: if (policyAssignmentEnabled) {
    name: 'kvwatch-rbac-policy-${region.location}'
    params: {
      namespaceName: eventHubs[i].outputs.namespaceName
      principalId: policyAssignmentEnabled ? policies[i].outputs.principalId : ''
    }
  }
]

// ---------------------------------------------------------------- outputs

@description('Name of the Function app (func azure functionapp publish <this>).')
output functionAppName string = functionApp.outputs.name

@description('Resource group of the Function app.')
output resourceGroupName string = resourceGroup().name

@description('Event Hubs namespaces and the audit hub, per region, with the trigger function and connection that read each.')
output eventHubs array = [
  for (region, i) in regions: {
    location: region.location
    namespace: eventHubs[i].outputs.fullyQualifiedNamespace
    hub: auditHubName
    consumerGroup: consumerGroupName
    devConsumerGroup: devConsumerGroupName
    function: format('AuditEvents{0}', i == 0 ? '' : '_${region.location}')
    connection: format('EventHubConnection{0}', i == 0 ? '' : '_${region.location}')
  }
]

@description('The regions in order: make package REGIONS="<this, space separated>" builds the matching triggers.')
output regions string = join(map(regions, r => r.location), ' ')

@description('kvwatch\'s own Key Vault (Teams webhook URL, mail credentials).')
output keyVaultName string = keyVault.outputs.name

@description('What the Teams Workflows flow needs.')
output teamsWorkflowSetup string = 'In Teams > Workflows, create a flow from the template "Post to a channel when a webhook request is received" (trigger "When a Teams webhook request is received"; it posts each of triggerBody()?[\'attachments\'] as a card with "Post card in a chat or channel"). kvwatch posts {"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","content":<Adaptive Card 1.4>}]}. Copy the flow\'s HTTP URL into the teamsWebhookUrl parameter (or set secret "teams-webhook-url" in ${keyVault.outputs.name}) and reference it in kvwatch.yaml as \${KVWATCH_TEAMS_WEBHOOK_URL}.'

// azd reads these.
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
