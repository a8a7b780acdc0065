package policy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/step/policy"
)

func TestDowngradeGuard(t *testing.T) {
	t.Parallel()
	jan := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
	unixEpoch := time.Unix(0, 0).UTC()                     // ko, Jib, Bazel
	nixEpoch := time.Unix(1, 0).UTC()                      // Nix's dockerTools: 1970-01-01T00:00:01Z
	yearOne := time.Time{}                                 // Go's zero time, as some tools write it
	unreadable := time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC) // stands for an error reading the time
	tests := []struct {
		name           string
		oldTag, newTag string
		oldT, newT     time.Time
		refused        string // "" allowed, else what the refusal says
		wantLog        string // a line logf must print
	}{
		{name: "older build by creation time", oldTag: "1.0.0", newTag: "2.0.0", oldT: jan(2), newT: jan(1), refused: "built 2026-01-01T12:00:00Z, against 2026-01-02T12:00:00Z"},
		{name: "newer build by creation time", oldTag: "2.0.0", newTag: "1.0.0", oldT: jan(1), newT: jan(2)},
		{name: "identical times: the tags decide", oldTag: "1.2.3", newTag: "1.2.2", oldT: jan(1), newT: jan(1), refused: "tag 1.2.2 sorts before 1.2.3"},
		{name: "identical times, tags newer", oldTag: "1.2.2", newTag: "1.2.3", oldT: jan(1), newT: jan(1)},
		{name: "identical times, tags not versions", oldTag: "main", newTag: "3f9c2ab", oldT: jan(1), newT: jan(1), wantLog: "cannot tell"},
		{name: "unix epoch: the tags decide", oldTag: "1.2.3-rc.10", newTag: "1.2.3-rc.2", oldT: unixEpoch, newT: unixEpoch, refused: "tag 1.2.3-rc.2 sorts before 1.2.3-rc.10"},
		{name: "unix epoch, tags newer", oldTag: "1.2.3-rc.2", newTag: "1.2.3-rc.10", oldT: unixEpoch, newT: unixEpoch},
		{name: "nix epoch: the tags decide", oldTag: "v2.0.0", newTag: "v1.9.9", oldT: nixEpoch, newT: nixEpoch, refused: "sorts before"},
		{name: "year one: the tags decide", oldTag: "2.0.0", newTag: "1.0.0", oldT: yearOne, newT: yearOne, refused: "sorts before"},
		{name: "epoch against a real time: the tags decide", oldTag: "1.0.0", newTag: "1.1.0", oldT: jan(5), newT: unixEpoch},
		{name: "real time against epoch: the tags decide", oldTag: "1.1.0", newTag: "1.0.0", oldT: unixEpoch, newT: jan(5), refused: "sorts before"},
		{name: "no times, build metadata only differs", oldTag: "1.2.3+build-6", newTag: "1.2.3+build-5", wantLog: "cannot tell"},
		{name: "no times, release after its pre-release", oldTag: "1.2.3-rc.1", newTag: "1.2.3"},
		{name: "no times, pre-release after its release", oldTag: "1.2.3", newTag: "1.2.3-rc.1", refused: "sorts before"},
		{name: "no times, no versions", oldTag: "latest", newTag: "main", wantLog: "cannot tell"},
		{name: "running image unreadable: the tags decide", oldTag: "2.0.0", newTag: "1.0.0", oldT: unreadable, newT: jan(1), refused: "sorts before", wantLog: "cannot be read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			oldRef, newRef := "reg.example/web:"+tt.oldTag, "reg.example/web:"+tt.newTag+"@sha256:new"
			times := map[string]time.Time{oldRef: tt.oldT, newRef: tt.newT}
			var logs []string
			g := policy.NewDowngradeGuard(func(_ context.Context, ref string) (time.Time, error) {
				if times[ref] == unreadable {
					return time.Time{}, errors.New("registry unreachable")
				}
				return times[ref], nil
			}, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
			err := g.Check(context.Background(),
				[]policy.Image{{Name: "web", Ref: oldRef, Tag: tt.oldTag}},
				[]policy.Image{{Name: "web", Ref: newRef, Tag: tt.newTag}})
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refused != "" && (!errors.Is(err, policy.ErrDowngrade) || !strings.Contains(err.Error(), tt.refused)):
				t.Fatalf("err = %v, want a downgrade saying %q", err, tt.refused)
			}
			if tt.refused != "" && (!strings.Contains(err.Error(), newRef) || !strings.Contains(err.Error(), oldRef)) {
				t.Errorf("the refusal does not name both images: %v", err)
			}
			if tt.wantLog != "" && !strings.Contains(strings.Join(logs, "\n"), tt.wantLog) {
				t.Errorf("logs %q do not say %q", logs, tt.wantLog)
			}
		})
	}
}

// TestDowngradeGuardReads: what the guard asks for, and what it does with errors.
func TestDowngradeGuardReads(t *testing.T) {
	t.Parallel()
	var asked []string
	failNew := errors.New("registry unreachable: reading the new image")
	g := policy.NewDowngradeGuard(func(_ context.Context, ref string) (time.Time, error) {
		asked = append(asked, ref)
		if strings.HasSuffix(ref, ":broken") {
			return time.Time{}, failNew
		}
		return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil
	}, nil)
	ctx := context.Background()
	running := []policy.Image{
		{Name: "web", Ref: "r/web:1.0.0", Tag: "1.0.0"},
		{Name: "api", Ref: "r/api:2.0.0", Tag: "2.0.0"},
		{Name: "renamed"}, // an entry that only renames: nothing runs by tag or digest
	}
	// Same reference, images that do not run yet, and renames are not compared.
	next := []policy.Image{
		{Name: "web", Ref: "r/web:1.0.0", Tag: "1.0.0"},
		{Name: "new", Ref: "r/new:0.1.0", Tag: "0.1.0"},
		{Name: "renamed", Ref: "r/renamed:0.0.1", Tag: "0.0.1"},
	}
	if err := g.Check(ctx, running, next); err != nil || len(asked) != 0 {
		t.Fatalf("Check = %v, asked %q; want nil, nothing asked", err, asked)
	}
	// A newer build: each reference is read once, however often the push retries.
	next = []policy.Image{{Name: "api", Ref: "r/api:2.1.0", Tag: "2.1.0"}}
	for range 3 {
		if err := g.Check(ctx, running, next); err != nil {
			t.Fatal(err)
		}
	}
	if len(asked) != 2 {
		t.Fatalf("asked %q; want each image once", asked)
	}
	// The new image's time cannot be read: that is the deploy's error, not a verdict.
	if err := g.Check(ctx, running, []policy.Image{{Name: "api", Ref: "r/api:broken", Tag: "broken"}}); !errors.Is(err, failNew) {
		t.Fatalf("Check = %v, want %v", err, failNew)
	}
}
