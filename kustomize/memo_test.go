package kustomize

import (
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

// TestBuilderReusesOnlyWhatHolds renders an overlay with a Builder after each of a series of
// changes to the repo and compares every output with kustomize's own build of the same files.
// The remembered build must be reused when only images: changed, and not after any other
// change to what the build reads.
func TestBuilderReusesOnlyWhatHolds(t *testing.T) {
	t.Parallel()
	root, _ := newRepo(t, map[string]string{
		"overlays/prod/kustomization.yaml": "namespace: prod\nresources:\n- ../../base\n- cm.yaml\n" +
			"images:\n- name: web\n  newTag: \"1.0\"\n- name: other\n  newTag: \"2.0\"\n",
		"overlays/prod/cm.yaml": configMap,
	})
	overlay := filepath.Join(root, "overlays", "prod")
	setImage := func(t *testing.T, tag string) {
		t.Helper()
		if _, err := SetImages(overlay, []types.Image{{Name: "web", NewTag: tag}}); err != nil {
			t.Fatal(err)
		}
	}
	write := func(t *testing.T, rel, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(rel)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b Builder
	for _, step := range []struct {
		name   string
		change func(t *testing.T)
		reused bool
	}{
		{"first build", func(*testing.T) {}, false},
		{"same files", func(*testing.T) {}, true},
		{"a tag changed", func(t *testing.T) { setImage(t, "1.1") }, true},
		{"another tag changed", func(t *testing.T) { setImage(t, "1.2") }, true},
		{"a base file changed", func(t *testing.T) {
			write(t, "base/deployment.yaml", baseDeployment+"  # a comment\n")
		}, false},
		{"a tag changed after that", func(t *testing.T) { setImage(t, "1.3") }, true},
		{"a resource of the overlay changed", func(t *testing.T) {
			write(t, "overlays/prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: c\n")
		}, false},
		{"the overlay's other fields changed", func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(overlay, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			write(t, "overlays/prod/kustomization.yaml", "namePrefix: p-\n"+string(data))
		}, false},
		{"a file the base lists appeared", func(t *testing.T) {
			write(t, "base/kustomization.yaml", baseKustomization+"- extra.yaml\n")
			write(t, "base/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n")
		}, false},
		{"the file's content changed alone", func(t *testing.T) {
			write(t, "base/extra.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra2\n")
		}, false},
		{"the last tag change", func(t *testing.T) { setImage(t, "1.4") }, true},
	} {
		step.change(t)
		before := b.last
		rm, err := b.Build(root, "overlays/prod")
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := rm.AsYaml()
		if err != nil {
			t.Fatal(err)
		}
		want, err := plainBuild(overlay)
		if err != nil {
			t.Fatalf("%s: kustomize: %v", step.name, err)
		}
		if string(got) != want {
			t.Errorf("%s: the Builder's output differs from kustomize's:\n%s", step.name, lineDiff(want, string(got)))
		}
		if reused := before != nil && b.last == before; reused != step.reused {
			t.Errorf("%s: remembered build reused = %v, want %v", step.name, reused, step.reused)
		}
		if b.last == nil {
			t.Fatalf("%s: nothing remembered", step.name)
		}
		// What a caller gets is its own: changing it does not reach the remembered build.
		for _, r := range rm.Resources() {
			r.SetNamespace("changed-by-the-caller")
		}
	}
}

// TestBuilderSkipsWhatItCannotReplay: an overlay off the fast path is built plainly and not
// remembered, and a nil Builder builds as Build does.
func TestBuilderSkipsWhatItCannotReplay(t *testing.T) {
	t.Parallel()
	root, _ := newRepo(t, map[string]string{
		"overlays/a/kustomization.yaml": "resources:\n- ../../base\n",
		"overlays/b/kustomization.yaml": "resources:\n- ../../base\nimages:\n- name: web\n  newTag: \"3\"\n" +
			"replacements:\n- source: {kind: Deployment, fieldPath: metadata.name}\n  targets:\n  - select: {kind: Deployment}\n    fieldPaths: [metadata.labels.x]\n    options: {create: true}\n",
	})
	var b Builder
	for _, o := range []string{"overlays/a", "overlays/b"} {
		if _, err := b.Build(root, o); err != nil {
			t.Fatalf("%s: %v", o, err)
		}
		if b.last != nil {
			t.Errorf("%s: remembered a build off the fast path", o)
		}
	}
	var nb *Builder
	if _, err := nb.Build(root, "overlays/b"); err != nil {
		t.Fatal(err)
	}
}
