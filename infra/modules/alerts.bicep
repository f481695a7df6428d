// kvwatch watched by Azure Monitor: alert rules on kvwatch itself, sent to
// an action group that mails the operator. Deployed by default
// (main.bicep: monitorKvwatch).
//
//   per region, on its Event Hubs namespace (metric alert):
//     kvwatch-stalled-<location>  audit events came into the hub but none
//                                 went out for 30 minutes: nobody reads it
//                                 (start-up failure, missing connection
//                                 setting, role not granted...)
//   on Application Insights (log alerts, the host's telemetry):
//     kvwatch-failures            failed invocations (answers other than
//                                 2xx: a batch on a dependency failure, the
//                                 runtime not starting, a timer error)
//     kvwatch-held-by-retries     an Event Hubs trigger failing again and
//                                 again: its partition is held by the retry
//                                 policy (the retry count lives in memory,
//                                 the events wait up to the retention)
//     kvwatch-dead-letters        records dead-lettered (the batch summary
//                                 line each invocation logs, or an error
//                                 line that dead-lettered a whole body)
//
// The KQL reads the lines kvwatch writes through the host's Logs (traces)
// and the host's request telemetry; internal/contract checks that the
// patterns match what the code writes. host.json keeps Request, Exception
// and Trace out of sampling so that none of them is dropped.

param location string
param tags object
param namePrefix string

@description('Operator email addresses the action group mails.')
@minLength(1)
param emails string[]

@description('Application Insights component of the app.')
param appInsightsName string

@description('Event Hubs namespaces to watch: [{ location, name }].')
param eventHubNamespaces array

param eventHubName string

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${namePrefix}-operator'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('kvwatch', 12)
    enabled: true
    emailReceivers: [
      for (email, i) in emails: {
        name: 'operator-${i}'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

resource namespaces 'Microsoft.EventHub/namespaces@2024-01-01' existing = [
  for ns in eventHubNamespaces: {
    name: ns.name
  }
]

// Events in, none out, for 30 minutes, on the audit hub (EntityName).
resource stalled 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for (ns, i) in eventHubNamespaces: {
    name: 'kvwatch-stalled-${ns.location}'
    location: 'global'
    tags: tags
    properties: {
      description: 'Audit events reach ${eventHubName} in ${ns.name} but nothing reads them: see docs/runbook.md and the app\'s failures.'
      severity: 1
      enabled: true
      scopes: [
        namespaces[i].id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT30M'
      autoMitigate: true
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: 'incoming'
            metricNamespace: 'Microsoft.EventHub/namespaces'
            metricName: 'IncomingMessages'
            dimensions: [
              {
                name: 'EntityName'
                operator: 'Include'
                values: [
                  eventHubName
                ]
              }
            ]
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Total'
          }
          {
            criterionType: 'StaticThresholdCriterion'
            name: 'outgoing'
            metricNamespace: 'Microsoft.EventHub/namespaces'
            metricName: 'OutgoingMessages'
            dimensions: [
              {
                name: 'EntityName'
                operator: 'Include'
                values: [
                  eventHubName
                ]
              }
            ]
            operator: 'LessThan'
            threshold: 1
            timeAggregation: 'Total'
          }
        ]
      }
      actions: [
        {
          actionGroupId: actionGroup.id
        }
      ]
    }
  }
]

// Log alerts over Application Insights (classic table names, scope the
// component). Each fires when its query returns a row (Count > threshold,
// threshold 0).
var logRules = [
  {
    name: 'kvwatch-failures'
    severity: 1
    description: 'kvwatch invocations failed (a dependency, the start-up, a timer). Query requests | where success == false in Application Insights.'
    query: 'requests | where success == false'
    threshold: 0
    window: 'PT15M'
  }
  {
    name: 'kvwatch-held-by-retries'
    severity: 1
    description: 'An Event Hubs trigger of kvwatch keeps failing: its partition is held by the retry policy until the batch succeeds (events wait at most the hub\'s retention). See docs/runbook.md.'
    query: 'requests | where operation_Name startswith "AuditEvents" and success == false | summarize failures = count() by operation_Name | where failures >= 5'
    threshold: 0
    window: 'PT1H'
  }
  {
    name: 'kvwatch-dead-letters'
    severity: 2
    description: 'kvwatch dead-lettered records (it logs the count in each batch summary, and an error line when a whole body was kept as a dead letter).'
    query: 'traces | where message startswith "kvwatch: " | extend dl = toint(extract(@"(\\d+) dead-lettered", 1, message)) | where dl > 0 or (message startswith "kvwatch: error:" and message has "dead-lettered")'
    threshold: 0
    window: 'PT15M'
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for rule in logRules: {
    name: rule.name
    location: location
    tags: tags
    properties: {
      displayName: rule.name
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsights.id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: rule.window
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            operator: 'GreaterThan'
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

output actionGroupId string = actionGroup.id
