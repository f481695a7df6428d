// Every app setting of the Function app. internal/contract checks that this
// file sets each setting the code and the bindings read (function.json's
// %NAME% references, the `connection` prefix, the KVWATCH_* environment), and
// none it must not (FUNCTIONS_WORKER_RUNTIME on Flex, keys, connection
// strings).
//
// Identity everywhere: the host reaches its storage with
// AzureWebJobsStorage__accountName, the Event Hubs trigger with
// EventHubConnection__fullyQualifiedNamespace, kvwatch's tables with
// KVWATCH_TABLE_ENDPOINT, Application Insights with Authorization=AAD, all as
// the app's system-assigned identity (no AZURE_CLIENT_ID: that would select a
// user-assigned one). Secrets are Key Vault references to kvwatch's vault.

param appName string
param storageAccountName string
param tableEndpoint string
param appInsightsConnectionString string

@description('''The Event Hubs namespace of every region, in main.bicep's order: [{ location,
fullyQualifiedNamespace }]. The first is read by the trigger AuditEvents (connection EventHubConnection), each
other one by AuditEvents_<location> (connection EventHubConnection_<location>), which `make package` generates
per region (internal/contract/funcapp.go).''')
@minLength(1)
param eventHubNamespaces array

param eventHubName string
param consumerGroupName string
param keyVaultName string

@description('A Teams webhook URL was given in this deployment (the secret teams-webhook-url is written).')
param hasTeamsWebhook bool

@description('An SMTP password was given in this deployment (the secret smtp-password is written).')
param hasSmtpPassword bool
param secretAppSettings object
param acsEndpoint string
@description('KVWATCH_EMAIL_FROM, KVWATCH_EMAIL_TO and KVWATCH_SMTP_HOST for the email receiver of the shipped configurations (empty: not set).')
param emailFrom string
param emailTo string
param smtpHost string
param extraAppSettings object
param silenceSchedule string
param digestSchedule string
param housekeepingSchedule string
param logLevel string
param configPath string
param tablePrefix string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

// The app settings as they are before this deployment (the site exists: the
// functionapp module ran first). A secret written by an earlier deployment
// keeps its Key Vault reference when this one is run without the value:
// the reference setting is present when the value is given now OR the
// setting was there before. Deleting the setting by hand (or the secret)
// is how to stop using it.
resource currentSettings 'Microsoft.Web/sites/config@2024-04-01' existing = {
  parent: site
  name: 'appsettings'
}

var current = currentSettings.list().properties

var kvRef = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='

var settings = {
  // Host storage (timer schedules and locks, Event Hubs checkpoints).
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'

  // Event Hubs trigger of the first region: function.json "connection":
  // "EventHubConnection" (the other regions' are regionConnections below).
  EventHubConnection__fullyQualifiedNamespace: eventHubNamespaces[0].fullyQualifiedNamespace
  EventHubConnection__credential: 'managedidentity'
  KVWATCH_EVENTHUB_NAME: eventHubName
  KVWATCH_CONSUMER_GROUP: consumerGroupName

  // Timer functions (function.json "schedule": "%...%").
  KVWATCH_SILENCE_SCHEDULE: silenceSchedule
  KVWATCH_DIGEST_SCHEDULE: digestSchedule
  KVWATCH_HOUSEKEEPING_SCHEDULE: housekeepingSchedule

  // kvwatch itself.
  KVWATCH_LOG_LEVEL: logLevel
  KVWATCH_CONFIG: configPath
  KVWATCH_TABLE_ENDPOINT: tableEndpoint
  KVWATCH_TABLE_PREFIX: tablePrefix

  // Application Insights without keys.
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
}

// One connection per region after the first: AuditEvents_<location> reads
// "connection": "EventHubConnection_<location>" (handlers.RegionConnection).
var regionConnections = toObject(
  flatten(map(range(1, length(eventHubNamespaces) - 1), i => [
    {
      key: 'EventHubConnection_${eventHubNamespaces[i].location}__fullyQualifiedNamespace'
      value: eventHubNamespaces[i].fullyQualifiedNamespace
    }
    {
      key: 'EventHubConnection_${eventHubNamespaces[i].location}__credential'
      value: 'managedidentity'
    }
  ])),
  e => e.key,
  e => e.value
)

var teamsSettings = hasTeamsWebhook || contains(current, 'KVWATCH_TEAMS_WEBHOOK_URL') ? {
  KVWATCH_TEAMS_WEBHOOK_URL: '${kvRef}teams-webhook-url)'
} : {}

var smtpSettings = hasSmtpPassword || contains(current, 'KVWATCH_SMTP_PASSWORD') ? {
  KVWATCH_SMTP_PASSWORD: '${kvRef}smtp-password)'
} : {}

var acsSettings = empty(acsEndpoint) ? {} : {
  KVWATCH_ACS_ENDPOINT: acsEndpoint
}

// The email receiver of the shipped configurations are off, saying what to set,
// until these are present (internal/pack/kvwatch.yaml).
var emailSettings = union(empty(emailFrom) ? {} : { KVWATCH_EMAIL_FROM: emailFrom }, empty(emailTo) ? {} : { KVWATCH_EMAIL_TO: emailTo }, empty(smtpHost) ? {} : { KVWATCH_SMTP_HOST: smtpHost })

var moreSecrets = toObject(items(secretAppSettings), item => item.key, item => '${kvRef}${item.value})')

resource appsettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  // Later arguments win: the settings above cannot be overridden by extras.
  properties: union(extraAppSettings, moreSecrets, emailSettings, acsSettings, smtpSettings, teamsSettings, regionConnections, settings)
}
