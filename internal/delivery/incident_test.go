package delivery_test

import (
	"testing"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
)

// Incidents that grow and rules that fire on the same evidence, through
// the default pack, the engine and a memory outbox (the Table outbox runs
// the same scenarios in internal/tablestore).
func TestIncidentsGrowAndFold(t *testing.T) {
	deliverytest.IncidentScenarios(t, func(*testing.T) delivery.Outbox { return delivery.NewMemory() })
}
