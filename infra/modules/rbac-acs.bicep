// Sending email through Azure Communication Services with the app's managed
// identity (kvwatch.yaml: acs.use_identity). There is no send-only built-in
// role. Microsoft's guidance for Microsoft Entra authentication to Email is the
// built-in "Communication and Email Service Owner" role on the Communication
// Services resource, or, narrower, a custom role with
// Microsoft.Communication/CommunicationServices/Read,
// Microsoft.Communication/CommunicationServices/Write and
// Microsoft.Communication/EmailServices/write. The custom role is the default;
// useBuiltInRole switches to the built-in one.
//
// Deployed at the Communication Services resource's resource group; the custom
// role is assignable there only. Role names are unique per tenant: the name
// carries a hash of the resource group's ID (subscription and group).

param principalId string
param communicationServiceName string
param useBuiltInRole bool

var roles = loadJsonContent('../roles.json')

resource acs 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource emailSender 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (!useBuiltInRole) {
  name: guid(resourceGroup().id, 'kvwatch-acs-email-sender')
  properties: {
    roleName: 'kvwatch ACS Email Sender (${resourceGroup().name}, ${take(uniqueString(resourceGroup().id), 6)})'
    description: 'Send email through Azure Communication Services with Microsoft Entra ID. Nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.Communication/CommunicationServices/Read'
          'Microsoft.Communication/CommunicationServices/Write'
          'Microsoft.Communication/EmailServices/write'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

var roleDefinitionId = useBuiltInRole ? subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationAndEmailServiceOwner) : subscriptionResourceId('Microsoft.Authorization/roleDefinitions', emailSender.name)

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(acs.id, principalId, roleDefinitionId)
  scope: acs
  properties: {
    roleDefinitionId: roleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
