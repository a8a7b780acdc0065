package forge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// httpError is an answer other than 2xx from a forge API called without go-github (GitLab).
type httpError struct {
	method, path string
	status       int
	message      string
}

func (e *httpError) Error() string {
	if e.message == "" {
		return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	}
	return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, e.message)
}

// scopeHint says which token scopes each forge needs, for a refused token.
const scopeHint = "the token needs GitHub contents and pull-requests write, Gitea write:repository, or GitLab api"

// classify wraps an API error in one of the package's sentinels: 401/403 ErrAuth, 404
// ErrNotFound, 5xx, rate limits, timeouts and network failures ErrUnreachable, other 4xx
// ErrRefused. An interruption stays context.Canceled.
func classify(doing string, err error) error {
	status := statusOf(err)
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", doing, err)
	case status == http.StatusTooManyRequests || isRateLimit(err):
		return fmt.Errorf("%w: %s: rate limited: %v", ErrUnreachable, doing, err)
	case status == http.StatusUnauthorized:
		return fmt.Errorf("%w: %s: %v", ErrAuth, doing, err)
	case status == http.StatusForbidden:
		return fmt.Errorf("%w: %s: %v (%s)", ErrAuth, doing, err, scopeHint)
	case status == http.StatusNotFound:
		return fmt.Errorf("%w: %s: %v", ErrNotFound, doing, err)
	case status >= 500:
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, doing, err)
	case status >= 400:
		return fmt.Errorf("%w: %s: %v", ErrRefused, doing, err)
	case errors.Is(err, context.DeadlineExceeded), isNetError(err):
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func isNetError(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

// retryTransport retries idempotent requests (GET, HEAD) that failed to reach the server or got
// 502, 503 or 504, three times in all with a short backoff. Other requests are sent once: a
// create whose answer was lost is recognised by the caller (it lists before creating again).
type retryTransport struct {
	next http.RoundTripper
}

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.next.RoundTrip(req)
	}
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		retry := err != nil && req.Context().Err() == nil
		if err == nil {
			switch resp.StatusCode {
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				retry = true
			}
		}
		if !retry || attempt == 3 {
			return resp, err
		}
		if resp != nil {
			_ = resp.Body.Close()
		}
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// withRetries returns a copy of hc whose transport retries idempotent requests.
func withRetries(hc *http.Client) *http.Client {
	c := *hc
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if _, ok := next.(retryTransport); !ok {
		c.Transport = retryTransport{next: next}
	}
	return &c
}
