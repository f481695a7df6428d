package demo

import _ "embed"

// Config is the demo tenant's kvwatch.yaml (kvwatch.yaml in this
// directory): the default pack's exception templates filled in for the demo
// day's platform identities (the AKS CSI driver's and the configuration
// provider's object ids, the Azure DevOps and Terraform principals' app
// ids). It is a user
// file, merged with the pack as any other; kvwatch uses it only when it
// replays the bundled demo day with no configuration of the user's.
//
//go:embed kvwatch.yaml
var Config []byte

// ConfigName names Config in messages.
const ConfigName = "internal/demo/kvwatch.yaml"
