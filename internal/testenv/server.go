package testenv

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loopbackServer is an http.Server on 127.0.0.1 and a free port.
type loopbackServer struct {
	srv      *http.Server
	ln       net.Listener
	done     chan struct{}
	addr     string       // 127.0.0.1:PORT
	inFlight atomic.Int64 // requests being handled
}

// closeGrace is how long close waits for requests in flight.
const closeGrace = 5 * time.Second

func startLoopback(h http.Handler, tlsConfig *tls.Config) (*loopbackServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	s := &loopbackServer{
		ln:   ln,
		done: make(chan struct{}),
		addr: ln.Addr().String(),
	}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.inFlight.Add(1)
			defer s.inFlight.Add(-1)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // always returns an error once closed
	}()
	return s, nil
}

// close stops accepting connections, waits up to closeGrace for requests in
// flight, then closes every connection. (http.Server.Shutdown would also
// wait up to 5 s for connections that were opened but never used, which
// HTTP clients racing dials leave behind.)
func (s *loopbackServer) close() {
	_ = s.ln.Close()
	deadline := time.Now().Add(closeGrace)
	for s.inFlight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_ = s.srv.Close()
	<-s.done
}

// sleepCtx waits for d or until ctx is done, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// randomToken returns n random bytes, hex-encoded.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating random token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// sharedServer is a server started at most once per test binary and stopped by Main: the
// cluster of SharedCluster, the Gitea of SharedGitea. Other callers wait for the first start.
type sharedServer[T any] struct {
	once    sync.Once
	server  T
	started bool
	err     error
}

// get starts the server on first use and returns it. It calls t.Fatal when the server could not
// start (later callers see the same error), and logs describe(server) on the first start.
func (s *sharedServer[T]) get(t testing.TB, start func() (T, error), describe func(T) string) T {
	t.Helper()
	first := false
	s.once.Do(func() {
		s.server, s.err = start()
		s.started, first = s.err == nil, true
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	if first {
		t.Logf("testenv: shared %s", describe(s.server))
	}
	return s.server
}

// stop stops the server if a test started it. A second once.Do waits for, and synchronises
// with, a first one that started it; if none did, it marks the once as used.
func (s *sharedServer[T]) stop(stop func(T) error) error {
	s.once.Do(func() {})
	if !s.started {
		return nil
	}
	return stop(s.server)
}

// childEnv is the environment of a child server process: the test's, less the variables drop
// selects, with override set.
func childEnv(override map[string]string, drop func(key string) bool) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := override[k]; !ok && (drop == nil || !drop(k)) {
			env = append(env, kv)
		}
	}
	for k, v := range override {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// binCache returns the directory a make target builds test binaries into: $envVar if set, else
// ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/name (where `make name` puts them).
func binCache(envVar, name string) (string, error) {
	if dir := os.Getenv(envVar); dir != "" {
		return dir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the test binaries of `make %s`: %w; set %s", name, err, envVar)
	}
	return filepath.Join(cache, "deliver", name), nil
}

// isExecutable reports whether path is an executable regular file.
func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
