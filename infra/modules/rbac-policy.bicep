// The policy assignment's identity may read the keys of the namespace's
// diagnostics rule (what a diagnostic setting to Event Hubs needs): Azure
// Event Hubs Data Owner on the namespace, as Microsoft's built-in "to Event
// Hub" diagnostic-setting policies declare. Deployed in kvwatch's resource
// group, one per region with policyAssignmentEnabled.

param namespaceName string
param principalId string

var roles = loadJsonContent('../roles.json')

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource dataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(namespace.id, principalId, roles.azureEventHubsDataOwner)
  scope: namespace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureEventHubsDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'kvwatch policy: diagnostic settings stream through this namespace\'s rule'
  }
}
