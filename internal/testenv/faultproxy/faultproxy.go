// Package faultproxy is a fault-injecting TCP proxy for tests. A Proxy listens on 127.0.0.1,
// forwards every connection to one target address, and can be switched at any time, while
// connections are open, to misbehave the ways real networks and servers do:
//
//   - Pass: forward faithfully (the default).
//   - Refuse: close every open connection and every new one at once (with a TCP reset), as a
//     server that went down, or a closed port, would.
//   - ResetAfter: forward n more bytes in one direction (counted over all connections), then
//     reset every connection and refuse from then on: a server that died in the middle of a
//     request or response.
//   - CutAfterMatch: on the first connection where pattern is seen in one direction, forward n
//     more bytes in that direction, then reset that connection only; other connections, and
//     the same rule afterwards, pass (one cut per call).
//   - Delay: hold every chunk of data for d before forwarding it, in both directions.
//   - Blackhole: accept connections and never answer; data already on the way is swallowed.
//   - HTTPStatus: answer every HTTP request with a canned status line and close the connection
//     (for servers that cannot be told to fail, like git http-backend).
//   - HTTPStatusBody: the same with a body of the test's choosing, computed from the request
//     head: EchoHead for a server that echoes the request (and its Authorization header) back,
//     HugeBody for one that sends an enormous error page.
//
// OnMatch runs a function (typically one of the above) the moment a pattern first passes, before
// the chunk holding it is forwarded: a test can let a client through one phase and fail the
// next one exactly, e.g. blackhole a git server once the push starts. AfterBytes does the same
// after a number of bytes, for encrypted traffic.
//
// The proxy works on bytes, not messages, so it works for TLS (the client still verifies the
// target's certificate: use it for servers whose certificate names 127.0.0.1) and HTTP/2 as well
// as for plain HTTP. Switching modes does not repair a connection that lost data: leaving
// Blackhole resets the connections that were held.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Direction says which way bytes flow through the proxy.
type Direction int

const (
	// Request is client to target.
	Request Direction = iota
	// Response is target to client.
	Response
)

func (d Direction) String() string {
	if d == Request {
		return "request"
	}
	return "response"
}

type kind int

const (
	kindPass kind = iota
	kindRefuse
	kindResetAfter
	kindDelay
	kindBlackhole
	kindStatus
)

func (k kind) String() string {
	return [...]string{"pass", "refuse", "reset-after", "delay", "blackhole", "http-status"}[k]
}

// mode is the proxy's behaviour; a new mode value replaces the old one as a whole.
type mode struct {
	kind   kind
	dir    Direction
	budget *atomic.Int64 // kindResetAfter: bytes left in dir, over all connections
	delay  time.Duration
	status int
	body   string
	// bodyFn, when set, makes the body of a kindStatus answer from the request head.
	bodyFn func(head []byte) (io.Reader, int64)
}

// matchRule is an armed OnMatch or AfterBytes.
type matchRule struct {
	dir     Direction
	pattern []byte
	bytes   *atomic.Int64 // AfterBytes: bytes left before fn runs; nil for OnMatch
	fn      func()
	fired   atomic.Bool
}

// cutRule is an armed CutAfterMatch.
type cutRule struct {
	dir     Direction
	pattern []byte
	after   int64
	fired   atomic.Bool
}

// Proxy is a fault-injecting TCP proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// Addr is the proxy's listening address, 127.0.0.1:PORT.
	Addr string
	// Target is the address connections are forwarded to.
	Target string

	ln        net.Listener
	done      chan struct{} // closed by Close
	mu        sync.Mutex
	mode      mode
	cut       *cutRule
	onMatch   *matchRule
	conns     map[*conn]struct{}
	wg        sync.WaitGroup
	closed    bool
	accepted  atomic.Int64
	resets    atomic.Int64
	forwarded [2]atomic.Int64
	closeOnce sync.Once
}

// Start starts a proxy on 127.0.0.1 and a free port that forwards to target (host:port), in
// Pass mode. Call Close to stop it.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on 127.0.0.1: %w", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), Target: target, ln: ln, done: make(chan struct{}), conns: map[*conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// New starts a proxy for the duration of a test; see Start. It calls t.Fatal if the proxy
// cannot start and closes it in t.Cleanup.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy and resets every connection. It is safe to call more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.done)
		_ = p.ln.Close()
		p.resetAll(nil)
		p.wg.Wait()
	})
}

// Accepted returns how many connections the proxy has accepted, whatever it did with them.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Resets returns how many connections the proxy has reset or refused on purpose.
func (p *Proxy) Resets() int64 { return p.resets.Load() }

// Forwarded returns how many bytes the proxy has forwarded in direction d.
func (p *Proxy) Forwarded(d Direction) int64 { return p.forwarded[d].Load() }

// Mode describes the current mode, for test logs.
func (p *Proxy) Mode() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode.kind.String()
}

// Pass makes the proxy forward faithfully. Connections held by Blackhole are reset.
func (p *Proxy) Pass() { p.set(mode{kind: kindPass}) }

// Refuse resets every open connection and every new one at once.
func (p *Proxy) Refuse() {
	p.set(mode{kind: kindRefuse})
	p.resetAll(nil)
}

// ResetAfter forwards n more bytes in direction d, counted over all connections from now on,
// then resets every connection and refuses new ones (as Refuse) until the mode is changed.
func (p *Proxy) ResetAfter(d Direction, n int64) {
	b := &atomic.Int64{}
	b.Store(n)
	p.set(mode{kind: kindResetAfter, dir: d, budget: b})
	if n <= 0 {
		p.resetAll(nil)
	}
}

// CutAfterMatch arms a one-shot cut: on the first connection where pattern appears in
// direction d (from now on), n more bytes after the end of the pattern are forwarded in that
// direction, then that connection is reset. The mode is unchanged. Cut reports whether it
// fired.
func (p *Proxy) CutAfterMatch(d Direction, pattern []byte, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = &cutRule{dir: d, pattern: append([]byte(nil), pattern...), after: n}
}

// OnMatch arms a one-shot trigger: when pattern first appears in direction d on any connection
// (from now on), fn runs before the chunk holding it is forwarded, and that chunk is then
// handled under whatever mode fn set. It replaces an armed AfterBytes. fn must not call OnMatch
// or AfterBytes.
func (p *Proxy) OnMatch(d Direction, pattern []byte, fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onMatch = &matchRule{dir: d, pattern: append([]byte(nil), pattern...), fn: fn}
}

// AfterBytes arms a one-shot trigger: once n more bytes have passed in direction d (counted
// over all connections from now on), fn runs before the chunk that crosses the count is
// forwarded, and that chunk is then handled under whatever mode fn set. It replaces an armed
// OnMatch. fn must not call OnMatch or AfterBytes.
func (p *Proxy) AfterBytes(d Direction, n int64, fn func()) {
	b := &atomic.Int64{}
	b.Store(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onMatch = &matchRule{dir: d, bytes: b, fn: fn}
}

// Matched reports whether the last OnMatch or AfterBytes fired.
func (p *Proxy) Matched() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.onMatch != nil && p.onMatch.fired.Load()
}

// Cut reports whether the last CutAfterMatch fired.
func (p *Proxy) Cut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut != nil && p.cut.fired.Load()
}

// Delay holds every chunk of data for d before forwarding it, in both directions, on open
// and new connections.
func (p *Proxy) Delay(d time.Duration) { p.set(mode{kind: kindDelay, delay: d}) }

// Blackhole accepts connections and never answers: nothing is forwarded any more, in either
// direction, on open and new connections.
func (p *Proxy) Blackhole() { p.set(mode{kind: kindBlackhole}) }

// HTTPStatus answers every HTTP request (on new connections, and the next request on open
// ones) with status and a short text body, without reaching the target, and closes the
// connection.
func (p *Proxy) HTTPStatus(status int) {
	p.set(mode{kind: kindStatus, status: status, body: fmt.Sprintf("faultproxy: injected %d %s\n", status, http.StatusText(status))})
}

// HTTPStatusBody is HTTPStatus with the body body returns for the request head (request line
// and headers) it read: n bytes from r.
func (p *Proxy) HTTPStatusBody(status int, body func(head []byte) (r io.Reader, n int64)) {
	p.set(mode{kind: kindStatus, status: status, bodyFn: body})
}

// EchoHead is an HTTPStatusBody body: the request head, Authorization header included, as a
// misconfigured proxy or debug endpoint would print it.
func EchoHead(head []byte) (io.Reader, int64) {
	return bytes.NewReader(head), int64(len(head))
}

// HugeBody returns an HTTPStatusBody body of n bytes of text, generated as it is sent (the
// proxy never holds it in memory).
func HugeBody(n int64) func([]byte) (io.Reader, int64) {
	line := []byte("faultproxy: a very long error page. ")
	return func([]byte) (io.Reader, int64) {
		return io.LimitReader(repeatReader(line), n), n
	}
}

// repeatReader reads b over and over.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}

func (p *Proxy) set(m mode) {
	p.mu.Lock()
	old := p.mode
	p.mode = m
	var held []*conn
	if old.kind == kindBlackhole && m.kind != kindBlackhole {
		for c := range p.conns {
			if c.held.Load() {
				held = append(held, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range held {
		p.reset(c)
	}
}

func (p *Proxy) current() (mode, *cutRule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode, p.cut
}

func (p *Proxy) matchRule() *matchRule {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.onMatch
}

// conn is one proxied connection.
type conn struct {
	client   net.Conn
	upstream net.Conn    // nil until dialled; guarded by cutMu
	held     atomic.Bool // data was swallowed by Blackhole
	// cut state, per direction: bytes seen of the pattern search window, and bytes left
	// before the cut once the pattern matched (-1: not matched).
	window [2][]byte
	left   [2]int64
	cutMu  sync.Mutex
	// matchWin is the tail of the data seen per direction, for OnMatch.
	matchWin [2][]byte
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

// track registers c; it returns false when the proxy is closed.
func (p *Proxy) track(c *conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Proxy) handle(client net.Conn) {
	c := &conn{client: client, left: [2]int64{-1, -1}}
	if !p.track(c) {
		abort(client)
		return
	}
	defer p.untrack(c)
	m, _ := p.current()
	switch m.kind {
	case kindRefuse:
		p.reset(c)
		return
	case kindResetAfter:
		if m.budget.Load() <= 0 {
			p.reset(c)
			return
		}
	case kindBlackhole:
		c.held.Store(true)
		_, _ = io.Copy(io.Discard, client)
		p.reset(c)
		return
	case kindStatus:
		p.answerStatus(c, nil, m)
		return
	}
	up, err := net.DialTimeout("tcp", p.Target, 10*time.Second)
	if err != nil {
		p.reset(c)
		return
	}
	c.cutMu.Lock()
	c.upstream = up
	c.cutMu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pump(c, Request, client, up); done <- struct{}{} }()
	go func() { p.pump(c, Response, up, client); done <- struct{}{} }()
	<-done
	// One side finished: give the other a moment to drain, then close both.
	t := time.NewTimer(5 * time.Second)
	select {
	case <-done:
		t.Stop()
		p.closeConn(c)
	case <-t.C:
		p.closeConn(c)
		<-done
	}
}

// pump copies one direction of c, applying the proxy's mode to every chunk.
func (p *Proxy) pump(c *conn, d Direction, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.forward(c, d, buf[:n], dst) {
				return
			}
		}
		if err != nil {
			// Half-close: tell the other side no more data comes this way.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// forward writes chunk to dst according to the mode; false ends the pump.
func (p *Proxy) forward(c *conn, d Direction, chunk []byte, dst net.Conn) bool {
	if r := p.matchRule(); r != nil && r.dir == d && !r.fired.Load() && c.seen(r, d, chunk) && r.fired.CompareAndSwap(false, true) {
		r.fn()
	}
	m, cut := p.current()
	switch m.kind {
	case kindRefuse:
		p.reset(c)
		return false
	case kindBlackhole:
		c.held.Store(true)
		return true // swallowed
	case kindStatus:
		if d == Request {
			p.answerStatus(c, chunk, m)
			return false
		}
	case kindDelay:
		t := time.NewTimer(m.delay)
		select {
		case <-t.C:
		case <-p.done:
			t.Stop()
			return false
		}
	case kindResetAfter:
		if m.dir == d {
			left := m.budget.Add(-int64(len(chunk)))
			if left < 0 {
				keep := int64(len(chunk)) + left
				if keep > 0 {
					p.write(d, dst, chunk[:keep])
				}
				p.resetAll(nil)
				return false
			}
		}
	}
	if cut != nil && cut.dir == d && !cut.fired.Load() {
		if keep, fire := c.checkCut(cut, d, chunk); fire {
			if keep > 0 {
				p.write(d, dst, chunk[:keep])
			}
			p.reset(c)
			return false
		}
	}
	return p.write(d, dst, chunk)
}

func (p *Proxy) write(d Direction, dst net.Conn, b []byte) bool {
	n, err := dst.Write(b)
	p.forwarded[d].Add(int64(n))
	return err == nil
}

// seen reports whether r's pattern is in the data of direction d up to and including chunk
// (for AfterBytes, whether its count is crossed).
func (c *conn) seen(r *matchRule, d Direction, chunk []byte) bool {
	if r.bytes != nil {
		return r.bytes.Add(-int64(len(chunk))) < 0
	}
	c.cutMu.Lock()
	defer c.cutMu.Unlock()
	w := append(c.matchWin[d], chunk...)
	if bytes.Contains(w, r.pattern) {
		return true
	}
	if keep := len(r.pattern) - 1; len(w) > keep {
		w = w[len(w)-keep:]
	}
	c.matchWin[d] = append([]byte(nil), w...)
	return false
}

// checkCut advances c's cut state with chunk; it returns how much of chunk to forward before
// cutting, and whether to cut.
func (c *conn) checkCut(r *cutRule, d Direction, chunk []byte) (keep int, fire bool) {
	c.cutMu.Lock()
	defer c.cutMu.Unlock()
	start := 0
	if c.left[d] < 0 {
		// Search the pattern in the tail of the previous chunks plus this one.
		w := append(c.window[d], chunk...)
		i := bytes.Index(w, r.pattern)
		if i < 0 {
			if keepTail := len(r.pattern) - 1; len(w) > keepTail {
				w = w[len(w)-keepTail:]
			}
			c.window[d] = append([]byte(nil), w...)
			return len(chunk), false
		}
		// The pattern ends at offset end of w, which is end-(len(w)-len(chunk)) of chunk.
		end := i + len(r.pattern) - (len(w) - len(chunk))
		if end < 0 {
			end = 0
		}
		start = end
		c.left[d] = r.after
	}
	if rest := int64(len(chunk) - start); rest < c.left[d] {
		c.left[d] -= rest
		return len(chunk), false
	}
	if !r.fired.CompareAndSwap(false, true) {
		return len(chunk), false // another connection fired first
	}
	return start + int(c.left[d]), true
}

// answerStatus reads the rest of an HTTP request head (after first), answers it with m's
// canned status and closes the connection.
func (p *Proxy) answerStatus(c *conn, first []byte, m mode) {
	head := append([]byte(nil), first...)
	_ = c.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for !bytes.Contains(head, []byte("\r\n\r\n")) && len(head) < 64<<10 {
		n, err := c.client.Read(buf)
		head = append(head, buf[:n]...)
		if err != nil {
			break
		}
	}
	var body io.Reader = strings.NewReader(m.body)
	size := int64(len(m.body))
	if m.bodyFn != nil {
		if end := bytes.Index(head, []byte("\r\n\r\n")); end >= 0 {
			head = head[:end+4]
		}
		body, size = m.bodyFn(head)
	}
	resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		m.status, http.StatusText(m.status), size)
	// A big body takes a while to write; the deadline only guards against a client that stops reading.
	_ = c.client.SetWriteDeadline(time.Now().Add(5*time.Second + time.Duration(size/(10<<20))*time.Second))
	if _, err := io.WriteString(c.client, resp); err == nil {
		_, _ = io.Copy(c.client, body)
	}
	if tc, ok := c.client.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	// Drain what the client still sends (a request body) so closing does not reset the
	// connection before it read the answer.
	_ = c.client.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, c.client)
	p.closeConn(c)
}

// reset closes both sides of c with a TCP reset.
func (p *Proxy) reset(c *conn) {
	p.resets.Add(1)
	abort(c.client)
	c.cutMu.Lock()
	up := c.upstream
	c.cutMu.Unlock()
	if up != nil {
		abort(up)
	}
}

// closeConn closes both sides of c normally.
func (p *Proxy) closeConn(c *conn) {
	_ = c.client.Close()
	c.cutMu.Lock()
	up := c.upstream
	c.cutMu.Unlock()
	if up != nil {
		_ = up.Close()
	}
}

// resetAll resets every open connection but except.
func (p *Proxy) resetAll(except *conn) {
	p.mu.Lock()
	var all []*conn
	for c := range p.conns {
		if c != except {
			all = append(all, c)
		}
	}
	p.mu.Unlock()
	for _, c := range all {
		p.reset(c)
	}
}

// abort closes a TCP connection with a reset (SO_LINGER 0) instead of a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
