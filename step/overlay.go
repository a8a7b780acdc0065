package step

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
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
	// rendered is the edited overlay's build, reused for the apply (nil when nothing changed).
	rendered resmap.ResMap
}

// confinedOverlay returns the overlay's directory in the clone at root, refusing one that is,
// or passes through, a symlink leading out of the repo: deliver edits files there.
func confinedOverlay(root, overlay string) (string, error) {
	dir := overlayDir(root, overlay)
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("resolving the clone's root: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return dir, nil // missing: FindKustomization reports it
	}
	if rel, err := filepath.Rel(realRoot, realDir); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", usage(fmt.Errorf("overlay %s: %w (it is a symlink to %s)", overlay, kustomize.ErrOutsideRoot, realDir))
	}
	return dir, nil
}

// overlayDir is the overlay's directory in the clone at root.
func overlayDir(root, overlay string) string {
	return filepath.Join(root, filepath.FromSlash(overlay))
}

// setOverlayImages edits the overlay at root/overlay, proves it still renders and returns
// what changed (nothing when the overlay already held the images).
func setOverlayImages(root, overlay string, images []types.Image) (editResult, error) {
	res, err := setOverlayImagesIn(root, overlay, images)
	return res, inRepo(root, err)
}

func setOverlayImagesIn(root, overlay string, images []types.Image) (editResult, error) {
	dir, err := confinedOverlay(root, overlay)
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
	changed, err := kustomize.SetImages(dir, images)
	if err != nil {
		return editResult{}, err
	}
	rel, err := filepath.Rel(root, file)
	if err != nil {
		return editResult{}, fmt.Errorf("locating %s in the repo: %w", file, err)
	}
	res := editResult{path: filepath.ToSlash(rel), previous: prev}
	if !changed {
		return res, nil
	}
	rendered, err := kustomize.Build(root, overlay)
	if err != nil {
		// The repo's content is at fault, not deliver or a server: bad input.
		return editResult{}, usage(fmt.Errorf("the edited overlay no longer renders: %w", err))
	}
	res.rendered = rendered
	_, after, err := kustomize.ReadImages(dir)
	if err != nil {
		return editResult{}, err
	}
	for _, img := range after {
		p, had := prev[img.Name]
		from := ""
		if had {
			from = kustomize.FormatImage(p)
			if from == kustomize.FormatImage(img) {
				continue
			}
		}
		res.changes = append(res.changes, release.ImageChange{Name: img.Name, From: from, To: kustomize.FormatImage(img)})
	}
	sort.SliceStable(res.changes, func(i, j int) bool {
		return indexOf(images, res.changes[i].Name) < indexOf(images, res.changes[j].Name)
	})
	return res, nil
}

func indexOf(images []types.Image, name string) int {
	for i, img := range images {
		if img.Name == name {
			return i
		}
	}
	return len(images)
}

// checkOverlay gives a clear error when the environment has no overlay in the repo.
func checkOverlay(root, overlay, envName string) error {
	dir, err := confinedOverlay(root, overlay)
	if err != nil {
		return err
	}
	if _, err := kustomize.FindKustomization(dir); err != nil {
		err = inRepo(root, err)
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

// inRepo rewrites the path of a kustomization file error to be relative to the config repo's
// root (the clone lives in a temporary directory nobody cares about), for messages and CI
// annotations.
func inRepo(root string, err error) error {
	var fe *kustomize.FileError
	if errors.As(err, &fe) && filepath.IsAbs(fe.Path) {
		if rel, rerr := filepath.Rel(root, fe.Path); rerr == nil && !strings.HasPrefix(rel, "..") {
			fe.Path = filepath.ToSlash(rel)
		}
	}
	return err
}
