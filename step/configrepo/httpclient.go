package configrepo

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/deliverhq/deliver/step/httplimit"
)

// newHTTPClient returns the HTTP client the git transport uses for one Repo: the default
// transport (proxy from the environment) with auth's TLS settings, and error bodies cut by
// httplimit (go-git reads the whole body of a non-2xx answer into the error it returns, and a
// server, or a proxy in front of it, may answer 401 or 500 with megabytes of HTML). It is built per Repo, so nothing process-wide (go-git's client.InstallProtocol)
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
	return &http.Client{Transport: httplimit.Transport(tr, httplimit.DefaultLimit)}, nil
}
