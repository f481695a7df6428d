// Application Insights for the Function app, with local (key) authentication
// off: the host sends telemetry with its managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD) and needs
// Monitoring Metrics Publisher on this component (rbac-app.bicep).
// Workspace-based, on an existing workspace or a small one created here.

param location string
param tags object
param workspaceName string
param appInsightsName string

@description('Existing Log Analytics workspace; empty: create one.')
param existingWorkspaceId string

param workspaceRetentionInDays int

var createWorkspace = empty(existingWorkspaceId)

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = if (createWorkspace) {
  name: workspaceName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: workspaceRetentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

var workspaceId = createWorkspace ? workspace.id : existingWorkspaceId

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceId
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

output workspaceId string = workspaceId
output workspaceName string = createWorkspace ? workspace.name : last(split(existingWorkspaceId, '/'))
output appInsightsName string = appInsights.name
output appInsightsId string = appInsights.id
output connectionString string = appInsights.properties.ConnectionString
