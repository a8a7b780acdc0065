// repo.go owns the config-repo phases every command shares: clone (each command that reads
// the repo) and commit-and-push (each command that changes it, through the queue).

package step

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/configrepo"
)

// clone runs the clone phase.
func (r *runner) clone(ctx context.Context, opts configrepo.Options) (*configrepo.Repo, error) {
	end := r.rep.Phase("clone", fmt.Sprintf("%s (branch %s, depth 1)", opts.URL, opts.Branch))
	repo, err := configrepo.Clone(ctx, opts)
	if err != nil {
		end(err)
		return nil, err
	}
	if head, herr := repo.Head(); herr == nil {
		r.rep.Logf("at %s", short(head))
	}
	r.recordCheckout(repo)
	end(nil)
	return repo, nil
}

// push runs the commit-and-push phase.
func (r *runner) push(ctx context.Context, repo *configrepo.Repo, c *cli.Context, edit configrepo.Edit) (configrepo.Result, error) {
	return r.pushChange(ctx, repo, c, configrepo.Change{Edit: edit})
}

// pushChange runs the commit-and-push phase of a change that may wait in the config repo's
// queue when other pipelines push at the same time (group commit).
func (r *runner) pushChange(ctx context.Context, repo *configrepo.Repo, c *cli.Context, change configrepo.Change) (configrepo.Result, error) {
	end := r.rep.Phase("push", "commit and push; if other pipelines push at the same time, land the changes together")
	edit := change.Edit
	change.Edit = func(ctx context.Context, dir string) (string, []string, error) {
		r.readCheckout(repo) // the tip this attempt edits: an error about a file links it there
		return edit(ctx, dir)
	}
	res, err := repo.UpdateChange(ctx, r.author(c), change)
	if err != nil {
		end(err)
		return res, err
	}
	switch {
	case res.Changed && res.LandedBy != "":
		r.rep.Logf("landed by %s as %s on %s (the change waited in the queue; %d push attempt(s) of this run)", res.LandedBy, short(res.Commit), short(res.Parent), res.Attempts)
	case res.Changed && res.Landed > 1:
		r.rep.Logf("pushed %s on %s after %d attempt(s), landing %d queued change(s) of other pipelines in the same push", short(res.Commit), short(res.Parent), res.Attempts, res.Landed-1)
	case res.Changed:
		r.rep.Logf("pushed %s on %s after %d attempt(s)", short(res.Commit), short(res.Parent), res.Attempts)
	default:
		r.rep.Logf("already up to date at %s: nothing to commit", short(res.Commit))
	}
	end(nil)
	return res, nil
}
