package configrepo

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ProposeResult is the outcome of Propose.
type ProposeResult struct {
	// Changed is false when the edit found nothing to change on the branch's tip: nothing was
	// committed or pushed.
	Changed bool
	// Commit is the commit pushed to the head branch; Parent the branch's tip it was made on.
	Commit, Parent string // 40 hex digits
	// Output is what the server printed during the push (GitLab names its merge request there).
	Output string
}

// Propose runs edit on the branch's tip, commits with author, and pushes the commit to the
// branch head (refs/heads/<head>) instead of the branch, replacing whatever head held (a
// proposal branch belongs to deliver: a newer build of the same images takes its place, on the
// newest tip). options, called after the edit, returns the git push options to send when the
// server takes them (GitLab's merge_request.* options open or update a merge request). The
// branch itself is not touched: the change reaches it through a pull request.
func (r *Repo) Propose(ctx context.Context, sig Signature, head string, options func() map[string]string, edit Edit) (ProposeResult, error) {
	headRef := plumbing.NewBranchReferenceName(head)
	if head == "" || headRef.Validate() != nil || headRef == r.remote.branch {
		return ProposeResult{}, fmt.Errorf("config repo: invalid proposal branch %q", head)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	base, err := r.head()
	if err != nil {
		return ProposeResult{}, err
	}
	msg, paths, err := edit(ctx, r.Dir())
	r.touched = append(r.touched, paths...)
	if err != nil {
		return ProposeResult{}, err
	}
	commit, objects, changed, err := r.commit(base, msg, paths, object.Signature(sig), object.Signature(sig))
	if err != nil {
		return ProposeResult{}, err
	}
	if !changed {
		return ProposeResult{Commit: base.String(), Parent: base.String()}, nil
	}
	var opts map[string]string
	if options != nil {
		opts = options()
	}
	progress := &cappedWriter{max: maxServerMessages}
	if err := r.remote.forcePush(ctx, r.st, headRef, commit, objects, opts, progress); err != nil {
		if msg := strings.TrimSpace(progress.String()); msg != "" {
			err = fmt.Errorf("%w\nserver said:\n%s", err, indent(msg))
		}
		return ProposeResult{}, classify(fmt.Sprintf("pushing to %s (branch %s)", r.url, head), err)
	}
	return ProposeResult{Changed: true, Commit: commit.String(), Parent: base.String(), Output: progress.String()}, nil
}

// forcePush sets ref to commit on the server whatever it held, sending objects (which the
// server lacks: the commit is made on a tip it has) and options as push options when the server
// advertises push-options.
func (r *remote) forcePush(ctx context.Context, st *filesystem.Storage, ref plumbing.ReferenceName, commit plumbing.Hash, objects []plumbing.Hash, options map[string]string, progress io.Writer) error {
	s, err := r.tr.NewReceivePackSession(r.ep, r.auth)
	if err != nil {
		return err
	}
	defer s.Close()
	ar, err := s.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	old := ar.References[ref.String()] // zero when the branch is new
	return sendPack(ctx, s, ar, st, &packp.Command{Name: ref, Old: old, New: commit}, objects, options, progress)
}

// Tip asks the server where the branch points now (40 hex digits), without fetching
// anything.
func (r *Repo) Tip(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	tip, err := r.remoteTip(ctx)
	if err != nil {
		return "", err
	}
	return tip.String(), nil
}

// Branch is the branch the clone follows.
func (r *Repo) Branch() string { return r.opts.Branch }
