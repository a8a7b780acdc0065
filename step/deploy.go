// deploy.go owns `deliver deploy`: its flags, --image parsing, and the dry run.

package step

import (
	"context"
	"fmt"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
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
