// change.go owns the change path deploy, rollback and promote share once their images are
// known: bind, verify the images, edit under the policy, push, apply, and revert on failure.

package step

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/policy"
	"github.com/deliverhq/deliver/step/registry"
	"github.com/deliverhq/deliver/step/release"
)

// Values of --on-failure.
const (
	onFailureRevert = "revert"
	onFailureKeep   = "keep"
)

// changeRequest is one change of image overrides in one environment: what deploy, rollback
// and promote have in common once their images are resolved.
type changeRequest struct {
	action  string
	envName string
	overlay string
	images  []types.Image
	trigger ci.Trigger
	event   string
	// force overrides locks (manual runs only).
	force  bool
	reason string
	// onFailure says what to do when the rollout fails: revert the change or keep it.
	onFailure string
	// pr chooses pull-request mode and its options.
	pr prOptions
}

// changeDeps are what every command that changes an environment's images binds from its flags.
type changeDeps struct {
	repoOpts configrepo.Options
	trigger  ci.Trigger
	event    string
	reg      *registry.Client
	ap       *applier // nil with --no-apply
	pr       prOptions
}

// bindChange validates and binds the config-repo, trigger, registry and cluster flags, before
// anything is contacted.
func (r *runner) bindChange(ctx context.Context, c *cli.Context, envName string) (changeDeps, error) {
	var d changeDeps
	var err error
	if d.repoOpts, err = r.configRepoOptions(c); err != nil {
		return d, err
	}
	if d.trigger, d.event, err = r.trigger(c); err != nil {
		return d, err
	}
	if d.reg, err = r.registryClient(c); err != nil {
		return d, err
	}
	if d.pr, err = bindPullRequest(c); err != nil {
		return d, err
	}
	if d.ap, err = r.maybeApplier(ctx, c, envName); err != nil {
		return d, err
	}
	d.repoOpts.Replay = r.replayer(d.reg, d.ap)
	return d, nil
}

// changeImages commits the change to the config repo (checking the environment's policy
// against the very tip each attempt builds on), applies it and waits, reverting it when the
// rollout fails and onFailure says so.
func (r *runner) changeImages(ctx context.Context, c *cli.Context, repo *configrepo.Repo, reg *registry.Client, ap *applier, req changeRequest, out ci.Outcome) (ci.Outcome, error) {
	if req.force && req.trigger != ci.TriggerManual {
		return out, usage(errors.New("--force overrides locks for manual runs only; an automated run never does"))
	}
	guard := r.newDowngradeGuard(reg, ap)
	base := release.Record{
		Action: req.action, Environment: req.envName, Trigger: string(req.trigger), Event: req.event,
		SourceRepo: r.ci.SourceRepo, SourceCommit: r.ci.Commit, Pipeline: r.ci.PipelineURL, Actor: r.ci.Actor,
		Reason: req.reason,
	}
	if ap != nil {
		// Who applies the change, deliver or Flux, is the run's and the tip's deliver.yaml's say.
		if err := ap.handOff(repo, req.envName, req.overlay); err != nil {
			return out, err
		}
		// An unreachable cluster, or one that refuses the credentials, is found before the
		// push, so that the repo is not moved to a release that cannot be applied; so is a
		// suspended or missing Flux Kustomization.
		if err := ap.check(ctx); err != nil {
			return out, err
		}
	}
	mode, err := via(repo.Dir(), req)
	if err != nil {
		return out, err
	}
	var landed editResult
	var prop proposal
	// The server-side dry run of the edited overlay runs once per deploy, on the first attempt
	// that has something to commit: only there, after the policy check, is the edit rendered.
	// A lost race does not repeat it: the new tip differs by other pipelines' changes, which
	// they checked, while who owns the fields this change sets is the cluster's state, not the
	// tip's; and a cluster round trip on every attempt would widen the window in which the next
	// push loses, under exactly the contention that makes attempts repeat. --timeout bounds
	// it, as it bounds the apply (the run's context, not the push's).
	preflight, runCtx := ap != nil, ctx
	// Without an apply (and outside pull requests), the render check waits until the change is
	// pushed (configrepo.Change.Check): a change that goes to the queue is rendered and checked
	// by the run that lands it, on the tip it lands on, and need not be rendered twice.
	deferCheck := ap == nil && mode != policy.ViaPullRequest
	edit := func(ctx context.Context, dir string) (string, []string, error) {
		var before func(dir string) error
		if mode == policy.ViaPullRequest {
			before = func(dir string) (err error) {
				var b []byte
				prop.path, b, err = kustomize.ReadKustomization(dir, req.overlay)
				prop.before = string(b)
				return err
			}
		}
		er, forced, msg, paths, err := r.editChange(ctx, dir, req, base, guard, false, before)
		prop.forced = forced
		landed = er
		if err != nil || len(paths) == 0 {
			return "", paths, err
		}
		if !deferCheck {
			if err := checkEdit(nil, dir, req, &landed); err != nil {
				return "", paths, err
			}
		}
		if preflight {
			preflight = false
			if err := ap.preflight(runCtx, dir, req.overlay, landed.rendered); err != nil {
				return "", paths, err
			}
		}
		if mode == policy.ViaPullRequest {
			_, b, err := kustomize.ReadKustomization(dir, req.overlay)
			if err != nil {
				return "", paths, err
			}
			prop.after = string(b)
		}
		return msg, paths, nil
	}
	if mode == policy.ViaPullRequest {
		return r.proposeChange(ctx, c, repo, ap, req, out, edit, &landed, &prop)
	}
	change := configrepo.Change{Edit: edit, Request: changeRequestTrailers(req)}
	if deferCheck {
		change.Check = func(_ context.Context, dir string) error { return checkEdit(nil, dir, req, &landed) }
	}
	res, err := r.pushChange(ctx, repo, c, change)
	out.Changed, out.CommitSHA = res.Changed, res.Commit
	if err == nil && res.LandedBy != "" {
		// Another run landed this change: what this run's edit made is what it makes on the
		// landed commit's parent. With an apply to come, make it there again (the apply and a
		// revert need it) and move on to the landed commit; without, its record says enough.
		if ap != nil {
			landed, err = r.editOnParent(repo, req, res)
		} else {
			landed, err = editFromRecord(repo, res)
		}
	}
	out.Previous = previousImages(landed)
	if err != nil {
		return out, protectedHint(err, req.envName)
	}
	if ap == nil {
		return out, nil
	}
	applyErr := ap.deliver(ctx, repo, req.overlay, landed.rendered, res.Commit, changedImages(landed), &out)
	if applyErr == nil || !res.Changed || req.onFailure != onFailureRevert || !isRolloutFailure(applyErr) {
		return out, applyErr
	}
	return out, r.revert(ctx, c, repo, ap, req, landed, res.Commit, applyErr, &out)
}

func isRolloutFailure(err error) bool { return ExitCode(err) == ExitRollout }

// revert undoes a change whose rollout failed: it sets every entry the run changed back to
// its previous values and removes every entry the run added (a first deploy of an image),
// but only while the overlay still holds the images this run set (a newer deploy that
// landed meanwhile is left alone), applies and waits for the previous version, and returns
// the rollout error explaining what happened. There is always something to revert to:
// without the entry, the manifests' own image.
func (r *runner) revert(ctx context.Context, c *cli.Context, repo *configrepo.Repo, ap *applier, req changeRequest, landed editResult, commit string, rolloutErr error, out *ci.Outcome) error {
	r.rep.Warnf("the rollout failed; reverting the config repo to the previous images (--on-failure=revert)")
	restore, remove := revertPlan(landed)
	errSuperseded := errors.New("superseded")
	base := release.Record{
		Action: release.ActionRevert, Environment: req.envName, Trigger: string(req.trigger), Event: req.event,
		SourceRepo: r.ci.SourceRepo, SourceCommit: r.ci.Commit, Pipeline: r.ci.PipelineURL, Actor: r.ci.Actor,
		Reason: "rollout failed", Reverts: commit,
	}
	var reverted editResult
	res, err := r.push(ctx, repo, c, func(ctx context.Context, dir string) (string, []string, error) {
		now, err := kustomize.ReadOverlayImages(dir, req.overlay)
		if err != nil {
			return "", nil, err
		}
		current := map[string]string{}
		for _, img := range now {
			current[img.Name] = kustomize.FormatImage(img)
		}
		for _, ch := range landed.changes {
			if current[ch.Name] != ch.To {
				return "", nil, fmt.Errorf("%w: %s is now %s", errSuperseded, ch.Name, orNone(current[ch.Name]))
			}
		}
		er, err := revertOverlayImages(dir, req.overlay, restore, remove)
		reverted = er
		if err != nil || len(er.changes) == 0 {
			return "", nil, err
		}
		rec := base
		rec.Images = er.changes
		for _, ch := range er.changes {
			r.rep.Logf("%s: %s -> %s", ch.Name, ch.From, ch.To)
		}
		return rec.Message(), []string{er.path}, nil
	})
	if errors.Is(err, errSuperseded) {
		r.rep.Warnf("not reverting: a newer change landed in %s meanwhile (%v)", req.envName, err)
		return fmt.Errorf("%w; not reverted, because a newer change landed meanwhile", rolloutErr)
	}
	if err != nil {
		return fmt.Errorf("%w; reverting failed too: %v", rolloutErr, err)
	}
	what := revertSummary(restore, remove)
	if res.Changed {
		out.Changed, out.CommitSHA = true, res.Commit
		what += " (config commit " + short(out.CommitSHA) + ")"
	} else {
		what += " (the config repo already held it: nothing to commit)"
	}
	// Every workload is waited for: an entry the revert removed runs the manifests' own image.
	if err := ap.deliver(ctx, repo, req.overlay, reverted.rendered, res.Commit, nil, out); err != nil {
		return fmt.Errorf("%w; %s, but the previous version did not become ready either: %v", rolloutErr, what, err)
	}
	out.Rollout = "reverted"
	return fmt.Errorf("%w; %s, and the previous version is running again", rolloutErr, what)
}

// revertPlan splits the changes a run landed into the entries to set back to their
// previous values and the names of the entries the run added, which go.
func revertPlan(landed editResult) (restore []types.Image, remove []string) {
	for _, ch := range landed.changes {
		if p, ok := landed.previous[ch.Name]; ok {
			restore = append(restore, p)
		} else {
			remove = append(remove, ch.Name)
		}
	}
	return restore, remove
}

// revertSummary says what a revert did: "reverted to web=reg/web:1.0", "reverted: removed
// the override of api that this run added", or both.
func revertSummary(restore []types.Image, remove []string) string {
	var parts []string
	if len(restore) > 0 {
		refs := make([]string, 0, len(restore))
		for _, p := range restore {
			refs = append(refs, p.Name+"="+kustomize.FormatImage(p))
		}
		parts = append(parts, "reverted to "+strings.Join(refs, ", "))
	}
	if len(remove) > 0 {
		msg := "removed the override of " + strings.Join(remove, ", ") + " that this run added"
		if len(parts) == 0 {
			msg = "reverted: " + msg
		}
		parts = append(parts, msg)
	}
	return strings.Join(parts, " and ")
}

// editChange makes one attempt of a change in the work tree at dir, on the tip it builds on:
// the environment's policy and the edit of the overlay, not its render check (checkEdit). It
// returns what the edit did, whether a lock was overridden, the commit message and the paths
// it changed (none: nothing to change; on an error, the paths the edit may have written).
// before, if set, runs between the policy check and the edit. quiet leaves out the per-image
// lines (a run landing another run's change logs one line for it).
func (r *runner) editChange(ctx context.Context, dir string, req changeRequest, base release.Record, guard *policy.DowngradeGuard, quiet bool, before func(dir string) error) (er editResult, forced bool, msg string, paths []string, err error) {
	if forced, err = r.checkPolicy(ctx, dir, req, guard); err != nil {
		return editResult{}, false, "", nil, err
	}
	if before != nil {
		if err := before(dir); err != nil {
			return editResult{}, forced, "", nil, err
		}
	}
	if er, err = editOverlayImages(dir, req.overlay, req.images); err != nil {
		if er.path != "" {
			paths = []string{er.path}
		}
		return er, forced, "", paths, err
	}
	if len(er.changes) == 0 {
		return er, forced, "", nil, nil
	}
	rec := base
	rec.Images = er.changes
	rec.Forced = forced
	if !quiet {
		for _, ch := range er.changes {
			r.rep.Logf("%s: %s -> %s", ch.Name, orNone(ch.From), ch.To)
		}
	}
	return er, forced, rec.Message(), []string{er.path}, nil
}

// checkEdit renders the edit editChange made in the work tree at dir into er.rendered, with b
// (nil: kustomize.Build), and checks that its images render as their entries say.
func checkEdit(b *kustomize.Builder, dir string, req changeRequest, er *editResult) error {
	return er.render(b, dir, req.overlay, imageNames(req.images))
}

// editOnParent makes this run's edit again on the parent of the commit another run landed it
// as, and moves the clone to that commit: the edit's result (rendered overlay, previous images)
// is then the one this run would have had, had it pushed alone.
func (r *runner) editOnParent(repo *configrepo.Repo, req changeRequest, res configrepo.Result) (editResult, error) {
	if err := repo.Checkout(res.Parent); err != nil {
		return editResult{}, err
	}
	er, err := setOverlayImages(repo.Dir(), req.overlay, req.images)
	if err != nil {
		return editResult{}, fmt.Errorf("making the change again on %s, the commit it was landed on: %w", short(res.Parent), err)
	}
	file := filepath.Join(repo.Dir(), filepath.FromSlash(er.path))
	edited, err := os.ReadFile(file)
	if err != nil {
		return editResult{}, fmt.Errorf("reading %s: %w", er.path, err)
	}
	if err := repo.Checkout(res.Commit); err != nil {
		return editResult{}, err
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != string(edited) {
		// The landed commit is what the branch holds: apply it as it is.
		r.rep.Warnf("%s in the landed commit %s differs from this run's edit of its parent; applying the landed commit as it is", er.path, short(res.Commit))
		er.rendered = nil
	}
	return er, nil
}

// editFromRecord is what this run's edit did, as the record of the commit another run landed
// it as (res.Commit) says: the images it changed and what they were before.
func editFromRecord(repo *configrepo.Repo, res configrepo.Result) (editResult, error) {
	msg, err := repo.Message(res.Commit)
	if err != nil {
		return editResult{}, fmt.Errorf("reading the landed commit: %w", err)
	}
	rec, err := release.Parse(msg)
	if err != nil {
		return editResult{}, fmt.Errorf("reading the landed commit %s: %w", short(res.Commit), err)
	}
	er := editResult{changes: rec.Images, previous: map[string]types.Image{}}
	for _, ch := range rec.Images {
		if ch.From == "" {
			continue
		}
		img, err := kustomize.ParseImageArg(ch.Name + "=" + ch.From)
		if err != nil {
			img = types.Image{Name: ch.Name, NewName: ch.From} // formats back to From as it is
		}
		er.previous[ch.Name] = img
	}
	return er, nil
}

// checkPolicy enforces the environment's policy, read from the tip the attempt builds on. It
// reports whether a lock was overridden. A nil guard skips the downgrade guard.
func (r *runner) checkPolicy(ctx context.Context, dir string, req changeRequest, guard *policy.DowngradeGuard) (forced bool, err error) {
	pol, err := policy.Load(dir)
	if err != nil {
		return false, usage(err)
	}
	if req.trigger == ci.TriggerAutomated && !pol.AutomatedAllowed(req.envName) {
		return false, fmt.Errorf("%w: environment %s accepts only manual runs (%s: environments.%s.automated: false); run the manual pipeline or job, or give %s",
			errPolicy, req.envName, policy.FileName, req.envName, r.hints.set(flagTrigger, string(ci.TriggerManual)))
	}
	for _, img := range req.images {
		l, locked := pol.LockFor(req.envName, img.Name)
		if !locked {
			continue
		}
		if !req.force {
			return false, fmt.Errorf("%w: %s; unlock it with %s, or override it in a manual run with %s",
				errPolicy, l.Describe(), r.hints.command("unlock", flagEnv, req.envName, flagImage, img.Name), r.hints.set(flagForce, "true"))
		}
		r.rep.Warnf("overriding the lock: %s (--force)", l.Describe())
		forced = true
	}
	if guard != nil && req.trigger == ci.TriggerAutomated && !pol.DowngradeAllowed(req.envName) {
		if err := checkDowngrade(ctx, guard, dir, req.overlay, req.images); err != nil {
			return false, err
		}
	}
	return forced, nil
}

// imageSpec is one --image: the override to set and the reference to verify.
type imageSpec struct {
	image types.Image // Name, NewName, NewTag, Digest as asked
	ref   string      // the reference to verify: repository[:tag][@digest]
	// recorded marks a reference deliver verified and recorded earlier (promote's source,
	// rollback's previous release): it names the build that ran, so a tag moved or deleted
	// since is warned about, not refused.
	recorded bool
}

// verifyImages confirms every image exists and returns the overrides to write (digest-pinned
// when pin is set) in the order given.
func (r *runner) verifyImages(ctx context.Context, reg *registry.Client, specs []imageSpec, pin bool) ([]types.Image, error) {
	end := r.rep.Phase("verify", fmt.Sprintf("checking %d image(s) in their registries", len(specs)))
	out := make([]types.Image, 0, len(specs))
	for _, s := range specs {
		res, err := reg.Resolve(ctx, s.ref)
		var moved *registry.TagMismatchError
		if s.recorded && errors.As(err, &moved) {
			now := "no longer exists"
			if moved.TagDigest != "" {
				now = "now points at " + moved.TagDigest
			}
			r.rep.Warnf("%s: tag %s of %s %s; keeping the recorded digest %s, the build that ran", s.image.Name, moved.Tag, moved.Repository, now, moved.Digest)
			res, err = registry.Resolved{Digest: moved.Digest}, nil
		}
		if err != nil {
			end(err)
			return nil, err
		}
		img := s.image
		if pin {
			img.Digest = res.Digest
		}
		if res.TagDigest != "" && res.TagDigest != res.Digest {
			r.rep.Logf("%s: %s -> %s (one platform's image of the index %s that tag %s points at)", img.Name, s.ref, res.Digest, res.TagDigest, res.Tag)
		} else {
			r.rep.Logf("%s: %s -> %s", img.Name, s.ref, res.Digest)
		}
		out = append(out, img)
	}
	end(nil)
	return out, nil
}
