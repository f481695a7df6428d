// One Event Hubs namespace (Standard) in one region: the audit hub, kvwatch's
// consumer group, and the one shared-access rule diagnostic settings stream
// with.
//
// Local (SAS) authentication stays ON. disableLocalAuth is a single switch for
// the whole namespace, and Azure Monitor's diagnostic settings can only stream
// to Event Hubs through a namespace authorization rule with Manage, Send and
// Listen (Azure Monitor, "Diagnostic settings", destination requirements):
// turning local auth off would stop the audit stream. So the namespace keeps
// that one rule (plus RootManageSharedAccessKey, which every namespace is
// created with) and the Function app gets no key at all: it receives with its
// managed identity and the Azure Event Hubs Data Receiver role on this hub.
// The role is on the hub, not on the consumer group: the trigger fails with
// "Listen claim required" when it is granted on the consumer group only.

param location string
param tags object

@minLength(6)
@maxLength(50)
param namespaceName string

param eventHubName string
param consumerGroupName string

@description('A second consumer group for local runs (func start, kvwatch consume), so that a laptop never takes partitions from the app; empty: none.')
param devConsumerGroupName string

param partitionCount int
param messageRetentionInDays int

@description('Principal (the Function app\'s system-assigned identity) that receives from the hub.')
param receiverPrincipalId string

@description('Network rule set: Allow keeps public access (the Function app on Flex without a virtual network connects over it); Deny admits only ipRules and trusted Microsoft services (Azure Monitor diagnostic settings among them).')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string

@description('IPv4 addresses or CIDR ranges admitted when networkDefaultAction is Deny.')
param allowedIpRanges string[]

var roles = loadJsonContent('../roles.json')

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: false // see above: diagnostic settings need the SAS rule
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: false
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'kvwatch Function app (Event Hubs trigger)'
  }
}

resource devConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = if (!empty(devConsumerGroupName)) {
  parent: hub
  name: empty(devConsumerGroupName) ? 'none' : devConsumerGroupName
  properties: {
    userMetadata: 'kvwatch local runs (func start, kvwatch consume); never the app'
  }
}

// Trusted Microsoft services (Azure Monitor's diagnostic settings) pass the
// firewall whatever the default action.
resource networkRules 'Microsoft.EventHub/namespaces/networkRuleSets@2024-01-01' = {
  parent: namespace
  name: 'default'
  properties: {
    publicNetworkAccess: 'Enabled'
    defaultAction: networkDefaultAction
    trustedServiceAccessEnabled: true
    ipRules: [
      for ip in allowedIpRanges: {
        ipMask: ip
        action: 'Allow'
      }
    ]
    virtualNetworkRules: []
  }
}

// The rule diagnostic settings use: Azure Monitor documents Manage, Send and
// Listen for streaming to Event Hubs.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'azure-monitor-diagnostics'
  properties: {
    rights: [
      'Manage'
      'Send'
      'Listen'
    ]
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hub.id, receiverPrincipalId, roles.azureEventHubsDataReceiver)
  scope: hub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureEventHubsDataReceiver)
    principalId: receiverPrincipalId
    principalType: 'ServicePrincipal'
    description: 'kvwatch Function app receives the audit stream'
  }
}

output namespaceName string = namespace.name
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output eventHubName string = hub.name
output consumerGroupName string = consumerGroup.name
output authorizationRuleId string = diagnosticsRule.id
output namespaceId string = namespace.id
