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
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
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

// TestResolveTagAndDigest: a reference with a tag and a digest is accepted only when the tag
// points at the digest, or at an index that lists it; otherwise it is refused as not found,
// naming the image, the tag, the tag's digest and the digest given.
func TestResolveTagAndDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := testenv.NewRegistry(t)
	v1, err := reg.PushRandomImage("team/web", "v1", "latest")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := reg.PushRandomImage("team/web", "v2")
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := reg.PushRandomImage("team/web")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := testenv.RandomIndex(testenv.PlatformImage{Platform: "linux/amd64", Created: time.Now()}, testenv.PlatformImage{Platform: "linux/arm64", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	multi, platforms, err := reg.PushIndex("team/web", idx, "multi")
	if err != nil {
		t.Fatal(err)
	}
	arm64 := platforms[1]
	client := registry.New(registry.Options{})
	ref := func(tag, digest string) string { return reg.Ref("team/web", tag) + "@" + digest }

	tests := []struct {
		name, ref           string
		wantDigest, wantTag string
		wantTagDigest       string
		// wantErr: the mismatch's tag digest ("none" when the tag does not exist)
		wantErr string
	}{
		{name: "tag and its digest", ref: ref("v1", v1), wantDigest: v1, wantTag: "v1", wantTagDigest: v1},
		{name: "explicit latest and its digest", ref: ref("latest", v1), wantDigest: v1, wantTag: "latest", wantTagDigest: v1},
		{name: "index tag and its digest", ref: ref("multi", multi), wantDigest: multi, wantTag: "multi", wantTagDigest: multi},
		{name: "index tag and one platform's digest", ref: ref("multi", arm64), wantDigest: arm64, wantTag: "multi", wantTagDigest: multi},
		{name: "digest alone", ref: reg.DigestRef("team/web", untagged), wantDigest: untagged},
		{name: "tag of another build", ref: ref("v1", v2), wantErr: v1},
		{name: "explicit latest of another build", ref: ref("latest", v2), wantErr: v1},
		{name: "tag that does not exist", ref: ref("v9", v2), wantErr: "none"},
		{name: "index tag and a digest it does not list", ref: ref("multi", v1), wantErr: multi},
		{name: "tag of an image and a digest of an index", ref: ref("v1", multi), wantErr: v1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := client.Resolve(ctx, tt.ref)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.Digest != tt.wantDigest || got.Tag != tt.wantTag || got.TagDigest != tt.wantTagDigest {
					t.Fatalf("Resolve(%s) = digest %s tag %q tag digest %s; want %s %q %s", tt.ref, got.Digest, got.Tag, got.TagDigest, tt.wantDigest, tt.wantTag, tt.wantTagDigest)
				}
				return
			}
			var mismatch *registry.TagMismatchError
			if !errors.Is(err, registry.ErrNotFound) || !errors.As(err, &mismatch) {
				t.Fatalf("Resolve(%s) err = %v, want a TagMismatchError (not found)", tt.ref, err)
			}
			tag, digest := strings.TrimPrefix(strings.SplitN(tt.ref, "@", 2)[0], reg.Host+"/team/web:"), strings.SplitN(tt.ref, "@", 2)[1]
			want := []string{reg.Host + "/team/web", "tag " + tag, digest}
			if tt.wantErr == "none" {
				want = append(want, "does not exist")
			} else {
				want = append(want, "points at "+tt.wantErr)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestCreated reads the creation time of single images and of multi-platform ones, whatever
// platforms they hold: the platform asked for when the index has it, else the first real one.
func TestCreated(t *testing.T) {
	t.Parallel()
	reg := testenv.NewRegistry(t)
	day := func(d int) time.Time { return time.Date(2026, 3, d, 5, 6, 7, 0, time.UTC) }
	img, err := testenv.RandomImage(day(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PushImage("team/web", img, "single"); err != nil {
		t.Fatal(err)
	}
	indexes := map[string][]testenv.PlatformImage{
		"arm64-only":        {{Platform: "linux/arm64/v8", Created: day(2)}},
		"amd64-arm64":       {{Platform: "linux/amd64", Created: day(3)}, {Platform: "linux/arm64", Created: day(4)}},
		"attested":          {{Platform: "unknown/unknown", Created: day(5)}, {Platform: "linux/s390x", Created: day(6)}, {Platform: "linux/arm64", Created: day(7)}},
		"only-attestations": {{Platform: "unknown/unknown", Created: day(8)}},
	}
	for tag, images := range indexes {
		idx, err := testenv.RandomIndex(images...)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := reg.PushIndex("team/web", idx, tag); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		tag    string
		prefer []string
		want   registry.Creation
	}{
		{tag: "single", want: registry.Creation{Time: day(1)}},
		{tag: "single", prefer: []string{"linux/arm64"}, want: registry.Creation{Time: day(1)}},
		{tag: "arm64-only", want: registry.Creation{Time: day(2), Platform: "linux/arm64/v8"}},
		{tag: "arm64-only", prefer: []string{"linux/amd64"}, want: registry.Creation{Time: day(2), Platform: "linux/arm64/v8"}},
		{tag: "arm64-only", prefer: []string{"linux/arm64"}, want: registry.Creation{Time: day(2), Platform: "linux/arm64/v8", Preferred: true}},
		{tag: "amd64-arm64", want: registry.Creation{Time: day(3), Platform: "linux/amd64"}},
		{tag: "amd64-arm64", prefer: []string{"linux/arm64", "linux/amd64"}, want: registry.Creation{Time: day(4), Platform: "linux/arm64", Preferred: true}},
		{tag: "amd64-arm64", prefer: []string{"windows/amd64", "linux/amd64"}, want: registry.Creation{Time: day(3), Platform: "linux/amd64", Preferred: true}},
		{tag: "attested", want: registry.Creation{Time: day(6), Platform: "linux/s390x"}},
		{tag: "attested", prefer: []string{"linux/arm64"}, want: registry.Creation{Time: day(7), Platform: "linux/arm64", Preferred: true}},
		{tag: "only-attestations", want: registry.Creation{}},
	}
	client := registry.New(registry.Options{})
	for _, tt := range tests {
		t.Run(tt.tag+"/"+strings.Join(tt.prefer, ","), func(t *testing.T) {
			got, err := client.Created(context.Background(), reg.Ref("team/web", tt.tag), tt.prefer)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Time.Equal(tt.want.Time) || got.Platform != tt.want.Platform || got.Preferred != tt.want.Preferred {
				t.Fatalf("Created = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestErrorBodyBounded: a registry answering with an enormous error page (100 MB) gives a short
// error that still says what the registry answered, quickly.
func TestErrorBodyBounded(t *testing.T) {
	t.Parallel()
	reg := testenv.NewRegistry(t)
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		status int
		want   error
		says   string
	}{
		{http.StatusUnauthorized, registry.ErrUnauthorized, "answered 401"},
		{http.StatusForbidden, registry.ErrUnauthorized, "answered 403"},
		{http.StatusInternalServerError, registry.ErrUnreachable, "500"},
		{http.StatusBadGateway, registry.ErrUnreachable, "502"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			p := faultproxy.New(t, reg.Host)
			p.HTTPStatusBody(tt.status, faultproxy.HugeBody(100<<20))
			client := registry.New(registry.Options{Timeout: 30 * time.Second})
			start := time.Now()
			_, err := client.Resolve(context.Background(), p.Addr+"/team/web:1.0.0")
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %.300v, want %v saying %q", err, tt.want, tt.says)
			}
			if n := len(err.Error()); n > 8<<10 {
				t.Errorf("the error is %d bytes long; want a few KB at most", n)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s: the body was read, not cut", d)
			}
			t.Logf("%d bytes: %.200s", len(err.Error()), err)
		})
	}
}
