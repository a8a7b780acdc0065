package registry_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/registry"
)

func TestResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testenv.NewRegistry(t, testenv.WithTLS(), testenv.WithBasicAuth("ci", "registry-s3cret"))
	digest, err := reg.PushRandomImage("team/web", "1.4.3", "latest")
	if err != nil {
		t.Fatal(err)
	}
	client := registry.New(registry.Options{Username: "ci", Password: "registry-s3cret", CAs: reg.CAPool})

	tests := []struct {
		name, ref, wantTag, wantPinned string
	}{
		{"tag", reg.Ref("team/web", "1.4.3"), "1.4.3", reg.Host + "/team/web:1.4.3@" + digest},
		{"digest", reg.DigestRef("team/web", digest), "", reg.Host + "/team/web@" + digest},
		{"tag and digest", reg.Ref("team/web", "1.4.3") + "@" + digest, "1.4.3", reg.Host + "/team/web:1.4.3@" + digest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.Resolve(ctx, tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != digest || got.Tag != tt.wantTag || got.Pinned() != tt.wantPinned {
				t.Errorf("Resolve(%s) = digest %s tag %q pinned %s; want %s %q %s", tt.ref, got.Digest, got.Tag, got.Pinned(), digest, tt.wantTag, tt.wantPinned)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testenv.NewRegistry(t, testenv.WithTLS(), testenv.WithBasicAuth("ci", "registry-s3cret"))
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	good := registry.New(registry.Options{Username: "ci", Password: "registry-s3cret", CAs: reg.CAPool})
	bad := registry.New(registry.Options{Username: "ci", Password: "wrong-password-42", CAs: reg.CAPool})
	// A port nobody listens on.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := l.Addr().String()
	l.Close()

	other := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name   string
		client *registry.Client
		ref    string
		want   error
	}{
		{"missing tag", good, reg.Ref("team/web", "9.9.9"), registry.ErrNotFound},
		{"missing repository", good, reg.Ref("team/nope", "1.0.0"), registry.ErrNotFound},
		{"missing digest", good, reg.DigestRef("team/web", other), registry.ErrNotFound},
		{"wrong password", bad, reg.Ref("team/web", "1.0.0"), registry.ErrUnauthorized},
		// TLS verification is on by default: a certificate from an unknown authority is refused.
		{"untrusted certificate", registry.New(registry.Options{Username: "ci", Password: "registry-s3cret", Timeout: 5 * time.Second}), reg.Ref("team/web", "1.0.0"), registry.ErrUnreachable},
		{"unreachable", registry.New(registry.Options{Timeout: 5 * time.Second}), deadAddr + "/team/web:1.0.0", registry.ErrUnreachable},
		{"not a reference", good, "UPPER/Case:tag with space", registry.ErrInvalidRef},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Resolve(ctx, tt.ref)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Resolve(%s) err = %v, want %v", tt.ref, err, tt.want)
			}
			if strings.Contains(err.Error(), "wrong-password-42") || strings.Contains(err.Error(), "registry-s3cret") {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
}

func TestServerErrorIsUnreachable(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	reg := testenv.NewRegistry(t, testenv.WithStatus(func(r *http.Request) int {
		if failing.Load() && strings.Contains(r.URL.Path, "/manifests/") {
			return http.StatusInternalServerError
		}
		return 0
	}))
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	client := registry.New(registry.Options{Timeout: 10 * time.Second})
	_, err := client.Resolve(context.Background(), reg.Ref("team/web", "1.0.0"))
	if !errors.Is(err, registry.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestCIKeychain(t *testing.T) {
	t.Parallel()
	reg := testenv.NewRegistry(t, testenv.WithBasicAuth("gitlab-ci-token", "job-token-value"))
	if _, err := reg.PushRandomImage("group/app", "v1"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CI_REGISTRY": reg.Host, "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "job-token-value"}
	client := registry.New(registry.Options{Getenv: func(k string) string { return env[k] }})
	if _, err := client.Resolve(context.Background(), reg.Ref("group/app", "v1")); err != nil {
		t.Fatalf("with GitLab CI credentials: %v", err)
	}
	anon := registry.New(registry.Options{})
	if _, err := anon.Resolve(context.Background(), reg.Ref("group/app", "v1")); !errors.Is(err, registry.ErrUnauthorized) {
		t.Fatalf("without credentials: err = %v, want ErrUnauthorized", err)
	}
}

func TestCreated(t *testing.T) {
	t.Parallel()
	reg := testenv.NewRegistry(t)
	when := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	img, err := testenv.RandomImage(when)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushImage("team/web", img, "old"); err != nil {
		t.Fatal(err)
	}
	got, err := registry.New(registry.Options{}).Created(context.Background(), reg.Ref("team/web", "old"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(when) {
		t.Fatalf("Created = %s, want %s", got, when)
	}
}
