// setimage.go owns `deliver set-image`: the overlay edit alone, offline, in a local directory.

package step

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
)

func (r *runner) setImageCommand() *cli.Command {
	return &cli.Command{
		Name:  "set-image",
		Usage: "edit the images: override of a kustomize overlay in place, changing only those lines (offline)",
		Description: "Accepts the forms of `kustomize edit set image`: NAME=NEWNAME:TAG@DIGEST, NAME=NEWNAME:TAG, " +
			"NAME=NEWNAME@DIGEST, NAME:TAG, NAME@DIGEST, with * to keep a part as it is. Comments, blank lines, " +
			"order, indentation and quoting of the file are kept byte for byte.",
		ArgsUsage: "NAME=NEWNAME:TAG@DIGEST...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", EnvVars: env("dir"), Value: ".", Usage: "overlay directory holding kustomization.yaml"},
		},
		Action: r.withReporter(r.setImage),
	}
}

func (r *runner) setImage(_ context.Context, c *cli.Context) (ci.Outcome, error) {
	out := ci.Outcome{Command: "set-image"}
	if c.NArg() == 0 {
		return out, usage(fmt.Errorf("set-image: %w (want NAME=NEWNAME:TAG@DIGEST arguments)", errNoImages))
	}
	var images []types.Image
	for _, a := range c.Args().Slice() {
		img, err := kustomize.ParseImageArg(a)
		if err != nil {
			return out, usage(fmt.Errorf("set-image %q: %w", a, err))
		}
		images = append(images, img)
	}
	dir := r.path(c.String("dir"))
	changed, err := kustomize.SetImages(dir, images)
	if err != nil {
		return out, err
	}
	out.Changed = changed
	_, now, err := kustomize.ReadImages(dir)
	if err != nil {
		return out, err
	}
	for _, img := range now {
		for _, want := range images {
			if want.Name == img.Name {
				out.Images = append(out.Images, img.Name+"="+kustomize.FormatImage(img))
			}
		}
	}
	return out, nil
}
