package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
)

// echoServer echoes every connection's bytes back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether a new connection to addr is refused or reset before it answers.
func refused(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = roundTrip(c, "x")
	return err
}

// roundTrip writes msg and reads len(msg) bytes back within a second.
func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestPassAndRefuse(t *testing.T) {
	t.Parallel()
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr)
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("pass: %q, %v", got, err)
	}
	p.Refuse()
	// The open connection is reset.
	if _, err := roundTrip(c, "again"); err == nil {
		t.Fatal("open connection survived Refuse")
	}
	// New connections are accepted and reset at once.
	if err := refused(p.Addr); !isReset(err) {
		t.Fatalf("new connection under Refuse: %v, want a reset or EOF", err)
	}
	p.Pass()
	if got, err := roundTrip(dial(t, p.Addr), "back"); err != nil || got != "back" {
		t.Fatalf("pass after refuse: %q, %v", got, err)
	}
	if p.Accepted() != 3 || p.Resets() < 2 {
		t.Errorf("accepted %d, resets %d", p.Accepted(), p.Resets())
	}
}

func isReset(err error) bool {
	return err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "reset") || errors.Is(err, syscall.EPIPE))
}

func TestResetAfterBytes(t *testing.T) {
	t.Parallel()
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr)
	p.ResetAfter(faultproxy.Response, 10)
	got, err := roundTrip(c, "0123456789abcdef")
	if got != "0123456789" || err == nil {
		t.Fatalf("got %q, %v; want the first 10 bytes, then a reset", got, err)
	}
	if err := refused(p.Addr); !isReset(err) {
		t.Fatalf("after the budget, new connections: %v", err)
	}
	if p.Forwarded(faultproxy.Response) != 10 {
		t.Errorf("forwarded %d response bytes, want 10", p.Forwarded(faultproxy.Response))
	}
}

func TestCutAfterMatch(t *testing.T) {
	t.Parallel()
	// The target records what each connection sent it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	received := make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				received <- string(b)
			}()
		}
	}()
	p := faultproxy.New(t, ln.Addr().String())
	other := dial(t, p.Addr)
	c := dial(t, p.Addr)
	p.CutAfterMatch(faultproxy.Request, []byte("PUSH"), 3)
	// The pattern split over two writes is still found.
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.WriteString(c, "fetch PU")
	time.Sleep(50 * time.Millisecond)
	_, _ = io.WriteString(c, "SH 123456")
	if _, err := c.Read(make([]byte, 1)); !isReset(err) {
		t.Fatalf("the cut connection: %v, want a reset", err)
	}
	if got := <-received; got != "fetch PUSH 12" {
		t.Fatalf("the target received %q, want %q", got, "fetch PUSH 12")
	}
	if !p.Cut() {
		t.Error("Cut() = false after the cut")
	}
	// Other connections, and the rule afterwards, pass.
	_, _ = io.WriteString(other, "PUSH more")
	other.(*net.TCPConn).CloseWrite()
	if got := <-received; got != "PUSH more" {
		t.Fatalf("the other connection delivered %q", got)
	}
}

func TestDelayAndBlackhole(t *testing.T) {
	t.Parallel()
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr)
	p.Delay(300 * time.Millisecond)
	start := time.Now()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.WriteString(c, "slow")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "slow" {
		t.Fatalf("delay: %q, %v", buf, err)
	}
	if d := time.Since(start); d < 550*time.Millisecond {
		t.Errorf("round trip took %s under a 300ms delay each way", d)
	}
	p.Blackhole()
	// Open and new connections get no answer.
	for _, conn := range []net.Conn{c, dial(t, p.Addr)} {
		_ = conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
		_, _ = io.WriteString(conn, "anyone?")
		n, err := conn.Read(buf)
		var ne net.Error
		if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("blackhole answered: %d bytes, %v", n, err)
		}
	}
	// Leaving Blackhole resets the connections it held.
	p.Pass()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Error("a held connection survived Pass")
	}
}

func TestHTTPStatus(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "real") }))
	t.Cleanup(srv.Close)
	p := faultproxy.New(t, strings.TrimPrefix(srv.URL, "http://"))
	client := &http.Client{Timeout: 3 * time.Second}
	get := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+p.Addr+"/x", bytes.NewReader(make([]byte, 100<<10)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 || body != "real" {
		t.Fatalf("pass: %d %q", code, body)
	}
	p.HTTPStatus(http.StatusInternalServerError)
	if code, body := get(); code != 500 || !strings.Contains(body, "injected 500") {
		t.Fatalf("status mode: %d %q", code, body)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	p, err := faultproxy.Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr)
	p.Blackhole()
	_, _ = io.WriteString(c, "held")
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on a held connection")
	}
	if _, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestOnMatch(t *testing.T) {
	t.Parallel()
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr)
	p.OnMatch(faultproxy.Request, []byte("STOP"), p.Blackhole)
	if got, err := roundTrip(c, "go on "); err != nil || got != "go on " {
		t.Fatalf("before the pattern: %q, %v", got, err)
	}
	// The chunk holding the pattern is already handled by the new mode.
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	_, _ = io.WriteString(c, "now STOP")
	if n, err := c.Read(make([]byte, 16)); n != 0 || err == nil {
		t.Fatalf("the chunk with the pattern got through: %d bytes, %v", n, err)
	}
	if !p.Matched() || p.Mode() != "blackhole" {
		t.Errorf("matched %v, mode %s", p.Matched(), p.Mode())
	}
}

func TestAfterBytes(t *testing.T) {
	t.Parallel()
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr)
	p.AfterBytes(faultproxy.Request, 10, p.Refuse)
	if got, err := roundTrip(c, "0123456789"); err != nil || got != "0123456789" {
		t.Fatalf("within the count: %q, %v", got, err)
	}
	if _, err := roundTrip(c, "x"); !isReset(err) {
		t.Fatalf("the byte past the count: %v, want a reset", err)
	}
	if !p.Matched() {
		t.Error("Matched() = false")
	}
}

func TestHTTPStatusBody(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "real") }))
	t.Cleanup(srv.Close)
	p := faultproxy.New(t, strings.TrimPrefix(srv.URL, "http://"))
	client := &http.Client{Timeout: 10 * time.Second}
	get := func() (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+p.Addr+"/x", nil)
		req.SetBasicAuth("user", "s3cret")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	p.HTTPStatusBody(http.StatusUnauthorized, faultproxy.EchoHead)
	code, body := get()
	if code != 401 || !bytes.Contains(body, []byte("Authorization: Basic dXNlcjpzM2NyZXQ=")) || !bytes.HasPrefix(body, []byte("GET /x HTTP/1.1\r\n")) {
		t.Fatalf("echo: %d %q", code, body)
	}
	p.HTTPStatusBody(http.StatusUnauthorized, faultproxy.HugeBody(20<<20))
	code, body = get()
	if code != 401 || len(body) != 20<<20 || !bytes.HasPrefix(body, []byte("faultproxy: a very long error page. ")) {
		t.Fatalf("huge: %d, %d bytes", code, len(body))
	}
}
