package kustomize

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/types"
)

// Overlay confinement for edits: the same rules as the build's file system (confinedFS),
// applied to the overlay directory deliver writes into and the kustomization file it reads
// for a pull request's diff.

// OverlayDir returns the directory of overlay (a slash-separated path relative to root) in
// the checkout at root. An overlay that is, or passes through, a symlink leading outside
// root is refused with an error wrapping ErrOutsideRoot: deliver edits files there. One
// that does not exist (or is a symlink to nowhere) is not refused here: FindKustomization
// reports it (ErrNoKustomization).
func OverlayDir(root, overlay string) (string, error) {
	fsys, err := newConfinedFS(root)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, filepath.FromSlash(overlay))
	real, err := fsys.resolve(dir)
	if err != nil {
		return dir, nil // a symlink to nowhere: FindKustomization reports it
	}
	if !within(fsys.root, real) {
		return "", fmt.Errorf("overlay %s: %w (it is a symlink to %s)", overlay, ErrOutsideRoot, real)
	}
	return dir, nil
}

// ReadOverlayImages is ReadImages of the overlay's directory (see OverlayDir), with the path
// of a *FileError relative to root.
func ReadOverlayImages(root, overlay string) ([]types.Image, error) {
	dir, err := OverlayDir(root, overlay)
	if err != nil {
		return nil, err
	}
	_, images, err := ReadImages(dir)
	return images, RootRelative(root, err)
}

// ReadKustomization returns the overlay's kustomization file (see OverlayDir and
// FindKustomization), as a slash-separated path relative to root, and its content, of at
// most the 1 MiB deliver edits.
func ReadKustomization(root, overlay string) (path string, data []byte, err error) {
	dir, err := OverlayDir(root, overlay)
	if err != nil {
		return "", nil, err
	}
	file, err := FindKustomization(dir)
	if err != nil {
		return "", nil, RootRelative(root, err)
	}
	if data, _, err = readFile(file); err != nil {
		return "", nil, RootRelative(root, err)
	}
	rel, err := filepath.Rel(root, file)
	if err != nil {
		return "", nil, fmt.Errorf("locating %s in the repository: %w", file, err)
	}
	return filepath.ToSlash(rel), data, nil
}

// RootRelative rewrites the path of a *FileError in err to be relative to root (a clone
// lives in a temporary directory nobody cares about), for messages and CI annotations, and
// returns err. A path outside root, or an error that is no *FileError, is left as it is.
func RootRelative(root string, err error) error {
	var fe *FileError
	if errors.As(err, &fe) && filepath.IsAbs(fe.Path) {
		if rel, rerr := filepath.Rel(root, fe.Path); rerr == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			fe.Path = filepath.ToSlash(rel)
		}
	}
	return err
}
