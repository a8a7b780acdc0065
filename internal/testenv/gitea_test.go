package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
)

// git runs the git CLI, isolated from the user's configuration, with extra environment env.
func gitCLI(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid",
	}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func TestGitea(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.SharedGitea(t)
	// Names unique per run, so that -count=N against the one shared Gitea works.
	suffix := fmt.Sprintf("-%x", rand.Uint32())
	config, protected, scoped := "harness-config"+suffix, "harness-protected"+suffix, "harness-scopes"+suffix
	cloneURL, err := g.CreateRepo(ctx, config, seedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if cloneURL != g.URL+"/ci/"+config+".git" {
		t.Fatalf("clone URL = %q, want %s/ci/%s.git", cloneURL, g.URL, config)
	}

	t.Run("seeded repository reads back over the API and git", func(t *testing.T) {
		got, err := g.ReadFile(ctx, config, "main", "overlays/prod/kustomization.yaml")
		if err != nil || string(got) != kustomization {
			t.Fatalf("ReadFile = %q, %v; want %q", got, err, kustomization)
		}
		head, err := g.BranchHead(ctx, config, "main")
		if err != nil || len(head) != 40 {
			t.Fatalf("BranchHead = %q, %v; want a 40-hex SHA", head, err)
		}
		dir := t.TempDir()
		if out, err := gitCLI(t, dir, nil, "clone", "--quiet", g.AuthRepoURL(config, testenv.GiteaAdmin, g.Token), "c"); err != nil {
			t.Fatalf("git clone with the admin token: %v: %s", err, out)
		}
		out, err := gitCLI(t, filepath.Join(dir, "c"), nil, "rev-parse", "HEAD")
		if err != nil || strings.TrimSpace(out) != head {
			t.Fatalf("cloned HEAD = %q, %v; want %s", out, err, head)
		}
		// The repository is private: without credentials git gets nothing.
		if out, err := gitCLI(t, dir, nil, "clone", "--quiet", cloneURL, "anon"); err == nil {
			t.Fatalf("anonymous clone of a private repository succeeded: %s", out)
		}
	})

	t.Run("protected branch refuses a direct push with Gitea's words", func(t *testing.T) {
		if _, err := g.CreateRepo(ctx, protected, seedDir(t)); err != nil {
			t.Fatal(err)
		}
		if err := g.ProtectBranch(ctx, protected, testenv.BranchProtection{Branch: "main"}); err != nil {
			t.Fatal(err)
		}
		before, err := g.BranchHead(ctx, protected, "main")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		url := g.AuthRepoURL(protected, testenv.GiteaAdmin, g.Token)
		if out, err := gitCLI(t, dir, nil, "clone", "--quiet", url, "c"); err != nil {
			t.Fatalf("clone: %v: %s", err, out)
		}
		work := filepath.Join(dir, "c")
		if err := os.WriteFile(filepath.Join(work, "x.txt"), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := gitCLI(t, work, nil, "add", "x.txt"); err != nil {
			t.Fatalf("add: %v: %s", err, out)
		}
		if out, err := gitCLI(t, work, nil, "commit", "--quiet", "-m", "x"); err != nil {
			t.Fatalf("commit: %v: %s", err, out)
		}
		out, err := gitCLI(t, work, nil, "push", "origin", "HEAD:main")
		if err == nil || !strings.Contains(out, "Not allowed to push to protected branch main") || !strings.Contains(out, "pre-receive hook declined") {
			t.Fatalf("push to protected main: err=%v, output:\n%s\nwant a refusal naming the protected branch", err, out)
		}
		if strings.Contains(out, g.Token) {
			t.Errorf("git output shows the token")
		}
		if after, err := g.BranchHead(ctx, protected, "main"); err != nil || after != before {
			t.Errorf("main after the refused push = %s, %v; want unchanged %s", after, err, before)
		}
		// A branch of its own is not protected: the pull-request path starts there.
		if out, err := gitCLI(t, work, nil, "push", "--quiet", "origin", "HEAD:refs/heads/deliver/prod/web"); err != nil {
			t.Fatalf("push to an unprotected branch: %v: %s", err, out)
		}
	})

	t.Run("tokens carry exactly their scopes", func(t *testing.T) {
		repo := scoped
		if _, err := g.CreateRepo(ctx, repo, seedDir(t)); err != nil {
			t.Fatal(err)
		}
		user := "scoped" + suffix
		pw, err := g.CreateUser(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.AddCollaborator(ctx, repo, user, "write"); err != nil {
			t.Fatal(err)
		}
		tok, err := g.CreateToken(ctx, user, pw, "repo-only", "write:repository")
		if err != nil {
			t.Fatal(err)
		}
		// write:repository opens pull requests...
		dir := t.TempDir()
		if out, err := gitCLI(t, dir, nil, "clone", "--quiet", g.AuthRepoURL(repo, user, tok), "c"); err != nil {
			t.Fatalf("clone with the user's token: %v: %s", err, out)
		}
		work := filepath.Join(dir, "c")
		if out, err := gitCLI(t, work, nil, "commit", "--quiet", "--allow-empty", "-m", "change"); err != nil {
			t.Fatalf("commit: %v: %s", err, out)
		}
		if out, err := gitCLI(t, work, nil, "push", "--quiet", "origin", "HEAD:refs/heads/feature"); err != nil {
			t.Fatalf("push a branch with the user's token: %v: %s", err, out)
		}
		var pr testenv.GiteaPull
		if err := g.DoAs(ctx, tok, http.MethodPost, "/repos/ci/"+repo+"/pulls",
			map[string]any{"head": "feature", "base": "main", "title": "t"}, &pr); err != nil {
			t.Fatalf("opening a pull request with write:repository: %v", err)
		}
		// ...but commenting needs write:issue, which it lacks.
		err = g.DoAs(ctx, tok, http.MethodPost, "/repos/ci/"+repo+"/issues/"+strconv.Itoa(pr.Number)+"/comments", map[string]any{"body": "hi"}, nil)
		var apiErr *testenv.GiteaAPIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || !strings.Contains(apiErr.Body, "write:issue") {
			t.Fatalf("comment with a write:repository token: %v; want 403 naming write:issue", err)
		}
		pulls, err := g.Pulls(ctx, repo, "open")
		if err != nil || len(pulls) != 1 || pulls[0].Head.Ref != "feature" || pulls[0].Number != pr.Number {
			t.Fatalf("Pulls(open) = %+v, %v; want the one pull request from feature", pulls, err)
		}
	})
}

func TestGiteaTLSAndStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := testenv.NewGitea(t, testenv.WithGiteaTLS())
	if !strings.HasPrefix(g.URL, "https://127.0.0.1:") || len(g.CACertPEM) == 0 {
		t.Fatalf("URL = %q, CA = %d bytes; want https with a CA", g.URL, len(g.CACertPEM))
	}
	if _, err := g.CreateRepo(ctx, "tls", seedDir(t)); err != nil {
		t.Fatal(err)
	}
	// Without the CA, neither the API nor git trusts the server.
	if _, err := http.Get(g.APIURL + "/version"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without the CA: %v; want a certificate error", err)
	}
	dir := t.TempDir()
	url := g.AuthRepoURL("tls", testenv.GiteaAdmin, g.Token)
	if out, err := gitCLI(t, dir, nil, "clone", "--quiet", url, "a"); err == nil || !strings.Contains(out, "certificate") {
		t.Errorf("git clone without the CA: %v: %s; want a certificate error", err, out)
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, g.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := gitCLI(t, dir, []string{"GIT_SSL_CAINFO=" + ca}, "clone", "--quiet", url, "b"); err != nil {
		t.Fatalf("git clone with the CA: %v: %s", err, out)
	}

	if err := g.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(g.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Gitea dir after Stop: %v; want it removed", err)
	}
	client := &http.Client{Transport: g.Transport()}
	if resp, err := client.Get(g.APIURL + "/version"); err == nil {
		resp.Body.Close()
		t.Errorf("Gitea still answers after Stop: %s", resp.Status)
	}
	if err := g.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
