// Package configrepo changes a GitOps config repository without ever losing a write. It clones
// one branch shallowly (depth 1) into a temporary directory with go-git, and Update commits an
// edit and pushes it; when another pipeline pushed first, Update fetches the new tip, resets to
// it, runs the edit again on that state (never a textual rebase) and pushes again, with jittered
// backoff, until the push lands or the attempts or time run out.
//
// Conflicts are detected by re-fetching the branch and comparing its tip with the commit the
// attempt started from, not by matching the server's wording, so GitHub, GitLab, Gitea and plain
// git http-backend are handled alike. Authentication failures, hook rejections and errors from
// the edit are terminal.
package configrepo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Sentinel errors, wrapped with details.
var (
	// ErrAuth: the server refused the credentials (401/403, SSH auth, host key mismatch).
	ErrAuth = errors.New("config repo refused the credentials")
	// ErrUnreachable: the server could not be reached or failed (network, 5xx, timeout).
	ErrUnreachable = errors.New("config repo unreachable")
	// ErrNotFound: the repository or branch does not exist.
	ErrNotFound = errors.New("config repo or branch not found")
	// ErrRejected: the server refused the push for a reason other than a race (a hook, a
	// protected branch).
	ErrRejected = errors.New("config repo rejected the push")
	// ErrConflict: every attempt lost the race to other pushers.
	ErrConflict = errors.New("config repo push kept losing to concurrent pushes")
)

// Options configure Clone and Update.
type Options struct {
	// URL of the config repository (https://, http://, ssh:// or scp-like git@host:path).
	// Credentials embedded in the URL are moved into Auth and never printed.
	URL string
	// Branch to update. Required.
	Branch string
	Auth   Auth
	// TempDir is the parent directory of the clone; "" means os.TempDir().
	TempDir string
	// Logf receives progress lines (attempts, backoff); nil discards them.
	Logf func(format string, args ...any)
	// MaxAttempts bounds the push attempts (default 60).
	MaxAttempts int
	// Timeout bounds a whole Update, all attempts included, and each Clone, Fetch and Deepen
	// (default 2m).
	Timeout time.Duration
	// Backoff between attempts; Steps is ignored (MaxAttempts counts). Zero means
	// DefaultBackoff: 50ms doubling per attempt, capped at 1s, each sleep stretched by a random
	// 0-100% (full jitter). Every lost race means another push landed, so the branch makes
	// progress whoever waits; what the backoff must do is spread the losers over time so that
	// they stop colliding, without leaving the branch idle. Measured with 32 concurrent
	// pipelines (BENCHMARKS.md, F2): 20ms × 1.5 capped at 400ms kept the losers colliding
	// (250 lost races, 13.7 s); a 2s cap halved the collisions but left the branch idle at the
	// end (150, 12.2 s); a 1s cap has as few collisions and less idling (150, 11.0 s).
	Backoff wait.Backoff
}

// DefaultBackoff returns the backoff between push attempts used when Options.Backoff is zero.
func DefaultBackoff() wait.Backoff {
	return wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 1, Cap: time.Second}
}

// Repo is a shallow clone of one branch of the config repository.
type Repo struct {
	opts Options
	url  string
	dir  string
	repo *git.Repository
	auth transport.AuthMethod
}

// Clone clones opts.Branch of opts.URL (depth 1, single branch) into a new temporary directory.
// Close removes it.
func Clone(ctx context.Context, opts Options) (*Repo, error) {
	if opts.Branch == "" {
		return nil, errors.New("config repo: no branch given")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 60
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Backoff.Duration == 0 {
		opts.Backoff = DefaultBackoff()
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	cleanURL, err := moveURLCredentials(opts.URL, &opts.Auth)
	if err != nil {
		return nil, err
	}
	auth, err := opts.Auth.method(cleanURL)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(opts.TempDir, "deliver-config-")
	if err != nil {
		return nil, fmt.Errorf("creating clone directory: %w", err)
	}
	r := &Repo{opts: opts, url: cleanURL, dir: dir, auth: auth}
	// A server that never answers must not hang deliver: the clone gets the same bound as an
	// update.
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
		URL:             cleanURL,
		Auth:            auth,
		ReferenceName:   plumbing.NewBranchReferenceName(opts.Branch),
		SingleBranch:    true,
		Depth:           1,
		NoCheckout:      false,
		Tags:            git.NoTags,
		CABundle:        opts.Auth.CABundle,
		InsecureSkipTLS: opts.Auth.InsecureSkipTLS,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, classify(fmt.Sprintf("cloning %s (branch %s)", cleanURL, opts.Branch), err)
	}
	r.repo = repo
	return r, nil
}

// Dir is the clone's work tree.
func (r *Repo) Dir() string { return r.dir }

// URL is the repository URL without credentials.
func (r *Repo) URL() string { return r.url }

// Head is the commit the work tree is at.
func (r *Repo) Head() (plumbing.Hash, error) {
	ref, err := r.repo.Head()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading HEAD of the clone: %w", err)
	}
	return ref.Hash(), nil
}

// Git gives read access to the clone (history, objects) for callers that read the record.
func (r *Repo) Git() *git.Repository { return r.repo }

// Close removes the clone.
func (r *Repo) Close() error { return os.RemoveAll(r.dir) }

// Edit changes the work tree for one attempt. It runs against the newest tip on every attempt
// and returns the commit message and the paths (relative to the work tree) it changed; no paths
// means nothing to do. An error from Edit ends Update at once (the edit and its checks are the
// caller's judgement, not a race).
type Edit func(ctx context.Context, dir string) (message string, paths []string, err error)

// Result of an Update.
type Result struct {
	// Changed is false when the edit found nothing to change ("already up to date").
	Changed bool
	// Commit is the pushed commit (or the unchanged tip when Changed is false).
	Commit plumbing.Hash
	// Parent is the tip the pushed commit was made on.
	Parent plumbing.Hash
	// Attempts counts push attempts, 1 when the first one landed.
	Attempts int
}

// Update applies edit, commits with author as author and committer, and pushes, retrying on
// lost races. See the package documentation.
func (r *Repo) Update(ctx context.Context, author object.Signature, edit Edit) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	backoff := r.opts.Backoff
	backoff.Steps = r.opts.MaxAttempts + 1
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// Fetch again after the backoff: the tip read when the push failed is stale by
			// now if others pushed meanwhile, and editing on it would only lose again.
			if _, err := r.fetch(ctx); err != nil {
				return Result{Attempts: attempt - 1}, err
			}
			if err := r.resetToRemote(ctx); err != nil {
				return Result{Attempts: attempt - 1}, err
			}
		}
		base, err := r.Head()
		if err != nil {
			return Result{}, err
		}
		msg, paths, err := edit(ctx, r.dir)
		if err != nil {
			return Result{Attempts: attempt - 1}, err
		}
		commit, changed, err := r.commit(msg, paths, author)
		if err != nil {
			return Result{Attempts: attempt - 1}, err
		}
		if !changed {
			return Result{Changed: false, Commit: base, Parent: base, Attempts: attempt - 1}, nil
		}
		pushErr := r.push(ctx)
		if pushErr == nil {
			return Result{Changed: true, Commit: commit, Parent: base, Attempts: attempt}, nil
		}
		landed, err := r.lostRace(ctx, base, commit, pushErr)
		if err != nil {
			return Result{Attempts: attempt}, err
		}
		if landed {
			// The server took the push but its answer was lost: the tip is our commit.
			return Result{Changed: true, Commit: commit, Parent: base, Attempts: attempt}, nil
		}
		if attempt >= r.opts.MaxAttempts {
			return Result{Attempts: attempt}, fmt.Errorf("%w: %d attempts to push to %s (branch %s) all lost the race; raise --push-attempts or serialise the pipelines",
				ErrConflict, attempt, r.url, r.opts.Branch)
		}
		d := backoff.Step()
		r.opts.Logf("push attempt %d lost the race to a concurrent push; retrying on the new tip in %s", attempt, d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return Result{Attempts: attempt}, fmt.Errorf("%w: gave up after %d attempts: %v", ErrConflict, attempt, context.Cause(ctx))
		case <-time.After(d):
		}
	}
}

// commit stages paths and commits; changed is false when the tree did not change.
func (r *Repo) commit(msg string, paths []string, author object.Signature) (plumbing.Hash, bool, error) {
	if len(paths) == 0 {
		return plumbing.ZeroHash, false, nil
	}
	wt, err := r.repo.Worktree()
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("opening work tree: %w", err)
	}
	for _, p := range paths {
		if err := wt.AddWithOptions(&git.AddOptions{Path: p, SkipStatus: true}); err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("staging %s: %w", p, err)
		}
	}
	if author.When.IsZero() {
		author.When = time.Now()
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &author, Committer: &author})
	if errors.Is(err, git.ErrEmptyCommit) {
		return plumbing.ZeroHash, false, nil
	}
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("committing: %w", err)
	}
	return h, true, nil
}

func (r *Repo) refSpec() config.RefSpec {
	b := plumbing.NewBranchReferenceName(r.opts.Branch)
	return config.RefSpec(b.String() + ":" + b.String())
}

// push pushes HEAD to the branch, without force: the server accepts it only as a fast-forward
// of the tip it has, which is what makes a concurrent push detectable.
func (r *Repo) push(ctx context.Context) error {
	var progress strings.Builder
	err := r.repo.PushContext(ctx, &git.PushOptions{
		RemoteName:      "origin",
		RefSpecs:        []config.RefSpec{r.refSpec()},
		Auth:            r.auth,
		Progress:        &progress,
		CABundle:        r.opts.Auth.CABundle,
		InsecureSkipTLS: r.opts.Auth.InsecureSkipTLS,
	})
	if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil
	}
	if msg := strings.TrimSpace(progress.String()); msg != "" {
		err = fmt.Errorf("%w\nserver said:\n%s", err, indent(msg))
	}
	return classify(fmt.Sprintf("pushing to %s (branch %s)", r.url, r.opts.Branch), err)
}

// lostRace looks at the branch after a failed push. It returns landed when the tip is the
// commit just pushed (the server took it, its answer was lost), nil when the push lost a race
// (the tip moved past base, or git reported the ref changing under it) and may be retried, and
// the push error otherwise (authentication, transport, a hook or protected branch).
func (r *Repo) lostRace(ctx context.Context, base, commit plumbing.Hash, pushErr error) (landed bool, err error) {
	if errors.Is(pushErr, ErrAuth) || errors.Is(pushErr, ErrNotFound) {
		return false, pushErr
	}
	tip, err := r.remoteTip(ctx)
	if err != nil {
		return false, fmt.Errorf("%w (and re-reading the branch after the failed push: %v)", pushErr, err)
	}
	switch {
	case tip == commit:
		return true, nil
	case tip != base, isRefLockFailure(pushErr):
		// Another push landed first, or git caught the ref changing under it while locking
		// (the other push may still be in flight): retry on the new tip.
		return false, nil
	case errors.Is(pushErr, ErrUnreachable):
		return false, pushErr
	}
	return false, fmt.Errorf("%w: %v", ErrRejected, pushErr)
}

// isRefLockFailure recognises git's "failed to lock" / "cannot lock ref" / "incorrect old value"
// ref-update statuses, the ways a server reports a ref that changed under it.
func isRefLockFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "failed to lock") || strings.Contains(s, "cannot lock ref") ||
		strings.Contains(s, "incorrect old value") || strings.Contains(s, "failed to update ref")
}

// fetch updates refs/remotes/origin/<branch> to the server's tip (depth 1) and returns it.
func (r *Repo) fetch(ctx context.Context) (plumbing.Hash, error) {
	remoteRef := plumbing.NewRemoteReferenceName("origin", r.opts.Branch)
	err := r.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName:      "origin",
		RefSpecs:        []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(r.opts.Branch).String() + ":" + remoteRef.String())},
		Depth:           1,
		Auth:            r.auth,
		Tags:            git.NoTags,
		Force:           true,
		CABundle:        r.opts.Auth.CABundle,
		InsecureSkipTLS: r.opts.Auth.InsecureSkipTLS,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return plumbing.ZeroHash, classify(fmt.Sprintf("fetching %s (branch %s)", r.url, r.opts.Branch), err)
	}
	ref, err := r.repo.Reference(remoteRef, true)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading %s: %w", remoteRef, err)
	}
	return ref.Hash(), nil
}

// remoteTip asks the server where the branch points (like git ls-remote), without fetching
// any objects: enough to tell a lost race from a push that landed. Update fetches the tip
// itself only after the backoff, when it is about to edit on it.
func (r *Repo) remoteTip(ctx context.Context) (plumbing.Hash, error) {
	remote, err := r.repo.Remote("origin")
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading remote origin: %w", err)
	}
	refs, err := remote.ListContext(ctx, &git.ListOptions{
		Auth:            r.auth,
		CABundle:        r.opts.Auth.CABundle,
		InsecureSkipTLS: r.opts.Auth.InsecureSkipTLS,
	})
	if err != nil {
		return plumbing.ZeroHash, classify(fmt.Sprintf("reading the branches of %s", r.url), err)
	}
	branch := plumbing.NewBranchReferenceName(r.opts.Branch)
	for _, ref := range refs {
		if ref.Name() == branch {
			return ref.Hash(), nil
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("%w: branch %s is not on %s", ErrNotFound, r.opts.Branch, r.url)
}

// resetToRemote moves the branch and work tree to the fetched tip, dropping the local commit.
func (r *Repo) resetToRemote(ctx context.Context) error {
	remoteRef := plumbing.NewRemoteReferenceName("origin", r.opts.Branch)
	ref, err := r.repo.Reference(remoteRef, true)
	if err != nil {
		return fmt.Errorf("reading %s: %w", remoteRef, err)
	}
	wt, err := r.repo.Worktree()
	if err != nil {
		return fmt.Errorf("opening work tree: %w", err)
	}
	if err := wt.Reset(&git.ResetOptions{Commit: ref.Hash(), Mode: git.HardReset}); err != nil {
		return fmt.Errorf("resetting the clone to %s: %w", ref.Hash(), err)
	}
	return nil
}

// Fetch re-reads the branch tip from the server and resets the clone to it. Callers that must
// re-check something against the newest state (a revert) use it.
func (r *Repo) Fetch(ctx context.Context) (plumbing.Hash, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	tip, err := r.fetch(ctx)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return tip, r.resetToRemote(ctx)
}

// classify wraps a go-git error in one of the package's sentinels.
func classify(doing string, err error) error {
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod), isSSHAuthError(err):
		return fmt.Errorf("%w: %s: %v", ErrAuth, doing, err)
	case errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository),
		errors.Is(err, plumbing.ErrReferenceNotFound), isNoMatchingRef(err):
		return fmt.Errorf("%w: %s: %v", ErrNotFound, doing, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), isTransportError(err):
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func isNoMatchingRef(err error) bool {
	var nm git.NoMatchingRefSpecError
	return errors.As(err, &nm) || strings.Contains(err.Error(), "couldn't find remote ref")
}

func isSSHAuthError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "ssh: handshake failed") || strings.Contains(s, "ssh: unable to authenticate")
}

// isTransportError recognises failures to talk to the server at all: refused or reset
// connections, DNS, TLS, and HTTP 5xx answers.
func isTransportError(err error) bool {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return true
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) {
		return true
	}
	s := err.Error()
	for _, m := range []string{"connection refused", "connection reset", "no such host", "EOF", "unexpected client error", "unexpected requesting", "status code: 5", "x509:", "tls:", "i/o timeout", "broken pipe"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func indent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = "  " + strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\n")
}

// Deepen fetches the branch again with the given depth, so the clone holds that many commits of
// history (for history and rollback, which read records from commits). It returns the number
// of commits now reachable from HEAD along first parents.
func (r *Repo) Deepen(ctx context.Context, depth int) (int, error) {
	head, err := r.Head()
	if err != nil {
		return 0, err
	}
	remoteRef := plumbing.NewRemoteReferenceName("origin", r.opts.Branch)
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	err = r.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName:      "origin",
		RefSpecs:        []config.RefSpec{config.RefSpec("+" + plumbing.NewBranchReferenceName(r.opts.Branch).String() + ":" + remoteRef.String())},
		Depth:           depth,
		Auth:            r.auth,
		Tags:            git.NoTags,
		Force:           true,
		CABundle:        r.opts.Auth.CABundle,
		InsecureSkipTLS: r.opts.Auth.InsecureSkipTLS,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return 0, classify(fmt.Sprintf("fetching %d commits of %s (branch %s)", depth, r.url, r.opts.Branch), err)
	}
	n := 0
	c, err := r.repo.CommitObject(head)
	for err == nil {
		n++
		if c.NumParents() == 0 {
			break
		}
		c, err = c.Parent(0)
	}
	return n, nil
}
