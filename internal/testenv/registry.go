package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is an in-memory OCI distribution registry on 127.0.0.1
// (go-containerregistry's pkg/registry), optionally behind TLS and HTTP
// basic auth. Start one with StartRegistry or NewRegistry.
type Registry struct {
	// Host is the registry's address, 127.0.0.1:PORT, as used in image
	// references.
	Host string
	// Username and Password are the basic-auth credentials the registry
	// requires; both are empty when it accepts anonymous requests.
	Username, Password string
	// TLS reports whether the registry serves HTTPS (otherwise plain HTTP).
	TLS bool
	// CAPool trusts the registry's certificate authority; nil without TLS.
	CAPool *x509.CertPool
	// CACertPEM is the PEM-encoded certificate of that authority; nil
	// without TLS.
	CACertPEM []byte

	handler   http.Handler
	latency   time.Duration
	status    func(*http.Request) int
	transport *http.Transport
	srv       *loopbackServer
	requests  atomic.Int64
	closeOnce sync.Once
}

// RegistryOption configures a Registry.
type RegistryOption func(*registryOptions)

type registryOptions struct {
	tls            bool
	user, password string
	latency        time.Duration
	status         func(*http.Request) int
}

// WithTLS makes the registry serve HTTPS with a certificate for 127.0.0.1
// and localhost, issued by a new certificate authority (see
// Registry.CAPool, CACertPEM and Transport).
func WithTLS() RegistryOption {
	return func(o *registryOptions) { o.tls = true }
}

// WithBasicAuth makes the registry answer 401 with a Basic challenge to
// every request that does not carry these credentials.
func WithBasicAuth(user, password string) RegistryOption {
	return func(o *registryOptions) { o.user, o.password = user, password }
}

// WithRegistryLatency delays every request the registry receives by d.
func WithRegistryLatency(d time.Duration) RegistryOption {
	return func(o *registryOptions) { o.latency = d }
}

// WithStatus injects faults: fn is called for every request, before
// authentication, and a non-zero result is sent as the response status
// (with a registry-style JSON error body, and a Basic challenge for 401)
// instead of serving the request. fn must be safe for concurrent use.
// Remember that go-containerregistry clients retry 408, 429 and 5xx
// responses a few times.
func WithStatus(fn func(*http.Request) int) RegistryOption {
	return func(o *registryOptions) { o.status = fn }
}

// StartRegistry starts an empty in-memory registry on 127.0.0.1. Call Close
// to stop it.
func StartRegistry(opts ...RegistryOption) (*Registry, error) {
	var o registryOptions
	for _, opt := range opts {
		opt(&o)
	}
	if (o.user == "") != (o.password == "") {
		return nil, fmt.Errorf("starting registry: basic auth needs both a user name and a password")
	}
	r := &Registry{
		Username: o.user,
		Password: o.password,
		TLS:      o.tls,
		handler:  registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		latency:  o.latency,
		status:   o.status,
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	var tlsConfig *tls.Config
	if o.tls {
		var err error
		if tlsConfig, r.CAPool, r.CACertPEM, err = loopbackTLS("deliver testenv registry CA"); err != nil {
			return nil, fmt.Errorf("starting registry: %w", err)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: r.CAPool, MinVersion: tls.VersionTLS12}
	}
	r.transport = transport
	srv, err := startLoopback(http.HandlerFunc(r.serveHTTP), tlsConfig)
	if err != nil {
		return nil, fmt.Errorf("starting registry: %w", err)
	}
	r.srv = srv
	r.Host = srv.addr
	return r, nil
}

// NewRegistry starts a registry for the duration of a test; see
// StartRegistry. It calls t.Fatal if the registry cannot start and closes
// it in t.Cleanup.
func NewRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	r, err := StartRegistry(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Close stops the registry and drops its content. It is safe to call more
// than once.
func (r *Registry) Close() {
	r.closeOnce.Do(func() {
		r.srv.close()
		r.transport.CloseIdleConnections()
	})
}

// Transport returns an HTTP transport that trusts the registry's TLS
// certificate authority (a plain transport without TLS). It adds no
// credentials. It is shared: do not modify it.
func (r *Registry) Transport() http.RoundTripper { return r.transport }

// Requests returns how many HTTP requests the registry has received,
// including rejected ones.
func (r *Registry) Requests() int64 { return r.requests.Load() }

// Ref returns the reference "127.0.0.1:PORT/repo:tag".
func (r *Registry) Ref(repo, tag string) string { return r.Host + "/" + repo + ":" + tag }

// DigestRef returns the reference "127.0.0.1:PORT/repo@digest".
func (r *Registry) DigestRef(repo, digest string) string { return r.Host + "/" + repo + "@" + digest }

// RemoteOptions returns go-containerregistry options that reach this
// registry: its Transport and, if it requires them, its credentials.
func (r *Registry) RemoteOptions() []remote.Option {
	auth := authn.Anonymous
	if r.Username != "" {
		auth = &authn.Basic{Username: r.Username, Password: r.Password}
	}
	return []remote.Option{remote.WithTransport(r.transport), remote.WithAuth(auth)}
}

// RandomImage returns a small single-layer image with random content whose
// config records created as its creation time.
func RandomImage(created time.Time) (v1.Image, error) {
	img, err := random.Image(512, 1)
	if err != nil {
		return nil, fmt.Errorf("generating random image: %w", err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: created})
	if err != nil {
		return nil, fmt.Errorf("setting creation time of random image: %w", err)
	}
	return img, nil
}

// PushRandomImage pushes a new RandomImage created now to repo (e.g.
// "team/web") under every tag and returns its manifest digest
// ("sha256:..."). With no tags it is pushed by digest only.
func (r *Registry) PushRandomImage(repo string, tags ...string) (digest string, err error) {
	img, err := RandomImage(time.Now())
	if err != nil {
		return "", err
	}
	return r.PushImage(repo, img, tags...)
}

// PushImage pushes img to repo under every tag and returns its manifest
// digest ("sha256:..."). With no tags it is pushed by digest only.
func (r *Registry) PushImage(repo string, img v1.Image, tags ...string) (digest string, err error) {
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("pushing image to %s: computing digest: %w", repo, err)
	}
	opts := r.RemoteOptions()
	if len(tags) == 0 {
		ref, err := name.NewDigest(r.DigestRef(repo, d.String()))
		if err != nil {
			return "", fmt.Errorf("pushing image to %s: %w", repo, err)
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			return "", fmt.Errorf("pushing image to %s: %w", ref, err)
		}
		return d.String(), nil
	}
	for i, t := range tags {
		ref, err := name.NewTag(r.Ref(repo, t))
		if err != nil {
			return "", fmt.Errorf("pushing image to %s: %w", repo, err)
		}
		if i == 0 {
			err = remote.Write(ref, img, opts...)
		} else {
			err = remote.Tag(ref, img, opts...)
		}
		if err != nil {
			return "", fmt.Errorf("pushing image to %s: %w", ref, err)
		}
	}
	return d.String(), nil
}

// PlatformImage is one image of a RandomIndex: its platform ("os/arch[/variant]") and the
// creation time its config records.
type PlatformImage struct {
	Platform string
	Created  time.Time
}

// RandomIndex returns a multi-platform image, an OCI index listing one RandomImage per entry of
// images, in that order.
func RandomIndex(images ...PlatformImage) (v1.ImageIndex, error) {
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pi := range images {
		img, err := RandomImage(pi.Created)
		if err != nil {
			return nil, err
		}
		pl, err := v1.ParsePlatform(pi.Platform)
		if err != nil {
			return nil, fmt.Errorf("generating random index: platform %q: %w", pi.Platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: pl}})
	}
	return idx, nil
}

// PushIndex pushes idx, with the images it lists, to repo under every tag (at least one) and
// returns its digest ("sha256:...") and the digests of the manifests it lists, in its order.
func (r *Registry) PushIndex(repo string, idx v1.ImageIndex, tags ...string) (digest string, manifests []string, err error) {
	if len(tags) == 0 {
		return "", nil, fmt.Errorf("pushing index to %s: no tag given", repo)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", nil, fmt.Errorf("pushing index to %s: computing digest: %w", repo, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", nil, fmt.Errorf("pushing index to %s: reading its manifest: %w", repo, err)
	}
	for _, m := range im.Manifests {
		manifests = append(manifests, m.Digest.String())
	}
	for i, t := range tags {
		ref, err := name.NewTag(r.Ref(repo, t))
		if err != nil {
			return "", nil, fmt.Errorf("pushing index to %s: %w", repo, err)
		}
		if i == 0 {
			err = remote.WriteIndex(ref, idx, r.RemoteOptions()...)
		} else {
			err = remote.Tag(ref, idx, r.RemoteOptions()...)
		}
		if err != nil {
			return "", nil, fmt.Errorf("pushing index to %s: %w", ref, err)
		}
	}
	return d.String(), manifests, nil
}

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	sleepCtx(req.Context(), r.latency)
	if r.status != nil {
		if code := r.status(req); code != 0 {
			writeRegistryError(w, req, code, "injected by testenv.WithStatus")
			return
		}
	}
	if r.Username != "" {
		user, password, ok := req.BasicAuth()
		if !ok || !secretEqual(user, r.Username) || !secretEqual(password, r.Password) {
			writeRegistryError(w, req, http.StatusUnauthorized, "authentication required")
			return
		}
	}
	r.handler.ServeHTTP(w, req)
}

// writeRegistryError writes an error response in the format of the OCI
// distribution spec.
func writeRegistryError(w http.ResponseWriter, req *http.Request, status int, msg string) {
	code := "UNKNOWN"
	switch {
	case status == http.StatusUnauthorized:
		code = "UNAUTHORIZED"
		w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
	case status == http.StatusForbidden:
		code = "DENIED"
	case status == http.StatusTooManyRequests:
		code = "TOOMANYREQUESTS"
	case status == http.StatusNotFound && strings.Contains(req.URL.Path, "/manifests/"):
		code = "MANIFEST_UNKNOWN"
	case status == http.StatusNotFound && strings.Contains(req.URL.Path, "/blobs/"):
		code = "BLOB_UNKNOWN"
	case status == http.StatusNotFound:
		code = "NAME_UNKNOWN"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if req.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}
