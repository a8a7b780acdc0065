package configrepo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/configrepo"
)

var author = configrepo.Signature{Name: "deliver test", Email: "test@deliver.invalid"}

// seed writes files into a new directory and returns it.
func seed(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newRepo(t *testing.T, gs *testenv.GitServer, name string) string {
	t.Helper()
	url, err := gs.CreateRepo(name, "main", seed(t, map[string]string{"README.md": "config\n"}))
	if err != nil {
		t.Fatal(err)
	}
	return url
}

func opts(gs *testenv.GitServer, url string) configrepo.Options {
	return configrepo.Options{
		URL: url, Branch: "main",
		Auth:        configrepo.Auth{Username: gs.Username, Password: gs.Password},
		MaxAttempts: 10, Timeout: time.Minute,
	}
}

// appendLine returns an Edit that appends line to file.
func appendLine(file, line string) configrepo.Edit {
	return func(_ context.Context, dir string) (string, []string, error) {
		p := filepath.Join(dir, file)
		old, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return "", nil, err
		}
		if strings.Contains(string(old), line+"\n") {
			return "", nil, nil
		}
		if err := os.WriteFile(p, append(old, []byte(line+"\n")...), 0o644); err != nil {
			return "", nil, err
		}
		return "add " + line, []string{file}, nil
	}
}

func TestUpdateCommitsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "idem")

	for i, wantChanged := range []bool{true, false} {
		repo, err := configrepo.Clone(ctx, opts(gs, url))
		if err != nil {
			t.Fatal(err)
		}
		res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
		repo.Close()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if res.Changed != wantChanged {
			t.Fatalf("run %d: Changed = %v, want %v", i, res.Changed, wantChanged)
		}
	}
	log, err := gs.Log("idem", "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Fatalf("history has %d commits, want 2 (seed + one update)", len(log))
	}
	got, err := gs.ReadFile("idem", "main", "list.txt")
	if err != nil || string(got) != "web=1.0\n" {
		t.Fatalf("list.txt = %q, %v", got, err)
	}
}

// TestLostRaceIsRetried makes the first push lose a race deterministically: a pre-receive hook
// moves the branch to a prepared commit before git takes the ref lock, so the push's expected
// old value no longer matches, as when another pipeline pushed in between.
func TestLostRaceIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "race")

	// The competing commit, pushed to a side branch so its objects are on the server.
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", authURL(gs, url), ".")
	if err := os.WriteFile(filepath.Join(work, "list.txt"), []byte("api=2.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, work, "add", "list.txt")
	gitCmd(t, work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "competing pipeline")
	competing := plumbing.NewHash(strings.TrimSpace(gitCmd(t, work, "rev-parse", "HEAD")))
	gitCmd(t, work, "push", "-q", "origin", "HEAD:refs/heads/race")

	hook := fmt.Sprintf(`#!/bin/sh
if [ ! -f "$GIT_DIR/raced" ]; then
  touch "$GIT_DIR/raced"
  env -u GIT_QUARANTINE_PATH git update-ref refs/heads/main %s
fi
exit 0
`, competing)
	if err := gs.SetHook("race", "pre-receive", hook); err != nil {
		t.Fatal(err)
	}

	var logs []string
	var mu sync.Mutex
	o := opts(gs, url)
	o.Logf = func(f string, a ...any) { mu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); mu.Unlock() }
	repo, err := configrepo.Clone(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if res.Attempts != 2 {
		t.Errorf("Attempts = %d, want 2; log: %q", res.Attempts, logs)
	}
	if res.Parent != competing.String() {
		t.Errorf("landed on %s, want on the competing commit %s", res.Parent, competing)
	}
	if !strings.Contains(strings.Join(logs, "\n"), "attempt 1 lost the race") {
		t.Errorf("log does not show the lost race: %q", logs)
	}
	got, err := gs.ReadFile("race", "main", "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "api=2.0\nweb=1.0\n" {
		t.Fatalf("list.txt = %q: an update was lost", got)
	}
}

func TestHookRejectionIsTerminal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "hook")
	if err := gs.SetHook("hook", "pre-receive", "#!/bin/sh\necho 'GL-HOOK-ERR: main is frozen for the release' >&2\nexit 1\n"); err != nil {
		t.Fatal(err)
	}
	before, _ := gs.Head("hook", "main")
	repo, err := configrepo.Clone(ctx, opts(gs, url))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
	if !errors.Is(err, configrepo.ErrRejected) {
		t.Fatalf("err = %v, want ErrRejected", err)
	}
	if !strings.Contains(err.Error(), "main is frozen for the release") {
		t.Errorf("the server's message is not in the error: %v", err)
	}
	if res.Attempts != 1 {
		t.Errorf("Attempts = %d, want 1 (a hook rejection is not retried)", res.Attempts)
	}
	if after, _ := gs.Head("hook", "main"); after != before {
		t.Errorf("branch moved from %s to %s", before, after)
	}
}

func TestWrongTokenIsAuthError(t *testing.T) {
	t.Parallel()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "auth")
	o := opts(gs, url)
	o.Auth.Password = "wrong-token-value-123"
	_, err := configrepo.Clone(context.Background(), o)
	if !errors.Is(err, configrepo.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), "wrong-token-value-123") {
		t.Fatalf("token in error: %v", err)
	}
}

func TestCredentialsInURLAreNotShown(t *testing.T) {
	t.Parallel()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "urlcreds")
	withCreds := strings.Replace(url, "http://", "http://"+gs.Username+":"+gs.Password+"@", 1)
	repo, err := configrepo.Clone(context.Background(), configrepo.Options{URL: withCreds, Branch: "main"})
	if err != nil {
		t.Fatalf("clone with credentials in the URL: %v", err)
	}
	defer repo.Close()
	if strings.Contains(repo.URL(), gs.Password) {
		t.Fatalf("URL() = %q keeps the password", repo.URL())
	}
	_, err = configrepo.Clone(context.Background(), configrepo.Options{URL: withCreds, Branch: "no-such-branch"})
	if err == nil || strings.Contains(err.Error(), gs.Password) {
		t.Fatalf("err = %v: want an error without the password", err)
	}
}

func TestMissingBranchAndRepo(t *testing.T) {
	t.Parallel()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "missing")
	o := opts(gs, url)
	o.Branch = "nope"
	if _, err := configrepo.Clone(context.Background(), o); !errors.Is(err, configrepo.ErrNotFound) {
		t.Errorf("missing branch: err = %v, want ErrNotFound", err)
	}
	o = opts(gs, gs.RepoURL("does-not-exist"))
	if _, err := configrepo.Clone(context.Background(), o); !errors.Is(err, configrepo.ErrNotFound) {
		t.Errorf("missing repo: err = %v, want ErrNotFound", err)
	}
}

func TestUnreachableServer(t *testing.T) {
	t.Parallel()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "down")
	gs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := configrepo.Clone(ctx, opts(gs, url)); !errors.Is(err, configrepo.ErrUnreachable) {
		t.Errorf("err = %v, want ErrUnreachable", err)
	}
}

// TestCloneIsShallow: however long the history, the clone holds one commit.
func TestCloneIsShallow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "deep")
	work := pushCommits(t, gs, url, 60)

	repo, err := configrepo.Clone(ctx, opts(gs, url))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	iter, err := repo.Git().CommitObjects()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = iter.ForEach(func(*object.Commit) error { n++; return nil })
	if n != 1 {
		t.Fatalf("clone holds %d commits, want 1 (depth 1)", n)
	}
	res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
	if err != nil || !res.Changed {
		t.Fatalf("update on a shallow clone: %+v, %v", res, err)
	}
	gitCmd(t, work, "pull", "-q", "--ff-only", "origin", "main")
	gitCmd(t, work, "fsck", "--no-progress")
}

// pushCommits pushes n commits ("c0" to "c<n-1>", each changing n.txt) to main with the git
// CLI and returns the CLI's clone.
func pushCommits(t *testing.T, gs *testenv.GitServer, url string, n int) string {
	t.Helper()
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", authURL(gs, url), ".")
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(work, "n.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		gitCmd(t, work, "add", "n.txt")
		gitCmd(t, work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", fmt.Sprint("c", i))
	}
	gitCmd(t, work, "push", "-q", "origin", "HEAD:main")
	return work
}

func authURL(gs *testenv.GitServer, url string) string {
	return strings.Replace(url, "http://", "http://"+gs.Username+":"+gs.Password+"@", 1)
}

func gitCmd(t *testing.T, dir string, args ...string) string {
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

// TestSelfHostedTLS: a git server with a private CA is refused until its CA bundle is given.
func TestSelfHostedTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t, testenv.WithGitTLS())
	url := newRepo(t, gs, "tls")
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("clone URL %s is not https", url)
	}
	if _, err := configrepo.Clone(ctx, opts(gs, url)); !errors.Is(err, configrepo.ErrUnreachable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("clone without the CA: err = %v, want an unreachable error about the certificate", err)
	}
	o := opts(gs, url)
	o.Auth.CABundle = gs.CACertPEM
	repo, err := configrepo.Clone(ctx, o)
	if err != nil {
		t.Fatalf("clone with the CA bundle: %v", err)
	}
	defer repo.Close()
	res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
	if err != nil || !res.Changed {
		t.Fatalf("push over TLS: %+v, %v", res, err)
	}
}

// TestSSHDeployKey: clone and push over SSH with a deploy key, checking the server's host key
// against a known_hosts file or a pinned key; a wrong host key or client key is refused.
func TestSSHDeployKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	newRepo(t, gs, "ssh")
	ss := testenv.NewSSHServer(t, gs)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(ss.KnownHosts+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := testenv.NewSSHServer(t, gs) // another host key, another client key

	tests := []struct {
		name    string
		auth    configrepo.Auth
		wantErr error
	}{
		{"known_hosts", configrepo.Auth{SSHKey: ss.ClientKeyPEM, KnownHosts: knownHosts}, nil},
		{"pinned host key", configrepo.Auth{SSHKey: ss.ClientKeyPEM, HostKey: ss.HostKey}, nil},
		{"wrong pinned host key", configrepo.Auth{SSHKey: ss.ClientKeyPEM, HostKey: other.HostKey}, configrepo.ErrAuth},
		{"unknown deploy key", configrepo.Auth{SSHKey: other.ClientKeyPEM, HostKey: ss.HostKey}, configrepo.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := configrepo.Clone(ctx, configrepo.Options{URL: ss.RepoURL("ssh"), Branch: "main", Auth: tt.auth, Timeout: 30 * time.Second})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Fatalf("the key is in the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			res, err := repo.Update(ctx, author, appendLine("ssh.txt", tt.name))
			if err != nil || !res.Changed {
				t.Fatalf("push over ssh: %+v, %v", res, err)
			}
			got, err := gs.ReadFile("ssh", "main", "ssh.txt")
			if err != nil || !strings.Contains(string(got), tt.name+"\n") {
				t.Fatalf("ssh.txt = %q, %v", got, err)
			}
		})
	}
	if _, err := configrepo.Clone(ctx, configrepo.Options{URL: ss.RepoURL("ssh"), Branch: "main"}); err == nil || !strings.Contains(err.Error(), "--ssh-key") {
		t.Fatalf("ssh URL without a key: %v", err)
	}
}
