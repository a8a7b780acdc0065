package step_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestDeployTagDigestDisagree: a reference whose tag and digest name different builds (or whose
// tag does not exist) is refused with exit 3 before the config repo is even cloned, naming the
// image, the tag, the tag's digest and the digest given; a digest of one platform of the tag's
// index is accepted and pinned.
func TestDeployTagDigestDisagree(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	v1 := s.PushImage(t, "team/web", "v1")
	v2 := s.PushImage(t, "team/web", "v2")
	idx, err := testenv.RandomIndex(testenv.PlatformImage{Platform: "linux/amd64", Created: time.Now()}, testenv.PlatformImage{Platform: "linux/arm64", Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	multi, platforms, err := s.Reg.PushIndex("team/web", idx, "v3")
	if err != nil {
		t.Fatal(err)
	}
	arm64 := platforms[1]
	repo := s.Reg.Host + "/team/web"

	refused := []struct {
		name, image string
		says        []string
	}{
		{"tag of another build", "web=" + repo + ":v1@" + v2, []string{"tag and digest disagree", repo, "tag v1", "points at " + v1, v2}},
		{"tag that does not exist", "web=" + repo + ":v9@" + v2, []string{"tag and digest disagree", repo, "tag v9 does not exist", v2}},
		{"index tag and a digest it does not list", "web=" + repo + ":v3@" + v1, []string{"tag and digest disagree", "tag v3", "points at " + multi, v1}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			head, gitRequests := s.Head(t), s.Git.Requests()
			r := run(t, automated, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", tt.image}, s.GitArgs())...)
			if r.code != step.ExitImageNotFound {
				t.Fatalf("exit %d, want %d (image not found):\n%s", r.code, step.ExitImageNotFound, r)
			}
			for _, w := range tt.says {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if h := s.Head(t); h != head {
				t.Errorf("the config repo moved from %s to %s", head, h)
			}
			if n := s.Git.Requests() - gitRequests; n != 0 || strings.Contains(r.stderr, "==> clone") {
				t.Errorf("the config repo was contacted (%d requests) although the image was refused", n)
			}
		})
	}

	t.Run("one platform of the tag's index", func(t *testing.T) {
		r := run(t, automated, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + repo + ":v3@" + arm64}, s.GitArgs())...)
		if r.code != 0 || !strings.Contains(r.stderr, "of the index "+multi+" that tag v3 points at") {
			t.Fatalf("deploy of a platform's digest of the tag's index:\n%s", r)
		}
		if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, "newTag: \"v3\" # first release\n    digest: "+arm64+"\n") {
			t.Errorf("the platform's digest is not pinned:\n%s", got)
		}
	})
}

// TestRecordedTagMoved: promote and rollback re-deploy references deliver recorded earlier; a
// tag re-pushed since does not block them (the recorded digest is the build that ran), and
// deliver says the tag moved.
func TestRecordedTagMoved(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages})
	first := s.PushImage(t, "team/web", "1.0.0")
	s.PushImage(t, "team/web", "1.1.0")
	deploy := func(tag string) {
		t.Helper()
		if r := run(t, manual, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", tag)}, s.GitArgs())...); r.code != 0 {
			t.Fatalf("deploy %s:\n%s", tag, r)
		}
	}
	deploy("1.0.0")
	// The tag is pushed again, with another build.
	moved := s.PushImage(t, "team/web", "1.0.0")

	r := run(t, manual, args([]string{"promote", "--no-apply", "--from", "staging", "--to", "production"}, s.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stderr, "tag 1.0.0 of "+s.Reg.Host+"/team/web now points at "+moved) {
		t.Fatalf("promote after the tag moved:\n%s", r)
	}
	if got := s.File(t, "overlays/production/kustomization.yaml"); !strings.Contains(got, "digest: "+first) {
		t.Errorf("production does not run the recorded digest %s:\n%s", first, got)
	}

	deploy("1.1.0")
	r = run(t, manual, args([]string{"rollback", "--no-apply", "--env", "staging", "--image", "web"}, s.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stderr, "keeping the recorded digest "+first) {
		t.Fatalf("rollback to the previous release after its tag moved:\n%s", r)
	}
	if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, "newTag: \"1.0.0\" # first release\n    digest: "+first) {
		t.Errorf("staging is not back at the recorded digest %s:\n%s", first, got)
	}
}
