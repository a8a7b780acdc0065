package reliability_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestRolloutNeverReady deploys an image whose pods never become ready (testenv's kwok never
// marks pods of an image named *never-ready* Ready). With --on-failure keep the new commit
// stays and the cluster runs it; with revert, a revert commit restores the overlay byte for
// byte and the previous version runs again. Either way deliver exits 7 naming the Deployment,
// within --timeout (twice, for revert: the wait for the previous version has its own), the
// same deploy again does the same (keep: no new commit), and a deploy of a good image converges.
func TestRolloutNeverReady(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	for _, mode := range []string{"keep", "revert"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ns := uniqueNS("nr-" + mode)
			s := newServers(t, webApp(ns), fixture.Options{})
			good := s.PushImage(t, "team/web", "1.0.0")
			s.PushImage(t, "team/never-ready", "2.0.0")
			better := s.PushImage(t, "team/web", "1.1.0")
			base := args([]string{"deploy", "--env", "staging", "--kubeconfig", cl.Kubeconfig}, timeoutFlags, s.GitArgs())
			if r := run(t, nil, append(base, "--image", "web="+s.Reg.Ref("team/web", "1.0.0"))...); r.code != 0 {
				t.Fatalf("first deploy:\n%s", r)
			}
			goodRef := s.Reg.Host + "/team/web:1.0.0@" + good
			old, oldOverlay := s.Head(t), s.File(t, "overlays/staging/kustomization.yaml")
			bad := append(base, "--image", "web="+s.Reg.Ref("team/never-ready", "2.0.0"), "--on-failure", mode)

			limit := rolloutTimeout + 5*time.Second
			if mode == "revert" {
				limit = 2*rolloutTimeout + 5*time.Second
			}
			for attempt := 1; attempt <= 2; attempt++ {
				r := runWithin(t, limit, nil, bad...)
				t.Logf("%s, attempt %d: %s", mode, attempt, firstLine(r))
				if r.code != step.ExitRollout {
					t.Fatalf("exit %d, want %d (rollout failed)\n%s", r.code, step.ExitRollout, r)
				}
				for _, m := range []string{"rollout failed", "Deployment/" + ns + "/web", "timed out after " + rolloutTimeout.String()} {
					if !strings.Contains(r.stderr, m) {
						t.Errorf("stderr does not say %q:\n%s", m, r.stderr)
					}
				}
				checkTempClean(t, r)
				log := mustLog(t, s)
				img, ready := runningImage(t, cl, ns, "web")
				switch mode {
				case "keep":
					// One commit on top of the good one, pinned to the never-ready image; the same
					// deploy again changes nothing in the repo.
					if len(log) != 3 || log[1] != old {
						t.Errorf("attempt %d: %d commits, want the good deploy and one never-ready deploy on top", attempt, len(log))
					}
					if !strings.Contains(s.File(t, "overlays/staging/kustomization.yaml"), "never-ready") || !strings.Contains(img, "never-ready") {
						t.Errorf("--on-failure keep: overlay/cluster do not keep the new image (cluster runs %s)", img)
					}
					if attempt == 2 && !strings.Contains(r.stderr, "already up to date") {
						t.Errorf("the second keep run made a commit:\n%s", r.stderr)
					}
				case "revert":
					if !strings.Contains(r.stderr, "reverted to web="+goodRef) {
						t.Errorf("the error does not say what it reverted to:\n%s", r.stderr)
					}
					if got := s.File(t, "overlays/staging/kustomization.yaml"); got != oldOverlay {
						t.Errorf("the revert did not restore the overlay byte for byte:\n%s\nwant:\n%s", got, oldOverlay)
					}
					if img != goodRef || ready != "1/1" {
						t.Errorf("after the revert the Deployment runs %s (%s ready), want %s", img, ready, goodRef)
					}
				}
				checkHistory(t, s, "overlays/staging", s.Head(t))
			}
			if mode == "revert" {
				// seed, good deploy, then (never-ready deploy, revert) twice.
				if n := len(mustLog(t, s)); n != 6 {
					t.Errorf("%d commits, want 6 (seed, deploy, 2 x (deploy, revert))", n)
				}
			}
			r := runWithin(t, rolloutTimeout+5*time.Second, nil, append(base, "--image", "web="+s.Reg.Ref("team/web", "1.1.0"))...)
			if r.code != 0 || !strings.Contains(r.stdout, "rollout=ready") {
				t.Fatalf("a good deploy after the failed ones:\n%s", r)
			}
			if img, ready := runningImage(t, cl, ns, "web"); img != s.Reg.Host+"/team/web:1.1.0@"+better || ready != "1/1" {
				t.Errorf("the good deploy runs %s (%s ready)", img, ready)
			}
		})
	}
}
