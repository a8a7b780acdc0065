package reliability_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestClusterFaults: the API server down, hanging, or stopping in the middle of an apply of
// 200 objects, or during the wait. A cluster that does not answer when deliver starts is found
// before the push: nothing is pushed. Once the push is done, the tip is the new commit; every
// commit renders either way, and a re-run with the API server back applies everything (rollout
// ready, all 200 objects there).
// Nothing may take longer than the timeout flags allow.
func TestClusterFaults(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	tests := []struct {
		name string
		// before is set before deliver starts; phase, when set, waits for that phase on
		// stderr and then runs during.
		before func(p *faultproxy.Proxy)
		phase  string
		during func(p *faultproxy.Proxy)
		// configMaps is how many ConfigMaps the overlay holds besides the Deployment.
		configMaps int
		wantCode   int
		wantMsgs   []string
		// limit is how long deliver may take: the flags' time limits plus a little. No flag
		// bounds the apply itself; --timeout (the wait's) is taken as the cluster's bound.
		limit time.Duration
		// bug names a reported deliver bug that fails this case (see knownBug); limitBug and
		// codeBug one that fails only the time limit or only the exit code and message.
		bug, limitBug, codeBug string
		// unpushed: the fault is there before deliver starts, so it must push nothing.
		unpushed bool
	}{
		{
			name:     "down before apply",
			unpushed: true,
			before:   func(p *faultproxy.Proxy) { p.Refuse() },
			wantCode: step.ExitApply,
			wantMsgs: []string{"cluster unreachable"},
			limit:    rolloutTimeout + 5*time.Second,
		},
		{
			name:     "hangs before apply",
			unpushed: true,
			before:   func(p *faultproxy.Proxy) { p.Blackhole() },
			wantCode: step.ExitApply,
			wantMsgs: []string{"cluster unreachable"},
			limit:    rolloutTimeout + 5*time.Second,
		},
		{
			name: "stops in the middle of the apply",
			// PATCH bodies are ~800 bytes each: the API server dies after about half the
			// ConfigMaps.
			before:     func(p *faultproxy.Proxy) { p.ResetAfter(faultproxy.Request, 80_000) },
			configMaps: 200,
			wantCode:   step.ExitApply,
			wantMsgs:   []string{"cluster unreachable", "ConfigMap/"},
			limit:      rolloutTimeout + 5*time.Second,
		},
		{
			name:       "hangs in the middle of the apply",
			before:     func(p *faultproxy.Proxy) { p.AfterBytes(faultproxy.Request, 80_000, p.Blackhole) },
			configMaps: 200,
			wantCode:   step.ExitApply,
			wantMsgs:   []string{"cluster unreachable"},
			limit:      rolloutTimeout + 5*time.Second,
		},
		{
			name:     "down during the wait",
			phase:    "==> wait:",
			during:   func(p *faultproxy.Proxy) { p.Refuse() },
			wantCode: step.ExitApply,
			wantMsgs: []string{"cluster unreachable"},
			limit:    rolloutTimeout + 5*time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			knownBug(t, tt.bug)
			ns := uniqueNS("cf")
			a := webApp(ns)
			a.ConfigMaps = tt.configMaps
			s := newServers(t, a, fixture.Options{})
			digest := s.PushImage(t, "team/web", "1.4.3")
			p, kubeconfig := apiServerProxy(t, cl)
			deploy := args([]string{"deploy", "--env", "staging", "--kubeconfig", kubeconfig, "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())
			old := s.Head(t)
			if tt.before != nil {
				tt.before(p)
			}
			proc := start(t, opts{deadline: tt.limit + 60*time.Second}, deploy...)
			if tt.phase != "" {
				if !proc.waitStderr(tt.phase, 60*time.Second) {
					r := proc.wait()
					t.Fatalf("deliver never reached %q:\n%s", tt.phase, r)
				}
				tt.during(p)
			}
			r := proc.wait()
			t.Logf("%s: %s (proxy forwarded %d request bytes, %d response bytes)", tt.name, firstLine(r), p.Forwarded(faultproxy.Request), p.Forwarded(faultproxy.Response))
			t.Run("time limit", func(t *testing.T) {
				knownBug(t, tt.limitBug)
				if r.hung || r.elapsed > tt.limit {
					t.Errorf("deliver took %s, more than the %s its timeout flags allow", r.elapsed.Round(time.Millisecond), tt.limit)
				}
			})
			t.Run("exit code and message", func(t *testing.T) {
				knownBug(t, tt.codeBug)
				if r.code != tt.wantCode {
					t.Errorf("exit %d, want %d\n%s", r.code, tt.wantCode, r)
				}
				for _, m := range append(tt.wantMsgs, p.Addr) {
					if !strings.Contains(r.stderr, m) {
						t.Errorf("stderr does not say %q:\n%s", m, r.stderr)
					}
				}
			})
			if strings.Contains(r.stderr, "reverting the config repo") {
				t.Errorf("deliver reverted the release because it could not reach the cluster")
			}
			if tt.unpushed {
				if head := s.Head(t); head != old {
					t.Errorf("the branch moved to %s although the cluster did not answer before the push", head)
				}
				if !strings.Contains(r.stderr, "reaching the cluster") && !strings.Contains(r.stderr, "discovery") {
					t.Errorf("stderr does not say the check before the push failed:\n%s", r.stderr)
				}
			}
			checkPushedThenFailed(t, s, old, digest)
			checkTempClean(t, r)
			out, _ := cl.Kubectl(t.Context(), "get", "configmaps", "-n", ns, "-o", "name")
			t.Logf("%d ConfigMaps in the cluster after the fault", strings.Count(string(out), "configmap/cm-"))

			p.Pass()
			again := runWithin(t, rolloutTimeout+20*time.Second, nil, deploy...)
			if again.code != 0 || !strings.Contains(again.stdout, "rollout=ready") {
				t.Fatalf("re-run with the API server back:\n%s", again)
			}
			want := s.Reg.Host + "/team/web:1.4.3@" + digest
			if img, ready := runningImage(t, cl, ns, "web"); img != want || ready != "1/1" {
				t.Errorf("after the re-run the Deployment runs %s (%s ready), want %s", img, ready, want)
			}
			if n := strings.Count(fixture.Kubectl(t, cl, "get", "configmaps", "-n", ns, "-o", "name"), "configmap/cm-"); n != tt.configMaps {
				t.Errorf("%d ConfigMaps after the re-run, want %d", n, tt.configMaps)
			}
		})
	}
}

// checkPushedThenFailed checks the state a deploy leaves when the cluster fails after the
// push: the tip is the old commit or one new commit on top of it that pins digest (not, say,
// a revert of it), and every commit renders.
func checkPushedThenFailed(t *testing.T, s *fixture.Servers, old, digest string) {
	t.Helper()
	log := mustLog(t, s)
	allowed := []string{old}
	if len(log) >= 2 && log[1] == old {
		allowed = append(allowed, log[0])
		if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, "digest: "+digest) {
			t.Errorf("the commit on top of %s does not pin %s:\n%s", old, digest, got)
		}
	}
	checkHistory(t, s, "overlays/staging", allowed...)
}
