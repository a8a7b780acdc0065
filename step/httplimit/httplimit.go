// Package httplimit bounds what an HTTP client reads of error responses. A server that answers a
// request with an error status (>= 400) and an enormous body, by mistake or on purpose, must not
// make a client that reads the whole body to quote it in its error (go-containerregistry's
// transport does, and so do most HTTP clients) hold it in memory or print it.
//
// Wrap the transport a client uses:
//
//	client := &http.Client{Transport: httplimit.Transport(base, httplimit.DefaultLimit)}
//
// Successful responses (status < 400) pass untouched: their bodies are the data asked for, and
// bounding them is the caller's business.
package httplimit

import (
	"fmt"
	"io"
	"net/http"
)

// DefaultLimit is how many bytes of an error body Transport keeps by default: enough for any
// structured error a server sends (a registry's JSON errors, a forge's message), a few lines of
// an HTML error page.
const DefaultLimit = 4 << 10

// Transport returns a RoundTripper that sends requests through base and cuts the body of every
// response with status >= 400 to its first limit bytes. When the body is longer, what is kept
// ends with a note saying it was cut, and the rest is never read: the connection is closed
// instead of drained. The response's ContentLength is then -1 (unknown) and its Content-Length
// header is dropped, so a reader does not size a buffer from what the server claimed. A nil
// base means http.DefaultTransport; limit <= 0 means DefaultLimit.
func Transport(base http.RoundTripper, limit int64) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &transport{base: base, limit: limit}
}

type transport struct {
	base  http.RoundTripper
	limit int64
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= t.limit {
		return resp, nil // the server said how long it is, and it is short (net/http enforces the length)
	}
	resp.Body = &limitedBody{body: resp.Body, limit: t.limit}
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// limitedBody reads at most limit bytes of body, on the first Read, then closes body and serves
// what it read.
type limitedBody struct {
	body  io.ReadCloser
	limit int64
	read  bool
	buf   []byte
	err   error // returned once buf is served: io.EOF, or the error reading body
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if !b.read {
		b.read = true
		b.fill()
	}
	if len(b.buf) == 0 {
		return 0, b.err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *limitedBody) fill() {
	// One byte more than the limit tells whether the body goes on.
	data, err := io.ReadAll(io.LimitReader(b.body, b.limit+1))
	b.err = io.EOF
	if err != nil {
		b.err = err
	}
	if int64(len(data)) > b.limit {
		data = append(data[:b.limit], cutNote(b.limit)...)
		b.err = io.EOF
	}
	b.buf = data
	_ = b.body.Close() // stop the transfer: the rest is never read
}

// cutNote ends a body cut at limit bytes.
func cutNote(limit int64) string {
	return fmt.Sprintf(" [... cut: the response went on after %d bytes]", limit)
}

func (b *limitedBody) Close() error {
	if b.read {
		return nil // closed by fill
	}
	b.read = true
	b.err = fmt.Errorf("httplimit: read on a closed body")
	return b.body.Close()
}
