package forge_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/step/forge"
)

// The tests in this file run go-github and Gitea's own endpoints against a real Gitea
// (internal/testenv), with real users, tokens, branch protection, reviews, commit statuses and
// Gitea's merge queue.

// giteaRepo creates a repository of the test's own on the shared Gitea, seeded with an
// overlay, and returns its name.
func giteaRepo(t *testing.T, g *testenv.Gitea) string {
	t.Helper()
	seed := t.TempDir()
	overlay := filepath.Join(seed, "overlays", "production")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	kust := "resources:\n- ../../base\nimages:\n- name: api\n  newTag: 2.0.0\n- name: web\n  newTag: 1.4.2\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	// Unique per run, so that -count=N against the one shared Gitea works.
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(strings.TrimPrefix(t.Name(), "TestGitea")))
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s-%x", name, rand.Uint32())
	if _, err := g.CreateRepo(context.Background(), name, seed); err != nil {
		t.Fatal(err)
	}
	return name
}

// pushChange commits content as overlays/production/kustomization.yaml on top of the tip of main
// and force-pushes it to branch, the way deliver pushes a change; it returns the commit.
func pushChange(t *testing.T, g *testenv.Gitea, repo, branch, content string) string {
	t.Helper()
	auth := &githttp.BasicAuth{Username: testenv.GiteaAdmin, Password: g.Token}
	r, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{
		URL: g.RepoURL(repo), Auth: auth, ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true, Depth: 1,
		CABundle: g.CACertPEM,
	})
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	path := "overlays/production/kustomization.yaml"
	if err := os.WriteFile(filepath.Join(wt.Filesystem.Root(), path), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(path); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("deliver: "+branch, &git.CommitOptions{Author: &object.Signature{Name: "deliver", Email: "d@example.invalid", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Push(&git.PushOptions{Auth: auth, CABundle: g.CACertPEM,
		RefSpecs: []config.RefSpec{config.RefSpec("+refs/heads/main:refs/heads/" + branch)}}); err != nil {
		t.Fatalf("push %s: %v", branch, err)
	}
	return h.String()
}

// webChange creates a repository of the test's own and pushes a change of web to its branch.
func webChange(t *testing.T, g *testenv.Gitea) (repo string, ch forge.Change) {
	t.Helper()
	repo = giteaRepo(t, g)
	ch = forge.Change{Branch: forge.Branch("production", []string{"web"}), Base: "main", Title: "deliver(production): web 1.4.2 -> 1.4.3", Body: "b"}
	pushChange(t, g, repo, ch.Branch, overlay("1.4.3", "2.0.0"))
	return repo, ch
}

func overlay(web, api string) string {
	return "resources:\n- ../../base\nimages:\n- name: api\n  newTag: " + api + "\n- name: web\n  newTag: " + web + "\n"
}

func giteaClient(t *testing.T, g *testenv.Gitea, repo, token string) *forge.Client {
	t.Helper()
	c, err := forge.New(forge.Options{RepoURL: g.RepoURL(repo), Kind: forge.Gitea, Token: token,
		HTTPClient: &http.Client{Transport: g.Transport(), Timeout: 60 * time.Second}}) // generous: on a loaded machine a Gitea merge took over 20 s
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func openPulls(t *testing.T, g *testenv.Gitea, repo string) []testenv.GiteaPull {
	t.Helper()
	pulls, err := g.Pulls(context.Background(), repo, "open")
	if err != nil {
		t.Fatal(err)
	}
	return pulls
}

func TestGiteaSyncOpensOneAndUpdatesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo := giteaRepo(t, g)
	c := giteaClient(t, g, repo, g.Token)
	if c.Kind() != forge.Gitea {
		t.Fatalf("Kind = %s", c.Kind())
	}
	web := forge.Change{Branch: forge.Branch("production", []string{"web"}), Base: "main",
		Title: "deliver(production): web 1.4.2 -> 1.4.3", Body: "web: `1.4.2` → `1.4.3`"}
	head1 := pushChange(t, g, repo, web.Branch, overlay("1.4.3", "2.0.0"))
	pr1, err := c.Sync(ctx, web, "")
	if err != nil {
		t.Fatal(err)
	}
	if pr1.Number == 0 || pr1.State != forge.StateOpen || pr1.HeadSHA != head1 || !strings.HasPrefix(pr1.URL, g.URL+"/ci/"+repo+"/pulls/") {
		t.Fatalf("first Sync = %+v; want an open pull request at %s", pr1, head1)
	}

	// A newer build of the same image: same branch, force-pushed; same pull request, refreshed.
	web.Title, web.Body = "deliver(production): web 1.4.2 -> 1.4.4", "web: `1.4.2` → `1.4.4`"
	head2 := pushChange(t, g, repo, web.Branch, overlay("1.4.4", "2.0.0"))
	pr2, err := c.Sync(ctx, web, "")
	if err != nil {
		t.Fatal(err)
	}
	if pr2.Number != pr1.Number || pr2.HeadSHA != head2 {
		t.Fatalf("second Sync = %+v; want #%d at %s", pr2, pr1.Number, head2)
	}
	pulls := openPulls(t, g, repo)
	if len(pulls) != 1 || pulls[0].Title != web.Title || pulls[0].Body != web.Body {
		t.Fatalf("open pull requests = %+v; want one, titled %q with the new body", pulls, web.Title)
	}

	// The same again changes nothing and opens nothing.
	if pr3, err := c.Sync(ctx, web, ""); err != nil || pr3.Number != pr1.Number {
		t.Fatalf("third Sync = %+v, %v; want #%d", pr3, err, pr1.Number)
	}

	// Another image gets a pull request of its own.
	api := forge.Change{Branch: forge.Branch("production", []string{"api"}), Base: "main",
		Title: "deliver(production): api 2.0.0 -> 2.1.0", Body: "api"}
	pushChange(t, g, repo, api.Branch, overlay("1.4.2", "2.1.0"))
	prAPI, err := c.Sync(ctx, api, "")
	if err != nil {
		t.Fatal(err)
	}
	if prAPI.Number == pr1.Number {
		t.Fatalf("api Sync reused #%d", pr1.Number)
	}
	if pulls := openPulls(t, g, repo); len(pulls) != 2 {
		t.Fatalf("open pull requests = %d, want 2 (web and api)", len(pulls))
	}

	// A closed pull request is not reused: the next change opens a new one.
	if err := g.Do(ctx, http.MethodPatch, fmt.Sprintf("/repos/ci/%s/pulls/%d", repo, pr1.Number), map[string]any{"state": "closed"}, nil); err != nil {
		t.Fatal(err)
	}
	pushChange(t, g, repo, web.Branch, overlay("1.4.5", "2.0.0"))
	pr4, err := c.Sync(ctx, web, "")
	if err != nil {
		t.Fatal(err)
	}
	if pr4.Number == pr1.Number || pr4.Number == prAPI.Number || pr4.State != forge.StateOpen {
		t.Fatalf("Sync after closing #%d = %+v; want a new open pull request", pr1.Number, pr4)
	}
}

func TestGiteaConcurrentSyncsOpenOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo, ch := webChange(t, g)
	const n = 4
	numbers := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			pr, err := giteaClient(t, g, repo, g.Token).Sync(ctx, ch, "")
			numbers[i], errs[i] = pr.Number, err
		})
	}
	wg.Wait()
	pulls := openPulls(t, g, repo)
	// Gitea refuses a second open pull request for the same head and base (409) once the first
	// is stored, and the runs that get it find and update that one; two opened at the same
	// moment can both be created, and the run whose number is newer closes its own (dedupe).
	if len(pulls) != 1 {
		t.Fatalf("%d concurrent Syncs left %d open pull requests, want 1", n, len(pulls))
	}
	for i := range n {
		if errs[i] != nil || numbers[i] != pulls[0].Number {
			t.Errorf("Sync %d = #%d, %v; want #%d", i, numbers[i], errs[i], pulls[0].Number)
		}
	}
}

// protectedRepo is a repository whose main refuses direct pushes and merges only with the
// given approvals and checks, plus a reviewer with write access.
func protectedRepo(t *testing.T, g *testenv.Gitea, approvals int, checks ...string) (repo, reviewerToken string) {
	t.Helper()
	ctx := context.Background()
	repo = giteaRepo(t, g)
	err := g.ProtectBranch(ctx, repo, testenv.BranchProtection{Branch: "main", RequiredApprovals: approvals,
		EnableStatusCheck: len(checks) > 0, StatusCheckContexts: checks})
	if err != nil {
		t.Fatal(err)
	}
	reviewer := fmt.Sprintf("reviewer-%x", rand.Uint32())
	tok, err := g.CreateUserToken(ctx, reviewer, "write:repository")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddCollaborator(ctx, repo, reviewer, "write"); err != nil {
		t.Fatal(err)
	}
	return repo, tok
}

func approve(t *testing.T, g *testenv.Gitea, repo, token string, number int) {
	t.Helper()
	err := g.DoAs(context.Background(), token, http.MethodPost, fmt.Sprintf("/repos/ci/%s/pulls/%d/reviews", repo, number),
		map[string]any{"event": "APPROVED", "body": "lgtm"}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func TestGiteaAutoMergeWaitsForApprovalAndChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo, reviewer := protectedRepo(t, g, 1, "ci/test")
	c := giteaClient(t, g, repo, g.Token)
	ch := forge.Change{Branch: forge.Branch("production", []string{"web"}), Base: "main",
		Title: "deliver(production): web 1.4.2 -> 1.4.3", Body: "b", AutoMerge: true, DeleteBranch: true}
	head := pushChange(t, g, repo, ch.Branch, overlay("1.4.3", "2.0.0"))
	pr, err := c.Sync(ctx, ch, "")
	if err != nil {
		t.Fatal(err)
	}
	if !pr.AutoMerge || pr.State != forge.StateOpen {
		t.Fatalf("Sync = %+v; want an open pull request scheduled to merge", pr)
	}
	// Syncing again (a re-run) keeps the schedule: Gitea's 409 "already scheduled" is fine.
	if again, err := c.Sync(ctx, ch, ""); err != nil || again.Number != pr.Number {
		t.Fatalf("second Sync = %+v, %v", again, err)
	}

	type result struct {
		pr    forge.PullRequest
		err   error
		polls int
	}
	done := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		polls := 0
		got, err := c.WaitMerged(wctx, pr.Number, forge.WaitOptions{Interval: 200 * time.Millisecond,
			OnPoll: func(context.Context, forge.PullRequest) error { polls++; return nil }})
		done <- result{got, err, polls}
	}()

	// Neither the approval nor the check alone merges it.
	time.Sleep(time.Second)
	approve(t, g, repo, reviewer, pr.Number)
	time.Sleep(time.Second)
	if got, err := c.Get(ctx, pr.Number); err != nil || got.State != forge.StateOpen {
		t.Fatalf("after the approval alone: %+v, %v; want still open (the check is pending)", got, err)
	}
	if err := g.SetCommitStatus(ctx, repo, head, "ci/test", "success"); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("WaitMerged: %v\n%s", res.err, g.LogTail(20))
	}
	tip, err := g.BranchHead(ctx, repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	if res.pr.State != forge.StateMerged || res.pr.MergeCommitSHA != tip || res.polls == 0 {
		t.Fatalf("WaitMerged = %+v after %d polls; want merged at main's tip %s", res.pr, res.polls, tip)
	}
	got, err := g.ReadFile(ctx, repo, "main", "overlays/production/kustomization.yaml")
	if err != nil || string(got) != overlay("1.4.3", "2.0.0") {
		t.Fatalf("main after the merge holds %q, %v", got, err)
	}
}

func TestGiteaMergeFollowsTheRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo, reviewer := protectedRepo(t, g, 1)
	c := giteaClient(t, g, repo, g.Token)
	ch := forge.Change{Branch: forge.Branch("production", []string{"web"}), Base: "main", Title: "t", Body: "b"}
	head := pushChange(t, g, repo, ch.Branch, overlay("1.4.3", "2.0.0"))
	pr, err := c.Sync(ctx, ch, "")
	if err != nil {
		t.Fatal(err)
	}
	err = c.Merge(ctx, pr.Number, head, forge.MergeCommit)
	if !errors.Is(err, forge.ErrRefused) || !strings.Contains(err.Error(), "approvals") {
		t.Fatalf("Merge without the approval: %v; want ErrRefused naming the approvals", err)
	}
	approve(t, g, repo, reviewer, pr.Number)
	// A head that moved since it was reviewed is not merged.
	if err := c.Merge(ctx, pr.Number, strings.Repeat("0", 40), forge.MergeCommit); !errors.Is(err, forge.ErrRefused) {
		t.Fatalf("Merge of a stale head: %v; want ErrRefused", err)
	}
	if err := c.Merge(ctx, pr.Number, head, forge.MergeCommit); err != nil {
		t.Fatalf("Merge after the approval: %v", err)
	}
	got, err := c.Get(ctx, pr.Number)
	tip, _ := g.BranchHead(ctx, repo, "main")
	if err != nil || got.State != forge.StateMerged || got.MergeCommitSHA != tip {
		t.Fatalf("Get after Merge = %+v, %v; want merged at %s", got, err, tip)
	}
}

func TestGiteaWaitMergedEnds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo := giteaRepo(t, g)
	c := giteaClient(t, g, repo, g.Token)
	ch := forge.Change{Branch: forge.Branch("production", []string{"web"}), Base: "main", Title: "t", Body: "b"}
	pushChange(t, g, repo, ch.Branch, overlay("1.4.3", "2.0.0"))
	pr, err := c.Sync(ctx, ch, "")
	if err != nil {
		t.Fatal(err)
	}

	// Still open when the time is up. A Gitea busy with the other tests may not answer the
	// first read within the deadline ("could not be read", also ErrNotMerged): then again
	// with twice the time, until a read was answered.
	for limit := 700 * time.Millisecond; ; limit *= 2 {
		wctx, cancel := context.WithTimeout(ctx, limit)
		start := time.Now()
		_, err = c.WaitMerged(wctx, pr.Number, forge.WaitOptions{Interval: 100 * time.Millisecond})
		cancel()
		if !errors.Is(err, forge.ErrNotMerged) {
			t.Fatalf("WaitMerged past its deadline: %v; want ErrNotMerged", err)
		}
		if d := time.Since(start); d > limit+10*time.Second {
			t.Errorf("WaitMerged took %s past a %s deadline", d, limit)
		}
		if strings.Contains(err.Error(), "could not be read before") && limit < 20*time.Second {
			t.Logf("no read answered within %s: %v", limit, err)
			continue
		}
		if !strings.Contains(err.Error(), pr.URL) {
			t.Fatalf("WaitMerged past its deadline: %v; want ErrNotMerged naming %s", err, pr.URL)
		}
		break
	}

	// An error of the hook ends the wait with it.
	stop := errors.New("base moved")
	if _, err := c.WaitMerged(ctx, pr.Number, forge.WaitOptions{Interval: 50 * time.Millisecond,
		OnPoll: func(context.Context, forge.PullRequest) error { return stop }}); !errors.Is(err, stop) {
		t.Fatalf("WaitMerged with a failing OnPoll: %v", err)
	}

	// Closed by a reviewer: the wait ends at once with ErrClosed.
	if err := g.Do(ctx, http.MethodPatch, fmt.Sprintf("/repos/ci/%s/pulls/%d", repo, pr.Number), map[string]any{"state": "closed"}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.WaitMerged(ctx, pr.Number, forge.WaitOptions{Interval: 100 * time.Millisecond})
	if !errors.Is(err, forge.ErrClosed) || got.State != forge.StateClosed {
		t.Fatalf("WaitMerged of a closed pull request = %+v, %v; want ErrClosed", got, err)
	}

	// A number that does not exist is not waited for.
	if _, err := c.WaitMerged(ctx, 9999, forge.WaitOptions{}); !errors.Is(err, forge.ErrNotFound) {
		t.Fatalf("WaitMerged(9999): %v; want ErrNotFound", err)
	}
}

func TestGiteaTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo, ch := webChange(t, g)

	// The owner's token limited to reading cannot open a pull request.
	readOnly, err := g.CreateToken(ctx, testenv.GiteaAdmin, g.Password, "read-only-"+repo, "read:repository")
	if err != nil {
		t.Fatal(err)
	}
	// Another user's token, with write:repository, but no access to the private repository.
	outsiderToken, err := g.CreateUserToken(ctx, fmt.Sprintf("outsider-%x", rand.Uint32()), "write:repository")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		want        error
		hint        string
	}{
		{"wrong token", "0123456789abcdef0123456789abcdef01234567", forge.ErrAuth, ""},
		{"read:repository only", readOnly, forge.ErrAuth, "write:repository"},
		{"no access to the repository", outsiderToken, forge.ErrNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := giteaClient(t, g, repo, tc.token).Sync(ctx, ch, "")
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("Sync = %v; want %v mentioning %q", err, tc.want, tc.hint)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
	if pulls := openPulls(t, g, repo); len(pulls) != 0 {
		t.Fatalf("refused tokens left %d pull requests", len(pulls))
	}
}

func TestGiteaTLSIsVerified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.NewGitea(t, testenv.WithGiteaTLS())
	repo, ch := webChange(t, g)

	// Without the private CA: refused, and nothing opened.
	plain, err := forge.New(forge.Options{RepoURL: g.RepoURL(repo), Kind: forge.Gitea, Token: g.Token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Sync(ctx, ch, ""); !errors.Is(err, forge.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Sync without the CA: %v; want ErrUnreachable for the certificate", err)
	}
	// With it: works.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(g.CACertPEM)
	trusted, err := forge.New(forge.Options{RepoURL: g.RepoURL(repo), Kind: forge.Gitea, Token: g.Token,
		HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := trusted.Sync(ctx, ch, "")
	if err != nil || !strings.HasPrefix(pr.URL, "https://127.0.0.1:") {
		t.Fatalf("Sync with the CA = %+v, %v", pr, err)
	}
}

// jsonEcho answers like a hostile or broken server that puts the whole request, its
// Authorization header included, into a JSON error message.
func jsonEcho(head []byte) (io.Reader, int64) {
	b, _ := json.Marshal(map[string]string{"message": string(head)})
	return bytes.NewReader(b), int64(len(b))
}

func TestGiteaFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	repo, ch := webChange(t, g)
	proxy := faultproxy.New(t, strings.TrimPrefix(g.URL, "http://"))
	c, err := forge.New(forge.Options{RepoURL: g.RepoURL(repo), Kind: forge.Gitea, Token: g.Token,
		APIURL: "http://" + proxy.Addr + "/api/v1/", HTTPClient: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		fault func()
		want  error
	}{
		{"down", proxy.Refuse, forge.ErrUnreachable},
		{"hanging", proxy.Blackhole, forge.ErrUnreachable},
		{"answering 503", func() { proxy.HTTPStatus(http.StatusServiceUnavailable) }, forge.ErrUnreachable},
		{"echoing the token in a 500", func() { proxy.HTTPStatusBody(http.StatusInternalServerError, jsonEcho) }, forge.ErrUnreachable},
		{"echoing the token in a 403", func() { proxy.HTTPStatusBody(http.StatusForbidden, jsonEcho) }, forge.ErrAuth},
		{"echoing the token in a 422", func() { proxy.HTTPStatusBody(http.StatusUnprocessableEntity, jsonEcho) }, forge.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fault()
			defer proxy.Pass()
			start := time.Now()
			_, err := c.Sync(ctx, ch, "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Sync = %v; want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), g.Token) {
				t.Fatalf("the error shows the token: %v", err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("Sync took %s", d)
			}
		})
	}
	if pulls := openPulls(t, g, repo); len(pulls) != 0 {
		t.Fatalf("faults left %d pull requests", len(pulls))
	}

	// A wait rides out a forge that is down for a while. (A patient client: under load, Gitea
	// may take more than the 2 s above to open a pull request.)
	c, err = forge.New(forge.Options{RepoURL: g.RepoURL(repo), Kind: forge.Gitea, Token: g.Token,
		APIURL: "http://" + proxy.Addr + "/api/v1/", HTTPClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Sync(ctx, ch, "")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Refuse()
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		_, err := c.WaitMerged(wctx, pr.Number, forge.WaitOptions{Interval: 100 * time.Millisecond})
		done <- err
	}()
	time.Sleep(time.Second)
	mergeInGitea(t, g, repo, pr.Number)
	proxy.Pass()
	if err := <-done; err != nil {
		t.Fatalf("WaitMerged across an outage: %v", err)
	}
}

// mergeInGitea merges pull request number as the administrator would in Gitea's UI, waiting out
// "Please try again later" while Gitea still checks the new head.
func mergeInGitea(t *testing.T, g *testenv.Gitea, repo string, number int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := g.Do(context.Background(), http.MethodPost, fmt.Sprintf("/repos/ci/%s/pulls/%d/merge", repo, number), map[string]any{"Do": "merge"}, nil)
		var apiErr *testenv.GiteaAPIError
		if err == nil {
			return
		}
		if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Body, "try again later") || time.Now().After(deadline) {
			t.Fatalf("merging #%d in Gitea: %v", number, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
