package step_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step"
	"github.com/deliverhq/deliver/step/release"
)

func TestDeployNoApply(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages})
	digest := s.PushImage(t, "team/web", "1.4.3")
	before := s.File(t, "overlays/staging/kustomization.yaml")
	prodBefore := s.File(t, "overlays/production/kustomization.yaml")
	image := "web=" + s.Reg.Ref("team/web", "1.4.3")

	env := []string{"GITLAB_CI=true", "CI_PROJECT_URL=https://gitlab.example.com/team/web", "CI_COMMIT_SHA=0123abc",
		"CI_PIPELINE_URL=https://gitlab.example.com/team/web/-/pipelines/42", "CI_PIPELINE_SOURCE=push",
		"GITLAB_USER_NAME=Ada", "GITLAB_USER_EMAIL=ada@example.com"}
	r := run(t, env, args([]string{"deploy", "--env", "staging", "--image", image, "--no-apply"}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("deploy failed:\n%s", r)
	}
	if !strings.Contains(r.stdout, "changed=true") || strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Errorf("stdout is not the one-line result:\n%s", r)
	}
	for _, phase := range []string{"verify", "clone", "push"} {
		// GITLAB_CI=true: a collapsible section per phase, closed with the phase's duration.
		if !strings.Contains(r.stderr, "section_start:") || !strings.Contains(r.stderr, ":deliver_"+phase+"_") ||
			!strings.Contains(r.stderr, phase+" done in") {
			t.Errorf("stderr lacks the section of phase %s with its duration:\n%s", phase, r.stderr)
		}
	}

	// Only the changed values differ, byte for byte.
	pinned := s.Reg.Host + "/team/web"
	want := strings.Replace(before, "    newTag: \"0.9.0\" # first release\n",
		"    newTag: \"1.4.3\" # first release\n    digest: "+digest+"\n", 1)
	if got := s.File(t, "overlays/staging/kustomization.yaml"); got != want {
		t.Errorf("kustomization after deploy:\n%s\nwant:\n%s", got, want)
	}
	if got := s.File(t, "overlays/production/kustomization.yaml"); got != prodBefore {
		t.Errorf("production overlay changed:\n%s", got)
	}

	// The commit records what happened, machine-readably.
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Fatalf("%d commits, want 2", len(log))
	}
	rec, err := release.Parse(log[0].Message)
	if err != nil {
		t.Fatalf("parsing commit message %q: %v", log[0].Message, err)
	}
	wantTo := pinned + ":1.4.3@" + digest
	if rec.Environment != "staging" || len(rec.Images) != 1 || rec.Images[0].To != wantTo ||
		rec.Images[0].From != pinned+":0.9.0" || rec.Trigger != "automated" || rec.Event != "push" ||
		rec.Pipeline != "https://gitlab.example.com/team/web/-/pipelines/42" || rec.SourceCommit != "0123abc" {
		t.Errorf("record = %+v", rec)
	}
	if !strings.HasPrefix(log[0].Message, "deliver(staging): web 0.9.0 -> 1.4.3\n") {
		t.Errorf("subject: %q", strings.SplitN(log[0].Message, "\n", 2)[0])
	}
	if log[0].Author.Name != "Ada" || log[0].Author.Email != "ada@example.com" {
		t.Errorf("author = %s <%s>", log[0].Author.Name, log[0].Author.Email)
	}

	// The same deploy again: nothing to commit.
	r = run(t, env, args([]string{"deploy", "--env", "staging", "--image", image, "--no-apply"}, s.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stdout, "changed=false") || !strings.Contains(r.stderr, "already up to date") {
		t.Fatalf("second deploy:\n%s", r)
	}
	if n := s.Commits(t); n != 2 {
		t.Fatalf("second deploy made a commit: %d commits", n)
	}
}

// TestContention runs deploys at once, as pipelines would (separate processes), each setting a
// different image in the same overlay: every update must land exactly once (one commit each,
// its change id once on the branch), the history must stay linear and every commit must
// render. With group commit, the runs that lose the race land each other's changes: far
// fewer pushes move the branch than there are changes. A server whose hook refuses refs
// outside refs/heads makes every run fall back to retrying, which says so once, and everything
// still lands.
func TestContention(t *testing.T) {
	t.Parallel()
	bin := buildDeliver(t)
	for _, tc := range []struct {
		name        string
		n, trials   int
		refuseQueue bool
	}{
		{"group-commit", 32, 3, false},
		{"queue-refused", 12, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for trial := 1; trial <= tc.trials; trial++ {
				t.Run(fmt.Sprintf("trial-%d", trial), func(t *testing.T) { contentionTrial(t, bin, tc.n, tc.refuseQueue) })
			}
		})
	}
}

func contentionTrial(t *testing.T, bin string, n int, refuseQueue bool) {
	var services []string
	for i := 0; i < n; i++ {
		services = append(services, fmt.Sprintf("svc-%02d", i))
	}
	s := newServers(t, fixture.App{Services: services, WithServices: true, Envs: map[string]string{"staging": "stg"}})
	if refuseQueue {
		refuse := "#!/bin/sh\nwhile read old new ref; do case \"$ref\" in refs/heads/*) ;; *) echo \"only branches may be pushed here, not $ref\" >&2; exit 1;; esac; done\nexit 0\n"
		if err := s.Git.SetHook(s.Name, "pre-receive", refuse); err != nil {
			t.Fatal(err)
		}
	}
	pushes := countBranchPushes(t, s)
	digests := map[string]string{}
	for _, svc := range services {
		digests[svc] = s.PushImage(t, "team/"+svc, "1.0.0")
	}
	var wg sync.WaitGroup
	results := make([]result, n)
	for i, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runProcess(t, bin, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--push-attempts", "100",
				"--image", svc + "=" + s.Reg.Ref("team/"+svc, "1.0.0")}, s.GitArgs())...)
		}()
	}
	wg.Wait()
	lost, landedByOther, fellBack := 0, 0, 0
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("deploy %d failed:\n%s", i, r)
		}
		if strings.Contains(r.stderr, "lost the race") {
			lost++
		}
		if strings.Contains(r.stderr, "landed by ") {
			landedByOther++
		}
		switch c := strings.Count(r.stderr, "falling back"); {
		case c > 1:
			t.Errorf("deploy %d said %d times that it fell back:\n%s", i, c, r.stderr)
		case c == 1:
			fellBack++
			if !strings.Contains(r.stderr, "only branches may be pushed here") {
				t.Errorf("deploy %d fell back without quoting the server:\n%s", i, r.stderr)
			}
		}
	}
	p := pushes()
	t.Logf("%d deploys: %d lost the first race, %d were landed by another run, %d fell back; %d pushes moved the branch", n, lost, landedByOther, fellBack, p)
	if os.Getenv("DELIVER_DEBUG_CONTENTION") != "" {
		worst := results[0]
		for _, r := range results {
			if len(r.stderr) > len(worst.stderr) {
				worst = r
			}
		}
		t.Logf("the longest log:\n%s", worst.stderr)
	}
	if refuseQueue {
		if lost > 0 && fellBack == 0 {
			t.Errorf("%d deploys lost a race but none fell back from the refused queue", lost)
		}
	} else if p >= n {
		t.Errorf("%d pushes moved the branch for %d deploys: group commit landed none together", p, n)
	}

	// Every entry present, each pinned to its digest.
	dir := t.TempDir()
	fixture.WriteFiles(t, dir, map[string]string{"kustomization.yaml": s.File(t, "overlays/staging/kustomization.yaml")})
	_, images, err := kustomize.ReadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, img := range images {
		got[img.Name] = img.Digest
	}
	for _, svc := range services {
		if got[svc] != digests[svc] {
			t.Errorf("%s: digest %q in the overlay, want %q (update lost)", svc, got[svc], digests[svc])
		}
	}
	// Linear history: seed + one commit per deploy, each with one parent and its own change
	// id; every commit renders.
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != n+1 {
		t.Errorf("%d commits, want %d", len(log), n+1)
	}
	ids := map[string]int{}
	for _, c := range log {
		if c.NumParents() > 1 {
			t.Errorf("merge commit %s in a history that must be linear", c.Hash)
		}
		if id := trailerValue(c.Message, "Deliver-Change-Id"); id != "" {
			ids[id]++
		}
		checkRenders(t, s.Git.BareDir(s.Name), c.Hash.String())
	}
	if len(ids) != n {
		t.Errorf("%d change ids on the branch, want %d", len(ids), n)
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("change %s is on the branch %d times", id, c)
		}
	}
	if left := serverRefs(t, s, "refs/deliver/queue/"); len(left) > 0 {
		t.Errorf("changes left in the queue: %v", left)
	}
}

// countBranchPushes records every update of the config repo's main branch (a post-receive
// hook) and returns a function that counts them.
func countBranchPushes(t *testing.T, s *fixture.Servers) func() int {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pushes")
	hook := fmt.Sprintf("#!/bin/sh\nwhile read old new ref; do [ \"$ref\" = refs/heads/main ] && echo \"$new\" >> %q; done\nexit 0\n", file)
	if err := s.Git.SetHook(s.Name, "post-receive", hook); err != nil {
		t.Fatal(err)
	}
	return func() int {
		data, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return strings.Count(string(data), "\n")
	}
}

// serverRefs lists the config repo's refs under prefix (name -> commit).
func serverRefs(t *testing.T, s *fixture.Servers, prefix string) map[string]string {
	t.Helper()
	out, err := exec.Command("git", "--git-dir="+s.Git.BareDir(s.Name), "for-each-ref", "--format=%(refname) %(objectname)", prefix).Output()
	if err != nil {
		t.Fatal(err)
	}
	refs := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			refs[k] = v
		}
	}
	return refs
}

// trailerValue returns the value of a trailer of a commit message ("" when absent).
func trailerValue(msg, key string) string {
	for _, l := range strings.Split(msg, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkRenders exports the tree of commit from the bare repo and builds the staging overlay.
func checkRenders(t *testing.T, bare, commit string) {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git --git-dir=%q archive %s | tar -x -C %q", bare, commit, dir))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("exporting %s: %v\n%s", commit, err, out)
	}
	if _, err := kustomize.Build(dir, "overlays/staging"); err != nil {
		t.Errorf("commit %s does not render: %v", commit, err)
	}
}

func TestDeployFailures(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.4.3")
	good := "web=" + s.Reg.Ref("team/web", "1.4.3")
	deploy := []string{"deploy", "--no-apply"}

	tests := []struct {
		name     string
		args     []string
		env      []string
		hook     string
		wantCode int
		wantErr  string
		noClone  bool
	}{
		{name: "missing tag", args: args(deploy, []string{"--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "9.9.9")}, s.GitArgs()),
			wantCode: step.ExitImageNotFound, wantErr: "does not exist", noClone: true},
		{name: "wrong token", args: args(deploy, []string{"--env", "staging", "--image", good, "--config-repo", s.URL, "--git-token", "glpat-WRONGTOKEN0123456789"}),
			wantCode: step.ExitAuth, wantErr: "refused the credentials"},
		{name: "wrong token from env", args: args(deploy, []string{"--env", "staging", "--image", good, "--config-repo", s.URL}),
			env: []string{"DELIVER_GIT_TOKEN=glpat-WRONGTOKEN0123456789"}, wantCode: step.ExitAuth, wantErr: "refused the credentials"},
		{name: "env with dots", args: args(deploy, []string{"--env", "../prod", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--env", noClone: true},
		{name: "env with slash", args: args(deploy, []string{"--env", "a/b", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--env", noClone: true},
		{name: "empty env", args: args(deploy, []string{"--env", "", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--env", noClone: true},
		{name: "env with newline", args: args(deploy, []string{"--env", "stag\ning", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--env", noClone: true},
		{name: "no overlay", args: args(deploy, []string{"--env", "qa", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "no overlay at overlays/qa"},
		{name: "template escapes", args: args(deploy, []string{"--env", "staging", "--path-template", "../{env}", "--image", good}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--path-template", noClone: true},
		{name: "bad image", args: args(deploy, []string{"--env", "staging", "--image", "web=Not A Ref:$(rm -rf /)"}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--image", noClone: true},
		{name: "no image", args: args(deploy, []string{"--env", "staging"}, s.GitArgs()), wantCode: step.ExitUsage, wantErr: "--image", noClone: true},
		{name: "no config repo", args: args(deploy, []string{"--env", "staging", "--image", good}), wantCode: step.ExitUsage, wantErr: "--config-repo", noClone: true},
		{name: "unknown flag", args: args(deploy, []string{"--env", "staging", "--frobnicate"}), wantCode: step.ExitUsage, wantErr: "frobnicate", noClone: true},
		{name: "unknown command", args: []string{"deploi"}, wantCode: step.ExitUsage, wantErr: "unknown command", noClone: true},
		{name: "hook rejects", args: args(deploy, []string{"--env", "staging", "--image", good}, s.GitArgs()),
			hook: "#!/bin/sh\necho 'protected branch: pushes need a merge request' >&2\nexit 1\n", wantCode: step.ExitPush, wantErr: "protected branch: pushes need a merge request"},
	}
	// Subtests share the servers, so they run one after another.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.hook != "" {
				if err := s.Git.SetHook(s.Name, "pre-receive", tt.hook); err != nil {
					t.Fatal(err)
				}
				defer s.Git.SetHook(s.Name, "pre-receive", "#!/bin/sh\nexit 0\n")
			}
			head, _ := s.Git.Head(s.Name, "main")
			requests := s.Git.Requests()
			r := run(t, tt.env, tt.args...)
			if r.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\n%s", r.code, tt.wantCode, r)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr does not mention %q:\n%s", tt.wantErr, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, "WRONGTOKEN") || strings.Contains(r.stdout+r.stderr, s.Git.Password) {
				t.Errorf("a secret is in the output:\n%s", r)
			}
			if after, _ := s.Git.Head(s.Name, "main"); after != head {
				t.Errorf("branch moved from %s to %s", head, after)
			}
			if tt.noClone && s.Git.Requests() != requests {
				t.Errorf("the git server was contacted (%d requests) although the input was refused first", s.Git.Requests()-requests)
			}
		})
	}
}

func TestSetImageCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	original := "# staging\nresources:\n  - ../../base\n\nimages:\n  - name: web # the web app\n    newTag: 1.0.0   # keep this comment\n  - name: api\n    newTag: \"2\"\n"
	fixture.WriteFiles(t, dir, map[string]string{"kustomization.yaml": original})
	digest := "sha256:" + strings.Repeat("ab", 32)
	r := run(t, nil, "set-image", "--dir", dir, "web=registry.example.com/team/web:1.4.2@"+digest)
	if r.code != 0 {
		t.Fatalf("set-image:\n%s", r)
	}
	got, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "# staging\nresources:\n  - ../../base\n\nimages:\n  - name: web # the web app\n    newTag: 1.4.2   # keep this comment\n    newName: registry.example.com/team/web\n    digest: " + digest + "\n  - name: api\n    newTag: \"2\"\n"
	if string(got) != want {
		t.Errorf("set-image wrote:\n%s\nwant:\n%s", got, want)
	}
	r = run(t, nil, "set-image", "--dir", dir, "web=registry.example.com/team/web:1.4.2@"+digest)
	if r.code != 0 || !strings.Contains(r.stdout, "changed=false") {
		t.Errorf("second set-image:\n%s", r)
	}
	r = run(t, nil, "set-image", "--dir", t.TempDir(), "web=x:1")
	if r.code != step.ExitUsage || !strings.Contains(r.stderr, "kustomization") {
		t.Errorf("set-image without a kustomization:\n%s", r)
	}
}
