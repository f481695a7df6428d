package tablestore

import (
	"testing"

	"github.com/kvwatch/kvwatch/internal/delivery"
	"github.com/kvwatch/kvwatch/internal/delivery/deliverytest"
)

// Incidents that grow and rules folded by inhibition, on the Table outbox:
// what the user was told of an incident (the cooldown entity's Told) and
// the inhibition marks survive between batches in Table Storage.
func TestIncidentsGrowAndFoldOnTheTableOutbox(t *testing.T) {
	deliverytest.IncidentScenarios(t, func(t *testing.T) delivery.Outbox {
		return newStore(t, testPrefix(), Options{}).Outbox()
	})
}
