package kustomize

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// workloads holds an image at every place kustomize's image transformer looks: pod
// containers and init containers, pod templates, a CronJob's job template (found only by
// the legacy filter's any-depth walk), image volumes, a custom resource with containers
// deep inside, and a CRD (which the transformer skips).
const workloads = `apiVersion: v1
kind: Pod
metadata:
  name: pod
spec:
  initContainers:
  - name: init
    image: busybox:1.36
  containers:
  - name: web
    image: web
  - name: sidecar
    image: reg.example.com/tools/sidecar:1.0@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  volumes:
  - name: data
    image:
      reference: reg.example.com/data:v1
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: web:old
      - name: api
        image: localhost:5000/api
      volumes:
      - name: data
        image:
          reference: reg.example.com/data
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dotted
spec:
  template:
    spec:
      containers:
      - name: dotted
        image: regXexample.com/web
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: job
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: job
            image: web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
          volumes:
          - name: data
            image:
              reference: reg.example.com/data:v1
---
apiVersion: example.com/v1
kind: Thing
metadata:
  name: thing
spec:
  deep:
    list:
    - containers:
      - image: web:1
      initContainers:
      - image: nginx
    image: web
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.example.com
spec:
  group: example.com
  names:
    kind: Thing
    plural: things
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
        properties:
          image:
            type: string
            default: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config
data:
  image: web
`

// TestFastImagesMatchesKustomize builds overlays both ways, kustomize's image transformer
// on the whole build and deliver's fast path, and requires the same output; it also
// requires the fast path to have been taken where it applies, and not where it does not.
func TestFastImagesMatchesKustomize(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"base/kustomization.yaml": "resources:\n- workloads.yaml\n",
		"base/workloads.yaml":     workloads,
	}
	tests := []struct {
		name    string
		overlay string // overlays/env/kustomization.yaml
		extra   map[string]string
		notFast bool // the fast path must refuse it
	}{
		{name: "one tag", overlay: "images:\n- name: web\n  newTag: v2\n"},
		{name: "name tag and digest", overlay: "images:\n- name: web\n  newName: reg.example.com/web\n  newTag: v2\n  digest: sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\n"},
		{name: "digest only", overlay: "images:\n- name: reg.example.com/tools/sidecar\n  digest: sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\n"},
		{name: "chained renames", overlay: "images:\n- name: web\n  newName: web2\n- name: web2\n  newName: web3\n  newTag: final\n"},
		{name: "later entry sees earlier rename", overlay: "images:\n- name: api\n  newName: localhost:5000/api\n- name: localhost:5000/api\n  newTag: \"7\"\n"},
		{name: "regular expression name", overlay: "images:\n- name: we.*\n  newTag: re\n"},
		{name: "dot matches any character", overlay: "images:\n- name: reg.example.com/web\n  newTag: dot\n"},
		{name: "invalid regular expression", overlay: "images:\n- name: \"web[\"\n  newTag: x\n"},
		{name: "tag suffix", overlay: "images:\n- name: web\n  tagSuffix: -debug\n"},
		{name: "image volumes", overlay: "images:\n- name: reg.example.com/data\n  newTag: v2\n"},
		{name: "registry with port", overlay: "images:\n- name: localhost:5000/api\n  newName: other:6000/api\n  newTag: \"1.0\"\n"},
		{name: "matches nothing", overlay: "images:\n- name: nothing-here\n  newTag: v9\n"},
		{name: "empty name", overlay: "images:\n- name: \"\"\n  newTag: v9\n"},
		{name: "many entries", overlay: manyImages(200)},
		{name: "legacy imageTags", overlay: "imageTags:\n- name: web\n  newTag: legacy\nimages:\n- name: nginx\n  newTag: \"1.27\"\n"},
		{name: "with other transformers", overlay: "namePrefix: p-\nnamespace: ns\ncommonLabels:\n  a: b\nreplicas:\n- name: web\n  count: 3\npatches:\n- patch: |\n    - op: add\n      path: /spec/template/spec/containers/-\n      value: {name: added, image: web}\n  target:\n    kind: Deployment\nimages:\n- name: web\n  newTag: patched\n"},
		{name: "comments and anchors", overlay: "# top\nimages: &imgs # c\n- name: web # c\n  newTag: &t v3\n- name: nginx\n  newTag: *t\n"},
		{name: "component", overlay: "components:\n- ../../comp\nimages:\n- name: web\n  newTag: comp\n",
			extra: map[string]string{"comp/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nimages:\n- name: nginx\n  newName: mirror/nginx\n"}},

		// kustomize fails on these whatever the entry's name: so must the fast path.
		{name: "scalar where a field path expects a mapping", overlay: "- thing.yaml\nimages:\n- name: nothing-here\n  newTag: v2\n",
			extra: map[string]string{"overlays/env/thing.yaml": "apiVersion: example.com/v1\nkind: Other\nmetadata:\n  name: odd\nspec:\n  template: a string template\n"}},
		{name: "container that is not a mapping", overlay: "- thing.yaml\nimages:\n- name: web\n  newTag: v2\n- name: nothing-here\n  newTag: v3\n",
			extra: map[string]string{"overlays/env/thing.yaml": "apiVersion: example.com/v1\nkind: Other\nmetadata:\n  name: odd\nspec:\n  containers:\n  - nginx\n"}},

		{name: "a generator reading the kustomization is not fast", notFast: true, overlay: "configMapGenerator:\n- name: src\n  files:\n  - kustomization.yaml\nimages:\n- name: web\n  newTag: v2\n"},
		{name: "replacements are not fast", notFast: true, overlay: "images:\n- name: web\n  newTag: v2\nreplacements:\n- source:\n    kind: ConfigMap\n    name: config\n    fieldPath: data.image\n  targets:\n  - select:\n      kind: Pod\n    fieldPaths:\n    - spec.containers.0.image\n"},
		{name: "vars are not fast", notFast: true, overlay: "images:\n- name: web\n  newTag: v2\nvars:\n- name: IMG\n  objref:\n    kind: Pod\n    name: pod\n    apiVersion: v1\n  fieldref:\n    fieldpath: spec.containers[0].image\n"},
		{name: "configurations are not fast", notFast: true, overlay: "images:\n- name: web\n  newTag: v2\nconfigurations:\n- images.yaml\n",
			extra: map[string]string{"overlays/env/images.yaml": "images:\n- path: spec/deep/image\n  kind: Thing\n"}},
		{name: "buildMetadata is not fast", notFast: true, overlay: "images:\n- name: web\n  newTag: v2\nbuildMetadata: [transformerAnnotations]\n"},
		{name: "no images is not fast", notFast: true, overlay: "namespace: x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			files := map[string]string{"overlays/env/kustomization.yaml": "resources:\n- ../../base\n" + tt.overlay}
			for k, v := range base {
				files[k] = v
			}
			for k, v := range tt.extra {
				files[k] = v
			}
			root := t.TempDir()
			writeFiles(t, root, files)
			dir := filepath.Join(root, "overlays", "env")

			want, wantErr := plainBuild(dir)
			// A Builder's builds of the same files, the second from the first's memo (which
			// skips resources no entry can match only if the first's filters passed on every
			// resource), render or fail as kustomize does.
			var b Builder
			for i := range 2 {
				rm, err := b.Build(root, "overlays/env")
				if wantErr != nil {
					if err == nil {
						t.Fatalf("kustomize fails (%v) but the Builder's build %d does not", wantErr, i+1)
					}
					continue
				}
				if err != nil {
					t.Fatalf("the Builder's build %d: %v", i+1, err)
				}
				got, err := rm.AsYaml()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("the Builder's build %d renders differently\n--- kustomize\n%s\n--- Builder\n%s", i+1, want, got)
				}
			}
			fsys, err := newConfinedFS(root)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := checkReferences(fsys, dir)
			if err != nil {
				t.Fatal(err)
			}
			rm, err := (*Builder)(nil).fastImages(fsys, dir, plan, krustyRun(dir))
			if tt.notFast {
				if !errors.Is(err, errNotFast) {
					t.Fatalf("fastImages = %v, want errNotFast", err)
				}
			} else {
				if wantErr != nil {
					if err == nil {
						t.Fatalf("kustomize fails (%v) but the fast path does not", wantErr)
					}
					return
				}
				if err != nil {
					t.Fatalf("fastImages: %v", err)
				}
				got, err := rm.AsYaml()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("the fast path renders differently\n--- kustomize\n%s\n--- fast\n%s", want, got)
				}
			}
			// And Build, whichever path it takes, renders what kustomize does.
			out, err := BuildYAML(root, "overlays/env")
			if wantErr != nil {
				if err == nil {
					t.Fatalf("kustomize fails (%v) but Build does not", wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if string(out) != want {
				t.Fatalf("Build renders differently\n--- kustomize\n%s\n--- Build\n%s", want, out)
			}
		})
	}
}

// TestFastImagesOnExamples compares both paths on the example config repository, with an
// image pinned the way deliver pins it.
func TestFastImagesOnExamples(t *testing.T) {
	t.Parallel()
	src := filepath.Join("..", "examples", "config-repo")
	for _, env := range []string{"staging", "production"} {
		t.Run(env, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.CopyFS(root, os.DirFS(src)); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "overlays", env)
			_, imgs, err := ReadImages(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(imgs) == 0 {
				t.Fatalf("%s has no images: the comparison would not test the fast path", env)
			}
			imgs[0].NewTag, imgs[0].Digest = "9.9.9", "sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
			if _, err := SetImages(dir, imgs[:1]); err != nil {
				t.Fatal(err)
			}
			want, err := plainBuild(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := BuildYAML(root, filepath.Join("overlays", env))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Fatalf("Build renders differently\n--- kustomize\n%s\n--- Build\n%s", want, got)
			}
			if !strings.Contains(want, "9.9.9@sha256:eeee") {
				t.Fatalf("the pinned image is not rendered:\n%s", want)
			}
		})
	}
}

// TestImageFieldSpecsAreKustomizes checks imageFieldSpecsYAML against the default image
// field specs of the kustomize module deliver is built with.
func TestImageFieldSpecsAreKustomizes(t *testing.T) {
	t.Parallel()
	ours, err := parseImageFieldSpecs()
	if err != nil {
		t.Fatal(err)
	}
	theirs := kustomizeDefaultImageSpecs(t)
	if fmt.Sprint(ours) != fmt.Sprint(theirs) {
		t.Fatalf("imageFieldSpecsYAML is out of date with kustomize:\nours   %v\ntheirs %v", ours, theirs)
	}
}

func TestMayMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value, name string
		want        bool
	}{
		{"web", "web", true},
		{"web:1", "web", true},
		{"webx", "web", true}, // a necessary condition only: the regexp decides
		{"we", "web", false},
		{"api", "web", false},
		{"regXexample.com/web", "reg.example.com/web", true},
		{"reg\nexample.com/web", "reg.example.com/web", false},
		{"anything", "we.*", true},
		{"anything", "web[", true},
		{"wéb", "w.b", true},
		{"", "", true},
		{"x", "", true},
		{unknownValue, "web", true},
	}
	for _, tt := range tests {
		if got := mayMatch(tt.value, tt.name); got != tt.want {
			t.Errorf("mayMatch(%q, %q) = %v, want %v", tt.value, tt.name, got, tt.want)
		}
	}
}

// plainBuild is `kustomize build dir` on the disk, with kustomize's own image transformer.
func plainBuild(dir string) (string, error) {
	rm, err := guarded(func() (resmap.ResMap, error) {
		opts := krusty.MakeDefaultOptions()
		opts.PluginConfig = types.DisabledPluginConfig()
		return krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	})
	if err != nil {
		return "", err
	}
	out, err := rm.AsYaml()
	return string(out), err
}

func manyImages(n int) string {
	var b strings.Builder
	b.WriteString("images:\n")
	for i := range n {
		fmt.Fprintf(&b, "- name: svc-%d\n  newTag: v%d\n", i, i)
	}
	b.WriteString("- name: web\n  newTag: last\n")
	return b.String()
}

// kustomizeDefaultImageSpecs reads kustomize's default image field specs from the source
// of the kustomize module this package is built with (they live in an internal package).
func kustomizeDefaultImageSpecs(t *testing.T) types.FsSlice {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kustomize/api").Output()
	if err != nil {
		t.Fatalf("locating the kustomize module: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "konfig", "builtinpluginconsts", "images.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "`")
	body, _, ok2 := strings.Cut(rest, "`")
	if !ok || !ok2 {
		t.Fatal("kustomize's images.go holds no raw string: its layout changed")
	}
	var c struct {
		Images types.FsSlice `json:"images"`
	}
	if err := sigsyaml.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Images) == 0 {
		t.Fatal("kustomize's defaults hold no image field specs: its layout changed")
	}
	return c.Images
}
