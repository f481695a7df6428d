// Roles for the people who read the audit logs, on the archive accounts and
// the Log Analytics workspace:
//
//   kvwatch Log Viewer   list and download the archived PT1H.json blobs; no
//                        queries, no changes
//   kvwatch Log Analyst  the viewer's rights on the archive, and in the
//                        workspace read access to ONE table, AzureDiagnostics
//                        (the KQL every finding carries), by Microsoft's
//                        table-level method: a custom role that may read the
//                        workspace and run queries but reads no table by
//                        itself, assigned on the workspace, plus the built-in
//                        Reader assigned on the table workspaces/tables/
//                        AzureDiagnostics (Azure Monitor, "Manage table-level
//                        read access")
//   kvwatch Log Manager  full control of the archived logs (containers,
//                        immutability and lifecycle policies, blobs); in the
//                        workspace only when kvwatch created it
//                        (workspaceOwned)
//
// On a workspace kvwatch does not own (Sentinel's), nobody gets a
// workspace-wide right: the analyst gets the table, nothing else is assigned
// there. A role is defined only when someone is to hold it. Role names are
// unique per tenant, so each carries a hash of this resource group's ID
// (subscription and group): the same group name in a dev and a prod
// subscription gives two names.

@description('Archive accounts in this resource group (empty strings are skipped).')
param archiveAccountNames string[]

@description('Log Analytics workspace in this resource group; empty: none.')
param workspaceName string

@description('kvwatch created the workspace (its own, for Application Insights).')
param workspaceOwned bool

param viewerPrincipalIds string[]
param analystPrincipalIds string[]
param managerPrincipalIds string[]

var roles = loadJsonContent('../roles.json')

var archives = filter(archiveAccountNames, n => !empty(n))
var hasArchives = !empty(archives)
var hasWorkspace = !empty(workspaceName)

// Unique per scope (subscription + resource group), readable.
var nameSuffix = '(${resourceGroup().name}, ${take(uniqueString(resourceGroup().id), 6)})'

// Who needs which definition here.
var defineViewer = hasArchives && !empty(viewerPrincipalIds)
var defineAnalyst = !empty(analystPrincipalIds) && (hasArchives || hasWorkspace)
var defineManager = !empty(managerPrincipalIds) && (hasArchives || (hasWorkspace && workspaceOwned))

var archiveReadActions = [
  'Microsoft.Storage/storageAccounts/read'
  'Microsoft.Storage/storageAccounts/blobServices/read'
  'Microsoft.Storage/storageAccounts/blobServices/containers/read'
]
var archiveReadDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'
]
// Workspace: read its details and run a query; no table data by itself
// (the table comes with Reader on workspaces/tables/AzureDiagnostics).
var analystWorkspaceActions = [
  'Microsoft.OperationalInsights/workspaces/read'
  'Microsoft.OperationalInsights/workspaces/query/read'
]
var managerActions = concat(
  [
    'Microsoft.Storage/storageAccounts/read'
    'Microsoft.Storage/storageAccounts/blobServices/*'
    'Microsoft.Storage/storageAccounts/managementPolicies/*'
  ],
  workspaceOwned ? ['Microsoft.OperationalInsights/workspaces/*'] : []
)
var managerDataActions = [
  'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*'
]

resource viewer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (defineViewer) {
  name: guid(resourceGroup().id, 'kvwatch-log-viewer')
  properties: {
    roleName: 'kvwatch Log Viewer ${nameSuffix}'
    description: 'Read kvwatch\'s archived Key Vault audit logs. Read-only, no queries.'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: archiveReadActions
        notActions: []
        dataActions: archiveReadDataActions
        notDataActions: []
      }
    ]
  }
}

resource analyst 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (defineAnalyst) {
  name: guid(resourceGroup().id, 'kvwatch-log-analyst')
  properties: {
    roleName: 'kvwatch Log Analyst ${nameSuffix}'
    description: 'Read kvwatch\'s archived Key Vault audit logs; run queries in the workspace (the tables come with Reader on each table).'
    type: 'CustomRole'
    assignableScopes: [
      resourceGroup().id
    ]
    permissions: [
      {
        actions: concat(hasArchives ? archiveReadActions : [], hasWorkspace ? analystWorkspaceActions : [])
        notActions: [
          'Microsoft.OperationalInsights/workspaces/sharedKeys/read'
        ]
        dataActions: hasArchives ? archiveReadDataActions : []
        notDataActions: []
      }
    ]
  }
}

resource manager 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (defineManager) {
  name: guid(resourceGroup().id, 'kvwatch-log-manager')
  properties: {
    roleName: 'kvwatch Log Manager ${nameSuffix}'
    description: 'Full control of kvwatch\'s archived Key Vault audit logs (and of kvwatch\'s own workspace).'
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

var viewerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, 'kvwatch-log-viewer'))
var analystRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, 'kvwatch-log-analyst'))
var managerRoleId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', guid(resourceGroup().id, 'kvwatch-log-manager'))

// Every archive grant, on every archive account.
var archiveGrants = flatten(map(archives, a => concat(
  map(viewerPrincipalIds, p => {
    account: a
    principalId: p
    role: viewerRoleId
  }),
  map(analystPrincipalIds, p => {
    account: a
    principalId: p
    role: analystRoleId
  }),
  map(managerPrincipalIds, p => {
    account: a
    principalId: p
    role: managerRoleId
  })
)))

// Workspace grants: the analyst's query role (no table by itself) and, when
// kvwatch owns the workspace, the manager's.
var workspaceGrants = !hasWorkspace ? [] : concat(
  map(analystPrincipalIds, p => {
    principalId: p
    role: analystRoleId
  }),
  workspaceOwned ? map(managerPrincipalIds, p => {
    principalId: p
    role: managerRoleId
  }) : []
)

resource archiveAccounts 'Microsoft.Storage/storageAccounts@2024-01-01' existing = [
  for name in archives: {
    name: name
  }
]

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = if (hasWorkspace) {
  name: hasWorkspace ? workspaceName : 'none'
}

resource auditTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' existing = if (hasWorkspace) {
  parent: workspace
  name: 'AzureDiagnostics'
}

resource archiveAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for g in archiveGrants: {
    name: guid(resourceGroup().id, g.account, g.principalId, g.role)
    scope: archiveAccounts[indexOf(archives, g.account)]
    properties: {
      roleDefinitionId: g.role
      principalId: g.principalId
    }
    dependsOn: [
      viewer
      analyst
      manager
    ]
  }
]

resource workspaceAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for g in workspaceGrants: {
    name: guid(workspace.id, g.principalId, g.role)
    scope: workspace
    properties: {
      roleDefinitionId: g.role
      principalId: g.principalId
    }
    dependsOn: [
      analyst
      manager
    ]
  }
]

// Read access to the one table the findings' KQL queries.
resource tableReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for p in (hasWorkspace ? analystPrincipalIds : []): {
    name: guid(auditTable.id, p, roles.reader)
    scope: auditTable
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.reader)
      principalId: p
    }
  }
]

output viewerRoleId string = defineViewer ? viewerRoleId : ''
output analystRoleId string = defineAnalyst ? analystRoleId : ''
output managerRoleId string = defineManager ? managerRoleId : ''
