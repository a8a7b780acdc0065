// Package registry checks that the images deliver is asked to ship exist, and resolves their
// tags to digests, before anything is written anywhere. It talks to registries through
// go-containerregistry and relies on its transport for retries of transient failures; it adds
// no retry loop of its own. Failures are classified as ErrNotFound (the tag or repository does
// not exist), ErrUnauthorized (401/403) or ErrUnreachable (the registry cannot be reached or
// keeps failing), so callers can report each distinctly.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/deliverhq/deliver/step/httplimit"
)

// Sentinel errors, wrapped with the reference that failed.
var (
	ErrNotFound     = errors.New("image not found")
	ErrUnauthorized = errors.New("registry refused the credentials")
	ErrUnreachable  = errors.New("registry unreachable")
	ErrInvalidRef   = errors.New("invalid image reference")
)

// Options configure a Client.
type Options struct {
	// Username and Password, when set, are used for every registry (--registry-username/-password).
	Username, Password string
	// Insecure lists registry hosts reached over plain HTTP.
	Insecure []string
	// CAs, when set, are trusted in addition to the system roots.
	CAs *x509.CertPool
	// Transport overrides the base HTTP transport (tests); CAs is ignored when it is set.
	Transport http.RoundTripper
	// Getenv reads the environment for credentials (os.Getenv in production): the CI's
	// variables, and where the docker config is (DOCKER_CONFIG, HOME; see dockerKeychain).
	// Nil reads nothing: no CI credentials, no docker config.
	Getenv func(string) string
	// Timeout bounds one resolution, including go-containerregistry's own retries. Default 60s.
	Timeout time.Duration
}

// Client resolves image references.
type Client struct {
	opts     Options
	keychain authn.Keychain
	insecure map[string]bool
	base     http.RoundTripper
}

// New returns a Client.
func New(opts Options) *Client {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	c := &Client{opts: opts, insecure: map[string]bool{}}
	for _, h := range opts.Insecure {
		c.insecure[h] = true
	}
	c.keychain = authn.NewMultiKeychain(explicitKeychain{opts.Username, opts.Password}, ciKeychain{opts.Getenv}, dockerKeychain{opts.Getenv})
	c.base = opts.Transport
	if c.base == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		if opts.CAs != nil {
			t.TLSClientConfig = &tls.Config{RootCAs: opts.CAs, MinVersion: tls.VersionTLS12}
		}
		c.base = t
	}
	// A registry's error page is read whole by go-containerregistry to quote it in its error:
	// bound it, so that a hostile or broken registry cannot fill memory or the log.
	c.base = httplimit.Transport(c.base, httplimit.DefaultLimit)
	return c
}

// Resolved is an image reference confirmed to exist.
type Resolved struct {
	// Ref is the reference as given (tag or digest form).
	Ref name.Reference
	// Repository is the repository part (registry/path), without tag or digest.
	Repository string
	// Tag is the tag asked for, if any.
	Tag string
	// Digest is the manifest (or index) digest the reference points to now.
	Digest string
	// TagDigest is the digest Tag points at now: Digest, or, when the reference gave a digest
	// of one platform's manifest, the digest of the index that lists it. Empty without a tag.
	TagDigest string
}

// Pinned is the reference as repository:tag@digest (or repository@digest without a tag).
func (r Resolved) Pinned() string {
	if r.Tag != "" {
		return r.Repository + ":" + r.Tag + "@" + r.Digest
	}
	return r.Repository + "@" + r.Digest
}

// ParseReference parses an image reference (repository[:tag][@digest]) honouring the client's
// insecure hosts.
func (c *Client) ParseReference(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		// StrictValidation refuses a missing tag; try again to give the plain parser's message.
		if r2, err2 := name.ParseReference(ref); err2 == nil {
			r, err = r2, nil
		} else {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err2)
		}
	}
	if c.insecure[r.Context().RegistryStr()] {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
		}
	}
	return r, nil
}

// Resolve confirms that ref exists in its registry and returns its digest. A reference that
// carries both a tag and a digest must agree with itself: the digest must exist, and the tag must
// point at it, or at an index (a multi-platform image) that lists it among its manifests.
// Otherwise the error is a *TagMismatchError (which wraps ErrNotFound), also when the tag does
// not exist at all: a reference whose tag names another build than the one that would run is
// refused, never pinned.
func (c *Client) Resolve(ctx context.Context, ref string) (Resolved, error) {
	tagPart, digestPart := splitDigest(ref)
	r, err := c.ParseReference(ref)
	if err != nil {
		return Resolved{}, err
	}
	out := Resolved{Ref: r, Repository: r.Context().Name()}
	var tagRef *name.Tag // the tag to check against the digest
	if digestPart != "" {
		// name.ParseReference drops the tag of repo:tag@digest; keep it, to check it.
		if tr, err := c.ParseReference(tagPart); err == nil {
			if t, ok := tr.(name.Tag); ok && (t.TagStr() != "latest" || hasExplicitTag(tagPart)) {
				out.Tag, tagRef = t.TagStr(), &t
			}
		}
	} else if t, ok := r.(name.Tag); ok {
		out.Tag = t.TagStr()
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	desc, err := bounded(ctx, func() (*v1.Descriptor, error) { return remote.Head(r, c.remoteOptions(ctx)...) })
	if err != nil {
		return Resolved{}, c.classify(ctx, ref, err)
	}
	if dr, ok := r.(name.Digest); ok && dr.DigestStr() != desc.Digest.String() {
		return Resolved{}, fmt.Errorf("%w: %s: registry returned digest %s", ErrNotFound, ref, desc.Digest)
	}
	out.Digest = desc.Digest.String()
	if out.Tag != "" {
		out.TagDigest = out.Digest
	}
	if tagRef != nil {
		if out.TagDigest, err = c.checkTag(ctx, ref, *tagRef, out.Digest); err != nil {
			return Resolved{}, err
		}
	}
	return out, nil
}

// checkTag confirms that tag points at digest, or at an index that lists digest, and returns
// the digest the tag points at.
func (c *Client) checkTag(ctx context.Context, ref string, tag name.Tag, digest string) (string, error) {
	mismatch := &TagMismatchError{Ref: ref, Repository: tag.Context().Name(), Tag: tag.TagStr(), Digest: digest}
	desc, err := bounded(ctx, func() (*v1.Descriptor, error) { return remote.Head(tag, c.remoteOptions(ctx)...) })
	if isNotFound(err) {
		return "", mismatch
	}
	if err != nil {
		return "", c.classify(ctx, ref, fmt.Errorf("resolving tag %s: %w", tag.TagStr(), err))
	}
	mismatch.TagDigest = desc.Digest.String()
	if mismatch.TagDigest == digest {
		return mismatch.TagDigest, nil
	}
	if !desc.MediaType.IsIndex() {
		return "", mismatch
	}
	// The tag names a multi-platform image: the digest of one of its platforms' manifests names
	// a build of that same release (what a node of that platform pulls for the tag).
	manifest, err := bounded(ctx, func() (*v1.IndexManifest, error) {
		idx, err := remote.Index(tag.Context().Digest(mismatch.TagDigest), c.remoteOptions(ctx)...)
		if err != nil {
			return nil, err
		}
		return idx.IndexManifest()
	})
	if err != nil {
		return "", c.classify(ctx, ref, fmt.Errorf("reading the index tag %s points at: %w", tag.TagStr(), err))
	}
	for _, m := range manifest.Manifests {
		if m.Digest.String() == digest {
			return mismatch.TagDigest, nil
		}
	}
	mismatch.Index = true
	return "", mismatch
}

// TagMismatchError reports a reference (repository:tag@digest) whose tag does not point at its
// digest: the cluster would run the digest's build while the overlay, the commit and the
// downgrade guard name the tag's. It wraps ErrNotFound.
type TagMismatchError struct {
	// Ref is the reference as given.
	Ref string
	// Repository is registry/path.
	Repository string
	// Tag is the reference's tag.
	Tag string
	// TagDigest is the digest the tag points at; empty when the tag does not exist.
	TagDigest string
	// Index is set when TagDigest is an index that does not list Digest either.
	Index bool
	// Digest is the reference's digest (which exists).
	Digest string
}

func (e *TagMismatchError) Error() string {
	if e.TagDigest == "" {
		return fmt.Sprintf("tag and digest disagree: %s: tag %s does not exist in %s, while the digest given (%s) does; push the tag, or give the digest alone",
			e.Ref, e.Tag, e.Repository, e.Digest)
	}
	what := "not at the digest given (" + e.Digest + ")"
	if e.Index {
		what = "an index that does not list the digest given (" + e.Digest + ")"
	}
	return fmt.Sprintf("tag and digest disagree: %s: tag %s points at %s in %s, %s; give the tag's digest, or the digest alone",
		e.Ref, e.Tag, e.TagDigest, e.Repository, what)
}

// Unwrap returns ErrNotFound.
func (e *TagMismatchError) Unwrap() error { return ErrNotFound }

// isNotFound reports whether err is the registry saying the manifest or repository does not
// exist.
func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// Creation is when an image was built, as its config records it.
type Creation struct {
	// Time is the creation time in the image's config; zero when it records none.
	Time time.Time
	// Platform is, for a multi-platform image (an index), the platform whose image was read,
	// e.g. "linux/arm64"; empty for a single image.
	Platform string
	// Preferred is set when Platform is one of the platforms Created was asked to prefer.
	Preferred bool
}

// Created returns when the image ref names was built. For a multi-platform image (an index),
// the creation time is read from the image of the first of prefer ("os/arch[/variant]", e.g. the
// platforms the cluster's nodes run) that the index holds, else from its first image with a
// real platform (attestation manifests, "unknown/unknown", are skipped), and the Creation says
// which. An index that holds no image records no time (the zero Creation).
func (c *Client) Created(ctx context.Context, ref string, prefer []string) (Creation, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return Creation{}, err
	}
	wanted := make([]v1.Platform, 0, len(prefer))
	for _, p := range prefer {
		pl, err := v1.ParsePlatform(p)
		if err != nil {
			return Creation{}, fmt.Errorf("platform %q: %w", p, err)
		}
		wanted = append(wanted, *pl)
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	out, err := bounded(ctx, func() (Creation, error) {
		desc, err := remote.Get(r, c.remoteOptions(ctx)...)
		if err != nil {
			return Creation{}, err
		}
		var img v1.Image
		var out Creation
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return Creation{}, err
			}
			manifest, err := idx.IndexManifest()
			if err != nil {
				return Creation{}, err
			}
			chosen, preferred, ok := choosePlatform(manifest.Manifests, wanted)
			if !ok {
				return Creation{}, nil
			}
			out.Platform, out.Preferred = platformName(chosen), preferred
			if img, err = idx.Image(chosen.Digest); err != nil {
				return Creation{}, err
			}
		} else if img, err = desc.Image(); err != nil {
			return Creation{}, err
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			return Creation{}, err
		}
		out.Time = cfg.Created.Time
		return out, nil
	})
	if err != nil {
		return Creation{}, c.classify(ctx, ref, fmt.Errorf("reading config: %w", err))
	}
	return out, nil
}

// choosePlatform picks the image of an index to read: the first manifest that satisfies the
// first of prefer it can (a preference without a variant accepts any variant), else the first
// image with a real platform, else the first image that names no platform. It reports whether
// the choice is a preferred one, and false as its last result when the index lists no image.
func choosePlatform(manifests []v1.Descriptor, prefer []v1.Platform) (v1.Descriptor, bool, bool) {
	var images, unnamed []v1.Descriptor
	for _, m := range manifests {
		switch {
		case !m.MediaType.IsImage():
		case m.Platform == nil:
			unnamed = append(unnamed, m)
		case m.Platform.OS != "unknown" && m.Platform.Architecture != "unknown":
			images = append(images, m)
		}
	}
	for _, want := range prefer {
		for _, m := range images {
			if m.Platform.Satisfies(want) {
				return m, true, true
			}
		}
	}
	images = append(images, unnamed...)
	if len(images) == 0 {
		return v1.Descriptor{}, false, false
	}
	return images[0], false, true
}

// platformName names the platform of an index's manifest.
func platformName(m v1.Descriptor) string {
	if m.Platform == nil {
		return "unspecified"
	}
	return m.Platform.String()
}

func (c *Client) remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.base),
		remote.WithUserAgent("deliver"),
		// go-containerregistry's own retries of transient failures, with short pauses: its
		// backoff sleeps without watching ctx, and the default (1s, 3s) overran --registry-timeout.
		remote.WithRetryBackoff(remote.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
	}
}

// bounded runs f but returns as soon as ctx ends: go-containerregistry's retry backoff sleeps
// without watching ctx, and --registry-timeout must hold. (f's goroutine finishes on its own; the
// process is short-lived.)
func bounded[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// classify maps a go-containerregistry error to one of the sentinels.
func (c *Client) classify(ctx context.Context, ref string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch terr.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s does not exist in %s", ErrNotFound, ref, registryOf(ref))
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s: %s answered %d", ErrUnauthorized, ref, registryOf(ref), terr.StatusCode)
		}
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("%w: %s does not exist in %s", ErrNotFound, ref, registryOf(ref))
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("%w: %s: %v", ErrUnauthorized, ref, err)
			}
		}
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, ref, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: resolving %s: timed out after %s: %v", ErrUnreachable, ref, c.opts.Timeout, err)
	}
	return fmt.Errorf("%w: resolving %s: %v", ErrUnreachable, ref, err)
}

func registryOf(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "the registry"
	}
	return r.Context().RegistryStr()
}

// splitDigest splits "repo:tag@sha256:..." into "repo:tag" and "sha256:...".
func splitDigest(ref string) (string, string) {
	for i := 0; i < len(ref); i++ {
		if ref[i] == '@' {
			return ref[:i], ref[i+1:]
		}
	}
	return ref, ""
}

// hasExplicitTag reports whether ref names a tag after its last path segment.
func hasExplicitTag(ref string) bool {
	slash := -1
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '/' {
			slash = i
			break
		}
	}
	for i := len(ref) - 1; i > slash; i-- {
		if ref[i] == ':' {
			return true
		}
	}
	return false
}
