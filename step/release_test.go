package step_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
	"github.com/deliverhq/deliver/step/release"
)

const productionPolicy = `# who may deploy where
environments:
  production:
    automated: false
`

var (
	automated = []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=push", "GITLAB_USER_NAME=ci-bot"}
	manual    = []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "GITLAB_USER_NAME=Ada"}
)

func TestLocksAndManualOnlyEnvironments(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages, Policy: productionPolicy})
	for _, tag := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		s.PushImage(t, "team/web", tag)
	}
	deploy := func(env []string, envName, tag string, extra ...string) result {
		return run(t, env, args([]string{"deploy", "--no-apply", "--env", envName, "--image", "web=" + s.Reg.Ref("team/web", tag)}, extra, s.GitArgs())...)
	}
	ops := func(env []string, cmd ...string) result {
		return run(t, env, args(cmd, s.GitArgs())...)
	}

	// Production accepts manual runs only.
	if r := deploy(automated, "production", "1.1.0"); r.code != step.ExitPolicy || !strings.Contains(r.stderr, "accepts only manual runs") {
		t.Fatalf("automated deploy to a manual-only environment:\n%s", r)
	}
	if r := deploy(manual, "production", "1.1.0"); r.code != 0 {
		t.Fatalf("manual deploy to production:\n%s", r)
	}
	// Staging: manual rollback to 1.0.0, then lock it.
	if r := deploy(automated, "staging", "1.1.0"); r.code != 0 {
		t.Fatalf("automated deploy to staging:\n%s", r)
	}
	if r := ops(manual, "rollback", "--no-apply", "--env", "staging", "--image", "web", "--tag", "1.0.0"); r.code != 0 {
		t.Fatalf("rollback:\n%s", r)
	}
	if r := ops(manual, "lock", "--env", "staging", "--image", "web", "--reason", "incident 42"); r.code != 0 {
		t.Fatalf("lock:\n%s", r)
	}
	head, _ := s.Git.Head(s.Name, "main")
	// Automation cannot undo the rollback while the lock holds, and neither can a person
	// without --force.
	r := deploy(automated, "staging", "1.2.0")
	if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "web is locked in staging by Ada") || !strings.Contains(r.stderr, "incident 42") {
		t.Fatalf("automated deploy of a locked image:\n%s", r)
	}
	if r := deploy(manual, "staging", "1.2.0"); r.code != step.ExitPolicy {
		t.Fatalf("manual deploy of a locked image without --force:\n%s", r)
	}
	if r := deploy(automated, "staging", "1.2.0", "--force"); r.code != step.ExitUsage {
		t.Fatalf("automated --force must be refused as bad input:\n%s", r)
	}
	if after, _ := s.Git.Head(s.Name, "main"); after != head {
		t.Fatal("a refused deploy pushed")
	}
	if r := ops(manual, "unlock", "--env", "staging", "--image", "web"); r.code != 0 {
		t.Fatalf("unlock:\n%s", r)
	}
	if r := deploy(automated, "staging", "1.2.0"); r.code != 0 || !strings.Contains(r.stdout, "changed=true") {
		t.Fatalf("automated deploy after unlock:\n%s", r)
	}
	// A forced manual deploy through a lock is recorded.
	if r := ops(manual, "lock", "--env", "staging", "--image", "web"); r.code != 0 {
		t.Fatalf("lock:\n%s", r)
	}
	if r := deploy(manual, "staging", "1.1.0", "--force", "--reason", "hotfix"); r.code != 0 {
		t.Fatalf("forced deploy:\n%s", r)
	}
	log, _ := s.Git.Log(s.Name, "main")
	rec, err := release.Parse(log[0].Message)
	if err != nil || !rec.Forced || rec.Trigger != "manual" || rec.Reason != "hotfix" {
		t.Fatalf("forced deploy record: %+v, %v", rec, err)
	}

	// History lists all of it, newest first, with the right triggers.
	r = run(t, nil, args([]string{"history", "--env", "staging", "--json"}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("history:\n%s", r)
	}
	for _, want := range []string{`"Action": "rollback"`, `"Action": "lock"`, `"Action": "unlock"`, `"Trigger": "automated"`, `"Trigger": "manual"`, `"Forced": true`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("history lacks %s:\n%s", want, r.stdout)
		}
	}
	r = run(t, nil, args([]string{"history", "--env", "staging", "--image", "web"}, s.GitArgs())...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 8 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "deploy") || !strings.Contains(lines[1], "1.2.0") || !strings.Contains(lines[1], "1.1.0") {
		t.Fatalf("history table (want header + 7 changes, newest first):\n%s", r.stdout)
	}
}

func TestRollbackToPreviousRelease(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("rollback")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages})
	digests := map[string]string{}
	kube := []string{"--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}
	for _, tag := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		digests[tag] = s.PushImage(t, "team/web", tag)
		if r := run(t, automated, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag)}, kube, s.GitArgs())...); r.code != 0 {
			t.Fatalf("deploy %s:\n%s", tag, r)
		}
	}
	for _, want := range []string{"1.1.0", "1.0.0"} {
		r := run(t, manual, args([]string{"rollback", "--env", "staging", "--image", "web"}, kube, s.GitArgs())...)
		if r.code != 0 {
			t.Fatalf("rollback:\n%s", r)
		}
		ref := s.Reg.Host + "/team/web:" + want + "@" + digests[want]
		if img, ready := runningImage(t, cl, ns, "web"); img != ref || ready != "1/1" {
			t.Fatalf("after rollback the Deployment runs %s (%s), want %s", img, ready, ref)
		}
		for _, p := range podImages(t, cl, ns, "web") {
			if p != ref {
				t.Errorf("a ready pod runs %s, want %s", p, ref)
			}
		}
	}
	// Nothing before 1.0.0 but the fixture's 0.9.0, which was never pushed: refused, not applied.
	r := run(t, manual, args([]string{"rollback", "--env", "staging", "--image", "web"}, kube, s.GitArgs())...)
	if r.code != step.ExitImageNotFound {
		t.Fatalf("rollback past the first release:\n%s", r)
	}
}

func TestDowngradeGuard(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	older, err := testenv.RandomImage(time.Now().Add(-48 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	newer, err := testenv.RandomImage(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Tags alone would say the old build is newer: creation time decides.
	if _, err := s.Reg.PushImage("team/web", older, "9.0.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reg.PushImage("team/web", newer, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	deploy := func(env []string, tag string) result {
		return run(t, env, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag)}, s.GitArgs())...)
	}
	if r := deploy(automated, "1.0.0"); r.code != 0 {
		t.Fatalf("deploy of the newer build:\n%s", r)
	}
	r := deploy(automated, "9.0.0")
	if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "is older than") {
		t.Fatalf("automated downgrade:\n%s", r)
	}
	if r := deploy(manual, "9.0.0"); r.code != 0 {
		t.Fatalf("manual downgrade:\n%s", r)
	}
}

func TestPromoteCopiesDigests(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web", "api"}, WithServices: true, Envs: map[string]string{"staging": "stg", "production": "prod"}, Policy: productionPolicy})
	webDigest := s.PushImage(t, "team/web", "2.0.0")
	s.PushImage(t, "team/api", "3.1.0")
	if r := run(t, automated, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "2.0.0"), "--image", "api=" + s.Reg.Ref("team/api", "3.1.0")}, s.GitArgs())...); r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	// Automated promotion into manual-only production is refused; by hand it lands.
	if r := run(t, automated, args([]string{"promote", "--no-apply", "--from", "staging", "--to", "production"}, s.GitArgs())...); r.code != step.ExitPolicy {
		t.Fatalf("automated promote:\n%s", r)
	}
	if r := run(t, manual, args([]string{"promote", "--no-apply", "--from", "staging", "--to", "production", "--image", "web"}, s.GitArgs())...); r.code != 0 {
		t.Fatalf("promote:\n%s", r)
	}
	prod := s.File(t, "overlays/production/kustomization.yaml")
	stg := s.File(t, "overlays/staging/kustomization.yaml")
	webEntry := "  - name: web\n    newName: " + s.Reg.Host + "/team/web\n    newTag: 2.0.0\n    digest: " + webDigest + "\n"
	if !strings.Contains(stg, webEntry) || !strings.Contains(prod, webEntry) {
		t.Fatalf("the web entry was not copied byte for byte:\nstaging:\n%s\nproduction:\n%s", stg, prod)
	}
	if strings.Contains(prod, "team/api") {
		t.Errorf("--image web promoted api too:\n%s", prod)
	}
	log, _ := s.Git.Log(s.Name, "main")
	rec, err := release.Parse(log[0].Message)
	if err != nil || rec.Action != release.ActionPromote || rec.Environment != "production" || rec.Trigger != "manual" || len(rec.Images) != 1 {
		t.Fatalf("promote record: %+v, %v", rec, err)
	}
}

// TestRevertLeavesNewerDeploy: when a newer deploy lands while a failed rollout is being
// waited on, the failed deploy does not revert it.
func TestRevertLeavesNewerDeploy(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("superseded")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	newDigest := s.PushImage(t, "team/web", "1.1.0")
	s.PushImage(t, "team/never-ready", "2.0.0")
	kube := []string{"--kubeconfig", cl.Kubeconfig}
	if r := run(t, automated, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0"), "--timeout", "60s"}, kube, s.GitArgs())...); r.code != 0 {
		t.Fatalf("first deploy:\n%s", r)
	}
	head, _ := s.Git.Head(s.Name, "main")
	var failed result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		failed = run(t, automated, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/never-ready", "2.0.0"), "--timeout", "12s"}, kube, s.GitArgs())...)
	}()
	// Once the broken deploy's commit is in, a newer build lands (config repo only).
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h, _ := s.Git.Head(s.Name, "main"); h != head {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the broken deploy never pushed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// (By hand: to automation 1.1.0, built before the broken image, would be a downgrade.)
	if r := run(t, manual, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.1.0")}, s.GitArgs())...); r.code != 0 {
		t.Fatalf("newer deploy:\n%s", r)
	}
	newer, _ := s.Git.Head(s.Name, "main")
	wg.Wait()
	if failed.code != step.ExitRollout || !strings.Contains(failed.stderr, "not reverted, because a newer change landed") {
		t.Fatalf("the failed deploy:\n%s", failed)
	}
	if h, _ := s.Git.Head(s.Name, "main"); h != newer {
		t.Fatalf("the newer deploy was touched: head %s, want %s", h, newer)
	}
	if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, newDigest) {
		t.Fatalf("the overlay lost the newer deploy:\n%s", got)
	}
}

// TestLockDeployRace: a lock and a deploy started at once, from separate processes. Either the
// deploy lands before the lock, or it is refused after it: never a deploy of a locked image.
func TestLockDeployRace(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	landedFirst, refused := 0, 0
	for i := 0; i < 6; i++ {
		tag := "1.0." + string(rune('0'+i))
		s.PushImage(t, "team/web", tag)
		var dep, lock result
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			dep = run(t, automated, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag)}, s.GitArgs())...)
		}()
		go func() {
			defer wg.Done()
			lock = run(t, manual, args([]string{"lock", "--env", "staging", "--image", "web", "--reason", "race"}, s.GitArgs())...)
		}()
		wg.Wait()
		if lock.code != 0 {
			t.Fatalf("lock:\n%s", lock)
		}
		log, _ := s.Git.Log(s.Name, "main")
		lockAt, deployAt := -1, -1
		for j, c := range log {
			rec, err := release.Parse(c.Message)
			if err != nil {
				continue
			}
			if rec.Action == release.ActionLock && lockAt < 0 {
				lockAt = j
			}
			if rec.Action == release.ActionDeploy && strings.Contains(c.Message, ":"+tag+"@") && deployAt < 0 {
				deployAt = j
			}
		}
		switch {
		case dep.code == 0 && deployAt > lockAt:
			landedFirst++ // older in the log = landed before the lock
		case dep.code == step.ExitPolicy && deployAt < 0:
			refused++
		default:
			t.Fatalf("trial %d: deploy exit %d, deploy at %d, lock at %d in the log (0 = newest)\n%s", i, dep.code, deployAt, lockAt, dep)
		}
		if r := run(t, manual, args([]string{"unlock", "--env", "staging", "--image", "web"}, s.GitArgs())...); r.code != 0 {
			t.Fatalf("unlock:\n%s", r)
		}
	}
	t.Logf("deploy landed before the lock %d times, was refused after it %d times", landedFirst, refused)
}

func TestApplyAndDiff(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("resync")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, Replicas: 2, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	kube := []string{"--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}
	if r := run(t, automated, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0")}, kube, s.GitArgs())...); r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	if r := run(t, nil, args([]string{"diff", "--env", "staging"}, kube, s.GitArgs())...); r.code != 0 {
		t.Fatalf("diff right after deploy:\n%s", r)
	}
	fixture.Kubectl(t, cl, "scale", "deployment/web", "-n", ns, "--replicas=5")
	r := run(t, nil, args([]string{"diff", "--env", "staging"}, kube, s.GitArgs())...)
	if r.code != step.ExitFailure || !strings.Contains(r.stdout, "replicas") || !strings.Contains(r.stdout, "Deployment/"+ns+"/web") {
		t.Fatalf("diff after a hand edit (want exit 1 and the replicas change):\n%s", r)
	}
	fixture.Kubectl(t, cl, "delete", "namespace", ns, "--wait=true", "--timeout=60s")
	head, _ := s.Git.Head(s.Name, "main")
	if r := run(t, nil, args([]string{"apply", "--env", "staging"}, kube, s.GitArgs())...); r.code != 0 || !strings.Contains(r.stdout, "rollout=ready") {
		t.Fatalf("apply after the namespace was deleted:\n%s", r)
	}
	if img, ready := runningImage(t, cl, ns, "web"); !strings.Contains(img, "team/web:1.0.0@") || ready != "2/2" {
		t.Fatalf("apply recreated %s (%s)", img, ready)
	}
	if after, _ := s.Git.Head(s.Name, "main"); after != head {
		t.Error("apply pushed a commit")
	}
}
