package handlers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

// PortFromEnv returns the port the host gave: FUNCTIONS_CUSTOMHANDLER_PORT,
// else FUNCTIONS_HTTPWORKER_PORT.
func PortFromEnv(getenv func(string) string) (int, error) {
	for _, name := range []string{"FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"} {
		v := getenv(name)
		if v == "" {
			continue
		}
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			return 0, fmt.Errorf("%s=%q is not a port number", name, v)
		}
		return p, nil
	}
	return 0, errors.New("no port: neither FUNCTIONS_CUSTOMHANDLER_PORT nor FUNCTIONS_HTTPWORKER_PORT is set " +
		"(the Functions host sets them; run locally with --port)")
}

// Listen opens the handler's listener on the loopback interface only.
func Listen(port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1:%d: %w", port, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx is done, then stops accepting and waits up
// to grace for in-flight invocations to finish. Their request contexts are
// not cancelled by the shutdown, so a batch in progress completes.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, log zerolog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          nil,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Int("pid", os.Getpid()).Msg("kvwatch serving")
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: finishing in-flight invocations")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}
