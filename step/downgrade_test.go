package step_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// build is an image the downgrade tests push: one image created at created, or, with platforms,
// an index of one image per platform.
type build struct {
	tag       string
	created   time.Time
	platforms []testenv.PlatformImage
}

func (b build) push(t *testing.T, s *fixture.Servers) {
	t.Helper()
	if len(b.platforms) == 0 {
		img, err := testenv.RandomImage(b.created)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reg.PushImage("team/web", img, b.tag); err != nil {
			t.Fatal(err)
		}
		return
	}
	idx, err := testenv.RandomIndex(b.platforms...)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Reg.PushIndex("team/web", idx, b.tag); err != nil {
		t.Fatal(err)
	}
}

// TestDowngradeGuardBuilds: the guard decides on the images real build tools push: arm64-only
// multi-platform images, and reproducible builds whose creation times are the epoch or all the
// same (then the semantic-version order of the tags decides).
func TestDowngradeGuardBuilds(t *testing.T) {
	t.Parallel()
	jan := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
	arm64 := func(tag string, created time.Time) build {
		return build{tag: tag, platforms: []testenv.PlatformImage{{Platform: "linux/arm64", Created: created}}}
	}
	epoch := time.Unix(0, 0).UTC()
	tests := []struct {
		name          string
		running, next build
		wantCode      int
		says          string
	}{
		{name: "arm64-only, older build", running: arm64("2.0.0", jan(2)), next: arm64("2.0.1", jan(1)), wantCode: step.ExitPolicy, says: "built 2026-01-01T12:00:00Z, against 2026-01-02T12:00:00Z"},
		{name: "arm64-only, newer build", running: arm64("2.0.0", jan(1)), next: arm64("1.0.0", jan(2)), says: "read the creation time of its linux/arm64 image (the cluster's platforms are unknown)"},
		{name: "epoch times, older pre-release", running: build{tag: "1.2.3-rc.10", created: epoch}, next: build{tag: "1.2.3-rc.2", created: epoch}, wantCode: step.ExitPolicy, says: "tag 1.2.3-rc.2 sorts before 1.2.3-rc.10"},
		{name: "epoch times, newer pre-release", running: build{tag: "1.2.3-rc.2", created: epoch}, next: build{tag: "1.2.3-rc.10", created: epoch}},
		{name: "identical times, older tag", running: build{tag: "v1.10.0", created: jan(3)}, next: build{tag: "v1.9.0", created: jan(3)}, wantCode: step.ExitPolicy, says: "tag v1.9.0 sorts before v1.10.0"},
		{name: "identical times, the same version", running: build{tag: "1.2.3", created: jan(3)}, next: build{tag: "v1.2.3", created: jan(3)}, says: "cannot tell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
			tt.running.push(t, s)
			tt.next.push(t, s)
			deploy := func(env []string, tag string) result {
				return run(t, env, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag)}, s.GitArgs())...)
			}
			if r := deploy(manual, tt.running.tag); r.code != 0 {
				t.Fatalf("deploy of the running build:\n%s", r)
			}
			head := s.Head(t)
			r := deploy(automated, tt.next.tag)
			if r.code != tt.wantCode || !strings.Contains(r.stderr, tt.says) {
				t.Fatalf("exit %d, want %d saying %q:\n%s", r.code, tt.wantCode, tt.says, r)
			}
			if tt.wantCode != 0 {
				if h := s.Head(t); h != head {
					t.Errorf("the refused deploy moved the config repo from %s to %s", head, h)
				}
				// A manual run may always downgrade.
				if r := deploy(manual, tt.next.tag); r.code != 0 {
					t.Fatalf("manual downgrade:\n%s", r)
				}
			}
		})
	}
}

// TestDowngradeGuardClusterPlatform: of multi-platform images, the guard reads the image of the
// platform the cluster's nodes run (kwok's node: linux/amd64); without a cluster (--no-apply),
// the index's first.
func TestDowngradeGuardClusterPlatform(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	jan := func(d int) time.Time { return time.Date(2026, 1, d, 12, 0, 0, 0, time.UTC) }
	ns := uniqueNS("platform")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages})
	// By its arm64 image, 3.0.1 is the newer build; by its amd64 image, the older one.
	running := build{tag: "3.0.0", platforms: []testenv.PlatformImage{{Platform: "linux/arm64", Created: jan(1)}, {Platform: "linux/amd64", Created: jan(3)}}}
	next := build{tag: "3.0.1", platforms: []testenv.PlatformImage{{Platform: "linux/arm64", Created: jan(4)}, {Platform: "linux/amd64", Created: jan(2)}}}
	running.push(t, s)
	next.push(t, s)
	image := func(tag string) []string {
		return []string{"--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag)}
	}
	if r := run(t, manual, args([]string{"deploy", "--no-apply"}, image("3.0.0"), s.GitArgs())...); r.code != 0 {
		t.Fatalf("deploy of the running build:\n%s", r)
	}
	head := s.Head(t)
	r := run(t, automated, args([]string{"deploy", "--kubeconfig", cl.Kubeconfig}, image("3.0.1"), s.GitArgs())...)
	if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "linux/amd64 image (a platform the cluster runs)") ||
		!strings.Contains(r.stderr, "built 2026-01-02T12:00:00Z, against 2026-01-03T12:00:00Z") {
		t.Fatalf("with the cluster (linux/amd64): exit %d, want %d deciding by the amd64 images:\n%s", r.code, step.ExitPolicy, r)
	}
	if h := s.Head(t); h != head {
		t.Errorf("the refused deploy moved the config repo from %s to %s", head, h)
	}
	r = run(t, automated, args([]string{"deploy", "--no-apply"}, image("3.0.1"), s.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stderr, "linux/arm64 image (the cluster's platforms are unknown)") {
		t.Fatalf("without a cluster: exit %d, want 0 deciding by the index's first image (arm64):\n%s", r.code, r)
	}
}
