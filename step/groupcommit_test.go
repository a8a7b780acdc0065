package step_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/release"
)

// queueOrphan puts on the config repo's queue a deploy of image=ref whose run is gone, as that
// run would have written it (its record, the request trailers and the queue's trailers), on
// the branch's tip; arrival orders it in the queue and deadline is when it expires. It returns
// the change's id.
func queueOrphan(t *testing.T, s *fixture.Servers, image, ref string, arrival, deadline time.Time) string {
	t.Helper()
	id := fmt.Sprintf("%019d-%010d-%08x", arrival.UnixNano(), deadline.Unix(), arrival.UnixNano()&0xffffffff)
	rec := release.Record{
		Action: release.ActionDeploy, Environment: "staging", Trigger: "manual", Event: "cli",
		Images: []release.ImageChange{{Name: image, To: ref}},
	}
	msg := rec.Message() + fmt.Sprintf("Deliver-Overlay: overlays/staging\nDeliver-Set: %s=%s\nDeliver-Change-Id: %s\nDeliver-Deadline: %s\nDeliver-Queue: 1\n",
		image, ref, id, deadline.UTC().Format(time.RFC3339))
	work := t.TempDir()
	gitIn(t, work, "clone", "-q", strings.Replace(s.URL, "http://", "http://"+s.Git.Username+":"+s.Git.Password+"@", 1), ".")
	gitIn(t, work, "-c", "user.name=Gone", "-c", "user.email=gone@example.com", "commit", "-q", "--allow-empty", "-m", msg)
	gitIn(t, work, "push", "-q", "origin", "HEAD:refs/deliver/queue/main/"+id)
	return id
}

func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitQueued waits until the config repo's queue holds n changes.
func waitQueued(t *testing.T, s *fixture.Servers, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if len(serverRefs(t, s, "refs/deliver/queue/")) >= n {
			return
		}
	}
	t.Fatalf("the queue never held %d changes: %v", n, serverRefs(t, s, "refs/deliver/queue/"))
}

// TestLockRefusesQueuedChanges: deploys wait in the queue (behind the change of a run that is
// gone, so that none lands before the test is ready); a lock of two of their images lands on
// the branch; the run that takes the queue over lands the gone run's change and the deploys
// of other images, and refuses the two locked ones. Their runs exit 8 with exactly the message
// a deploy of a locked image gets alone, whichever run judged them.
func TestLockRefusesQueuedChanges(t *testing.T) {
	t.Parallel()
	services := []string{"svc-00", "svc-01", "svc-02", "svc-03", "svc-04", "svc-orphan"}
	s := newServers(t, fixture.App{Services: services, WithServices: true, Envs: map[string]string{"staging": "stg"}})
	for _, svc := range services {
		s.PushImage(t, "team/"+svc, "1.0.0", "2.0.0")
	}
	now := time.Now()
	orphan := queueOrphan(t, s, "svc-orphan", s.Reg.Ref("team/svc-orphan", "1.0.0"), now.Add(-time.Second), now.Add(5*time.Minute))

	deployers := services[:5]
	results := make([]result, len(deployers))
	var wg sync.WaitGroup
	for i, svc := range deployers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", svc + "=" + s.Reg.Ref("team/"+svc, "1.0.0")}, s.GitArgs())...)
		}()
	}
	waitQueued(t, s, 1+len(deployers))

	// The lock lands while they wait, pushed as a person would push deliver.yaml.
	policy := "locks:\n  - environment: staging\n    image: svc-00\n    reason: incident 7\n    by: Ada\n    at: 2026-11-25T10:00:00Z\n" +
		"  - environment: staging\n    image: svc-01\n    reason: incident 7\n    by: Ada\n    at: 2026-11-25T10:00:00Z\n"
	work := t.TempDir()
	gitIn(t, work, "clone", "-q", strings.Replace(s.URL, "http://", "http://"+s.Git.Username+":"+s.Git.Password+"@", 1), ".")
	if err := os.WriteFile(filepath.Join(work, "deliver.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, work, "add", "deliver.yaml")
	gitIn(t, work, "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-qm", "lock svc-00 and svc-01 in staging")
	gitIn(t, work, "push", "-q", "origin", "HEAD:main")
	wg.Wait()

	// Alone, a deploy of a locked image gets this.
	want := map[string]string{}
	for _, svc := range deployers[:2] {
		alone := run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", svc + "=" + s.Reg.Ref("team/"+svc, "2.0.0")}, s.GitArgs())...)
		if alone.code != 8 {
			t.Fatalf("a deploy of the locked %s alone:\n%s", svc, alone)
		}
		want[svc] = lastLine(alone.stderr)
	}
	for i, r := range results {
		svc := deployers[i]
		locked := want[svc] != ""
		switch {
		case locked && (r.code != 8 || lastLine(r.stderr) != want[svc]):
			t.Errorf("deploy of %s (locked while it waited): want exit 8 and %q, got\n%s", svc, want[svc], r)
		case !locked && r.code != 0:
			t.Errorf("deploy of %s: \n%s", svc, r)
		}
	}
	wantMessages := want["svc-00"] + "\n" + want["svc-01"]
	// The overlay: the orphan's image and the three unlocked ones, not the locked ones.
	dir := t.TempDir()
	fixture.WriteFiles(t, dir, map[string]string{"kustomization.yaml": s.File(t, "overlays/staging/kustomization.yaml")})
	_, images, err := kustomize.ReadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, img := range images {
		set[img.Name] = true
	}
	for _, svc := range services {
		if want := svc != "svc-00" && svc != "svc-01"; set[svc] != want {
			t.Errorf("%s in the overlay: %t, want %t", svc, set[svc], want)
		}
	}
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range log {
		if id := trailerValue(c.Message, "Deliver-Change-Id"); id != "" {
			ids = append(ids, id)
		}
		checkRenders(t, s.Git.BareDir(s.Name), c.Hash.String())
	}
	if len(ids) != 4 || ids[len(ids)-1] != orphan {
		t.Errorf("change ids on the branch (newest first): %v; want 4, the gone run's %s first", ids, orphan)
	}
	if left := serverRefs(t, s, "refs/deliver/queue/"); len(left) > 0 {
		t.Errorf("changes left in the queue: %v", left)
	}
	refused := 0
	for ref, commit := range serverRefs(t, s, "refs/deliver/outcome/") {
		msg := gitIn(t, s.Git.BareDir(s.Name), "log", "-1", "--format=%B", commit)
		if strings.Contains(msg, "Deliver-Outcome: refused") {
			refused++
			body := strings.SplitN(msg, "\n\n", 3)
			if !strings.Contains(msg, "Deliver-Exit-Code: 8") || len(body) < 3 || !strings.Contains(wantMessages, "deliver: error: "+body[1]) {
				t.Errorf("refusal %s:\n%s", ref, msg)
			}
		}
	}
	t.Logf("%d of the 2 refusals reached their run through an outcome ref (the others: the lander's own)", refused)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestExpiredChangeNotLanded: a queued deploy whose deadline has passed (its run was killed
// and cannot withdraw it) is dropped by the next run that lands the queue, never applied; a
// live one beside it lands.
func TestExpiredChangeNotLanded(t *testing.T) {
	t.Parallel()
	services := []string{"web", "api", "worker"}
	s := newServers(t, fixture.App{Services: services, WithServices: true, Envs: map[string]string{"staging": "stg"}})
	for _, svc := range services {
		s.PushImage(t, "team/"+svc, "1.0.0")
	}
	now := time.Now()
	// Its deadline is a second away: within the skew deliver allows clocks, so expired.
	id := queueOrphan(t, s, "api", s.Reg.Ref("team/api", "1.0.0"), now.Add(-time.Minute), now.Add(time.Second))
	// A live change queued after the deploy below will be (its arrival is in a minute), so
	// that the deploy joins the queue and lands it at once.
	live := queueOrphan(t, s, "worker", s.Reg.Ref("team/worker", "1.0.0"), now.Add(time.Minute), now.Add(5*time.Minute))
	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0")}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	if !strings.Contains(r.stderr, "1 expired") || !strings.Contains(r.stderr, "1 landed") {
		t.Errorf("the deploy did not land the live change and drop the expired one:\n%s", r.stderr)
	}
	overlay := s.File(t, "overlays/staging/kustomization.yaml")
	if strings.Contains(overlay, "name: api") || !strings.Contains(overlay, "name: worker") {
		t.Errorf("the expired change landed, or the live one did not:\n%s", overlay)
	}
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range log {
		if cid := trailerValue(c.Message, "Deliver-Change-Id"); cid != "" {
			ids = append(ids, cid)
		}
	}
	if len(ids) != 2 || ids[0] != live {
		t.Errorf("change ids on the branch (newest first): %v; want the deploy's, then the live %s", ids, live)
	}
	if left := serverRefs(t, s, "refs/deliver/queue/"); len(left) > 0 {
		t.Errorf("changes left in the queue: %v", left)
	}
	out := serverRefs(t, s, "refs/deliver/outcome/main/"+id)
	for _, commit := range out {
		if msg := gitIn(t, s.Git.BareDir(s.Name), "log", "-1", "--format=%B", commit); !strings.Contains(msg, "Deliver-Outcome: expired") {
			t.Errorf("outcome of the expired change:\n%s", msg)
		}
	}
	if len(out) != 1 {
		t.Errorf("outcome refs of the expired change: %v", out)
	}
}

// TestQueuedDeployCheckedByItsLander: deploys that find changes already queued join the queue
// without rendering their edit; the run that lands the queue renders each one on the tip it
// lands on. A deploy of an image no object uses (a typo) is refused there, and its run exits 2
// with exactly the message it gets alone; the other deploy lands.
func TestQueuedDeployCheckedByItsLander(t *testing.T) {
	t.Parallel()
	services := []string{"web", "api", "orphan"}
	s := newServers(t, fixture.App{Services: services, WithServices: true, Envs: map[string]string{"staging": "stg"}})
	for _, svc := range append(services, "wbe") {
		s.PushImage(t, "team/"+svc, "1.0.0")
	}
	now := time.Now()
	// A gone run's change heads the queue, so that the deploys below queue behind it.
	queueOrphan(t, s, "orphan", s.Reg.Ref("team/orphan", "1.0.0"), now.Add(-time.Second), now.Add(5*time.Minute))
	deploy := func(image string) result {
		return run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", image + "=" + s.Reg.Ref("team/"+image, "1.0.0")}, s.GitArgs())...)
	}
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, image := range []string{"web", "wbe"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := deploy(image)
			mu.Lock()
			results[image] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	for image, r := range results {
		if !strings.Contains(r.stderr, "waits in the queue") {
			t.Errorf("deploy of %s did not queue:\n%s", image, r)
		}
	}
	if r := results["web"]; r.code != 0 {
		t.Errorf("deploy of web:\n%s", r)
	}
	alone := deploy("wbe")
	if alone.code != 2 || !strings.Contains(alone.stderr, "wbe") {
		t.Fatalf("a deploy of the typo alone:\n%s", alone)
	}
	if r := results["wbe"]; r.code != 2 || lastLine(r.stderr) != lastLine(alone.stderr) {
		t.Errorf("queued deploy of the typo: want exit 2 and %q, got\n%s", lastLine(alone.stderr), r)
	}
	overlay := s.File(t, "overlays/staging/kustomization.yaml")
	if strings.Contains(overlay, "wbe") || !strings.Contains(overlay, "name: web") || !strings.Contains(overlay, "name: orphan") {
		t.Errorf("want web and the orphan's image landed, not the typo:\n%s", overlay)
	}
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range log {
		checkRenders(t, s.Git.BareDir(s.Name), c.Hash.String())
	}
	if left := serverRefs(t, s, "refs/deliver/queue/"); len(left) > 0 {
		t.Errorf("changes left in the queue: %v", left)
	}
}
