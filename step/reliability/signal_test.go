package reliability_test

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestSignals sends SIGTERM and SIGKILL to deliver in each phase of a deploy, holding it there
// with a server that stopped answering. On SIGTERM deliver stops at once with exit 130, says it
// was interrupted, and removes its clone; on either signal the branch is at the old commit or
// the new one, every commit renders, and a re-run converges (image pinned, pods ready).
func TestSignals(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	phases := []struct {
		name string
		// hold is called before deliver starts; then the test waits for the phase line and
		// for ready (if set) and signals.
		hold  func(git, api *faultproxy.Proxy)
		ready func(git, api *faultproxy.Proxy) bool
		// after is called once the phase line is seen.
		after func(git, api *faultproxy.Proxy)
		// pushed: the new commit is on the branch by then.
		pushed bool
		// configMaps is how many ConfigMaps the overlay holds besides the Deployment.
		configMaps int
	}{
		{name: "clone", hold: func(git, _ *faultproxy.Proxy) { git.Blackhole() }},
		{
			name: "push",
			hold: func(git, _ *faultproxy.Proxy) {
				git.OnMatch(faultproxy.Request, []byte("service=git-receive-pack"), git.Blackhole)
			},
			ready: func(git, _ *faultproxy.Proxy) bool { return git.Matched() },
		},
		// deliver checks the cluster before the push, so the API server must answer until the
		// apply: slowly, so that the apply of 200 objects is still going when it stops.
		{name: "apply", hold: func(_, api *faultproxy.Proxy) { api.Delay(20 * time.Millisecond) }, after: func(_, api *faultproxy.Proxy) { api.Blackhole() }, configMaps: 200, pushed: true},
		// The API server answers slowly from the start, so the wait's first reads are still on
		// the way when it stops answering at the wait phase.
		{name: "wait", hold: func(_, api *faultproxy.Proxy) { api.Delay(150 * time.Millisecond) }, after: func(_, api *faultproxy.Proxy) { api.Blackhole() }, pushed: true},
	}
	for _, ph := range phases {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			t.Run(ph.name+"/"+sig.String(), func(t *testing.T) {
				t.Parallel()
				ns := uniqueNS("sig")
				a := webApp(ns)
				a.ConfigMaps = ph.configMaps
				s := newServers(t, a, fixture.Options{GitProxy: true})
				digest := s.PushImage(t, "team/web", "1.4.3")
				api, kubeconfig := apiServerProxy(t, cl)
				deploy := args([]string{"deploy", "--env", "staging", "--kubeconfig", kubeconfig, "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())
				old := s.Head(t)
				if ph.hold != nil {
					ph.hold(s.Proxy, api)
				}
				proc := start(t, opts{deadline: 2 * time.Minute}, deploy...)
				if !proc.waitStderr("==> "+ph.name+":", time.Minute) {
					r := proc.wait()
					t.Fatalf("deliver never reached the %s phase:\n%s", ph.name, r)
				}
				if ph.after != nil {
					ph.after(s.Proxy, api)
				}
				for deadline := time.Now().Add(30 * time.Second); ph.ready != nil && !ph.ready(s.Proxy, api) && time.Now().Before(deadline); {
					time.Sleep(5 * time.Millisecond)
				}
				// Let it get stuck in the phase's first request.
				time.Sleep(300 * time.Millisecond)
				before := proc.stderr.String()
				if strings.Contains(before, ph.name+" done in") || strings.Contains(before, ph.name+" failed after") {
					t.Fatalf("the %s phase ended before the signal:\n%s", ph.name, before)
				}
				signalled := time.Now()
				proc.signal(sig)
				r := proc.wait()
				t.Logf("%s in %s: %s, %s after the signal", sig, ph.name, firstLine(r), time.Since(signalled).Round(time.Millisecond))
				if sig == syscall.SIGTERM {
					if r.code != step.ExitInterrupted {
						t.Errorf("SIGTERM in %s: exit %d, want %d (interrupted)\n%s", ph.name, r.code, step.ExitInterrupted, r)
					}
					if d := time.Since(signalled); d > 5*time.Second {
						t.Errorf("deliver took %s to stop after SIGTERM", d)
					}
					if !strings.Contains(r.stderr, "signal received") && !strings.Contains(r.stderr, "context canceled") && !strings.Contains(r.stderr, "interrupted") {
						t.Errorf("the error does not say deliver was interrupted:\n%s", r.stderr)
					}
					if strings.Contains(r.stderr, "reverting") {
						t.Errorf("an interrupted deploy was reverted:\n%s", r.stderr)
					}
					checkTempClean(t, r)
				} else {
					if r.signal != syscall.SIGKILL {
						t.Fatalf("want death by SIGKILL:\n%s", r)
					}
					// A killed process cannot clean up: its clone stays in TMPDIR.
					entries, _ := os.ReadDir(r.tmp)
					t.Logf("SIGKILL left %d entries in TMPDIR", len(entries))
				}
				if ph.pushed {
					checkPushedThenFailed(t, s, old, digest)
				} else {
					checkHistory(t, s, "overlays/staging", old)
				}

				s.Proxy.Pass()
				api.Pass()
				again := runWithin(t, pushTimeout+rolloutTimeout, nil, deploy...)
				if again.code != 0 || !strings.Contains(again.stdout, "rollout=ready") {
					t.Fatalf("re-run after %s in %s:\n%s", sig, ph.name, again)
				}
				want := s.Reg.Host + "/team/web:1.4.3@" + digest
				if img, ready := runningImage(t, cl, ns, "web"); img != want || ready != "1/1" {
					t.Errorf("after the re-run the Deployment runs %s (%s ready), want %s", img, ready, want)
				}
				if n := len(mustLog(t, s)); n != 2 {
					t.Errorf("%d commits after the re-run, want 2", n)
				}
				checkHistory(t, s, "overlays/staging", s.Head(t))
			})
		}
	}
}

// TestSignalAtStart sends SIGTERM to deliver at the earliest moment a Go program can catch it,
// while the bulk of its start-up is still ahead (the Kubernetes and kustomize packages take
// tens of milliseconds to initialise), 50 times: every run must end with exit 130 and say it
// was interrupted, like a signal at any later moment, never die of the signal (143 in a shell).
// The moment is observed with GODEBUG=inittrace=1, with which the runtime prints a line as each
// package's init ends: the signal goes right after the line that follows os/signal's, which is
// deliver's internal/interrupt (it subscribes to the signals in its init, and is initialised
// next). Before that, the Go runtime's own start-up, nothing of deliver runs yet.
func TestSignalAtStart(t *testing.T) {
	t.Parallel()
	// A server that closes every connection: a run that missed the signal fails the image
	// check (exit 9) instead of being interrupted.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var contacted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			contacted.Add(1)
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	deploy := []string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + addr + "/team/web:1.4.3",
		"--config-repo", "https://" + addr + "/config.git"}
	afterSignalInit := regexp.MustCompile(`(?m)^init os/signal @.*\n(init \S+)`)
	const runs = 50
	outcomes := map[string]int{}
	wrongMoment := false
	for i := 0; i < runs; i++ {
		p := start(t, opts{env: []string{"GODEBUG=inittrace=1"}, deadline: time.Minute}, deploy...)
		next := ""
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Microsecond) {
			if m := afterSignalInit.FindStringSubmatch(p.stderr.String()); m != nil {
				next = m[1]
				break
			}
		}
		p.signal(syscall.SIGTERM)
		r := p.wait()
		if next == "" {
			t.Fatalf("run %d: the runtime never reported initialising os/signal and the next package:\n%s", i, r)
		}
		if next != "init github.com/deliverhq/deliver/internal/interrupt" && !wrongMoment {
			wrongMoment = true
			t.Errorf("the package initialised after os/signal is %q, not deliver's internal/interrupt: the signal subscription is no longer the first thing deliver does", strings.TrimPrefix(next, "init "))
		}
		switch {
		case r.signal != 0:
			outcomes["killed by "+r.signal.String()]++
		case r.code == step.ExitInterrupted && strings.Contains(r.stderr, "interrupted"):
			outcomes["exit 130"]++
		default:
			outcomes[fmt.Sprintf("exit %d", r.code)]++
			t.Logf("run %d:\n%s", i, r)
		}
		checkTempClean(t, r)
	}
	t.Logf("SIGTERM right after os/signal's init, %d runs: %v; the test server was contacted %d times", runs, outcomes, contacted.Load())
	if outcomes["exit 130"] != runs {
		t.Errorf("%d of %d runs did not end with exit 130 (interrupted): %v", runs-outcomes["exit 130"], runs, outcomes)
	}
}
