package testenv

import (
	"bytes"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// GitServer is a git smart-HTTP server on 127.0.0.1: `git http-backend` run
// through net/http/cgi, behind HTTP basic auth, serving the bare repositories
// under Root. Fetch and push both work; concurrent pushes are serialised by
// git's own ref locking. Start one with StartGitServer or NewGitServer.
type GitServer struct {
	// URL is the server's base URL, http://127.0.0.1:PORT, without credentials.
	URL string
	// Username and Password are the only credentials the server accepts.
	Username, Password string
	// Root is the directory holding the bare repositories, one NAME.git each.
	Root string
	// CACertPEM is the PEM certificate of the authority that issued the server's TLS
	// certificate (WithGitTLS); nil for a plain-HTTP server.
	CACertPEM []byte

	dir       string // temp dir holding Root, removed by Close
	backend   string // path of git-http-backend
	latency   time.Duration
	stderr    io.Writer
	noFilter  bool
	srv       *loopbackServer
	requests  atomic.Int64
	closeOnce sync.Once
}

// GitOption configures a GitServer.
type GitOption func(*gitOptions)

type gitOptions struct {
	tls            bool
	latency        time.Duration
	user, password string
	stderr         io.Writer
	noFilter       bool
}

// WithGitTLS makes the git server serve HTTPS with a certificate for 127.0.0.1 issued by a new
// certificate authority (GitServer.CACertPEM), like a self-hosted GitLab.
func WithGitTLS() GitOption {
	return func(o *gitOptions) { o.tls = true }
}

// WithLatency delays every HTTP request the git server receives by d, to
// imitate a remote server in benchmarks.
func WithLatency(d time.Duration) GitOption {
	return func(o *gitOptions) { o.latency = d }
}

// WithCredentials sets the basic-auth user name and password the git server
// accepts. By default both are random.
func WithCredentials(user, password string) GitOption {
	return func(o *gitOptions) { o.user, o.password = user, password }
}

// WithGitStderr sends the standard error of `git http-backend` (and of any
// hooks it runs) to w. By default it is discarded.
func WithGitStderr(w io.Writer) GitOption {
	return func(o *gitOptions) { o.stderr = w }
}

// WithoutFilters makes the git server refuse partial clone: it does not advertise the "filter"
// capability, like git's default (uploadpack.allowFilter unset) and older servers. By default
// it allows filters, as GitHub, GitLab and Gitea do.
func WithoutFilters() GitOption {
	return func(o *gitOptions) { o.noFilter = true }
}

// StartGitServer starts a git smart-HTTP server on 127.0.0.1 with an empty
// repository root in a new temporary directory. It needs the git CLI on
// PATH. Call Close to stop it and remove its repositories.
func StartGitServer(opts ...GitOption) (*GitServer, error) {
	var o gitOptions
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("starting git server: the git CLI is required on PATH: %w", err)
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("starting git server: running `git --exec-path`: %w", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		return nil, fmt.Errorf("starting git server: git-http-backend not found: %w", err)
	}
	if o.user == "" {
		if o.user, err = randomToken(4); err != nil {
			return nil, err
		}
		o.user = "git-" + o.user
	}
	if o.password == "" {
		if o.password, err = randomToken(16); err != nil {
			return nil, err
		}
	}
	if o.stderr == nil {
		o.stderr = io.Discard
	}
	dir, err := os.MkdirTemp("", "deliver-git-")
	if err != nil {
		return nil, fmt.Errorf("starting git server: creating temp dir: %w", err)
	}
	s := &GitServer{
		Username: o.user,
		Password: o.password,
		Root:     filepath.Join(dir, "repos"),
		dir:      dir,
		backend:  backend,
		latency:  o.latency,
		stderr:   o.stderr,
		noFilter: o.noFilter,
	}
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting git server: %w", err)
	}
	var tlsConfig *tls.Config
	scheme := "http://"
	if o.tls {
		if tlsConfig, _, s.CACertPEM, err = loopbackTLS("deliver testenv git CA"); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("starting git server: %w", err)
		}
		scheme = "https://"
	}
	s.srv, err = startLoopback(http.HandlerFunc(s.serveHTTP), tlsConfig)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting git server: %w", err)
	}
	s.URL = scheme + s.srv.addr
	return s, nil
}

// NewGitServer starts a git server for the duration of a test; see
// StartGitServer. It calls t.Fatal if the server cannot start and closes it
// in t.Cleanup.
func NewGitServer(t testing.TB, opts ...GitOption) *GitServer {
	t.Helper()
	s, err := StartGitServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, waiting a few seconds for requests in flight, and
// removes every repository. It is safe to call more than once.
func (s *GitServer) Close() {
	s.closeOnce.Do(func() {
		s.srv.close()
		_ = os.RemoveAll(s.dir)
	})
}

// Requests returns how many HTTP requests the server has received, including
// those rejected for missing or wrong credentials.
func (s *GitServer) Requests() int64 { return s.requests.Load() }

func (s *GitServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	sleepCtx(r.Context(), s.latency)
	user, password, ok := r.BasicAuth()
	if !ok || !secretEqual(user, s.Username) || !secretEqual(password, s.Password) {
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
		return
	}
	h := &cgi.Handler{
		Path: s.backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			// http-backend enables receive-pack (push) only for an
			// authenticated REMOTE_USER.
			"REMOTE_USER=" + user,
			"GIT_CONFIG_NOSYSTEM=1",
		},
		Stderr: s.stderr,
	}
	if !s.noFilter {
		// Partial clone ("filter" requests). upload-pack ignores this setting in a
		// repository's own config, so it comes through the environment.
		h.Env = append(h.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=uploadpack.allowFilter", "GIT_CONFIG_VALUE_0=true")
	}
	h.ServeHTTP(w, r)
}

func secretEqual(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

var repoNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$`)

func checkRepoName(name string) error {
	if !repoNameRE.MatchString(name) || strings.Contains(name, "..") || strings.HasSuffix(name, ".git") {
		return fmt.Errorf("invalid repository name %q (want path segments of [A-Za-z0-9._-], without .git)", name)
	}
	return nil
}

// RepoURL returns the clone URL of repository name (without credentials):
// URL/name.git.
func (s *GitServer) RepoURL(name string) string { return s.URL + "/" + name + ".git" }

// BareDir returns the directory of the bare repository name: Root/name.git.
func (s *GitServer) BareDir(name string) string {
	return filepath.Join(s.Root, filepath.FromSlash(name)+".git")
}

// CreateRepo creates the bare repository name.git (name may contain
// slashes, e.g. "team/config") whose HEAD is branch, and returns its clone
// URL, which carries no credentials. The first commit on branch holds every
// file under seedDir (ignore files are not applied); with seedDir "" it is
// an empty commit. It fails if the repository already exists.
func (s *GitServer) CreateRepo(name, branch, seedDir string) (cloneURL string, err error) {
	if err := checkRepoName(name); err != nil {
		return "", fmt.Errorf("creating repository: %w", err)
	}
	if branch == "" || plumbing.NewBranchReferenceName(branch).Validate() != nil {
		return "", fmt.Errorf("creating repository %q: invalid branch name %q", name, branch)
	}
	bare := s.BareDir(name)
	if _, err := os.Stat(bare); err == nil {
		return "", fmt.Errorf("creating repository %q: %s already exists", name, bare)
	}
	if err := os.MkdirAll(filepath.Dir(bare), 0o755); err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	tmp, err := os.MkdirTemp(s.dir, "seed-")
	if err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	work := seedDir
	if work != "" {
		if work, err = filepath.Abs(work); err != nil {
			return "", fmt.Errorf("creating repository %q: %w", name, err)
		}
	}
	if work == "" {
		work = filepath.Join(tmp, "empty")
		if err := os.Mkdir(work, 0o755); err != nil {
			return "", fmt.Errorf("creating repository %q: %w", name, err)
		}
	}
	// Isolate from the user's and the system's git configuration.
	isolated := []string{"HOME=" + tmp, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull}
	env := append([]string{
		"GIT_DIR=" + bare,
		"GIT_WORK_TREE=" + work,
		"GIT_INDEX_FILE=" + filepath.Join(tmp, "index"),
		"GIT_AUTHOR_NAME=testenv", "GIT_AUTHOR_EMAIL=testenv@example.invalid",
		"GIT_COMMITTER_NAME=testenv", "GIT_COMMITTER_EMAIL=testenv@example.invalid",
	}, isolated...)
	if _, err := runGit(isolated, "", "init", "--quiet", "--bare", "--initial-branch="+branch, bare); err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	if _, err := runGit(env, work, "add", "--all", "--force", "."); err != nil {
		return "", fmt.Errorf("creating repository %q: adding %s: %w", name, work, err)
	}
	tree, err := runGit(env, work, "write-tree")
	if err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	commit, err := runGit(env, work, "commit-tree", "-m", "Initial commit", tree)
	if err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	if _, err := runGit(env, work, "update-ref", "refs/heads/"+branch, commit); err != nil {
		return "", fmt.Errorf("creating repository %q: %w", name, err)
	}
	return s.RepoURL(name), nil
}

// runGit runs the git CLI in dir with env (plus PATH) as its whole
// environment and returns its trimmed standard output.
func runGit(env []string, dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// commitAt opens repository name and returns the commit at the tip of branch.
func (s *GitServer) commitAt(name, branch string) (*git.Repository, *object.Commit, error) {
	repo, err := git.PlainOpen(s.BareDir(name))
	if err != nil {
		return nil, nil, fmt.Errorf("opening repository %q: %w", name, err)
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		return nil, nil, fmt.Errorf("resolving branch %q of repository %q: %w", branch, name, err)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, nil, fmt.Errorf("reading commit %s of repository %q: %w", ref.Hash(), name, err)
	}
	return repo, c, nil
}

// Head returns the commit at the tip of branch in repository name.
func (s *GitServer) Head(name, branch string) (plumbing.Hash, error) {
	_, c, err := s.commitAt(name, branch)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return c.Hash, nil
}

// ReadFile returns the content of path (slash-separated, relative to the
// repository root) in the commit at the tip of branch. A missing file gives
// an error wrapping object.ErrFileNotFound.
func (s *GitServer) ReadFile(name, branch, path string) ([]byte, error) {
	_, c, err := s.commitAt(name, branch)
	if err != nil {
		return nil, err
	}
	f, err := c.File(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s in repository %q: %w", path, c.Hash, name, err)
	}
	content, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s in repository %q: %w", path, c.Hash, name, err)
	}
	return []byte(content), nil
}

// Log returns the first-parent history of branch in repository name,
// newest commit first.
func (s *GitServer) Log(name, branch string) ([]*object.Commit, error) {
	_, c, err := s.commitAt(name, branch)
	if err != nil {
		return nil, err
	}
	var log []*object.Commit
	for {
		log = append(log, c)
		if c.NumParents() == 0 {
			return log, nil
		}
		if c, err = c.Parent(0); err != nil {
			return nil, fmt.Errorf("walking history of %q in repository %q: %w", branch, name, err)
		}
	}
}

// SetHook installs script as the server-side hook hookName (for example
// "pre-receive" or "update") of repository name, replacing any previous one.
// A script without a "#!" line runs with /bin/sh. What the hook prints on
// standard error reaches the client as "remote:" progress lines.
func (s *GitServer) SetHook(name, hookName, script string) error {
	if hookName == "" || strings.ContainsAny(hookName, `/\`) || strings.HasPrefix(hookName, ".") {
		return fmt.Errorf("setting hook of repository %q: invalid hook name %q", name, hookName)
	}
	bare := s.BareDir(name)
	if _, err := os.Stat(bare); err != nil {
		return fmt.Errorf("setting hook %s of repository %q: %w", hookName, name, err)
	}
	if !strings.HasPrefix(script, "#!") {
		script = "#!/bin/sh\n" + script
	}
	hooks := filepath.Join(bare, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		return fmt.Errorf("setting hook %s of repository %q: %w", hookName, name, err)
	}
	// Write then rename, so a push running concurrently never executes a
	// half-written script.
	tmp, err := os.CreateTemp(hooks, "."+hookName+"-")
	if err != nil {
		return fmt.Errorf("setting hook %s of repository %q: %w", hookName, name, err)
	}
	_, werr := tmp.WriteString(script)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o755)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("setting hook %s of repository %q: %w", hookName, name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(hooks, hookName)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("setting hook %s of repository %q: %w", hookName, name, err)
	}
	return nil
}
