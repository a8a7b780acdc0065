// Package configrepo changes a GitOps config repository without ever losing a write. Clone
// fetches one branch shallowly (depth 1) into a temporary directory and writes its files, and
// Update commits an edit and pushes it; when another pipeline pushed first, Update fetches the
// new tip, moves the files to it, runs the edit again on that state (never a textual rebase)
// and pushes again, with jittered backoff, until the push lands or the attempts or time run
// out.
//
// Memory does not grow with the repository's files. The fetch asks the server for a partial
// clone without the blobs larger than Options.MaxFileSize ("blob:limit"; GitHub, GitLab and
// Gitea support it, a plain git server with uploadpack.allowFilter); from a server that does
// not support filters the whole pack streams through a filter on the client that drops those
// blobs before go-git indexes it. Such a file is in the work tree as a placeholder of its size
// (see Repo.Dir), which every reader refuses by its size. A commit is built from the parent's
// trees and the edited files only (no index, no status of the whole tree), and the push sends
// exactly the objects the commit made. The HTTP client is the Repo's own: error pages are cut
// to a few KB, and no process-wide transport is changed.
//
// Conflicts are detected by reading the branch's tip on the server and comparing it with the
// commit the attempt started from, not by matching the server's wording, so GitHub, GitLab,
// Gitea and plain git http-backend are handled alike. Authentication failures, hook rejections
// and errors from the edit are terminal.
package configrepo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Signature is a commit's author or committer. When zero means the time of the commit.
type Signature struct {
	Name, Email string
	When        time.Time
}

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
	// ErrUnknownHost: the SSH server's host is in no known_hosts file given (or there is no
	// such file): the run's configuration lacks the host's key. A key that differs from the
	// one known is ErrAuth.
	ErrUnknownHost = errors.New("config repo: the SSH host is not known")
)

// DefaultMaxFileSize is Options.MaxFileSize when it is zero: the largest file kustomize
// builds read (8 MiB), the largest limit of any reader of the clone.
const DefaultMaxFileSize = 8 << 20

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
	// MaxFileSize: blobs larger than this are not fetched nor written (default
	// DefaultMaxFileSize). It must be at least the largest file any reader of the clone
	// accepts, since they tell a placeholder from a file by its size (see Repo.Dir).
	MaxFileSize int64
	// Signer, when set, signs every commit (see sign.go): each commit Update makes carries its
	// signature in the gpgsig header, as git's own signed commits do. nil makes unsigned
	// commits.
	Signer Signer
	// CommitterName and CommitterEmail, when set, replace the author's name and e-mail as the
	// commit's committer. A forge shows a signed commit as verified when the committer's e-mail
	// belongs to the account that owns the signing key, which is often a bot's, while the
	// author stays the person or pipeline that asked for the change.
	CommitterName, CommitterEmail string
	// Replay re-applies other runs' queued changes when this run lands the queue (see
	// queue.go). nil turns group commit off: a lost race is retried on the new tip.
	Replay Replay
	// QueueSkew is how far apart the clocks of the machines running deliver may be: a queued
	// change is not landed later than QueueSkew before its deadline (default
	// DefaultQueueSkew).
	QueueSkew time.Duration
	// QueueTakeover is how long the oldest queued change may stand still (its run is gone, or
	// slow) before the next in line lands the queue itself (default DefaultQueueTakeover, plus
	// 100ms for each change waiting and four times the longest request this run made to the
	// server: a landing is a fetch and a push); the one after it waits twice that, and so on.
	QueueTakeover time.Duration
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

// Repo is a shallow, partial clone of one branch of the config repository: its objects in a
// git directory, its files in a work tree next to it (Dir).
type Repo struct {
	opts   Options
	url    string
	dir    string // holds git/ (the objects) and tree/ (the work tree)
	st     *filesystem.Storage
	repo   *git.Repository
	remote *remote
	wt     *worktree
	// fetched is the branch's tip as last fetched: what the server is known to have.
	fetched plumbing.Hash
	// deepened is the branch's tip as the last Deepen fetched it, with its history.
	deepened plumbing.Hash
	// touched are the paths the last edit changed, written again by the next checkout.
	touched []string
	// queueOff: the server cannot hold the queue (group commit); lost races are retried.
	queueOff bool
	// queueSeen: the last fetch of the tip saw other changes waiting in the queue.
	queueSeen bool
	// slowest is the longest fetch or push this Repo made: how long the server takes, which
	// a landing of the queue takes at least twice.
	slowest time.Duration
}

// timed records how long a request to the server took (see slowest).
func (r *Repo) timed(start time.Time) {
	r.slowest = max(r.slowest, time.Since(start))
}

// Object cache and streaming threshold of the clone's storage: objects larger than
// largeObject are streamed from disk rather than read into memory, and at most objectCache
// bytes of objects stay in memory (go-git's default is 96 MiB).
const (
	largeObject = 256 << 10
	objectCache = 4 * cache.MiByte
)

// filter is the partial-clone filter for a file size limit: blobs of limit+1 bytes and more
// are left out ("blob:limit=n" omits blobs of at least n bytes).
func filter(limit int64) packp.Filter {
	return packp.FilterBlobLimit(uint64(limit)+1, packp.BlobLimitPrefixNone)
}

// Clone fetches opts.Branch of opts.URL (depth 1, without blobs over opts.MaxFileSize) into a
// new temporary directory and writes its files. Close removes it.
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
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = DefaultMaxFileSize
	}
	if opts.Backoff.Duration == 0 {
		opts.Backoff = DefaultBackoff()
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.QueueSkew <= 0 {
		opts.QueueSkew = DefaultQueueSkew
	}
	if opts.QueueTakeover <= 0 {
		opts.QueueTakeover = DefaultQueueTakeover
	}
	cleanURL, err := moveURLCredentials(opts.URL, &opts.Auth)
	if err != nil {
		return nil, err
	}
	auth, err := opts.Auth.method(cleanURL)
	if err != nil {
		return nil, err
	}
	rem, err := newRemote(cleanURL, opts.Branch, opts.Auth, auth)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(opts.TempDir, "deliver-config-")
	if err != nil {
		return nil, fmt.Errorf("creating clone directory: %w", err)
	}
	r, err := initRepo(dir, cleanURL, opts, rem)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// A server that never answers must not hang deliver: the clone gets the same bound as an
	// update.
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	if err := r.fetchTip(ctx, 1, nil, false); err != nil {
		_ = os.RemoveAll(dir)
		return nil, classify(fmt.Sprintf("cloning %s (branch %s)", cleanURL, opts.Branch), err)
	}
	r.timed(start)
	if err := r.moveTo(r.fetched); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("cloning %s (branch %s): %w", cleanURL, opts.Branch, err)
	}
	return r, nil
}

// initRepo creates the git directory and the work tree under dir.
func initRepo(dir, cleanURL string, opts Options, rem *remote) (*Repo, error) {
	gitDir, tree := filepath.Join(dir, "git"), filepath.Join(dir, "tree")
	for _, d := range []string{gitDir, tree} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating clone directory: %w", err)
		}
	}
	st := filesystem.NewStorageWithOptions(osfs.New(gitDir), cache.NewObjectLRU(objectCache),
		filesystem.Options{LargeObjectThreshold: largeObject})
	repo, err := git.Init(st, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the clone's git directory: %w", err)
	}
	branch := plumbing.NewBranchReferenceName(opts.Branch)
	if err := st.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, branch)); err != nil {
		return nil, fmt.Errorf("creating the clone's git directory: %w", err)
	}
	return &Repo{
		opts: opts, url: cleanURL, dir: dir, st: st, repo: repo, remote: rem,
		wt: newWorktree(tree, st, opts.MaxFileSize),
	}, nil
}

// fetchTip fetches the branch's tip from the server, depth commits deep, without the blobs
// over MaxFileSize, and records it in r.fetched. always fetches even when the tip is here, and
// without any blob: that is Deepen, for history, which reads commits only.
func (r *Repo) fetchTip(ctx context.Context, depth int, haves []plumbing.Hash, always bool) error {
	req := fetchRequest{depth: depth, haves: haves, always: always}
	if always {
		req.filter = packp.FilterBlobNone()
	}
	res, err := r.fetch(ctx, req)
	if err != nil {
		return err
	}
	if !res.filtered && len(res.dropped) > 0 {
		r.opts.Logf("the server does not support partial clone (filters): fetched the whole branch and left out %d file(s) larger than %d bytes", len(res.dropped), r.opts.MaxFileSize)
	}
	r.fetched = res.tip
	r.queueSeen = len(r.view(res.refs).live(time.Now(), r.opts.QueueSkew)) > 0
	return nil
}

// fetch runs one fetch into the clone's storage, with the clone's file size limit: blobs over
// MaxFileSize are filtered out (req.filter, when empty, asks the server for that) or dropped
// while the pack is read, and the sizes of those dropped are recorded for the work tree's
// placeholders. Every fetch of the clone goes through here.
func (r *Repo) fetch(ctx context.Context, req fetchRequest) (fetchResult, error) {
	if req.filter == "" {
		req.filter = filter(r.opts.MaxFileSize)
	}
	res, err := r.remote.fetch(ctx, r.st, req, r.opts.MaxFileSize, r.dir)
	if err != nil {
		return res, err
	}
	for h, size := range res.dropped {
		r.wt.sizes[h] = size
	}
	return res, nil
}

// moveTo points the branch at commit and makes the work tree hold its files.
func (r *Repo) moveTo(commit plumbing.Hash) error {
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", commit, err)
	}
	if err := r.wt.checkout(c.TreeHash, r.touched); err != nil {
		return err
	}
	r.touched = nil
	return r.setHead(commit)
}

func (r *Repo) setHead(commit plumbing.Hash) error {
	ref := plumbing.NewHashReference(plumbing.NewBranchReferenceName(r.opts.Branch), commit)
	if err := r.st.SetReference(ref); err != nil {
		return fmt.Errorf("moving %s to %s: %w", ref.Name(), commit, err)
	}
	return nil
}

// Dir is the clone's work tree. A file larger than Options.MaxFileSize is there as a
// placeholder: a sparse file of the blob's size (of MaxFileSize+1 bytes when the server left
// the blob out without saying its size) holding no data. Read files only after checking
// their size against a limit no larger than MaxFileSize.
func (r *Repo) Dir() string { return r.wt.root }

// URL is the repository URL without credentials.
func (r *Repo) URL() string { return r.url }

// Head is the commit the work tree is at, as 40 hex digits.
func (r *Repo) Head() (string, error) {
	h, err := r.head()
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

// head is the commit the work tree is at.
func (r *Repo) head() (plumbing.Hash, error) {
	ref, err := r.repo.Head()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading HEAD of the clone: %w", err)
	}
	return ref.Hash(), nil
}

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
	// Commit is the pushed commit (or the unchanged tip when Changed is false), as 40 hex
	// digits.
	Commit string
	// Parent is the tip the pushed commit was made on.
	Parent string
	// Attempts counts push attempts, 1 when the first one landed.
	Attempts int
	// Queued: the change went through the queue (group commit).
	Queued bool
	// LandedBy is the committer ("Name <email>") of Commit when another run landed the change;
	// empty when this run pushed it.
	LandedBy string
	// Landed counts the changes the push that carried this run's change landed, when this run
	// landed the queue.
	Landed int
}

// Update applies edit, commits with author as author (and committer, unless Options names
// one), signed when Options.Signer is set, and pushes, retrying on lost races. See the package
// documentation.
func (r *Repo) Update(ctx context.Context, author Signature, edit Edit) (Result, error) {
	return r.UpdateChange(ctx, author, Change{Edit: edit})
}

// UpdateChange is Update for a change that may go through the queue (group commit, see
// queue.go) when its first push loses the race and the change has a Request. Every commit it
// makes carries the change's id (trailer Deliver-Change-Id).
func (r *Repo) UpdateChange(ctx context.Context, sig Signature, ch Change) (Result, error) {
	author := object.Signature(sig)
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	edit := ch.Edit
	if author.When.IsZero() {
		author.When = time.Now()
	}
	now := time.Now()
	deadline, _ := ctx.Deadline()
	id := newChangeID(now, deadline)
	group := ch.Request != "" && r.opts.Replay != nil && deadline.Sub(now)-r.opts.QueueSkew >= minQueueWindow
	if head, err := r.head(); err == nil && !r.fetched.IsZero() && head != r.fetched {
		// The clone was left on an older commit (a change another run landed): start from
		// the tip as last fetched.
		if err := r.moveTo(r.fetched); err != nil {
			return Result{}, fmt.Errorf("resetting the clone to %s: %w", r.fetched, err)
		}
	}
	backoff := r.opts.Backoff
	backoff.Steps = r.opts.MaxAttempts + 1
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			// Fetch again after the backoff: the tip read when the push failed is stale by
			// now if others pushed meanwhile, and editing on it would only lose again.
			if err := r.fetchAndReset(ctx); err != nil {
				return Result{Attempts: attempt - 1}, err
			}
		}
		base, err := r.head()
		if err != nil {
			return Result{}, err
		}
		record, paths, err := edit(ctx, r.Dir())
		r.touched = append(r.touched, paths...)
		if err != nil {
			return Result{Attempts: attempt - 1}, err
		}
		// The change's Check runs now, unless other changes were seen waiting: then the change
		// will most likely join them, and whoever lands it checks it. It runs before a push to
		// the branch all the same (pushOrQueue).
		checked := false
		check := func() error {
			if checked || ch.Check == nil || len(paths) == 0 {
				return nil
			}
			checked = true
			return ch.Check(ctx, r.Dir())
		}
		if !group || r.queueOff || !r.queueSeen {
			if err := check(); err != nil {
				return Result{Attempts: attempt - 1}, err
			}
		}
		msg := record
		if len(paths) > 0 {
			msg = appendTrailers(record, trailerChangeID+": "+id)
		}
		commit, objects, changed, err := r.commit(base, msg, paths, author, author)
		if err != nil {
			return Result{Attempts: attempt - 1}, err
		}
		if !changed {
			return Result{Changed: false, Commit: base.String(), Parent: base.String(), Attempts: attempt - 1}, nil
		}
		var q *queueing
		if group && !r.queueOff {
			q = &queueing{make: func() (*pending, error) {
				return r.newPending(deadline, base, commit, objects, record, ch.Request, author, ch.checked())
			}}
		}
		queued, refs, pushErr := r.pushOrQueue(ctx, base, commit, objects, q, check)
		var cf *checkFailed
		if errors.As(pushErr, &cf) {
			return Result{Attempts: attempt - 1}, cf.err
		}
		p := q.get()
		if queued {
			p.attempts = attempt
			res, err := r.await(ctx, p, refs)
			if errors.Is(err, errFellBack) {
				continue // withdrawn: retried without the queue (r.queueOff)
			}
			return res, err
		}
		if pushErr == nil {
			r.fetched = commit
			return Result{Changed: true, Commit: commit.String(), Parent: base.String(), Attempts: attempt}, nil
		}
		landed, err := r.lostRace(ctx, base, commit, pushErr)
		if err != nil {
			return Result{Attempts: attempt}, err
		}
		if landed {
			// The server took the push but its answer was lost: the tip is our commit.
			r.fetched = commit
			return Result{Changed: true, Commit: commit.String(), Parent: base.String(), Attempts: attempt}, nil
		}
		if q != nil && !r.queueOff {
			// Lost on the server, after the plain push was sent: queue the change now.
			if p, err = q.pending(); err != nil {
				return Result{Attempts: attempt}, err
			}
			queued, refs, err := r.queue(ctx, p)
			if err != nil {
				return Result{Attempts: attempt}, err
			}
			if queued {
				p.attempts = attempt
				res, err := r.await(ctx, p, refs)
				if errors.Is(err, errFellBack) {
					continue
				}
				return res, err
			}
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

// commit builds a commit of paths on base (its tree with those paths as they are on disk now)
// and moves the branch to it; changed is false when the tree did not change. objects are the
// objects the commit made, which the server does not have.
func (r *Repo) commit(base plumbing.Hash, msg string, paths []string, author, committer object.Signature) (commit plumbing.Hash, objects []plumbing.Hash, changed bool, err error) {
	if len(paths) == 0 {
		return plumbing.ZeroHash, nil, false, nil
	}
	parent, err := r.repo.CommitObject(base)
	if err != nil {
		return plumbing.ZeroHash, nil, false, fmt.Errorf("committing: reading commit %s: %w", base, err)
	}
	tree, objects, err := r.wt.commitTree(parent.TreeHash, paths)
	if err != nil {
		return plumbing.ZeroHash, nil, false, fmt.Errorf("committing: %w", err)
	}
	if tree == parent.TreeHash {
		return plumbing.ZeroHash, nil, false, nil
	}
	if author.When.IsZero() {
		author.When = time.Now()
	}
	if committer.When.IsZero() {
		committer.When = author.When
	}
	c := &object.Commit{Author: headerSafe(author), Committer: headerSafe(r.committer(committer)), Message: msg, TreeHash: tree, ParentHashes: []plumbing.Hash{base}}
	if err := sign(c, r.opts.Signer); err != nil {
		return plumbing.ZeroHash, nil, false, fmt.Errorf("committing: %w", err)
	}
	commit, err = r.storeCommit(c)
	if err != nil {
		return plumbing.ZeroHash, nil, false, fmt.Errorf("committing: %w", err)
	}
	if err := r.setHead(commit); err != nil {
		return plumbing.ZeroHash, nil, false, fmt.Errorf("committing: %w", err)
	}
	return commit, dedupe(append([]plumbing.Hash{commit}, objects...)), true, nil
}

// headerSafe drops from a signature's name and e-mail what would break the commit header they
// are written into ("Name <email> time"): angle brackets, line breaks and NUL. Names come from
// CI variables (GITLAB_USER_NAME, a GitHub actor) as well as flags.
func headerSafe(s object.Signature) object.Signature {
	clean := func(v string) string {
		return strings.TrimSpace(strings.Map(func(r rune) rune {
			switch r {
			case '<', '>', '\n', '\r', 0:
				return -1
			}
			return r
		}, v))
	}
	s.Name, s.Email = clean(s.Name), clean(s.Email)
	return s
}

func dedupe(hs []plumbing.Hash) []plumbing.Hash {
	seen := make(map[plumbing.Hash]bool, len(hs))
	out := hs[:0]
	for _, h := range hs {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// queueing makes the queued form of a change when the change joins the queue (not before:
// an uncontended push does not pay for it).
type queueing struct {
	make func() (*pending, error)
	p    *pending
}

func (q *queueing) pending() (*pending, error) {
	if q.p == nil {
		p, err := q.make()
		if err != nil {
			return nil, err
		}
		q.p = p
	}
	return q.p, nil
}

// get is the queued form if it was made.
func (q *queueing) get() *pending {
	if q == nil {
		return nil
	}
	return q.p
}

// pushOrQueue pushes commit to the branch without force: the server accepts it only as a
// fast-forward of base, which is what makes a concurrent push detectable. With q (group
// commit), when the branch moved on from base or other changes wait in the queue, it queues
// the change in the same session instead (queued; refs are the server's refs then, with the
// change queued).
//
// check runs the change's deferred checks (Change.Check) before the push, when the push can
// land: not when the change is queued, nor when the branch moved on (the next attempt checks).
// Its error comes back as a *checkFailed.
func (r *Repo) pushOrQueue(ctx context.Context, base, commit plumbing.Hash, objects []plumbing.Hash, q *queueing, check func() error) (queued bool, refs map[string]plumbing.Hash, err error) {
	doing := fmt.Sprintf("pushing to %s (branch %s)", r.url, r.opts.Branch)
	defer r.timed(time.Now())
	rs, err := r.remote.openReceive(ctx)
	if err != nil {
		return false, nil, classify(doing, err)
	}
	defer rs.Close()
	if q != nil && !r.queueOff {
		tip := rs.refs()[r.remote.branch.String()]
		if tip != commit && (tip != base || len(r.view(rs.refs()).live(time.Now(), r.opts.QueueSkew)) > 0) {
			p, err := q.pending()
			if err != nil {
				return false, nil, err
			}
			queued, err := r.queueIn(ctx, rs, p)
			if queued || err != nil {
				return queued, withRef(rs.refs(), p.ref, p.commit), err
			}
			if tip == base {
				// The server cannot hold the queue (r.queueOff now): push as usual.
				if rs, err = r.remote.openReceive(ctx); err != nil {
					return false, nil, classify(doing, err)
				}
				defer rs.Close()
			}
		}
	}
	if rs.refs()[r.remote.branch.String()] == base {
		if err := check(); err != nil {
			return false, nil, &checkFailed{err}
		}
	}
	progress := &cappedWriter{max: maxServerMessages}
	err = r.remote.pushIn(ctx, rs, r.st, base, commit, objects, progress)
	if err == nil || errors.Is(err, errTipMoved) {
		return false, nil, err
	}
	if msg := strings.TrimSpace(progress.String()); msg != "" {
		err = fmt.Errorf("%w\nserver said:\n%s", err, indent(msg))
	}
	return false, nil, classify(doing, err)
}

// checkFailed carries the error of a change's deferred checks (Change.Check) out of
// pushOrQueue, apart from the push's own errors.
type checkFailed struct{ err error }

func (e *checkFailed) Error() string { return e.err.Error() }

// lostRace looks at the branch after a failed push. It returns landed when the tip is the
// commit just pushed (the server took it, its answer was lost), nil when the push lost a race
// (the tip moved past base, or git reported the ref changing under it) and may be retried, and
// the push error otherwise (authentication, transport, a hook or protected branch).
func (r *Repo) lostRace(ctx context.Context, base, commit plumbing.Hash, pushErr error) (landed bool, err error) {
	if errors.Is(pushErr, errTipMoved) {
		return false, nil // seen before sending anything
	}
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

// remoteTip asks the server where the branch points (like git ls-remote), without fetching
// any objects: enough to tell a lost race from a push that landed. Update fetches the tip
// itself only after the backoff, when it is about to edit on it.
func (r *Repo) remoteTip(ctx context.Context) (plumbing.Hash, error) {
	tip, err := r.remote.tip(ctx)
	if err != nil {
		return plumbing.ZeroHash, classify(fmt.Sprintf("reading the branches of %s", r.url), err)
	}
	return tip, nil
}

// fetchAndReset fetches the branch's tip (depth 1) and moves the branch and work tree to it,
// dropping a local commit that was not pushed.
func (r *Repo) fetchAndReset(ctx context.Context) error {
	if err := r.fetchTip(ctx, 1, []plumbing.Hash{r.fetched}, false); err != nil {
		return classify(fmt.Sprintf("fetching %s (branch %s)", r.url, r.opts.Branch), err)
	}
	if err := r.moveTo(r.fetched); err != nil {
		return fmt.Errorf("resetting the clone to %s: %w", r.fetched, err)
	}
	return nil
}

// Checkout moves the clone (its branch and work tree) to commit (40 hex digits), which must be
// in it: the tip, or a commit Update returned and its parent.
func (r *Repo) Checkout(hex string) error {
	commit, err := parseHash(hex)
	if err != nil {
		return err
	}
	if err := r.moveTo(commit); err != nil {
		return fmt.Errorf("moving the clone to %s: %w", commit, err)
	}
	return nil
}

// Fetch re-reads the branch tip from the server and resets the clone to it. Callers that must
// re-check something against the newest state (a revert) use it.
func (r *Repo) Fetch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.fetchAndReset(ctx); err != nil {
		return "", err
	}
	return r.fetched.String(), nil
}

// parseHash reads a full commit id (40 hex digits).
func parseHash(hex string) (plumbing.Hash, error) {
	if !plumbing.IsHash(hex) {
		return plumbing.ZeroHash, fmt.Errorf("%q is not a full commit id (40 hex digits)", hex)
	}
	return plumbing.NewHash(hex), nil
}

// Deepen fetches the branch again with the given depth, so the clone holds that many commits of
// history (for history and rollback, which read records from commits; their files are not
// fetched). It returns the number of commits now reachable from HEAD along first parents.
func (r *Repo) Deepen(ctx context.Context, depth int) (int, error) {
	head, err := r.head()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	fetched := r.fetched
	if err := r.fetchTip(ctx, depth, nil, true); err != nil {
		return 0, classify(fmt.Sprintf("fetching %d commits of %s (branch %s)", depth, r.url, r.opts.Branch), err)
	}
	// The files stay at HEAD: a tip that moved meanwhile is picked up by the next Update.
	r.deepened, r.fetched = r.fetched, fetched
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

// classify wraps a go-git error in one of the package's sentinels.
func classify(doing string, err error) error {
	switch {
	case errors.Is(err, ErrUnknownHost):
		return fmt.Errorf("%s: %w", doing, err) // says which host and what to give already
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod), isSSHAuthError(err):
		return fmt.Errorf("%w: %s: %v", ErrAuth, doing, err)
	case errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository),
		errors.Is(err, plumbing.ErrReferenceNotFound), errors.Is(err, errBranchMissing):
		return fmt.Errorf("%w: %s: %v", ErrNotFound, doing, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), isTransportError(err):
		return fmt.Errorf("%w: %s: %v", ErrUnreachable, doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
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
