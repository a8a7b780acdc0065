package configrepo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// Commit is one commit of the branch's history, as History reads it.
type Commit struct {
	Hash    string
	Message string
	Author  string
	// When is the committer's time: when the commit was made on the branch.
	When time.Time
}

// maxHistoryDepth bounds how far back History reads.
const maxHistoryDepth = 10000

// History visits the branch's first-parent history from the clone's HEAD, newest first, until
// visit returns false, the history ends, or maxHistoryDepth commits were read. The clone is
// shallow: History deepens it step by step (32 commits, then 8 times more each time) only as
// far as visit asks for. A commit the clone should hold but cannot read is an error, never
// the end of the history.
func (r *Repo) History(ctx context.Context, visit func(Commit) bool) error {
	head, err := r.head()
	if err != nil {
		return err
	}
	depth := 1
	h, n := head, 0
	for n < maxHistoryDepth {
		c, err := r.repo.CommitObject(h)
		if errors.Is(err, plumbing.ErrObjectNotFound) && n > 0 {
			// The shallow boundary: fetch more of the branch and go on from the same commit.
			next := min(max(depth*8, 32), maxHistoryDepth)
			if depth >= maxHistoryDepth {
				return nil
			}
			got, derr := r.Deepen(ctx, next)
			if derr != nil {
				return fmt.Errorf("reading the history of branch %s: %w", r.opts.Branch, derr)
			}
			if got <= n {
				return nil // the server has nothing older: the history ends here
			}
			depth = next
			continue
		}
		if err != nil {
			return fmt.Errorf("reading commit %s of branch %s: %w", h, r.opts.Branch, err)
		}
		n++
		if !visit(Commit{Hash: c.Hash.String(), Message: c.Message, Author: c.Author.Name, When: c.Committer.When}) {
			return nil
		}
		if len(c.ParentHashes) == 0 {
			return nil
		}
		h = c.ParentHashes[0]
	}
	return nil
}

// Message is the message of a commit the clone holds (the tip, or one History or a landing
// brought in), named by its 40 hex digits.
func (r *Repo) Message(hex string) (string, error) {
	commit, err := parseHash(hex)
	if err != nil {
		return "", err
	}
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return "", fmt.Errorf("reading commit %s: %w", short(commit), err)
	}
	return c.Message, nil
}
