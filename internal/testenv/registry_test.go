package testenv_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/deliverhq/deliver/internal/testenv"
)

func head(t *testing.T, ref string, opts ...remote.Option) (string, error) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(r, opts...)
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != status {
		t.Errorf("error = %v, want a transport.Error with status %d", err, status)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := testenv.NewRegistry(t)
	digest, err := r.PushRandomImage("team/web", "1.0", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("digest = %q", digest)
	}
	for _, tag := range []string{"1.0", "latest"} {
		got, err := head(t, r.Ref("team/web", tag), remote.WithTransport(r.Transport()))
		if err != nil || got != digest {
			t.Errorf("Head(%s) = %s, %v; want %s", tag, got, err, digest)
		}
	}
	_, err = head(t, r.Ref("team/web", "missing"), remote.WithTransport(r.Transport()))
	wantStatus(t, err, http.StatusNotFound)
}

func TestRegistryTLSAndBasicAuth(t *testing.T) {
	t.Parallel()
	r := testenv.NewRegistry(t, testenv.WithTLS(), testenv.WithBasicAuth("ci", "s3cret"))
	if !r.TLS || r.CAPool == nil || len(r.CACertPEM) == 0 {
		t.Fatalf("TLS registry: TLS=%v CAPool=%v CACertPEM=%d bytes", r.TLS, r.CAPool, len(r.CACertPEM))
	}
	digest, err := r.PushRandomImage("team/web", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	ref := r.Ref("team/web", "2.0")

	_, err = head(t, ref, remote.WithTransport(r.Transport()))
	wantStatus(t, err, http.StatusUnauthorized)

	basic := remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"})
	got, err := head(t, ref, remote.WithTransport(r.Transport()), basic)
	if err != nil || got != digest {
		t.Fatalf("authenticated Head = %s, %v; want %s", got, err, digest)
	}
	_, err = head(t, r.Ref("team/web", "missing"), remote.WithTransport(r.Transport()), basic)
	wantStatus(t, err, http.StatusNotFound)

	// Without the CA the certificate is not trusted.
	if _, err := head(t, ref, basic); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Head without the CA: error = %v, want a certificate error", err)
	}
}

func TestRegistryWithStatus(t *testing.T) {
	t.Parallel()
	r := testenv.NewRegistry(t, testenv.WithStatus(func(req *http.Request) int {
		if strings.HasSuffix(req.URL.Path, "/manifests/forbidden") {
			return http.StatusForbidden
		}
		return 0
	}))
	if _, err := r.PushRandomImage("team/web", "forbidden", "ok"); err == nil {
		t.Fatal("push to an injected 403 succeeded")
	}
	if _, err := r.PushRandomImage("team/web", "ok"); err != nil {
		t.Fatal(err)
	}
	_, err := head(t, r.Ref("team/web", "forbidden"), remote.WithTransport(r.Transport()))
	wantStatus(t, err, http.StatusForbidden)
	if _, err := head(t, r.Ref("team/web", "ok"), remote.WithTransport(r.Transport())); err != nil {
		t.Errorf("Head(ok) = %v", err)
	}
}
