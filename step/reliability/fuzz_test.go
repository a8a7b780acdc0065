package reliability_test

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/registry"
)

// FuzzImageRef: what deploy accepts as an --image, the registry client must read the same
// way. kustomize's FuzzParseImageArg checks ParseImageArg against itself (and its names
// against go-containerregistry's repository parser); this checks the whole reference deploy
// verifies and writes into the overlay (kustomize.FormatImage: repository[:tag][@digest])
// against the parser registry.Client resolves with: it must parse, to the same repository,
// tag and digest.
func FuzzImageRef(f *testing.F) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, s := range []string{
		"web=reg.example.com/team/web:1.2@" + digest, "web=localhost:5000/web:1.2", "web=127.0.0.1:5000/team/web:v1", "web:1.2",
		"nginx@" + digest, "web=docker.io/library/nginx:1.25", "web=ghcr.io/o/r/x:" + strings.Repeat("t", 128),
		"web=reg.example.com:443/a/b/c:latest", "web=a.b-c.d/e__f/g-h:1", "web=reg/web@sha512:" + strings.Repeat("c", 128),
		"web=REG.example.com/web:1", "web=[::1]:5000/web:1",
	} {
		f.Add(s)
	}
	client := registry.New(registry.Options{})
	f.Fuzz(func(t *testing.T, arg string) {
		img, err := kustomize.ParseImageArg(arg)
		if err != nil || strings.Contains(arg, kustomize.Keep) || img.NewTag == "" && img.Digest == "" {
			return // refused, or not a concrete image deploy would verify
		}
		// deploy verifies this reference and writes the same into the overlay.
		r := kustomize.FormatImage(img)
		repo := img.NewName
		if repo == "" {
			repo = img.Name
		}
		parsed, err := client.ParseReference(r)
		if err != nil {
			t.Fatalf("ParseImageArg(%q) accepted it, but the registry client refuses %q: %v", arg, r, err)
		}
		want, err := name.NewRepository(repo)
		if err != nil {
			t.Fatalf("ParseImageArg(%q) accepted repository %q, which go-containerregistry refuses: %v", arg, repo, err)
		}
		if got := parsed.Context().Name(); got != want.Name() {
			t.Fatalf("%q: the registry client reads repository %q, deploy %q", r, got, want.Name())
		}
		switch p := parsed.(type) {
		case name.Digest:
			if p.DigestStr() != img.Digest {
				t.Fatalf("%q: digest %q, want %q", r, p.DigestStr(), img.Digest)
			}
		case name.Tag:
			if img.Digest != "" || p.TagStr() != img.NewTag {
				t.Fatalf("%q: read as tag %q, want tag %q digest %q", r, p.TagStr(), img.NewTag, img.Digest)
			}
		}
	})
}
