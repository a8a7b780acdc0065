package policy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrDowngrade marks a change the downgrade guard refused: it would replace a running image
// with an older build.
var ErrDowngrade = errors.New("downgrade")

// Image is an image of an environment as the guard compares it.
type Image struct {
	// Name is the image's name in the manifests (the images: entry's name).
	Name string
	// Ref is the reference that runs, repository[:tag][@digest]; empty when the entry sets no
	// tag or digest.
	Ref string
	// Tag is the reference's tag, if any.
	Tag string
}

// CreatedAt returns when the image ref names was built, as its config records it: the zero time
// when it records none. The command passes one that reads the registry.
type CreatedAt func(ctx context.Context, ref string) (time.Time, error)

// DowngradeGuard refuses to replace a running image with an older build of it. "Older" is
// decided by the creation times recorded in the images' configs, when both are known and they
// differ; else by the semantic-version order of the tags (CompareVersions), when both are
// versions and they differ; when neither tells, the change is allowed. A creation time is
// unknown when the image records none, or records the epoch (1970-01-01, or year 1), as
// reproducible builds (ko, Jib, Nix, Bazel) do; two identical times tell nothing either (one
// build system stamping every build the same). A running image whose time cannot be read (gone
// from its registry, registry down) has an unknown time: that must not block shipping a new
// build.
//
// A guard caches the creation times it read, so that the retries of a push (each checks the
// policy of the tip it builds on) ask the registry once. It is safe for concurrent use.
type DowngradeGuard struct {
	createdAt CreatedAt
	logf      func(format string, args ...any)
	mu        sync.Mutex
	created   map[string]time.Time // by reference
}

// NewDowngradeGuard returns a guard that reads creation times with createdAt and explains with
// logf (nil: silently) what it could not tell.
func NewDowngradeGuard(createdAt CreatedAt, logf func(format string, args ...any)) *DowngradeGuard {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &DowngradeGuard{createdAt: createdAt, logf: logf, created: map[string]time.Time{}}
}

// Check refuses, with an error wrapping ErrDowngrade, a change that sets any of next while an
// older build of it is running (the image of the same name in running). Images that do not run
// yet, or run with the same reference, are not compared. Errors reading next's creation times
// are returned as they are.
func (g *DowngradeGuard) Check(ctx context.Context, running, next []Image) error {
	now := map[string]Image{}
	for _, img := range running {
		now[img.Name] = img
	}
	for _, img := range next {
		old, ok := now[img.Name]
		if !ok || old.Ref == "" || old.Ref == img.Ref {
			continue
		}
		older, how, err := g.older(ctx, old, img)
		if err != nil {
			return err
		}
		if older {
			return fmt.Errorf("%w: %s: %s is older than the %s running now (%s); automated runs never downgrade (%s: environments.<env>.downgrade: allow permits it); roll back in a manual run",
				ErrDowngrade, img.Name, img.Ref, old.Ref, how, FileName)
		}
	}
	return nil
}

// older reports whether next is an older build than running, and how that was decided.
func (g *DowngradeGuard) older(ctx context.Context, running, next Image) (bool, string, error) {
	newT, err := g.createdTime(ctx, next.Ref)
	if err != nil {
		return false, "", err
	}
	oldT, err := g.createdTime(ctx, running.Ref)
	if err != nil {
		g.logf("%s: the creation time of the running %s cannot be read, so the tags decide: %v", next.Name, running.Ref, err)
		oldT = time.Time{}
	}
	if knownTime(newT) && knownTime(oldT) && !newT.Equal(oldT) {
		return newT.Before(oldT), fmt.Sprintf("built %s, against %s", newT.UTC().Format(time.RFC3339), oldT.UTC().Format(time.RFC3339)), nil
	}
	if cmp, ok := CompareVersions(next.Tag, running.Tag); ok && cmp != 0 {
		return cmp < 0, fmt.Sprintf("tag %s sorts before %s", next.Tag, running.Tag), nil
	}
	g.logf("%s: cannot tell whether %s is older than the %s running now (creation times %s and %s; tags %q and %q are not versions that differ): allowed",
		next.Name, next.Ref, running.Ref, describeTime(newT), describeTime(oldT), next.Tag, running.Tag)
	return false, "", nil
}

// createdTime returns ref's creation time, from the cache or createdAt.
func (g *DowngradeGuard) createdTime(ctx context.Context, ref string) (time.Time, error) {
	g.mu.Lock()
	t, ok := g.created[ref]
	g.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := g.createdAt(ctx, ref)
	if err != nil {
		return time.Time{}, err
	}
	g.mu.Lock()
	g.created[ref] = t
	g.mu.Unlock()
	return t, nil
}

// epochEnd is the end of the first day of Unix time: build times before it are the placeholders
// reproducible builds write (1970-01-01T00:00:00Z, Nix's 00:00:01, Go's zero time in year 1),
// not when anything was built.
var epochEnd = time.Date(1970, 1, 2, 0, 0, 0, 0, time.UTC)

// knownTime reports whether t is a real build time.
func knownTime(t time.Time) bool { return !t.Before(epochEnd) }

func describeTime(t time.Time) string {
	if !knownTime(t) {
		if t.IsZero() {
			return "none"
		}
		return t.UTC().Format(time.RFC3339) + " (a placeholder)"
	}
	return t.UTC().Format(time.RFC3339)
}
