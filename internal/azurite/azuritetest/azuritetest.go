// Package azuritetest gives tests a Table Storage endpoint: the one named
// by KVWATCH_TEST_TABLE_CONNECTION_STRING when that is set, else an
// Azurite Table service it starts (once per test binary) from the copy the
// project installs in tools/azurite (`make azurite-install`, which
// `make test` runs).
//
// A test package that uses it should stop the process at exit:
//
//	func TestMain(m *testing.M) { azuritetest.Main(m) }
//
// (on Linux the process also dies with the test binary if that is killed).
package azuritetest

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kvwatch/kvwatch/internal/azurite"
)

// EnvConnectionString names the variable that points tests at an existing
// Table endpoint instead of a local Azurite.
const EnvConnectionString = "KVWATCH_TEST_TABLE_CONNECTION_STRING"

var srv struct {
	mu   sync.Mutex
	s    *azurite.Server
	port int    // kept across Stop, so a restart listens where clients point
	dir  string // data location, kept across Stop, removed by Main
}

// External reports whether tests use an endpoint named by
// KVWATCH_TEST_TABLE_CONNECTION_STRING (which Stop cannot stop).
func External() bool { return os.Getenv(EnvConnectionString) != "" }

// Start returns a connection string for a Table endpoint, starting Azurite
// if needed (and again after Stop, on the same port and with the same
// data). It fails the test, never skips it, when Azurite cannot be run.
func Start(t testing.TB) (connString string) {
	t.Helper()
	if cs := os.Getenv(EnvConnectionString); cs != "" {
		return cs
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.s != nil {
		select {
		case <-srv.s.Exited():
			srv.s = nil // died: start it again below
		default:
			return srv.s.ConnectionString()
		}
	}
	if err := startLocked(); err != nil {
		t.Fatalf("azurite: %v (or set %s to a Table endpoint)", err, EnvConnectionString)
	}
	return srv.s.ConnectionString()
}

// Stop stops the Azurite this package started, if any, and waits for it to
// exit. Its data and port are kept: Start runs it again on the same port
// with the same data, as a service coming back after an outage.
func Stop() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.s != nil {
		srv.s.Stop()
		srv.s = nil
	}
}

// Main runs the tests and then stops Azurite and removes its data.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	srv.mu.Lock()
	if srv.dir != "" {
		os.RemoveAll(srv.dir)
		srv.dir = ""
	}
	srv.mu.Unlock()
	os.Exit(code)
}

func startLocked() error {
	tools, err := azurite.Tools()
	if err != nil {
		return err
	}
	if srv.dir == "" {
		d, err := os.MkdirTemp("", "kvwatch-azurite-")
		if err != nil {
			return err
		}
		srv.dir = d
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if srv.port != 0 && attempt > 0 {
			// A restart must use the same port: it may still be in use
			// for a moment.
			time.Sleep(500 * time.Millisecond)
		}
		s, err := azurite.Launch(tools, azurite.Options{Port: srv.port, Dir: srv.dir})
		if err == nil {
			srv.s, srv.port = s, s.Port
			return nil
		}
		lastErr = err
	}
	return lastErr
}
