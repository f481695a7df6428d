// Package azurite gives tests a Table Storage endpoint: the one named by
// KVWATCH_TEST_TABLE_CONNECTION_STRING when that is set, else an Azurite
// Table service that this package starts (once per test binary) from the
// copy the project installs in tools/azurite (`make azurite-install`, which
// `make test` runs).
//
// A test package that uses it should stop the process at exit:
//
//	func TestMain(m *testing.M) { azurite.Main(m) }
//
// (on Linux the process also dies with the test binary if that is killed).
package azurite

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvConnectionString names the variable that points tests at an existing
// Table endpoint instead of a local Azurite.
const EnvConnectionString = "KVWATCH_TEST_TABLE_CONNECTION_STRING"

// Azurite's well-known development account (public, documented: not a secret).
const (
	Account = "devstoreaccount1"
	Key     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// ConnectionString returns the connection string of an Azurite Table
// service listening on 127.0.0.1:port.
func ConnectionString(port int) string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;TableEndpoint=http://127.0.0.1:%d/%s;",
		Account, Key, port, Account)
}

const startTimeout = 60 * time.Second

var srv struct {
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	out    *lockedBuffer
	port   int    // kept across Stop, so a restart listens where clients point
	dir    string // data location, kept across Stop, removed by Main
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
	if srv.cmd != nil {
		select {
		case <-srv.exited:
			srv.cmd = nil // died: start it again below
		default:
			return ConnectionString(srv.port)
		}
	}
	if err := startLocked(); err != nil {
		t.Fatalf("azurite: %v", err)
	}
	return ConnectionString(srv.port)
}

// Stop stops the Azurite this package started, if any, and waits for it to
// exit. Its data and port are kept: Start runs it again on the same port
// with the same data, as a service coming back after an outage.
func Stop() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	stopLocked()
}

// Main runs the tests and then stops Azurite and removes its data.
func Main(m *testing.M) {
	code := m.Run()
	srv.mu.Lock()
	stopLocked()
	if srv.dir != "" {
		os.RemoveAll(srv.dir)
		srv.dir = ""
	}
	srv.mu.Unlock()
	os.Exit(code)
}

// RepoRoot returns the directory holding go.mod, walking up from the
// working directory (a test's is its package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func startLocked() error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	tools := filepath.Join(root, "tools", "azurite")
	if _, err := os.Stat(filepath.Join(tools, "node_modules", ".bin", "azurite-table")); err != nil {
		return fmt.Errorf("Azurite is not installed (%s is missing): run `make test`, which installs Azurite "+
			"(or `make azurite-install` once), or set %s to a Table endpoint",
			filepath.Join(tools, "node_modules"), EnvConnectionString)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("Azurite needs Node.js, and `node` is not on PATH: %v", err)
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
		port := srv.port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return err
			}
		} else if attempt > 0 {
			// A restart must use the same port: it may still be in use
			// for a moment.
			time.Sleep(500 * time.Millisecond)
		}
		if lastErr = launch(tools, port); lastErr == nil {
			srv.port = port
			return nil
		}
	}
	return lastErr
}

func launch(tools string, port int) error {
	out := &lockedBuffer{}
	cmd := exec.Command("bash", filepath.Join(tools, "run.sh"), "--no-install",
		"--port", strconv.Itoa(port), "--location", srv.dir, "--silent")
	cmd.Dir = tools
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(startTimeout)
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/%s/Tables", port, Account)
	for {
		select {
		case <-exited:
			return fmt.Errorf("Azurite exited while starting on port %d: %s", port, out.String())
		default:
		}
		// Any HTTP answer (403 without credentials) means it serves.
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			srv.cmd, srv.exited, srv.out = cmd, exited, out
			return nil
		}
		if time.Now().After(deadline) {
			kill(cmd, exited)
			return fmt.Errorf("Azurite did not answer on port %d within %v: %s", port, startTimeout, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func stopLocked() {
	if srv.cmd == nil {
		return
	}
	kill(srv.cmd, srv.exited)
	srv.cmd = nil
}

// kill asks Azurite to close (SIGINT: it saves its data and exits), then
// kills it if it lingers.
func kill(cmd *exec.Cmd, exited chan struct{}) {
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-exited
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 {
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
