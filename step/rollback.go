// rollback.go owns `deliver rollback`: one image back to the release before the current one (or --tag).

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/release"
)

func (r *runner) rollbackCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to roll back"},
		&cli.StringFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "image to roll back (the name the manifests use)"},
		&cli.StringFlag{Name: "tag", EnvVars: env("tag"), Usage: "tag to go back to (verified and digest-pinned); without it, the release before the current one, from the config repo's history"},
		&cli.BoolFlag{Name: flagDigestPin, EnvVars: env(flagDigestPin), Value: true, Usage: "pin the digest the tag points to now"},
		&cli.BoolFlag{Name: flagNoApply, EnvVars: env(flagNoApply), Usage: "update the config repo only; do not apply"},
		&cli.StringFlag{Name: flagEnvURL, EnvVars: env(flagEnvURL), Usage: "the environment's URL, passed through to CI outputs"},
	}
	flags = append(flags, releaseFlags()...)
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, registryFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:   "rollback",
		Usage:  "set an image of an environment back to an earlier tag, or to the previous release, without rebuilding (a manual action)",
		Flags:  flags,
		Action: r.withReporter(r.rollback),
	}
}

func (r *runner) rollback(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName, name, tag := c.String(flagEnv), c.String(flagImage), c.String("tag")
	out := ci.Outcome{Command: "rollback", Environment: envName}
	var err error
	if out.URL, err = envURL(c); err != nil {
		return out, err
	}
	if err := validateEnvName(envName); err != nil {
		return out, usage(err)
	}
	if name == "" || strings.ContainsAny(name, "=:@ \n") {
		return out, usage(fmt.Errorf("--%s %q: give the image name the manifests use (e.g. web)", flagImage, name))
	}
	if tag != "" {
		if _, err := kustomize.ParseImageArg(name + ":" + tag); err != nil {
			return out, usage(fmt.Errorf("--tag %q: %w", tag, err))
		}
	}
	overlay, err := overlayPath(c.String(flagPathTemplate), envName)
	if err != nil {
		return out, usage(err)
	}
	d, err := r.bindChange(ctx, c, envName)
	if err != nil {
		return out, err
	}
	if t := c.String(flagTrigger); t != "" && t != string(ci.TriggerManual) {
		return out, usage(fmt.Errorf("rollback is a manual action; --%s %q is not accepted", flagTrigger, t))
	}
	repo, err := r.clone(ctx, d.repoOpts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	if err := checkOverlay(repo.Dir(), overlay, envName); err != nil {
		return out, err
	}
	current, err := kustomize.ReadOverlayImages(repo.Dir(), overlay)
	if err != nil {
		return out, err
	}
	var cur *types.Image
	for i := range current {
		if current[i].Name == name {
			cur = &current[i]
		}
	}
	if cur == nil {
		return out, usage(fmt.Errorf("environment %s: overlay %s has no image %q to roll back", envName, overlay, name))
	}

	var target imageSpec
	if tag != "" {
		repoName := cur.NewName
		if repoName == "" {
			repoName = cur.Name
		}
		target = imageSpec{image: types.Image{Name: name, NewName: cur.NewName, NewTag: tag}, ref: repoName + ":" + tag}
	} else {
		currentRef := kustomize.FormatImage(*cur)
		end := r.rep.Phase("history", fmt.Sprintf("finding the release of %s before %s in %s", name, release.ShortRef(currentRef), envName))
		entries, err := readHistory(ctx, repo, envName, func(es []release.Entry) bool { return release.Previous(es, name, currentRef) != "" })
		if err != nil {
			end(err)
			return out, err
		}
		prev := release.Previous(entries, name, currentRef)
		if prev == "" {
			err := usage(fmt.Errorf("environment %s: no earlier release of %s in the config repo's history (%d deliver change(s) read); give --tag", envName, name, len(entries)))
			end(err)
			return out, err
		}
		r.rep.Logf("previous release: %s", prev)
		end(nil)
		img, err := imageFromRef(name, prev)
		if err != nil {
			return out, err
		}
		target = imageSpec{image: img, ref: prev, recorded: true}
	}
	images, err := r.verifyImages(ctx, d.reg, []imageSpec{target}, c.Bool(flagDigestPin))
	if err != nil {
		return out, err
	}
	for _, img := range images {
		out.Images = append(out.Images, img.Name+"="+kustomize.FormatImage(img))
		out.ImageDigest = img.Digest
	}
	return r.changeImages(ctx, c, repo, d.reg, d.ap, changeRequest{
		action: release.ActionRollback, envName: envName, overlay: overlay, images: images,
		trigger: ci.TriggerManual, event: r.ci.Event, force: c.Bool(flagForce), reason: c.String(flagReason),
		onFailure: c.String(flagOnFailure), pr: d.pr,
	}, out)
}

// imageFromRef turns a recorded reference (repository[:tag][@digest]) back into an override.
func imageFromRef(name, ref string) (types.Image, error) {
	img, err := kustomize.ParseImageArg(name + "=" + ref)
	if err != nil {
		return types.Image{}, fmt.Errorf("the recorded image %q: %w", ref, err)
	}
	if img.NewTag == "" && img.Digest == "" {
		return types.Image{}, errors.New("the recorded image " + ref + " has neither tag nor digest")
	}
	return img, nil
}
