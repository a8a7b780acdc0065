// promote.go owns `deliver promote`: one environment's images to another.

package step

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/release"
)

func (r *runner) promoteCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "from", EnvVars: env("from"), Usage: "environment to copy the images from"},
		&cli.StringFlag{Name: "to", EnvVars: env("to"), Usage: "environment to copy them to (its policy applies)"},
		&cli.StringSliceFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "only these images (names the manifests use; default: every image of --from)"},
		&cli.BoolFlag{Name: flagNoApply, EnvVars: env(flagNoApply), Usage: "update the config repo only; do not apply"},
		&cli.StringFlag{Name: flagEnvURL, EnvVars: env(flagEnvURL), Usage: "the target environment's URL, passed through to CI outputs"},
	}
	flags = append(flags, releaseFlags()...)
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, registryFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:   "promote",
		Usage:  "copy the exact images (tags and digests) of one environment to another in one commit",
		Flags:  flags,
		Action: r.withReporter(r.promote),
	}
}

func (r *runner) promote(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	from, to := c.String("from"), c.String("to")
	out := ci.Outcome{Command: "promote", Environment: to}
	var err error
	if out.URL, err = envURL(c); err != nil {
		return out, err
	}
	for flag, v := range map[string]string{"from": from, "to": to} {
		if err := validateEnvName(v); err != nil {
			return out, usage(fmt.Errorf("--%s: %w", flag, err))
		}
	}
	if from == to {
		return out, usage(fmt.Errorf("--from and --to are both %q", from))
	}
	fromOverlay, err := overlayPath(c.String(flagPathTemplate), from)
	if err != nil {
		return out, usage(err)
	}
	toOverlay, err := overlayPath(c.String(flagPathTemplate), to)
	if err != nil {
		return out, usage(err)
	}
	d, err := r.bindChange(ctx, c, to)
	if err != nil {
		return out, err
	}
	repo, err := r.clone(ctx, d.repoOpts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	for _, pair := range [][2]string{{from, fromOverlay}, {to, toOverlay}} {
		if err := checkOverlay(repo.Dir(), pair[1], pair[0]); err != nil {
			return out, err
		}
	}
	source, err := kustomize.ReadOverlayImages(repo.Dir(), fromOverlay)
	if err != nil {
		return out, err
	}
	wanted := splitList(c.StringSlice(flagImage))
	var specs []imageSpec
	for _, img := range source {
		if len(wanted) > 0 && !contains(wanted, img.Name) {
			continue
		}
		if img.NewTag == "" && img.Digest == "" {
			continue // an override that only renames: nothing to promote
		}
		img.TagSuffix = "" // ignored by kustomize next to a tag or digest; the edit drops it, as kustomize's does
		specs = append(specs, imageSpec{image: img, ref: kustomize.FormatImage(img), recorded: true})
	}
	for _, w := range wanted {
		if !containsImage(source, w) {
			return out, usage(fmt.Errorf("--%s %s: environment %s has no override for it", flagImage, w, from))
		}
	}
	if len(specs) == 0 {
		return out, usage(fmt.Errorf("environment %s has no images to promote", from))
	}
	// The images are copied as they are, digests included: verify they still exist, pin nothing new.
	images, err := r.verifyImages(ctx, d.reg, specs, false)
	if err != nil {
		return out, err
	}
	for _, img := range images {
		out.Images = append(out.Images, img.Name+"="+kustomize.FormatImage(img))
	}
	if len(images) > 0 {
		out.ImageDigest = images[0].Digest
	}
	return r.changeImages(ctx, c, repo, d.reg, d.ap, changeRequest{
		action: release.ActionPromote, envName: to, overlay: toOverlay, images: images,
		trigger: d.trigger, event: d.event, force: c.Bool(flagForce),
		reason: firstNonEmpty(c.String(flagReason), "promoted from "+from), onFailure: c.String(flagOnFailure), pr: d.pr,
	}, out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsImage(images []types.Image, name string) bool {
	for _, img := range images {
		if img.Name == name {
			return true
		}
	}
	return false
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
