package configrepo

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
)

// maxAncestryDepth bounds how much of the branch Contains reads from the server: the commits it
// compares are normally a few pushes apart near the tip.
const maxAncestryDepth = 4096

// parseID reads a full commit id in hex.
func parseID(id string) (plumbing.Hash, error) {
	if !plumbing.IsHash(id) {
		return plumbing.ZeroHash, fmt.Errorf("%q is not a commit id", id)
	}
	return plumbing.NewHash(id), nil
}

// ErrUndecided: Contains could not tell within maxAncestryDepth commits of the branch.
var ErrUndecided = errors.New("ancestry undecided")

// Contains reports whether revision contains commit: whether commit is revision itself or one
// of its ancestors. A GitOps engine that applied revision has applied commit then, even when
// revision is a later push by another pipeline.
//
// It decides from the commits the clone holds and fetches more of the branch only as needed,
// deepening the shallow clone step by step from the tip: revision may be newer than the clone
// (another pipeline pushed after us), or older than the commits it holds (the engine lags
// behind). Whichever of the two commits turns out to be the other's ancestor answers the
// question; when the whole history is read and neither is, revision is on another line of
// history (the branch was rewritten) and does not contain commit. When the answer needs more
// than maxAncestryDepth commits of the branch, the error wraps ErrUndecided. Both are commit
// ids in hex, as an engine reports them; anything else is an error.
func (r *Repo) Contains(ctx context.Context, revisionID, commitID string) (bool, error) {
	revision, err := parseID(revisionID)
	if err != nil {
		return false, err
	}
	commit, err := parseID(commitID)
	if err != nil {
		return false, err
	}
	if revision == commit {
		return true, nil
	}
	depth := 0 // the clone as it is
	for {
		found, complete := r.reachable(revision, commit)
		if found {
			return true, nil
		}
		older, completeBack := r.reachable(commit, revision)
		if older {
			return false, nil
		}
		if complete && completeBack {
			return false, nil
		}
		if depth >= maxAncestryDepth {
			return false, fmt.Errorf("%w: neither %s nor %s is within the last %d commits of branch %s of %s",
				ErrUndecided, short(revision), short(commit), maxAncestryDepth, r.opts.Branch, r.url)
		}
		next := max(2*depth, 16)
		if next > maxAncestryDepth {
			next = maxAncestryDepth
		}
		if _, err := r.Deepen(ctx, next); err != nil {
			return false, fmt.Errorf("reading the history of branch %s to see whether %s contains %s: %w",
				r.opts.Branch, short(revision), short(commit), err)
		}
		if r.remoteDepth() < next {
			// The server sent the whole branch: neither walk can get further.
			if f, _ := r.reachable(revision, commit); f {
				return true, nil
			}
			if o, _ := r.reachable(commit, revision); o {
				return false, nil
			}
			return false, fmt.Errorf("%w: %s is not in the history of branch %s of %s", ErrUndecided, short(missing(r, revision, commit)), r.opts.Branch, r.url)
		}
		depth = next
	}
}

// reachable walks the history the clone holds from start, over every parent, looking for want.
// complete is false when the walk met a commit whose object or parents the clone does not hold
// (start itself, or the shallow boundary), so a negative answer is not final.
func (r *Repo) reachable(start, want plumbing.Hash) (found, complete bool) {
	seen := map[plumbing.Hash]bool{start: true}
	queue := []plumbing.Hash{start}
	complete = true
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if h == want {
			return true, true
		}
		c, err := r.repo.CommitObject(h)
		if err != nil {
			complete = false
			continue
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, complete
}

// remoteDepth counts the commits the clone holds along first parents from the branch's tip as
// the last Deepen fetched it.
func (r *Repo) remoteDepth() int {
	if r.deepened.IsZero() {
		return 0
	}
	n := 0
	for h := r.deepened; ; n++ {
		c, err := r.repo.CommitObject(h)
		if err != nil || len(c.ParentHashes) == 0 {
			if err == nil {
				n++
			}
			return n
		}
		h = c.ParentHashes[0]
	}
}

// missing returns the first of hashes whose commit the clone does not hold.
func missing(r *Repo, hashes ...plumbing.Hash) plumbing.Hash {
	for _, h := range hashes {
		if _, err := r.repo.CommitObject(h); err != nil {
			return h
		}
	}
	return hashes[0]
}

func short(h plumbing.Hash) string { return h.String()[:12] }
