package httplimit_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/deliverhq/deliver/step/httplimit"
)

// server answers /status/N with status N and a body of the length in ?size=, counting the bytes
// it managed to write.
func server(t *testing.T, written *atomic.Int64) *httptest.Server {
	t.Helper()
	chunk := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KiB
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		size, _ := strconv.ParseInt(r.URL.Query().Get("size"), 10, 64)
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		w.WriteHeader(status)
		for size > 0 {
			n := min(size, int64(len(chunk)))
			m, err := w.Write(chunk[:n])
			written.Add(int64(m))
			if err != nil {
				return
			}
			size -= n
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestTransport(t *testing.T) {
	t.Parallel()
	const limit = 4096
	const huge = 100 << 20
	tests := []struct {
		name      string
		method    string
		path      string
		wantLen   int  // bytes of body read back, note included
		wantCut   bool // the body ends with the cut note
		untouched bool // the response passes as the server sent it
	}{
		{name: "huge 401 with a length", method: "GET", path: "/status/401?size=" + strconv.Itoa(huge), wantCut: true},
		{name: "huge 500 chunked", method: "GET", path: "/status/500?chunked=1&size=" + strconv.Itoa(huge), wantCut: true},
		{name: "error body of exactly the limit, chunked", method: "GET", path: "/status/404?chunked=1&size=" + strconv.Itoa(limit), wantLen: limit},
		{name: "short error body", method: "GET", path: "/status/403?size=100", wantLen: 100, untouched: true},
		{name: "short chunked error body", method: "GET", path: "/status/403?chunked=1&size=100", wantLen: 100},
		{name: "success is never cut", method: "GET", path: "/status/200?size=" + strconv.Itoa(1<<20), wantLen: 1 << 20, untouched: true},
		{name: "HEAD of an error", method: "HEAD", path: "/status/401?size=" + strconv.Itoa(huge), wantLen: 0, untouched: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var written atomic.Int64
			s := server(t, &written)
			client := &http.Client{Transport: httplimit.Transport(s.Client().Transport, limit)}
			req, err := http.NewRequest(tt.method, s.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if err := resp.Body.Close(); err != nil {
				t.Fatalf("closing the body: %v", err)
			}
			note := " [... cut: the response went on after 4096 bytes]"
			if tt.wantCut {
				if len(body) != limit+len(note) || !strings.HasSuffix(string(body), note) {
					t.Fatalf("body of %d bytes ending %q; want %d bytes and the note", len(body), body[max(0, len(body)-60):], limit+len(note))
				}
				if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
					t.Errorf("ContentLength %d, header %q: want unknown once cut", resp.ContentLength, resp.Header.Get("Content-Length"))
				}
				// The rest of the body is not drained: the server could not write much more than
				// what the socket buffers hold before the connection was closed.
				s.CloseClientConnections()
				s.Close()
				if w := written.Load(); w > 32<<20 {
					t.Errorf("the server wrote %d MiB: the body was drained, not cut", w>>20)
				}
				return
			}
			if len(body) != tt.wantLen || strings.Contains(string(body), "[... cut") {
				t.Fatalf("body of %d bytes, want %d uncut", len(body), tt.wantLen)
			}
			if tt.untouched && tt.method == "GET" && resp.ContentLength != int64(tt.wantLen) {
				t.Errorf("ContentLength %d, want %d", resp.ContentLength, tt.wantLen)
			}
		})
	}
}

// TestCloseWithoutRead: a body closed unread is closed, and reads after that fail.
func TestCloseWithoutRead(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	s := server(t, &written)
	client := &http.Client{Transport: httplimit.Transport(nil, 0)}
	resp, err := client.Get(s.URL + "/status/502?chunked=1&size=" + strconv.Itoa(10<<20))
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := resp.Body.Read(make([]byte, 10)); n != 0 || err == nil || err == io.EOF {
		t.Fatalf("Read after Close = %d, %v; want an error", n, err)
	}
}
