// Package azurite runs the Azurite Table service the project pins in
// tools/azurite (package.json and its lock file; `make azurite-install`
// installs it) on a loopback port: for the tests (through azuritetest),
// `kvwatch dev` and the load run.
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
	"time"
)

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

// StartTimeout bounds how long Launch waits for Azurite to answer.
const StartTimeout = 60 * time.Second

// Tools returns the tools/azurite directory of the kvwatch checkout at or
// above the working directory, once it has checked that Azurite is
// installed there and that Node.js is on PATH.
func Tools() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		tools := filepath.Join(dir, "tools", "azurite")
		if _, err := os.Stat(filepath.Join(tools, "run.sh")); err == nil {
			if _, err := os.Stat(filepath.Join(tools, "node_modules", ".bin", "azurite-table")); err != nil {
				return "", fmt.Errorf("Azurite is not installed in %s: run `make azurite-install` (`make test` does)", tools)
			}
			if _, err := exec.LookPath("node"); err != nil {
				return "", fmt.Errorf("Azurite needs Node.js (20), and `node` is not on PATH: %w", err)
			}
			return tools, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no tools/azurite/run.sh at or above the working directory: run from a kvwatch checkout")
		}
		dir = parent
	}
}

// Options say how to run Azurite.
type Options struct {
	// Port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Dir keeps the data on disk (a restart on the same Dir finds it
	// again); empty keeps it in memory only.
	Dir string
	// OwnGroup runs Azurite in its own process group, so that Ctrl-C at a
	// terminal reaches only the parent, which stops it in order.
	OwnGroup bool
}

// Server is a running Azurite Table service. On Linux it is killed with
// the process that launched it, whatever way that ends.
type Server struct {
	Port   int
	cmd    *exec.Cmd
	exited chan struct{}
	out    lockedBuffer
}

// Launch runs tools/azurite/run.sh (which execs Azurite, so the process
// id is Azurite's own) and waits until it answers HTTP.
func Launch(tools string, o Options) (*Server, error) {
	if o.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		o.Port = p
	}
	s := &Server{Port: o.Port, exited: make(chan struct{})}
	args := []string{filepath.Join(tools, "run.sh"), "--no-install", "--port", strconv.Itoa(o.Port), "--silent"}
	if o.Dir != "" {
		args = append(args, "--location", o.Dir)
	}
	s.cmd = exec.Command("bash", args...)
	s.cmd.Dir = tools
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr = procAttr(o.OwnGroup)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("azurite: start %s: %w", s.cmd.Path, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()

	deadline := time.Now().Add(StartTimeout)
	client := &http.Client{Timeout: time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/%s/Tables", o.Port, Account)
	for {
		select {
		case <-s.exited:
			return nil, fmt.Errorf("azurite: exited while starting on port %d: %s", o.Port, s.Output())
		default:
		}
		// Any HTTP answer (403 without credentials) means it serves.
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("azurite: no answer on port %d within %v: %s", o.Port, StartTimeout, s.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ConnectionString is the server's connection string.
func (s *Server) ConnectionString() string { return ConnectionString(s.Port) }

// Pid is Azurite's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Exited is closed once Azurite has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// Output is what Azurite printed (its first MiB).
func (s *Server) Output() string { return s.out.String() }

// Stop asks Azurite to close (SIGINT: it saves its data and exits), kills
// it if it lingers, and waits for it to exit.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// FreePort returns a loopback port nothing listens on right now.
func FreePort() (int, error) {
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
	if b.b.Len() < 1<<20 {
		b.b.Write(p)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
