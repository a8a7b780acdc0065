package kustomize

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOverlayDir checks the confinement of the directory deliver edits: an overlay that is,
// or sits below, a symlink out of the repository is refused; one inside, a symlink inside,
// a missing one and a symlink to nowhere are left for FindKustomization to judge.
func TestOverlayDir(t *testing.T) {
	t.Parallel()
	root, outside := newRepo(t, map[string]string{
		"overlays/env/kustomization.yaml": "resources:\n- ../../base\n",
	})
	symlink(t, outside, filepath.Join(root, "overlays/escape"))
	symlink(t, outside, filepath.Join(root, "out"))
	symlink(t, filepath.Join(root, "overlays/env"), filepath.Join(root, "overlays/alias"))
	symlink(t, filepath.Join(outside, "missing"), filepath.Join(root, "overlays/dangling"))
	tests := []struct {
		overlay string
		refused bool
	}{
		{"overlays/env", false},
		{"overlays/alias", false},
		{"overlays/not-there", false},
		{"overlays/dangling", false},
		{"overlays/escape", true},
		{"out/below", true}, // missing, but its parent leads out: the error must not list outside
		{"overlays/../out", true},
	}
	for _, tt := range tests {
		dir, err := OverlayDir(root, tt.overlay)
		if tt.refused {
			if !errors.Is(err, ErrOutsideRoot) || !strings.Contains(err.Error(), "overlay "+tt.overlay+": ") {
				t.Errorf("OverlayDir(%s) = %q, %v; want an error naming the overlay and wrapping ErrOutsideRoot", tt.overlay, dir, err)
			}
			continue
		}
		if want := filepath.Join(root, filepath.FromSlash(tt.overlay)); err != nil || dir != want {
			t.Errorf("OverlayDir(%s) = %q, %v; want %q", tt.overlay, dir, err, want)
		}
	}
}

// TestReadKustomization checks the file a pull request's diff shows: its path relative to
// the repository, its bytes as they are, and the refusals (outside the root, too large,
// missing) with root-relative paths.
func TestReadKustomization(t *testing.T) {
	t.Parallel()
	content := "# keep\nresources:\n- ../../base\n"
	root, outside := newRepo(t, map[string]string{
		"overlays/env/kustomization.yaml": content,
		"overlays/big/kustomization.yaml": "resources: []\n# " + strings.Repeat("x", maxFileSize) + "\n",
	})
	symlink(t, outside, filepath.Join(root, "overlays/escape"))
	path, data, err := ReadKustomization(root, "overlays/env")
	if err != nil || path != "overlays/env/kustomization.yaml" || string(data) != content {
		t.Errorf("ReadKustomization = %q, %q, %v", path, data, err)
	}
	if _, _, err := ReadKustomization(root, "overlays/escape"); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("ReadKustomization(escape) = %v, want ErrOutsideRoot", err)
	}
	_, _, err = ReadKustomization(root, "overlays/big")
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != "overlays/big/kustomization.yaml" || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadKustomization(big) = %v, want a FileError naming overlays/big/kustomization.yaml as too large", err)
	}
	if _, _, err = ReadKustomization(root, "overlays/none"); !errors.Is(err, ErrNoKustomization) || !errors.As(err, &fe) || fe.Path != "overlays/none" {
		t.Errorf("ReadKustomization(none) = %v, want ErrNoKustomization naming overlays/none", err)
	}
}

// TestReadOverlayImages reads the overrides through the confined directory.
func TestReadOverlayImages(t *testing.T) {
	t.Parallel()
	root, outside := newRepo(t, map[string]string{
		"overlays/env/kustomization.yaml": "resources:\n- ../../base\nimages:\n- name: web\n  newTag: \"1.2\"\n",
	})
	if err := os.WriteFile(filepath.Join(outside, "kustomization.yaml"), []byte("images:\n- name: web\n  newTag: stolen\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, outside, filepath.Join(root, "overlays/escape"))
	images, err := ReadOverlayImages(root, "overlays/env")
	if err != nil || len(images) != 1 || FormatImage(images[0]) != "web:1.2" {
		t.Errorf("ReadOverlayImages(env) = %v, %v; want [web:1.2]", images, err)
	}
	if images, err := ReadOverlayImages(root, "overlays/escape"); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("ReadOverlayImages(escape) = %v, %v; want ErrOutsideRoot", images, err)
	}
}

// TestRootRelative checks that only a FileError's path inside the root is rewritten.
func TestRootRelative(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "repo")
	tests := []struct {
		path, want string
	}{
		{filepath.Join(root, "overlays", "env", "kustomization.yaml"), "overlays/env/kustomization.yaml"},
		{filepath.Join(root, "..", "other", "kustomization.yaml"), filepath.Join(root, "..", "other", "kustomization.yaml")},
		{filepath.Join(root, "..repo", "k.yaml"), "..repo/k.yaml"},
		{"relative/k.yaml", "relative/k.yaml"},
	}
	for _, tt := range tests {
		fe := &FileError{Path: tt.path, Err: errors.New("bad")}
		err := RootRelative(root, errors.Join(errors.New("wrapped"), fe))
		if fe.Path != tt.want || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RootRelative(%s) left %q, want %q", tt.path, fe.Path, tt.want)
		}
	}
	if err := RootRelative(root, nil); err != nil {
		t.Errorf("RootRelative(nil) = %v", err)
	}
}
