// overlay.go owns the overlay edit as the commands see it: set or revert images, render,
// check, and list what changed (editResult). Confinement and reading are package kustomize's.

package step

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/release"
)

// editResult describes what one run of an overlay edit changed.
type editResult struct {
	changes []release.ImageChange
	path    string // kustomization file, relative to the repo root
	// previous holds the overrides as they were before the edit, by image name.
	previous map[string]types.Image
	// rendered is the edited overlay's build, reused for the apply (nil when nothing changed,
	// or not rendered yet: editResult.render).
	rendered resmap.ResMap
	// edited: the edit changed the kustomization file.
	edited bool
}

// setOverlayImages edits the overlay at root/overlay, proves it still renders and that
// every image it set is what the objects run, and returns what changed (nothing when the
// overlay already held the images). An image that no object uses, or that the objects end
// up running under another reference, is refused as bad input before anything is pushed.
func setOverlayImages(root, overlay string, images []types.Image) (editResult, error) {
	res, err := editOverlayImages(root, overlay, images)
	if err != nil {
		return res, err
	}
	err = res.render(nil, root, overlay, imageNames(images))
	return res, err
}

// editOverlayImages is setOverlayImages without the render and its check (editResult.render
// makes them): the edit alone.
func editOverlayImages(root, overlay string, images []types.Image) (editResult, error) {
	res, err := editOverlay(root, overlay, imageNames(images), func(dir string) (bool, error) {
		return kustomize.SetImages(dir, images)
	})
	return res, kustomize.RootRelative(root, err)
}

// imageNames are the names of images, in order.
func imageNames(images []types.Image) []string {
	names := make([]string, 0, len(images))
	for _, img := range images {
		names = append(names, img.Name)
	}
	return names
}

// revertOverlayImages undoes an edit: it sets the entries in restore back to those exact
// values (tagSuffix included) and removes the entries named in remove, which the edit
// added. The result is what the overlay held before, so it is rendered but not held to the
// check setOverlayImages makes.
func revertOverlayImages(root, overlay string, restore []types.Image, remove []string) (editResult, error) {
	names := append(imageNames(restore), remove...)
	res, err := editOverlay(root, overlay, names, func(dir string) (bool, error) {
		set, err := kustomize.SetImages(dir, restore)
		if err != nil {
			return false, err
		}
		removed, err := kustomize.RemoveImages(dir, remove)
		return set || removed, err
	})
	if err != nil {
		return res, kustomize.RootRelative(root, err)
	}
	if res.edited {
		if res.rendered, err = renderEdited(nil, root, overlay, nil); err != nil {
			return editResult{path: res.path, edited: true}, err
		}
	}
	return res, nil
}

// editOverlay runs edit on the overlay's directory and lists the changes to the named images,
// in the order of names. An entry that is gone is listed with To the bare name: the
// reference the manifests give the image themselves. It does not render the result.
func editOverlay(root, overlay string, names []string, edit func(dir string) (bool, error)) (editResult, error) {
	dir, err := kustomize.OverlayDir(root, overlay)
	if err != nil {
		return editResult{}, err
	}
	file, before, err := kustomize.ReadImages(dir)
	if err != nil {
		return editResult{}, err
	}
	prev := map[string]types.Image{}
	for _, img := range before {
		prev[img.Name] = img
	}
	changed, err := edit(dir)
	if err != nil {
		return editResult{}, err
	}
	rel, err := filepath.Rel(root, file)
	if err != nil {
		return editResult{}, fmt.Errorf("locating %s in the repo: %w", file, err)
	}
	res := editResult{path: filepath.ToSlash(rel), previous: prev, edited: changed}
	if !changed {
		return res, nil
	}
	// From here on the file is edited: a failure still names it (editResult.path), so that
	// the edit can be undone.
	_, after, err := kustomize.ReadImages(dir)
	if err != nil {
		return editResult{path: res.path, edited: true}, err
	}
	now := map[string]types.Image{}
	for _, img := range after {
		now[img.Name] = img
	}
	for _, name := range names {
		img, has := now[name]
		p, had := prev[name]
		switch {
		case has && !had:
			res.changes = append(res.changes, release.ImageChange{Name: name, To: kustomize.FormatImage(img)})
		case has && kustomize.FormatImage(p) != kustomize.FormatImage(img):
			res.changes = append(res.changes, release.ImageChange{Name: name, From: kustomize.FormatImage(p), To: kustomize.FormatImage(img)})
		case !has && had:
			res.changes = append(res.changes, release.ImageChange{Name: name, From: kustomize.FormatImage(p), To: kustomize.FormatImage(types.Image{Name: name})})
		}
	}
	return res, nil
}

// render renders the edited overlay with b (nil: kustomize.Build) into res.rendered and checks
// that the named images render as their entries say (nothing to do when the edit changed
// nothing). A failure is bad input: the repo's content is at fault, not deliver or a server;
// res then holds only the edited file's path, so that the edit can be undone.
func (res *editResult) render(b *kustomize.Builder, root, overlay string, names []string) error {
	if !res.edited {
		return nil
	}
	rendered, err := renderEdited(b, root, overlay, names)
	if err != nil {
		*res = editResult{path: res.path, edited: true}
		return err
	}
	res.rendered = rendered
	return nil
}

// renderEdited builds the edited overlay with b (nil: kustomize.Build) and, for names, checks
// that those images render as their entries say.
func renderEdited(b *kustomize.Builder, root, overlay string, names []string) (resmap.ResMap, error) {
	rendered, err := b.Build(root, overlay)
	if err != nil {
		return nil, usage(fmt.Errorf("the edited overlay no longer renders: %w", kustomize.RootRelative(root, err)))
	}
	if len(names) > 0 {
		if err := kustomize.CheckRendered(root, overlay, rendered, names); err != nil {
			return nil, usage(kustomize.RootRelative(root, err))
		}
	}
	return rendered, nil
}

// checkOverlay gives a clear error when the environment has no overlay in the repo.
func checkOverlay(root, overlay, envName string) error {
	dir, err := kustomize.OverlayDir(root, overlay)
	if err != nil {
		return err
	}
	if _, err := kustomize.FindKustomization(dir); err != nil {
		err = kustomize.RootRelative(root, err)
		if errors.Is(err, kustomize.ErrNoKustomization) {
			hint := ""
			if entries, rerr := os.ReadDir(filepath.Dir(dir)); rerr == nil {
				var names []string
				for _, e := range entries {
					if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
						names = append(names, e.Name())
					}
				}
				if len(names) > 0 {
					hint = fmt.Sprintf(" (%s has: %s)", filepath.ToSlash(filepath.Dir(overlay)), strings.Join(names, ", "))
				}
			}
			return usage(fmt.Errorf("environment %q: no overlay at %s in the config repo%s: %w", envName, overlay, hint, err))
		}
		return err
	}
	return nil
}
