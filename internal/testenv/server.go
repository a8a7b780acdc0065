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
	"sync/atomic"
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
