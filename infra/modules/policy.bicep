// Connecting vaults at scale: an Azure Policy (DeployIfNotExists) that puts
// kvwatch's diagnostic setting on every Key Vault of a region in this
// subscription, beside the explicit vault list of main.bicep. One definition
// and one assignment per region (a vault can stream only to a namespace in
// its own region). New vaults get the setting when they are created or
// updated; existing ones need a remediation task (docs/deploy.md, "Every
// vault of a subscription").
//
// The assignment's system-assigned identity runs the deployments: Monitoring
// Contributor on the subscription (diagnostic settings, deployments) and
// Azure Event Hubs Data Owner on the region's namespace (the
// authorization rule's listkeys), the roles Microsoft's built-in "to Event
// Hub" diagnostic-setting policies declare.
//
// Policy expressions ('[field(...)]', '[parameters(...)]') are written as
// string literals starting with '[': Bicep escapes them ('[[') so that ARM
// passes them to Policy unevaluated; check `az bicep build` output.

targetScope = 'subscription'

@description('Region whose vaults this assignment covers.')
param region string

@description('Event Hubs namespace authorization rule (Manage, Send, Listen) in that region.')
param eventHubAuthorizationRuleId string

param eventHubName string

@description('Resource ID of the region\'s Event Hubs namespace (for the identity\'s role).')
param eventHubNamespaceId string

@description('Name of the diagnostic setting (the explicit list uses kvwatch as well).')
param settingName string = 'kvwatch'

var roles = loadJsonContent('../roles.json')

resource definition 'Microsoft.Authorization/policyDefinitions@2023-04-01' = {
  name: guid(subscription().id, 'kvwatch-keyvault-diagnostics', region)
  properties: {
    displayName: 'kvwatch: stream Key Vault audit logs in ${region} to kvwatch\'s event hub'
    description: 'Deploys the diagnostic setting ${settingName} (category group audit, AllMetrics) on every Key Vault in ${region} that lacks it, streaming to kvwatch\'s Event Hubs namespace in that region.'
    policyType: 'Custom'
    mode: 'Indexed'
    metadata: {
      category: 'Monitoring'
    }
    parameters: {
      effect: {
        type: 'String'
        allowedValues: [
          'DeployIfNotExists'
          'AuditIfNotExists'
          'Disabled'
        ]
        defaultValue: 'DeployIfNotExists'
      }
      eventHubRuleId: {
        type: 'String'
      }
      eventHubName: {
        type: 'String'
      }
      region: {
        type: 'String'
      }
    }
    policyRule: {
      if: {
        allOf: [
          {
            field: 'type'
            equals: 'Microsoft.KeyVault/vaults'
          }
          {
            field: 'location'
            equals: '[parameters(\'region\')]'
          }
        ]
      }
      then: {
        effect: '[parameters(\'effect\')]'
        details: {
          type: 'Microsoft.Insights/diagnosticSettings'
          name: settingName
          roleDefinitionIds: [
            '/providers/Microsoft.Authorization/roleDefinitions/${roles.monitoringContributor}'
            '/providers/Microsoft.Authorization/roleDefinitions/${roles.azureEventHubsDataOwner}'
          ]
          existenceCondition: {
            allOf: [
              {
                field: 'Microsoft.Insights/diagnosticSettings/eventHubName'
                equals: '[parameters(\'eventHubName\')]'
              }
              {
                field: 'Microsoft.Insights/diagnosticSettings/eventHubAuthorizationRuleId'
                equals: '[parameters(\'eventHubRuleId\')]'
              }
            ]
          }
          deployment: {
            properties: {
              mode: 'incremental'
              parameters: {
                vaultName: {
                  value: '[field(\'name\')]'
                }
                eventHubRuleId: {
                  value: '[parameters(\'eventHubRuleId\')]'
                }
                eventHubName: {
                  value: '[parameters(\'eventHubName\')]'
                }
              }
              template: {
                '$schema': 'https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#'
                contentVersion: '1.0.0.0'
                parameters: {
                  vaultName: {
                    type: 'string'
                  }
                  eventHubRuleId: {
                    type: 'string'
                  }
                  eventHubName: {
                    type: 'string'
                  }
                }
                resources: [
                  {
                    type: 'Microsoft.KeyVault/vaults/providers/diagnosticSettings'
                    apiVersion: '2021-05-01-preview'
                    name: '[concat(parameters(\'vaultName\'), \'/Microsoft.Insights/${settingName}\')]'
                    properties: {
                      eventHubAuthorizationRuleId: '[parameters(\'eventHubRuleId\')]'
                      eventHubName: '[parameters(\'eventHubName\')]'
                      logs: [
                        {
                          categoryGroup: 'audit'
                          enabled: true
                        }
                      ]
                      metrics: [
                        {
                          category: 'AllMetrics'
                          enabled: true
                        }
                      ]
                    }
                  }
                ]
              }
            }
          }
        }
      }
    }
  }
}

resource assignment 'Microsoft.Authorization/policyAssignments@2023-04-01' = {
  name: take('kvwatch-diag-${region}', 64)
  location: region
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    displayName: 'kvwatch: Key Vault audit logs in ${region} to kvwatch'
    policyDefinitionId: definition.id
    parameters: {
      eventHubRuleId: {
        value: eventHubAuthorizationRuleId
      }
      eventHubName: {
        value: eventHubName
      }
      region: {
        value: region
      }
    }
  }
}

resource monitoringContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, assignment.id, roles.monitoringContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringContributor)
    principalId: assignment.identity.principalId
    principalType: 'ServicePrincipal'
    description: 'kvwatch policy: write diagnostic settings on Key Vaults'
  }
}

output assignmentId string = assignment.id
output principalId string = assignment.identity.principalId
output namespaceId string = eventHubNamespaceId
