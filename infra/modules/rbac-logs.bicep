// Roles for the people who read the audit logs, scoped to the archive
// accounts and the Log Analytics workspace (custom roles cannot name a single
// resource as assignable scope, so they are assignable in this resource group
// and assigned on the resources themselves):
//
//   kvwatch Log Viewer   read-only: list and download the archived PT1H.json
//                        blobs, see the workspace; no queries
//   kvwatch Log Analyst  the viewer's rights plus running queries in the
//                        workspace (the KQL every finding carries)
//   kvwatch Log Manager  full control of the archived logs (containers,
//                        immutability and lifecycle policies, blobs) and the
//                        workspace; still bound by a locked immutability policy
//
// Names carry the resource group, since custom role names are unique per
// tenant.

@description('Archive accounts in this resource group (empty strings are skipped).')
param archiveAccountNames string[]

@description('Log Analytics workspace in this resource group; empty: none.')
param workspaceName string

param viewerPrincipalIds string[]
param analystPrincipalIds string[]
param managerPrincipalIds string[]

var archives = filter(archiveAccountNames, n => !empty(n))
var hasWorkspace = !empty(workspaceName)

var viewerActions = [
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/blobServices/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/read'
  'Microsoft.OperationalInsights/workspaces/read'
]
var viewerDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
]
var analystActions = concat(viewerActions, [
  'Microsoft.OperationalInsights/workspaces/query/read'
  'Microsoft.OperationalInsights/workspaces/query/*/read'
])
var managerActions = [
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/blobServices/*'
  'Microsoft.Storage/storageAccounts/managementPolicies/*'
  'Microsoft.OperationalInsights/workspaces/*'
]
var managerDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*'
]

resource viewer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'kvwatch-log-viewer')
  properties: {
    roleName: 'kvwatch Log Viewer (${resourceGroup().name})'
    description: 'Read kvwatch\'s archived Key Vault audit logs and see the workspace. Read-only, no queries.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: viewerActions
        notActions: []
        dataActions: viewerDataActions
        notDataActions: []
      }
    ]
  }
}

resource analyst 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'kvwatch-log-analyst')
  properties: {
    roleName: 'kvwatch Log Analyst (${resourceGroup().name})'
    description: 'Read kvwatch\'s archived Key Vault audit logs and query them in Log Analytics.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: analystActions
        notActions: []
        dataActions: viewerDataActions
        notDataActions: []
      }
    ]
  }
}

resource manager 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'kvwatch-log-manager')
  properties: {
    roleName: 'kvwatch Log Manager (${resourceGroup().name})'
    description: 'Full control of kvwatch\'s archived Key Vault audit logs and of the Log Analytics workspace.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: managerActions
        notActions: []
        dataActions: managerDataActions
        notDataActions: []
      }
    ]
  }
}

// Who gets which role.
var viewerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', viewer.name)
var analystRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', analyst.name)
var managerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', manager.name)

var grants = concat(
  map(viewerPrincipalIds, p => {
    principalId: p
    role: viewerRoleId
  }),
  map(analystPrincipalIds, p => {
    principalId: p
    role: analystRoleId
  }),
  map(managerPrincipalIds, p => {
    principalId: p
    role: managerRoleId
  })
)

// Every grant on every archive account.
var archiveGrants = flatten(map(archives, a => map(grants, g => {
  account: a
  principalId: g.principalId
  role: g.role
})))

resource archiveAccounts 'Microsoft.Storage/storageAccounts@2024-01-01' existing = [
  for name in archives: {
    name: name
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = if (hasWorkspace) {
  name: hasWorkspace ? workspaceName : 'none'
}

resource archiveAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (g, i) in archiveGrants: {
    name: guid(resourceGroup().id, g.account, g.principalId, g.role)
    scope: archiveAccounts[indexOf(archives, g.account)]
    properties: {
      roleDefinitionId: g.role
      principalId: g.principalId
    }
  }
]

resource workspaceAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for g in grants: if (hasWorkspace) {
    name: guid(workspace.id, g.principalId, g.role)
    scope: workspace
    properties: {
      roleDefinitionId: g.role
      principalId: g.principalId
    }
  }
]

output viewerRoleId string = viewerRoleId
output analystRoleId string = analystRoleId
output managerRoleId string = managerRoleId
