package kustomize

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestEvalSymlinksAsTheLibrary: confinedFS's evalSymlinks, which resolves a path from its
// parents' remembered resolutions, answers as filepath.EvalSymlinks does for every kind of
// path a repository can hold, asked in any order, twice.
func TestEvalSymlinksAsTheLibrary(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	outside := t.TempDir()
	for _, d := range []string{"base", "overlays/prod", "deep/a/b"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"base/deployment.yaml", "overlays/prod/kustomization.yaml", "deep/a/b/file.yaml"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("x: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"overlays/staging":        "prod",                      // a relative link to a directory
		"overlays/abs":            filepath.Join(root, "base"), // an absolute one
		"overlays/chain":          "staging",                   // a link to a link
		"overlays/out":            outside,                     // leaving the root
		"overlays/dangling":       "nowhere",
		"overlays/up":             "../deep/a",
		"base/link.yaml":          "deployment.yaml",
		"deep/a/b/loop1":          "loop2",
		"deep/a/b/loop2":          "loop1",
		"deep/a/b/to-file-parent": "../../../base/deployment.yaml",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{
		"", "base", "base/deployment.yaml", "base/link.yaml", "base/missing.yaml", "base/missing/deeper.yaml",
		"overlays/prod/kustomization.yaml", "overlays/staging", "overlays/staging/kustomization.yaml",
		"overlays/abs/deployment.yaml", "overlays/chain/kustomization.yaml", "overlays/out/secret.yaml",
		"overlays/out/missing.yaml", "overlays/dangling", "overlays/dangling/x.yaml", "overlays/up/b/file.yaml",
		"base/deployment.yaml/not-a-dir", "deep/a/b/loop1", "deep/a/b/loop1/x", "deep/a/b/to-file-parent",
		"deep/a/b/../b/file.yaml",
	}
	c, err := newConfinedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		for i := range paths {
			// Forwards in the first round, backwards in the second: parents before and after.
			p := paths[i]
			if round == 1 {
				p = paths[len(paths)-1-i]
			}
			abs := filepath.Clean(filepath.Join(root, p))
			want, wantErr := filepath.EvalSymlinks(abs)
			got, err := c.evalSymlinks(abs)
			if got != want || (err == nil) != (wantErr == nil) || errors.Is(err, fs.ErrNotExist) != errors.Is(wantErr, fs.ErrNotExist) {
				t.Errorf("round %d, %s: evalSymlinks = %q, %v; filepath.EvalSymlinks = %q, %v", round+1, p, got, err, want, wantErr)
			}
		}
	}
}
