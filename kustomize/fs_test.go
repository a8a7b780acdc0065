package kustomize

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
		"deep/a/b/uplink":         "../../../base", // reached through overlays/up, a ".." that text would resolve elsewhere
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
		"deep/a/b/to-file-parent/x", "overlays/up/b/uplink/deployment.yaml",
	}
	c, err := newConfinedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	c.forOneBuild()
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

// TestConfinedReadsWhatItResolved: a read goes to the path the confinement resolved, so
// neither a ".." after a symlink out of the repo (cleaned away as text by the resolution,
// followed after the link by the disk) nor a directory swapped for such a symlink after it
// was resolved (the resolution is remembered for the build) reads outside the repo.
func TestConfinedReadsWhatItResolved(t *testing.T) {
	t.Parallel()
	root, outside := t.TempDir(), t.TempDir()
	write := func(dir, rel, content string) {
		t.Helper()
		full := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(outside, "secret.yaml", "outside: true\n")
	write(outside, "x/y/.keep", "")
	write(outside, "d/x.yaml", "outside: true\n")
	write(root, "secret.yaml", "inside: true\n")
	write(root, "d/x.yaml", "inside: true\n")
	if err := os.MkdirAll(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x", "y"), filepath.Join(root, "a", "out")); err != nil {
		t.Fatal(err)
	}
	c, err := newConfinedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	reads := func(p string) string {
		t.Helper()
		data, err := c.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(data)
	}
	// The disk alone would read outside/secret.yaml: a/out/.. is outside/x. (Not
	// filepath.Join, which would clean the ".." away before the file system sees it.)
	if data, err := c.ReadFile(root + "/a/out/../../secret.yaml"); err != nil || string(data) != "inside: true\n" {
		t.Errorf(`ReadFile("a/out/../../secret.yaml") = %q, %v; want the repo's secret.yaml`, data, err)
	}
	if got := reads("d/x.yaml"); got != "inside: true\n" {
		t.Fatalf(`ReadFile("d/x.yaml") = %q`, got)
	}
	// d becomes a symlink out of the repo after the confinedFS resolved it.
	if err := os.RemoveAll(filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "d"), filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	// A confinedFS that is not for one build resolves every path again: d is refused now.
	if got := reads("d/x.yaml"); !strings.Contains(got, ErrOutsideRoot.Error()) {
		t.Errorf(`ReadFile("d/x.yaml") = %q after d became a symlink out of the repo, want %v`, got, ErrOutsideRoot)
	}
	if c.IsDir(filepath.Join(root, "d")) || c.Exists(filepath.Join(root, "d", "x.yaml")) {
		t.Error("IsDir(d) or Exists(d/x.yaml) after d became a symlink out of the repo")
	}
}
