// Package forge opens or updates the pull request (GitHub, Gitea) or merge request (GitLab) that
// carries a change of the config repo, and follows it until it is merged.
//
// A change lives on a branch of its own (Branch names it after the environment and the images),
// pushed by the caller. Sync then makes sure exactly one pull request is open from that branch to
// the base, with the given title and body: it opens one when none is open, and refreshes the title
// and body of the open one otherwise, so a newer build of the same image updates the same pull
// request. Auto-merge is set where the forge has it. WaitMerged polls until the pull request is
// merged (and returns the merged commit) or closed.
//
// GitHub and Gitea are driven through go-github: Gitea serves the same REST shape for creating,
// reading, listing and editing pull requests. Where it does not (merging is POST with "Do", the
// list ignores the head filter), the Gitea client calls Gitea's own endpoints through go-github's
// request plumbing. GitLab merge requests are created and updated by the push itself, through
// the merge_request.* push options (PushOptions); its REST API is used only to read a merge
// request (WaitMerged) or to find one the push did not name.
//
// Every error is wrapped in one of the package's sentinels, and never contains the token.
package forge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind names a forge.
type Kind string

// The forges deliver knows.
const (
	GitHub Kind = "github"
	Gitea  Kind = "gitea"
	GitLab Kind = "gitlab"
)

// Kinds lists the forges, for flag help and errors.
var Kinds = []Kind{GitHub, Gitea, GitLab}

// ParseKind parses a forge name ("github", "gitea", "gitlab"; "forgejo" is Gitea's API).
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case GitHub, Gitea, GitLab:
		return k, nil
	case "forgejo":
		return Gitea, nil
	}
	return "", fmt.Errorf("%w: unknown forge %q (want github, gitea or gitlab)", ErrInvalid, s)
}

// Sentinel errors, wrapped with details.
var (
	// ErrInvalid: bad input: an unknown forge, a URL that names no repository, an empty branch.
	ErrInvalid = errors.New("invalid forge request")
	// ErrAuth: the forge refused the token (401), or the token lacks a scope or permission (403).
	ErrAuth = errors.New("forge refused the token")
	// ErrNotFound: the repository or pull request does not exist, or the token cannot see it.
	ErrNotFound = errors.New("forge repository or pull request not found")
	// ErrUnreachable: the forge could not be reached or failed (network, timeout, 5xx).
	ErrUnreachable = errors.New("forge unreachable")
	// ErrRefused: the forge understood the request and refused it (a merge blocked by missing
	// approvals or checks, a conflict, auto-merge not enabled for the repository).
	ErrRefused = errors.New("forge refused the request")
	// ErrClosed: the pull request was closed without being merged.
	ErrClosed = errors.New("pull request closed without merging")
	// ErrNotMerged: the wait for the merge ran out of time with the pull request still open.
	ErrNotMerged = errors.New("pull request not merged in time")
)

// State is a pull request's state.
type State string

// The states of a pull request.
const (
	StateOpen   State = "open"
	StateMerged State = "merged"
	StateClosed State = "closed" // closed without merging
)

// MergeMethod is how a pull request is merged.
type MergeMethod string

// The merge methods every forge has.
const (
	MergeCommit MergeMethod = "merge"
	MergeSquash MergeMethod = "squash"
	MergeRebase MergeMethod = "rebase"
)

// ParseMergeMethod parses "merge", "squash" or "rebase"; "" is "merge".
func ParseMergeMethod(s string) (MergeMethod, error) {
	switch m := MergeMethod(s); m {
	case "":
		return MergeCommit, nil
	case MergeCommit, MergeSquash, MergeRebase:
		return m, nil
	}
	return "", fmt.Errorf("%w: unknown merge method %q (want merge, squash or rebase)", ErrInvalid, s)
}

// Change is the pull request a change needs: from Branch, which the caller pushes, into Base.
type Change struct {
	// Branch is the head branch holding the change (see Branch).
	Branch string
	// Base is the branch the change is for (the environment's protected branch).
	Base string
	// Title and Body of the pull request. Body is Markdown for a reviewer; a body longer than
	// MaxBody is cut there, with a note saying so.
	Title, Body string
	// AutoMerge asks the forge to merge the pull request by itself once its rules are met
	// (approvals, checks): GitHub auto-merge, Gitea "merge when checks succeed", GitLab "merge
	// when pipeline succeeds".
	AutoMerge bool
	// MergeMethod for auto-merge and Merge ("" is MergeCommit).
	MergeMethod MergeMethod
	// DeleteBranch asks the forge to delete Branch once the pull request is merged (GitLab's
	// remove_source_branch, Gitea's delete_branch_after_merge; GitHub follows the repository's
	// setting).
	DeleteBranch bool
}

func (ch Change) validate() error {
	switch {
	case ch.Branch == "" || ch.Base == "":
		return fmt.Errorf("%w: a pull request needs a head and a base branch (got %q and %q)", ErrInvalid, ch.Branch, ch.Base)
	case ch.Branch == ch.Base:
		return fmt.Errorf("%w: the head branch %q is the base branch", ErrInvalid, ch.Branch)
	case strings.TrimSpace(ch.Title) == "":
		return fmt.Errorf("%w: a pull request needs a title", ErrInvalid)
	}
	if _, err := ParseMergeMethod(string(ch.MergeMethod)); err != nil {
		return err
	}
	return nil
}

// MaxBody is the longest body Sync sends, in bytes: below GitHub's limit of 65,536 characters
// and below what one git push option can carry to GitLab.
const MaxBody = 60000

// truncatedNote ends a body cut at MaxBody.
const truncatedNote = "\n\n… (cut: the full text was longer than the forge accepts)\n"

// clip cuts s to at most max bytes on a rune boundary, ending it with truncatedNote.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(truncatedNote)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedNote
}

// PullRequest is what deliver reports and follows of a pull or merge request.
type PullRequest struct {
	// Number is the pull request number (GitLab: the merge request IID).
	Number int
	// URL is its web page.
	URL   string
	State State
	// HeadSHA is the commit at the tip of its head branch, when the forge reports it.
	HeadSHA string
	// MergeCommitSHA is the commit the merge left on the base branch (for a fast-forward or
	// rebase merge, the new tip), once merged.
	MergeCommitSHA string
	// AutoMerge reports that the forge will merge it by itself once its rules are met.
	AutoMerge bool
	// Mergeable is false when the forge reports it cannot be merged as it is (a conflict with
	// the base), true when it can, and nil while the forge has not decided.
	Mergeable *bool
}

// Options configure New.
type Options struct {
	// Kind names the forge; "" detects it from RepoURL and the CI variables (see Detect).
	Kind Kind
	// RepoURL is the config repository's clone URL (https://, ssh:// or git@host:path).
	RepoURL string
	// APIURL overrides the API base URL derived from RepoURL and the CI variables.
	APIURL string
	// Token authenticates API calls (GitHub: contents and pull-requests write; Gitea:
	// write:repository; GitLab: api, or read_api to only follow merge requests). GitLab's merge
	// requests can be opened without it, by the push; following them needs it.
	Token string
	// HTTPClient carries TLS settings and timeouts; nil means a client with a 30 s timeout.
	HTTPClient *http.Client
	// Getenv reads the CI variables (os.Getenv in production); nil reads none.
	Getenv func(string) string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// provider is one forge's implementation of the calls Client makes.
type provider interface {
	// pushOptions are the git push options that go with the push of ch.Branch.
	pushOptions(ch Change) map[string]string
	// sync opens or updates the pull request of ch (see Client.Sync).
	sync(ctx context.Context, ch Change, pushOutput string) (PullRequest, error)
	// get reads pull request number.
	get(ctx context.Context, number int) (PullRequest, error)
	// merge merges pull request number now, if its head is still headSHA.
	merge(ctx context.Context, number int, headSHA string, method MergeMethod) error
}

// Client talks to the forge that hosts one config repository.
type Client struct {
	kind  Kind
	repo  repoRef
	api   string
	token string
	logf  func(format string, args ...any)
	p     provider
}

// New returns a client for the forge of opts.RepoURL. It contacts nothing.
func New(opts Options) (*Client, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	ref, err := parseRepoURL(opts.RepoURL)
	if err != nil {
		return nil, err
	}
	kind := opts.Kind
	if kind == "" {
		if kind, err = Detect(opts.RepoURL, getenv); err != nil {
			return nil, err
		}
	} else if kind, err = ParseKind(string(kind)); err != nil {
		return nil, err
	}
	api := opts.APIURL
	if api == "" {
		api = apiURL(kind, ref, getenv)
	}
	api = strings.TrimSuffix(api, "/") + "/"
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &Client{kind: kind, repo: ref, api: api, token: opts.Token, logf: logf}
	switch kind {
	case GitHub, Gitea:
		if opts.Token == "" {
			return nil, fmt.Errorf("%w: opening a pull request on %s needs a token (--git-token)", ErrInvalid, kind)
		}
		owner, name, err := ref.ownerRepo()
		if err != nil {
			return nil, err
		}
		p, err := newGitHub(kind, api, opts.Token, owner, name, hc, logf)
		if err != nil {
			return nil, err
		}
		c.p = p
	case GitLab:
		c.p = &gitlab{api: api, token: opts.Token, project: gitlabProject(ref, getenv), http: hc, logf: logf}
	}
	return c, nil
}

// Kind is the forge the client talks to.
func (c *Client) Kind() Kind { return c.kind }

// APIURL is the API base URL the client calls, ending in "/".
func (c *Client) APIURL() string { return c.api }

// PushOptions returns the git push options to send with the push of ch.Branch: GitLab's
// merge_request.* options, which open or update the merge request; none for GitHub and Gitea.
func (c *Client) PushOptions(ch Change) map[string]string {
	ch.Body = clip(ch.Body, MaxBody)
	return c.p.pushOptions(ch)
}

// Sync makes sure one pull request is open from ch.Branch into ch.Base with ch's title and body,
// after the caller pushed ch.Branch (for GitLab, with PushOptions): it opens one when none is
// open, or refreshes the title and body of the open one; then it sets auto-merge when asked.
// pushOutput is what the server printed during the push (GitLab names its merge request there).
// Two runs syncing the same branch at once end with one pull request.
func (c *Client) Sync(ctx context.Context, ch Change, pushOutput string) (PullRequest, error) {
	if err := ch.validate(); err != nil {
		return PullRequest{}, err
	}
	if ch.MergeMethod == "" {
		ch.MergeMethod = MergeCommit
	}
	ch.Body = clip(ch.Body, MaxBody)
	pr, err := c.p.sync(ctx, ch, pushOutput)
	return pr, c.redact(err)
}

// Get reads pull request number.
func (c *Client) Get(ctx context.Context, number int) (PullRequest, error) {
	pr, err := c.p.get(ctx, number)
	return pr, c.redact(err)
}

// Merge merges pull request number now, provided its head is still headSHA ("" skips that
// check). A merge the forge's rules refuse (approvals, checks, conflicts) is ErrRefused.
func (c *Client) Merge(ctx context.Context, number int, headSHA string, method MergeMethod) error {
	if method == "" {
		method = MergeCommit
	}
	return c.redact(c.p.merge(ctx, number, headSHA, method))
}

// WaitOptions configure WaitMerged.
type WaitOptions struct {
	// Interval between polls (default 10 s).
	Interval time.Duration
	// OnPoll, when set, sees the pull request after every poll that found it open; an error
	// from it ends the wait with that error.
	OnPoll func(ctx context.Context, pr PullRequest) error
}

// WaitMerged polls pull request number until it is merged, and returns it with its merge commit.
// A pull request closed without merging is ErrClosed; one still open when ctx ends is
// ErrNotMerged. Errors reaching the forge are retried on the next poll until ctx ends.
func (c *Client) WaitMerged(ctx context.Context, number int, opts WaitOptions) (PullRequest, error) {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Second
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	var last PullRequest
	var lastErr error
	for {
		pr, err := c.Get(ctx, number)
		switch {
		case err != nil && ctx.Err() != nil:
			// The time ran out during the poll: report it as such below.
		case err == nil:
			last, lastErr = pr, nil
			switch pr.State {
			case StateMerged:
				return pr, nil
			case StateClosed:
				return pr, fmt.Errorf("%w: %s was closed", ErrClosed, describe(pr))
			}
			if opts.OnPoll != nil {
				if err := opts.OnPoll(ctx, pr); err != nil {
					return pr, err
				}
			}
		case errors.Is(err, ErrUnreachable):
			lastErr = err
			c.logf("reading pull request #%d failed, retrying: %v", number, err)
		default:
			return last, err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return last, fmt.Errorf("waiting for pull request #%d to be merged: %w", number, context.Canceled)
			}
			if last.Number == 0 {
				return last, fmt.Errorf("%w: #%d could not be read before %v (last error: %v)", ErrNotMerged, number, context.Cause(ctx), lastErr)
			}
			if lastErr != nil {
				return last, fmt.Errorf("%w: %s was still open when last read, then %v (last error: %v)", ErrNotMerged, describe(last), context.Cause(ctx), lastErr)
			}
			return last, fmt.Errorf("%w: %s is still open (%v)", ErrNotMerged, describe(last), context.Cause(ctx))
		case <-t.C:
		}
	}
}

func describe(pr PullRequest) string {
	if pr.URL != "" {
		return fmt.Sprintf("#%d (%s)", pr.Number, pr.URL)
	}
	return fmt.Sprintf("#%d", pr.Number)
}

// redact removes the token from err's text, keeping the sentinel it wraps.
func (c *Client) redact(err error) error {
	if err == nil || len(c.token) < 4 || !strings.Contains(err.Error(), c.token) {
		return err
	}
	return redactedError{msg: strings.ReplaceAll(err.Error(), c.token, "***"), err: err}
}

// redactedError shows msg but keeps err for errors.Is.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return sentinelOf(e.err) }

// sentinelOf returns the package sentinel err wraps, so that a redacted error unwraps to it but
// to nothing that could print the token.
func sentinelOf(err error) error {
	for _, s := range []error{ErrInvalid, ErrAuth, ErrNotFound, ErrUnreachable, ErrRefused, ErrClosed, ErrNotMerged, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// branchUnsafe matches what Branch replaces in environment and image names.
var branchUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Branch names the branch of a change to environment env of images: deliver/<env>/<image>, with
// several images joined by "+" in name order. A newer build of the same images lands on the same
// branch (and so in the same pull request); other images get a branch of their own.
func Branch(env string, images []string) string {
	names := make([]string, 0, len(images))
	seen := map[string]bool{}
	for _, im := range images {
		n := strings.Trim(branchUnsafe.ReplaceAllString(im, "-"), "-.")
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	leaf := strings.Join(names, "+")
	if len(leaf) > maxBranchLeaf {
		// Many images: keep the name readable and unique, and short enough for any file system.
		sum := sha256.Sum256([]byte(leaf))
		leaf = strings.TrimRight(leaf[:maxBranchLeaf-13], "+.-") + "-" + hex.EncodeToString(sum[:])[:12]
	}
	e := strings.Trim(branchUnsafe.ReplaceAllString(env, "-"), "-.")
	b := "deliver/" + e + "/" + leaf
	for strings.Contains(b, "..") {
		b = strings.ReplaceAll(b, "..", ".")
	}
	return strings.TrimSuffix(b, ".lock")
}

// maxBranchLeaf bounds the last part of a branch name (a file name on the server).
const maxBranchLeaf = 100
