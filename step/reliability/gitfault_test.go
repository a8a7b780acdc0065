package reliability_test

import (
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// Short timeouts keep every case quick; the assertions check deliver honours them.
const (
	pushTimeout     = 10 * time.Second
	registryTimeout = 3 * time.Second
	rolloutTimeout  = 10 * time.Second
)

var timeoutFlags = []string{"--push-timeout", pushTimeout.String(), "--registry-timeout", registryTimeout.String(), "--timeout", rolloutTimeout.String()}

func webApp(ns string) fixture.App {
	return fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages}
}

// TestGitFaults: the config repo's server down, failing, hanging or cutting the connection
// before the clone and in the middle of the push. deliver fails with exit 5 naming the server
// and what it was doing, within --push-timeout; the branch is at the old or the new commit,
// every commit renders, the temp dir is clean, and a re-run converges.
func TestGitFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// fault is set before deliver starts.
		fault func(p *faultproxy.Proxy)
		// wantCodes are the acceptable exit codes (a cut response may land the push).
		wantCodes []int
		wantMsgs  []string
		// landed: the push may have reached the server (the tip may be the new commit).
		landed bool
		// bug names a reported deliver bug that fails this case (see knownBug); resultBug one
		// that fails only the check of the result line.
		bug, resultBug string
	}{
		{
			name:      "down before clone",
			fault:     func(p *faultproxy.Proxy) { p.Refuse() },
			wantCodes: []int{step.ExitPush},
			wantMsgs:  []string{"config repo unreachable", "cloning http://"},
		},
		{
			name:      "answers 500",
			fault:     func(p *faultproxy.Proxy) { p.HTTPStatus(500) },
			wantCodes: []int{step.ExitPush},
			wantMsgs:  []string{"config repo unreachable", "cloning http://", "500"},
		},
		{
			name:      "hangs before clone",
			fault:     func(p *faultproxy.Proxy) { p.Blackhole() },
			wantCodes: []int{step.ExitPush},
			wantMsgs:  []string{"config repo unreachable", "cloning http://"},
		},
		{
			name: "connection cut in the middle of the push upload",
			fault: func(p *faultproxy.Proxy) {
				// The pack follows the request head: 300 bytes in, the server has a partial pack.
				p.CutAfterMatch(faultproxy.Request, []byte("POST /config.git/git-receive-pack"), 300)
			},
			wantCodes: []int{step.ExitPush},
			wantMsgs:  []string{"config repo unreachable", "pushing to http://"},
		},
		{
			name: "connection cut in the middle of the push answer",
			fault: func(p *faultproxy.Proxy) {
				// The server got the whole pack; the answer (ref update status) is cut.
				p.CutAfterMatch(faultproxy.Response, []byte("application/x-git-receive-pack-result"), 20)
			},
			wantCodes: []int{step.ExitOK, step.ExitPush},
			landed:    true,
		},
		{
			name: "hangs during the push",
			fault: func(p *faultproxy.Proxy) {
				p.OnMatch(faultproxy.Request, []byte("service=git-receive-pack"), p.Blackhole)
			},
			wantCodes: []int{step.ExitPush},
			wantMsgs:  []string{"config repo unreachable", "pushing to http://"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			knownBug(t, tt.bug)
			s := newServers(t, webApp("unused"), fixture.Options{GitProxy: true})
			digest := s.PushImage(t, "team/web", "1.4.3")
			old := s.Head(t)
			deploy := args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())
			tt.fault(s.Proxy)
			// Verify and clone take well under a second; the push gets --push-timeout.
			r := runWithin(t, pushTimeout+5*time.Second, nil, deploy...)
			t.Logf("%s: %s", tt.name, firstLine(r))
			if !containsInt(tt.wantCodes, r.code) {
				t.Fatalf("exit %d, want one of %v\n%s", r.code, tt.wantCodes, r)
			}
			if strings.HasPrefix(tt.name, "connection cut") && !s.Proxy.Cut() || strings.HasPrefix(tt.name, "hangs during") && !s.Proxy.Matched() {
				t.Fatalf("the fault was never injected: the test proves nothing")
			}
			for _, m := range tt.wantMsgs {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr does not say %q:\n%s", m, r.stderr)
				}
			}
			if r.code != 0 && !strings.Contains(r.stderr, s.Proxy.Addr) {
				t.Errorf("the error does not name the server %s:\n%s", s.Proxy.Addr, r.stderr)
			}
			allowed := []string{old}
			if tt.landed {
				allowed = append(allowed, "") // filled below
			}
			tip := s.Head(t)
			if tt.landed && tip != old {
				allowed[1] = tip
				if !strings.Contains(s.File(t, "overlays/staging/kustomization.yaml"), digest) {
					t.Errorf("the tip moved but does not pin the digest")
				}
				// The push landed: deliver must say so (CI gates on changed, and a failed
				// rollout is reverted only when this run changed the repo).
				t.Run("result line", func(t *testing.T) {
					knownBug(t, tt.resultBug)
					if r.code == 0 && !strings.Contains(r.stdout, "changed=true commit="+tip) {
						t.Errorf("deliver's own commit %s landed, but it reports %q", tip, strings.TrimSpace(r.stdout))
					}
				})
			}
			checkHistory(t, s, "overlays/staging", allowed...)
			checkTempClean(t, r)

			s.Proxy.Pass()
			again := runWithin(t, pushTimeout, nil, deploy...)
			if again.code != 0 {
				t.Fatalf("re-run after the fault:\n%s", again)
			}
			if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, "digest: "+digest) {
				t.Errorf("after the re-run the overlay does not pin %s:\n%s", digest, got)
			}
			n := len(mustLog(t, s))
			if n != 2 {
				t.Errorf("%d commits after the fault and the re-run, want 2 (seed and one deploy)", n)
			}
			checkHistory(t, s, "overlays/staging", s.Head(t))
			checkTempClean(t, again)
		})
	}
}

func mustLog(t *testing.T, s *fixture.Servers) []string {
	t.Helper()
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range log {
		out = append(out, c.Hash.String())
	}
	return out
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// firstLine summarises a run for logs: exit code, time and the error line.
func firstLine(r result) string {
	msg := ""
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.Contains(l, "deliver: error:") {
			msg = strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(strings.SplitN(r.String(), "\n", 2)[0]) + " " + msg
}
