package kustomize

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckDuplicateKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		wantLine   int
		wantErr    string // empty: accepted
	}{
		{"unique keys", "namespace: a\nresources:\n- x\n", 0, ""},
		{"top-level duplicate", "namespace: a\nresources: []\nnamespace: b\n", 3, "duplicate key namespace (first at line 1)"},
		{"nested duplicate", "patches:\n- path: p.yaml\n  target:\n    kind: A\n    kind: B\n", 5, "duplicate key patches[0].target.kind (first at line 4)"},
		{"same key in two entries", "images:\n- name: a\n- name: b\n", 0, ""},
		{"top-level keys differing in case", "namespace: a\nresources: []\nNamespace: b\n", 3, "duplicate key Namespace (first at line 1, as namespace: kustomize reads these keys regardless of case)"},
		{"nested keys differing in case are distinct", "commonLabels:\n  app: a\n  App: b\n", 0, ""},
		{"merge keys may repeat", "a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: *a\n  <<: *b\n", 0, ""},
		{"flow mapping", "labels: {a: 1, a: 2}\n", 1, "duplicate key labels.a"},
		{"second document", "a: 1\n---\nb: 1\nb: 2\n", 4, "duplicate key b"},
		{"not YAML is left to the parser", "a: [\n", 0, ""},
		{"alias bomb is not expanded", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkDuplicateKeys([]byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkDuplicateKeys = %v, want nil", err)
				}
				return
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("checkDuplicateKeys = %v, want a *FileError", err)
			}
			if fe.Line != tt.wantLine || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkDuplicateKeys = line %d %q, want line %d containing %q", fe.Line, err, tt.wantLine, tt.wantErr)
			}
		})
	}
}

func TestBuildRefusesDuplicateKeys(t *testing.T) {
	t.Parallel()
	root, _ := newRepo(t, map[string]string{
		"overlays/staging/kustomization.yaml": "namespace: web-staging\nresources:\n- ../../base\nnamespace: other\n",
	})
	_, err := Build(root, "overlays/staging")
	want := "building overlay overlays/staging: overlays/staging/kustomization.yaml:4: duplicate key namespace (first at line 1)"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Build = %v, want an error starting %q", err, want)
	}
	// A base reached through resources is checked too.
	root, _ = newRepo(t, map[string]string{
		"base/kustomization.yaml":             "resources:\n- deployment.yaml\nresources:\n- other.yaml\n",
		"overlays/staging/kustomization.yaml": "resources:\n- ../../base\n",
	})
	if _, err := Build(root, "overlays/staging"); err == nil || !strings.Contains(err.Error(), "base/kustomization.yaml:3: duplicate key resources") {
		t.Fatalf("Build = %v, want the base's duplicate key named", err)
	}
}
