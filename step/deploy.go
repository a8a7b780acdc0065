package step

import (
	"context"
	"errors"
	"fmt"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/registry"
	"github.com/deliverhq/deliver/step/release"
)

func (r *runner) deployCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to deploy to (its overlay is --path-template with {env} replaced)"},
		&cli.StringSliceFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "image to set, NAME=REPOSITORY:TAG[@DIGEST] where NAME is the image as the manifests use it, or REPOSITORY:TAG (repeatable; DELIVER_IMAGE takes a comma- or newline-separated list)"},
		&cli.BoolFlag{Name: flagDigestPin, EnvVars: env(flagDigestPin), Value: true, Usage: "pin the digest the tag points to now (newTag and digest both set)"},
		&cli.BoolFlag{Name: flagNoApply, EnvVars: env(flagNoApply), Usage: "update the config repo only; do not apply to the cluster"},
		&cli.BoolFlag{Name: flagDryRun, EnvVars: env(flagDryRun), Usage: "push nothing and apply nothing: show the overlay diff and what the cluster would change"},
		&cli.StringFlag{Name: flagEnvURL, EnvVars: env(flagEnvURL), Usage: "the environment's URL, passed through to CI outputs"},
	}
	flags = append(flags, releaseFlags()...)
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, registryFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:      "deploy",
		Usage:     "verify images, pin them in an environment's overlay, commit and push, apply and wait",
		ArgsUsage: " ",
		Flags:     flags,
		Action:    r.withReporter(r.deploy),
	}
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

// parseImageSpecs parses --image values for commands that set concrete images.
func parseImageSpecs(values []string) ([]imageSpec, error) {
	args := splitList(values)
	if len(args) == 0 {
		return nil, usage(fmt.Errorf("--%s: %w", flagImage, errNoImages))
	}
	seen := map[string]bool{}
	var specs []imageSpec
	for _, a := range args {
		img, err := kustomize.ParseImageArg(a)
		if err != nil {
			return nil, usage(fmt.Errorf("--%s %q: %w", flagImage, a, err))
		}
		if img.NewName == kustomize.Keep || img.NewTag == kustomize.Keep || img.Digest == kustomize.Keep {
			return nil, usage(fmt.Errorf("--%s %q: \"*\" (keep) is for set-image; deploy needs the concrete image to verify", flagImage, a))
		}
		if img.NewTag == "" && img.Digest == "" {
			return nil, usage(fmt.Errorf("--%s %q: needs a tag or a digest", flagImage, a))
		}
		if seen[img.Name] {
			return nil, usage(fmt.Errorf("--%s: image %q given twice", flagImage, img.Name))
		}
		seen[img.Name] = true
		specs = append(specs, imageSpec{image: img, ref: kustomize.FormatImage(img)})
	}
	return specs, nil
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

// deploy is `deliver deploy`.
func (r *runner) deploy(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "deploy", Environment: envName, DryRun: c.Bool(flagDryRun)}
	var err error
	if out.URL, err = envURL(c); err != nil {
		return out, err
	}
	if c.NArg() > 0 {
		return out, usage(fmt.Errorf("deploy takes no arguments (got %q); images go in --%s", c.Args().First(), flagImage))
	}
	if err := validateEnvName(envName); err != nil {
		return out, usage(err)
	}
	overlay, err := overlayPath(c.String(flagPathTemplate), envName)
	if err != nil {
		return out, usage(err)
	}
	specs, err := parseImageSpecs(c.StringSlice(flagImage))
	if err != nil {
		return out, err
	}
	d, err := r.bindChange(ctx, c, envName)
	if err != nil {
		return out, err
	}
	r.rep.Logf("environment %s, overlay %s, trigger %s (%s)", envName, overlay, d.trigger, d.event)

	images, err := r.verifyImages(ctx, d.reg, specs, c.Bool(flagDigestPin))
	if err != nil {
		return out, err
	}
	for _, img := range images {
		out.Images = append(out.Images, img.Name+"="+kustomize.FormatImage(img))
	}
	if len(images) > 0 {
		out.ImageDigest = images[0].Digest
	}

	repo, err := r.clone(ctx, d.repoOpts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	if err := checkOverlay(repo.Dir(), overlay, envName); err != nil {
		return out, err
	}

	if c.Bool(flagDryRun) {
		return r.dryRun(ctx, repo, overlay, envName, images, d.ap, out)
	}

	return r.changeImages(ctx, c, repo, d.reg, d.ap, changeRequest{
		action: release.ActionDeploy, envName: envName, overlay: overlay, images: images,
		trigger: d.trigger, event: d.event, force: c.Bool(flagForce), reason: c.String(flagReason),
		onFailure: c.String(flagOnFailure), pr: d.pr,
	}, out)
}

// clone runs the clone phase.
func (r *runner) clone(ctx context.Context, opts configrepo.Options) (*configrepo.Repo, error) {
	end := r.rep.Phase("clone", fmt.Sprintf("%s (branch %s, depth 1)", opts.URL, opts.Branch))
	repo, err := configrepo.Clone(ctx, opts)
	if err != nil {
		end(err)
		return nil, err
	}
	if head, herr := repo.Head(); herr == nil {
		r.rep.Logf("at %s", short(head.String()))
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
		r.rep.Logf("landed by %s as %s on %s (the change waited in the queue; %d push attempt(s) of this run)", res.LandedBy, short(res.Commit.String()), short(res.Parent.String()), res.Attempts)
	case res.Changed && res.Landed > 1:
		r.rep.Logf("pushed %s on %s after %d attempt(s), landing %d queued change(s) of other pipelines in the same push", short(res.Commit.String()), short(res.Parent.String()), res.Attempts, res.Landed-1)
	case res.Changed:
		r.rep.Logf("pushed %s on %s after %d attempt(s)", short(res.Commit.String()), short(res.Parent.String()), res.Attempts)
	default:
		r.rep.Logf("already up to date at %s: nothing to commit", short(res.Commit.String()))
	}
	end(nil)
	return res, nil
}

// dryRun shows what deploy would do: the overlay diff and the cluster's server-side dry run.
func (r *runner) dryRun(ctx context.Context, repo *configrepo.Repo, overlay, envName string, images []types.Image, ap *applier, out ci.Outcome) (ci.Outcome, error) {
	end := r.rep.Phase("edit", "dry run: editing the overlay in the clone only")
	_, before, err := kustomize.ReadKustomization(repo.Dir(), overlay)
	if err != nil {
		end(err)
		return out, err
	}
	er, err := setOverlayImages(repo.Dir(), overlay, images)
	if err != nil {
		end(err)
		return out, err
	}
	_, after, err := kustomize.ReadKustomization(repo.Dir(), overlay)
	if err != nil {
		end(err)
		return out, err
	}
	end(nil)
	out.Changed, out.Previous = len(er.changes) > 0, previousImages(er)
	if out.Changed {
		diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(before)), B: difflib.SplitLines(string(after)),
			FromFile: "a/" + er.path, ToFile: "b/" + er.path, Context: 3,
		})
		fmt.Fprint(r.stdout, diff)
		out.Diff = diff
	} else {
		fmt.Fprintf(r.stdout, "# %s already holds these images: no commit would be made\n", er.path)
	}
	if ap != nil {
		if err := ap.handOff(repo, envName, overlay); err != nil {
			return out, err
		}
		if err := ap.dryRun(ctx, repo.Dir(), overlay, er.rendered, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}
