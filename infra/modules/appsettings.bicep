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

@description('<namespace>.servicebus.windows.net of the hub the trigger reads.')
param eventHubNamespace string

param eventHubName string
param consumerGroupName string
param keyVaultName string
param hasTeamsWebhook bool
param hasSmtpPassword bool
param secretAppSettings object
param acsEndpoint string
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

var kvRef = '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName='

var settings = {
  // Host storage (timer schedules and locks, Event Hubs checkpoints).
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'

  // Event Hubs trigger: function.json "connection": "EventHubConnection".
  EventHubConnection__fullyQualifiedNamespace: eventHubNamespace
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

var teamsSettings = hasTeamsWebhook ? {
  KVWATCH_TEAMS_WEBHOOK_URL: '${kvRef}teams-webhook-url)'
} : {}

var smtpSettings = hasSmtpPassword ? {
  KVWATCH_SMTP_PASSWORD: '${kvRef}smtp-password)'
} : {}

var acsSettings = empty(acsEndpoint) ? {} : {
  KVWATCH_ACS_ENDPOINT: acsEndpoint
}

var moreSecrets = toObject(items(secretAppSettings), item => item.key, item => '${kvRef}${item.value})')

resource appsettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  // Later arguments win: the settings above cannot be overridden by extras.
  properties: union(extraAppSettings, moreSecrets, acsSettings, smtpSettings, teamsSettings, settings)
}
