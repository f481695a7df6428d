// Command funcapp writes the function folders of the deployable app:
// function-app/*, plus one Event Hubs trigger per region after the first
// (AuditEvents_<location>, connection EventHubConnection_<location>), and the
// local.settings.json Core Tools reads the worker runtime from.
//
//	go run ./internal/contract/cmd/funcapp -out dist/app [-regions "westeurope northeurope"]
//
// Without -regions the list is the `location` of every entry of `regions` in
// infra/main.bicepparam (string literals, or readEnvironmentVariable with the
// environment as azd or your shell sets it). The list must be the one you
// deploy: the Bicep sets one connection setting per region, and a trigger
// whose connection is not set fails to start.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/kvwatch/kvwatch/internal/contract"
)

func main() {
	out := flag.String("out", "dist/app", "the app folder to write into")
	functionApp := flag.String("function-app", "function-app", "the function folders to copy")
	params := flag.String("params", "infra/main.bicepparam", "the parameter file whose regions are read when -regions is empty")
	regionList := flag.String("regions", "", "region locations in the Bicep's order, space or comma separated (default: from -params)")
	flag.Parse()

	if err := contract.CheckNamePrefix(*params); err != nil {
		fail(err)
	}
	regions := contract.ParseRegionList(*regionList)
	from := "-regions"
	if len(regions) == 0 {
		var err error
		if regions, err = contract.RegionsFromParams(*params, os.LookupEnv); err != nil {
			fail(err)
		}
		from = *params
	}
	if err := contract.WriteFunctionApp(*functionApp, *out, regions); err != nil {
		fail(err)
	}
	fmt.Printf("%s: one Event Hubs trigger per region (%s, from %s)\n", *out, strings.Join(regions, ", "), from)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "funcapp:", err)
	os.Exit(1)
}
