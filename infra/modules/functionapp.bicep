// The Function app on the Flex Consumption plan, running kvwatch as a custom
// handler.
//
// Runtime: functionAppConfig.runtime = { name: 'custom', version: '1.0' }. On
// Flex the runtime is declared here and FUNCTIONS_WORKER_RUNTIME must not be
// set as an app setting (Functions app settings reference, "Flex Consumption
// plan deprecations"); local runs set it in local.settings.json instead. The
// version string is the one Azure's Flex stacks list for "custom"; confirm with
//   az functionapp list-flexconsumption-runtimes --location <region> --runtime custom
//
// Deployment storage (the container `func azure functionapp publish` and azd
// upload the package to) authenticates with the app's system-assigned identity,
// which holds Storage Blob Data Owner on the account (rbac-app.bicep).
//
// App settings are deployed separately (appsettings.bicep), after the role
// assignments they depend on.

param location string
param tags object
param appName string
param planName string

@description('URL of the blob container Flex deploys the package from.')
param deploymentBlobContainerUrl string

param customRuntimeVersion string
param maximumInstanceCount int
param instanceMemoryMB int

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd deploys the service `kvwatch` (azure.yaml) to the site carrying this tag.
  tags: union(tags, {
    'azd-service-name': 'kvwatch'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentBlobContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: customRuntimeVersion
      }
    }
  }
}

// Basic (user name and password) publishing credentials off for FTP and
// the SCM site: Core Tools and azd deploy to Flex with a Microsoft Entra
// token, and the deployment storage is reached with the app's identity.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output principalId string = site.identity.principalId
output defaultHostName string = site.properties.defaultHostName
