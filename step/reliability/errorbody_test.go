package reliability_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// errorBodyMaxRSS bounds deliver's peak memory when a registry answers with a 100 MB error page.
const errorBodyMaxRSS = 150 << 20

// TestRegistryErrorBody: a registry (here, a proxy in front of it) that answers every request
// with an error status and a 100 MB body. deliver reads a few KB of it: its peak memory stays
// bounded, its output is short, the exit code says what the registry answered, and nothing is
// cloned or pushed.
func TestRegistryErrorBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status   int
		wantCode int
		wantMsg  string
	}{
		{http.StatusUnauthorized, step.ExitAuth, "answered 401"},
		{http.StatusForbidden, step.ExitAuth, "answered 403"},
		{http.StatusInternalServerError, step.ExitRegistry, "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			s := newServers(t, webApp("unused"), fixture.Options{})
			s.PushImage(t, "team/web", "1.4.3")
			p := faultproxy.New(t, s.Reg.Host)
			p.HTTPStatusBody(tt.status, faultproxy.HugeBody(100<<20))
			old, gitRequests := s.Head(t), s.Git.Requests()
			// The proxy answers a TLS handshake only after 5 s (it waits for an HTTP request head),
			// so the registry check gets a minute.
			r := start(t, opts{deadline: 2 * time.Minute}, args([]string{"deploy", "--env", "staging", "--no-apply",
				"--image", "web=" + p.Addr + "/team/web:1.4.3", "--registry-timeout", "60s"}, s.GitArgs())...).wait()
			t.Logf("exit %d after %s, peak RSS %d MiB, stderr %d bytes: %s", r.code, r.elapsed.Round(time.Millisecond), r.maxRSS>>20, len(r.stderr), firstLine(r))
			if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.wantMsg) {
				t.Fatalf("exit %d, want %d saying %q:\n%.3000s", r.code, tt.wantCode, tt.wantMsg, r)
			}
			if r.maxRSS == 0 || r.maxRSS > errorBodyMaxRSS {
				t.Errorf("peak RSS %d MiB, want under %d MiB", r.maxRSS>>20, errorBodyMaxRSS>>20)
			}
			if n := len(r.stderr) + len(r.stdout); n > 16<<10 {
				t.Errorf("deliver printed %d bytes; want a few KB at most", n)
			}
			if s.Git.Requests() != gitRequests {
				t.Errorf("the config repo was contacted although the image check failed")
			}
			checkHistory(t, s, "overlays/staging", old)
			checkTempClean(t, r)
		})
	}
}
