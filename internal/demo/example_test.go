package demo_test

import (
	"bytes"
	"fmt"

	"github.com/kvwatch/kvwatch/internal/demo"
)

// Generate the default demo day and count its records; the output is the
// same on every run.
func Example() {
	blobs := demo.Generate(demo.Options{}) // Seed 1, 2026-11-23
	records := 0
	for _, b := range blobs {
		records += bytes.Count(b.Data, []byte("\n")) // JSON Lines: one record a line
	}
	fmt.Printf("%d blobs, %d records\n", len(blobs), records)
	fmt.Println(blobs[0].Path)
	for _, inc := range demo.Incidents(demo.Options{}) {
		vault := inc.Vault
		if vault == "" {
			vault = "(several vaults)"
		}
		fmt.Printf("%s %-20s %s\n", inc.Start.Format("15:04"), inc.Name, vault)
	}
	// Output:
	// 98 blobs, 16847 records
	// resourceId=/SUBSCRIPTIONS/3F8A1C52-7D4E-4B9A-8C21-6E5F0A9D2B17/RESOURCEGROUPS/RG-PROD-APPS/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PAYMENTS-PROD/y=2026/m=11/d=23/h=00/m=00/PT1H.json
	// 02:13 secret-purge         kv-shared-infra
	// 13:37 mass-secret-read     kv-payments-prod
	// 15:42 vault-made-public    kv-data-dev
	// 16:05 vault-destroyed      kv-legacy-archive
	// 19:31 secret-backup        kv-payments-prod
	// 21:05 denied-burst         kv-web-prod
	// 21:05 denied-across-vaults (several vaults)
}
