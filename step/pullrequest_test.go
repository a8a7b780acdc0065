package step_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// The tests in this file run deliver's pull-request mode against a real Gitea (the shared one),
// with a registry and, for the applies, the shared Kubernetes cluster.

// giteaConfig is a config repo on the shared Gitea holding the app's files, plus a registry.
type giteaConfig struct {
	g    *testenv.Gitea
	reg  *testenv.Registry
	name string
}

func newGiteaConfig(t *testing.T, a fixture.App) *giteaConfig {
	t.Helper()
	g := testenv.SharedGitea(t)
	reg := testenv.NewRegistry(t)
	seed := t.TempDir()
	fixture.WriteFiles(t, seed, a.Files(reg.Host))
	name := fmt.Sprintf("config-%x", rand.Uint32())
	if _, err := g.CreateRepo(context.Background(), name, seed); err != nil {
		t.Fatal(err)
	}
	return &giteaConfig{g: g, reg: reg, name: name}
}

// repoArgs reach the config repo on Gitea.
func (gc *giteaConfig) repoArgs() []string {
	return []string{"--config-repo", gc.g.RepoURL(gc.name), "--git-username", testenv.GiteaAdmin, "--git-token", gc.g.Token}
}

// args are repoArgs naming the forge, for the commands that change images (a loopback URL
// names no forge).
func (gc *giteaConfig) args() []string { return append(gc.repoArgs(), "--forge", "gitea") }

func (gc *giteaConfig) pulls(t *testing.T, state string) []testenv.GiteaPull {
	t.Helper()
	p, err := gc.g.Pulls(context.Background(), gc.name, state)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (gc *giteaConfig) file(t *testing.T, ref, path string) string {
	t.Helper()
	b, err := gc.g.ReadFile(context.Background(), gc.name, ref, path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (gc *giteaConfig) head(t *testing.T) string {
	t.Helper()
	h, err := gc.g.BranchHead(context.Background(), gc.name, "main")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (gc *giteaConfig) protect(t *testing.T, p testenv.BranchProtection) {
	t.Helper()
	p.Branch = "main"
	if err := gc.g.ProtectBranch(context.Background(), gc.name, p); err != nil {
		t.Fatal(err)
	}
}

func prodApp(ns, policy string) fixture.App {
	return fixture.App{Services: []string{"web", "api"}, Envs: map[string]string{"production": ns}, Policy: policy,
		OverlayImages: "images:\n  - name: web\n    newName: {registry}/team/web\n    newTag: \"1.0.0\"\n  - name: api\n    newName: {registry}/team/api\n    newTag: \"1.0.0\"\n"}
}

func TestPullRequestProtectedBranchRefusesAPush(t *testing.T) {
	t.Parallel()
	gc := newGiteaConfig(t, prodApp("prod", ""))
	gc.protect(t, testenv.BranchProtection{})
	if _, err := gc.reg.PushRandomImage("team/web", "1.4.3"); err != nil {
		t.Fatal(err)
	}
	before := gc.head(t)
	r := run(t, nil, args([]string{"deploy", "--env", "production", "--no-apply", "--image", "web=" + gc.reg.Ref("team/web", "1.4.3")}, gc.args())...)
	if r.code != step.ExitPush || !strings.Contains(r.stderr, "Not allowed to push to protected branch main") || !strings.Contains(r.stderr, "--via pull-request") {
		t.Fatalf("deploy to a protected branch: %v\nwant exit 5 quoting Gitea and pointing to --via pull-request", r)
	}
	if strings.Contains(r.stderr+r.stdout, gc.g.Token) {
		t.Fatal("the output shows the token")
	}
	if gc.head(t) != before || len(gc.pulls(t, "all")) != 0 {
		t.Fatal("a refused push moved main or opened a pull request")
	}
}

func TestPullRequestDeployOpensOneAndUpdatesIt(t *testing.T) {
	t.Parallel()
	gc := newGiteaConfig(t, prodApp("prod", ""))
	gc.protect(t, testenv.BranchProtection{})
	for _, tag := range []string{"1.4.3", "1.4.4"} {
		if _, err := gc.reg.PushRandomImage("team/web", tag); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gc.reg.PushRandomImage("team/api", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	main := gc.head(t)
	deploy := func(image string) result {
		return run(t, nil, args([]string{"deploy", "--env", "production", "--no-apply", "--via", "pull-request", "--image", image}, gc.args())...)
	}

	r := deploy("web=" + gc.reg.Ref("team/web", "1.4.3"))
	if r.code != 0 {
		t.Fatal(r)
	}
	open := gc.pulls(t, "open")
	if len(open) != 1 || open[0].Head.Ref != "deliver/production/web" || open[0].Base.Ref != "main" {
		t.Fatalf("open pull requests = %+v; want one from deliver/production/web", open)
	}
	first := open[0]
	if !strings.Contains(r.stdout, fmt.Sprintf("pull-request=%d pull-request-url=%s", first.Number, first.HTMLURL)) {
		t.Errorf("stdout does not name the pull request:\n%s", r.stdout)
	}
	body := first.Body
	for _, want := range []string{"| web | `" + gc.reg.Host + "/team/web:1.0.0` | `" + gc.reg.Host + "/team/web:1.4.3@sha256:", "Checks passed", "```diff", "+    newTag: \"1.4.3\"", "deliver apply --env production"} {
		if !strings.Contains(body, want) {
			t.Errorf("pull request body lacks %q:\n%s", want, body)
		}
	}
	if first.Title != "deliver(production): web 1.0.0 -> 1.4.3" {
		t.Errorf("title = %q", first.Title)
	}
	if gc.head(t) != main {
		t.Fatal("pull-request mode moved main")
	}
	if got := gc.file(t, "deliver/production/web", "overlays/production/kustomization.yaml"); !strings.Contains(got, `newTag: "1.4.3"`) {
		t.Fatalf("the branch holds:\n%s", got)
	}

	// A newer build of the same image updates that pull request.
	if r := deploy("web=" + gc.reg.Ref("team/web", "1.4.4")); r.code != 0 {
		t.Fatal(r)
	}
	open = gc.pulls(t, "open")
	if len(open) != 1 || open[0].Number != first.Number || open[0].Title != "deliver(production): web 1.0.0 -> 1.4.4" {
		t.Fatalf("after a second build: %+v; want #%d retitled", open, first.Number)
	}
	if got := gc.file(t, "deliver/production/web", "overlays/production/kustomization.yaml"); !strings.Contains(got, `newTag: "1.4.4"`) || strings.Contains(got, "1.4.3") {
		t.Fatalf("the branch holds:\n%s", got)
	}

	// Another image gets its own.
	if r := deploy("api=" + gc.reg.Ref("team/api", "2.0.0")); r.code != 0 {
		t.Fatal(r)
	}
	if open = gc.pulls(t, "open"); len(open) != 2 {
		t.Fatalf("after another image: %d open pull requests, want 2", len(open))
	}
	if gc.head(t) != main {
		t.Fatal("pull-request mode moved main")
	}
}

func TestPullRequestPolicyAppliesBeforeThePullRequest(t *testing.T) {
	t.Parallel()
	policy := `environments:
  production:
    via: pull-request
locks:
  - environment: production
    image: web
    reason: incident 42
    by: Ada
    at: 2026-11-25T10:00:00Z
`
	gc := newGiteaConfig(t, prodApp("prod", policy))
	if _, err := gc.reg.PushRandomImage("team/web", "1.4.3"); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.reg.PushRandomImage("team/api", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	base := []string{"deploy", "--env", "production", "--no-apply"}
	// The lock refuses, and nothing is pushed or opened.
	r := run(t, nil, args(base, []string{"--image", "web=" + gc.reg.Ref("team/web", "1.4.3")}, gc.args())...)
	if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "incident 42") {
		t.Fatalf("deploy of a locked image: %v; want exit 8 naming the lock", r)
	}
	if n := len(gc.pulls(t, "all")); n != 0 {
		t.Fatalf("a refused deploy opened %d pull requests", n)
	}
	var branches []struct{ Name string }
	if err := gc.g.Do(context.Background(), http.MethodGet, "/repos/ci/"+gc.name+"/branches", nil, &branches); err != nil || len(branches) != 1 {
		t.Fatalf("branches after a refused deploy = %+v, %v; want main only", branches, err)
	}
	// deliver.yaml's via: pull-request decides without a flag; a run cannot ask to push.
	if r := run(t, nil, args(base, []string{"--image", "api=" + gc.reg.Ref("team/api", "2.0.0"), "--via", "push"}, gc.args())...); r.code != step.ExitPolicy || !strings.Contains(r.stderr, "via: pull-request") {
		t.Fatalf("--via push where the policy says pull-request: %v; want exit 8", r)
	}
	if r := run(t, nil, args(base, []string{"--image", "api=" + gc.reg.Ref("team/api", "2.0.0")}, gc.args())...); r.code != 0 || !strings.Contains(r.stdout, "pull-request=") {
		t.Fatalf("deploy under via: pull-request: %v; want a pull request", r)
	}
	// Without --forge, a loopback URL names no forge: bad input, before any clone.
	if r := run(t, nil, args(base, []string{"--image", "api=" + gc.reg.Ref("team/api", "2.0.0")}, gc.repoArgs())...); r.code != step.ExitUsage || !strings.Contains(r.stderr, "--forge") {
		t.Fatalf("pull-request mode without a forge: %v; want exit 2 asking for --forge", r)
	}
}

func TestPullRequestMergedThenApplied(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("prmerge")
	gc := newGiteaConfig(t, prodApp(ns, "environments:\n  production:\n    via: pull-request\n"))
	gc.protect(t, testenv.BranchProtection{})
	for _, img := range []string{"team/web", "team/api"} {
		if _, err := gc.reg.PushRandomImage(img, "1.0.0"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gc.reg.PushRandomImage("team/web", "1.4.3"); err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kubeconfig", cl.Kubeconfig, "--timeout", "90s"}

	// The first release goes through the config repo's own job: deliver apply on main.
	if r := run(t, nil, args([]string{"apply", "--env", "production"}, kube, gc.repoArgs())...); r.code != 0 {
		t.Fatal(r)
	}
	// A deploy opens the pull request and applies nothing.
	r := run(t, nil, args([]string{"deploy", "--env", "production", "--image", "web=" + gc.reg.Ref("team/web", "1.4.3")}, kube, gc.args())...)
	if r.code != 0 {
		t.Fatal(r)
	}
	if img, _ := runningImage(t, cl, ns, "web"); !strings.HasSuffix(img, ":1.0.0") {
		t.Fatalf("web runs %s before the merge; want 1.0.0", img)
	}
	open := gc.pulls(t, "open")
	if len(open) != 1 {
		t.Fatalf("%d open pull requests, want 1", len(open))
	}
	// A reviewer merges it; the config repo's job applies main.
	mergeInGitea(t, gc.g, gc.name, open[0].Number)
	if r := run(t, nil, args([]string{"apply", "--env", "production"}, kube, gc.repoArgs())...); r.code != 0 {
		t.Fatal(r)
	}
	if img, ready := runningImage(t, cl, ns, "web"); !strings.Contains(img, ":1.4.3@sha256:") || ready != "1/1" {
		t.Fatalf("web runs %s (%s) after the merge and apply; want 1.4.3 ready", img, ready)
	}
}

func TestPullRequestWaitMergedAppliesTheMerge(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("prwait")
	gc := newGiteaConfig(t, prodApp(ns, ""))
	// Merges need a passing check, which the test sets while deliver waits; only the
	// administrator may push to main (the test moves it under the pull request).
	gc.protect(t, testenv.BranchProtection{EnablePush: true, EnablePushWhitelist: true, PushWhitelist: []string{testenv.GiteaAdmin},
		EnableStatusCheck: true, StatusCheckContexts: []string{"ci/validate"}})
	for _, img := range []string{"team/web", "team/api"} {
		if _, err := gc.reg.PushRandomImage(img, "1.0.0"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gc.reg.PushRandomImage("team/web", "1.4.3"); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		done <- run(t, nil, args([]string{"deploy", "--env", "production", "--image", "web=" + gc.reg.Ref("team/web", "1.4.3"),
			"--via", "pull-request", "--auto-merge", "--wait-merged", "--merge-timeout", "2m", "--merge-poll-interval", "200ms",
			"--kubeconfig", cl.Kubeconfig, "--timeout", "90s"}, gc.args())...)
	}()
	first := gc.waitPull(t, func(p testenv.GiteaPull) bool { return p.Head.SHA != "" })

	// main moves under the pull request: deliver makes the change again on the new tip.
	gc.commitToMain(t, "NOTES.md", "a change reviewed elsewhere\n")
	moved := gc.waitPull(t, func(p testenv.GiteaPull) bool { return p.Number == first.Number && p.Head.SHA != first.Head.SHA })
	if got := gc.file(t, moved.Head.SHA, "NOTES.md"); got != "a change reviewed elsewhere\n" {
		t.Fatalf("the refreshed proposal is not on the new tip: NOTES.md = %q", got)
	}
	if n := len(gc.pulls(t, "all")); n != 1 {
		t.Fatalf("%d pull requests after the base moved, want the same one", n)
	}

	// The check passes; Gitea merges it by itself; deliver applies the merge.
	if err := gc.g.SetCommitStatus(context.Background(), gc.name, moved.Head.SHA, "ci/validate", "success"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "rollout=") || !strings.Contains(r.stderr, "making the change again") {
		t.Fatalf("deploy --wait-merged: %v", r)
	}
	merged := gc.head(t)
	if !strings.Contains(r.stdout, "commit="+merged) {
		t.Errorf("stdout does not report the merge commit %s:\n%s", merged, r.stdout)
	}
	if img, ready := runningImage(t, cl, ns, "web"); !strings.Contains(img, ":1.4.3@sha256:") || ready != "1/1" {
		t.Fatalf("web runs %s (%s) after --wait-merged; want 1.4.3 ready", img, ready)
	}
}

// waitPull waits for the one open pull request to satisfy ok.
func (gc *giteaConfig) waitPull(t *testing.T, ok func(testenv.GiteaPull) bool) testenv.GiteaPull {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if open := gc.pulls(t, "open"); len(open) == 1 && ok(open[0]) {
			return open[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open pull request as expected; open: %+v", gc.pulls(t, "open"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// commitToMain commits path as the administrator straight onto main.
func (gc *giteaConfig) commitToMain(t *testing.T, path, content string) {
	t.Helper()
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s: %v\n%s", args[0], err, out)
		}
	}
	git("clone", "--quiet", "--depth=1", gc.g.AuthRepoURL(gc.name, testenv.GiteaAdmin, gc.g.Token), ".")
	if err := os.WriteFile(filepath.Join(dir, path), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", path)
	git("commit", "--quiet", "-m", "change "+path)
	git("push", "--quiet", "origin", "HEAD:main")
}

// mergeInGitea merges pull request number as a reviewer would, waiting out "Please try again
// later" while Gitea still checks the new head.
func mergeInGitea(t *testing.T, g *testenv.Gitea, repo string, number int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := g.Do(context.Background(), http.MethodPost, fmt.Sprintf("/repos/ci/%s/pulls/%d/merge", repo, number), map[string]any{"Do": "merge"}, nil)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "try again later") || time.Now().After(deadline) {
			t.Fatalf("merging #%d in Gitea: %v", number, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
