package kustomize

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// renderedBase is a base whose objects use images at every kind of field the image
// transformer visits: a Deployment's container and init container, a CronJob's container
// and a Pod's image volume.
var renderedBase = map[string]string{
	"base/kustomization.yaml": "resources:\n- app.yaml\n",
	"base/app.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: migrate:1
      containers:
      - name: web
        image: web
      - name: api
        image: registry.example.com/team/api:1.0
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: report
            image: report@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
---
apiVersion: v1
kind: Pod
metadata:
  name: data
spec:
  containers:
  - name: c
    image: busybox:1
  volumes:
  - name: models
    image:
      reference: models:v1
`,
}

func TestCheckRendered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		overlay string
		names   []string
		want    []string // substrings of the error; none means no error
	}{
		{
			name:    "every entry renders",
			overlay: "resources: [../../base]\nnamespace: ns\nimages:\n- name: web\n  newName: reg.example.com/web\n  newTag: v2\n  digest: " + digestA + "\n- name: models\n  newTag: v2\n- name: report\n  digest: " + digestB + "\n",
			names:   []string{"web", "models", "report"},
		},
		{
			name:    "a new name only keeps the objects' tag",
			overlay: "resources: [../../base]\nimages:\n- name: migrate\n  newName: reg.example.com/migrate\n",
			names:   []string{"migrate"},
		},
		{
			name:    "names without an entry are not checked",
			overlay: "resources: [../../base]\nimages:\n- name: nosuch\n  newTag: v1\n",
			names:   []string{"web"},
		},
		{
			name:    "a name nothing uses",
			overlay: "resources: [../../base]\nnamespace: ns\nimages:\n- name: web\n  newTag: v2\n- name: wbe\n  newName: reg.example.com/team/web\n  newTag: v2\n",
			names:   []string{"web", "wbe"},
			want: []string{`no object of overlay overlays/env uses image "wbe"`,
				"the images its objects use are: busybox, migrate, models, registry.example.com/team/api, report, web", `(closest: "web")`},
		},
		{
			name:    "a name nothing uses, behind another entry with the same reference",
			overlay: "resources: [../../base]\nimages:\n- name: web\n  newName: reg.example.com/web\n  newTag: v2\n- name: wbe\n  newName: reg.example.com/web\n  newTag: v2\n",
			names:   []string{"web", "wbe"},
			want:    []string{`uses image "wbe"`, `(closest: "web")`},
		},
		{
			name:    "two names for one reference, both used",
			overlay: "resources: [../../base]\nimages:\n- name: web\n  newName: reg.example.com/web\n  newTag: v2\n- name: migrate\n  newName: reg.example.com/web\n  newTag: v2\n",
			names:   []string{"web", "migrate"},
		},
		{
			name:    "the closest by the last path component",
			overlay: "resources: [../../base]\nimages:\n- name: reg.example.com/team/api\n  newTag: v2\n",
			names:   []string{"reg.example.com/team/api"},
			want:    []string{`uses image "reg.example.com/team/api"`, `(closest: "registry.example.com/team/api")`},
		},
		{
			name: "a replacement overrides what the entry set",
			overlay: `resources: [../../base, pin.yaml]
namespace: ns
images:
- name: web
  newTag: v2
replacements:
- source: {kind: ConfigMap, name: pin, fieldPath: data.image}
  targets:
  - select: {kind: Deployment, name: app}
    fieldPaths:
    - spec.template.spec.containers.[name=web].image
`,
			names: []string{"web"},
			want:  []string{`image "web": the overlay sets web:v2, but its objects render web:pinned at Deployment/ns/app spec.template.spec.containers[0].image`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			writeFiles(t, root, renderedBase)
			writeFiles(t, root, map[string]string{
				"overlays/env/kustomization.yaml": tt.overlay,
				"overlays/env/pin.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pin\ndata:\n  image: web:pinned\n",
			})
			rm, err := Build(root, "overlays/env")
			if err != nil {
				t.Fatal(err)
			}
			err = CheckRendered(root, "overlays/env", rm, tt.names)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("CheckRendered: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrImageNotRendered) {
				t.Fatalf("CheckRendered = %v, want ErrImageNotRendered", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "ConfigMap") {
				t.Errorf("error counts a ConfigMap's data as an image:\n%v", err)
			}
		})
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	names := []string{"api", "reg.example.com/team/web", "worker"}
	for in, want := range map[string]string{
		"wbe":                           "reg.example.com/team/web",
		"apu":                           "api",
		"team/worker":                   "worker",
		"registry.example.com/team/web": "reg.example.com/team/web",
	} {
		if got := closest(in, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
	if got := closest("web", nil); got != "" {
		t.Errorf("closest without candidates = %q", got)
	}
}

// BenchmarkCheckRendered is the check every edit pays once it has built the overlay: an
// overlay of 1 000 objects (20 Deployments, 980 ConfigMaps) with 20 images, all checked.
func BenchmarkCheckRendered(b *testing.B) {
	root := b.TempDir()
	files := map[string]string{}
	var res, imgs, names []string
	for i := 0; i < 20; i++ {
		n := fmt.Sprintf("svc-%02d", i)
		names = append(names, n)
		res = append(res, "- "+n+".yaml")
		files["base/"+n+".yaml"] = fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %[1]s\nspec:\n  template:\n    spec:\n      containers:\n      - name: %[1]s\n        image: %[1]s\n", n)
		imgs = append(imgs, fmt.Sprintf("- name: %s\n  newName: reg.example.com/%s\n  newTag: v1\n  digest: %s", n, n, digestA))
	}
	var cms strings.Builder
	for i := 0; i < 980; i++ {
		fmt.Fprintf(&cms, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%03d\ndata:\n  k: v\n", i)
	}
	files["base/cms.yaml"] = cms.String()
	res = append(res, "- cms.yaml")
	files["base/kustomization.yaml"] = "resources:\n" + strings.Join(res, "\n") + "\n"
	files["overlays/env/kustomization.yaml"] = "resources: [../../base]\nimages:\n" + strings.Join(imgs, "\n") + "\n"
	writeFiles(b, root, files)
	rm, err := Build(root, "overlays/env")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := CheckRendered(root, "overlays/env", rm, names); err != nil {
			b.Fatal(err)
		}
	}
}
