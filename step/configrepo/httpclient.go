package configrepo

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
)

// maxErrorBody bounds what is kept of an HTTP error answer's body: go-git reads the whole body
// of a non-2xx answer into the error it returns, and a server (or a proxy in front of it) may
// answer 401 or 500 with megabytes of HTML.
const maxErrorBody = 4 << 10

// newHTTPClient returns the HTTP client the git transport uses for one Repo: the default
// transport (proxy from the environment) with auth's TLS settings, and error bodies cut to
// maxErrorBody. It is built per Repo, so nothing process-wide (go-git's client.InstallProtocol)
// changes.
func newHTTPClient(auth Auth) (*http.Client, error) {
	base, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("config repo: the default HTTP transport is a %T, not an *http.Transport", http.DefaultTransport)
	}
	tr := base.Clone()
	if len(auth.CABundle) > 0 || auth.InsecureSkipTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tr.TLSClientConfig != nil {
			cfg = tr.TLSClientConfig.Clone()
		}
		if len(auth.CABundle) > 0 {
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(auth.CABundle) {
				return nil, fmt.Errorf("config repo: the CA bundle holds no PEM certificate")
			}
			cfg.RootCAs = pool
		}
		cfg.InsecureSkipVerify = auth.InsecureSkipTLS //nolint:gosec // only when the user asks for it
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: limitErrorBodies{next: tr}}, nil
}

// limitErrorBodies is an http.RoundTripper that cuts the body of every answer that is not a
// success (status 300 and above) to maxErrorBody bytes, with a note that it was cut, and closes
// the rest unread. Successful answers (the packs) pass untouched.
type limitErrorBodies struct {
	next http.RoundTripper
}

func (l limitErrorBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(req)
	if err != nil || res.StatusCode < 300 || res.Body == nil {
		return res, err
	}
	body, rerr := io.ReadAll(io.LimitReader(res.Body, maxErrorBody+1))
	_ = res.Body.Close()
	if rerr != nil && len(body) == 0 {
		body = []byte(fmt.Sprintf("(reading the error page: %v)", rerr))
	}
	if len(body) > maxErrorBody {
		body = append(bytes.TrimRight(body[:maxErrorBody], "\n"), fmt.Sprintf("… (error page cut at %d bytes)", maxErrorBody)...)
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}
