package kustomize

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	baseKustomization = "resources:\n- deployment.yaml\n"
	baseDeployment    = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
      - name: web
        image: web
`
	configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"
)

// newRepo lays out a config repository in <tmp>/repo with a base, plus a directory
// <tmp>/outside (with a valid kustomization) that builds must never read.
func newRepo(t *testing.T, files map[string]string) (root, outside string) {
	t.Helper()
	tmp := t.TempDir()
	root, outside = filepath.Join(tmp, "repo"), filepath.Join(tmp, "outside")
	writeFiles(t, outside, map[string]string{
		"kustomization.yaml": "resources:\n- cm.yaml\n",
		"cm.yaml":            configMap,
	})
	all := map[string]string{
		"base/kustomization.yaml": baseKustomization,
		"base/deployment.yaml":    baseDeployment,
	}
	for k, v := range files {
		all[k] = v
	}
	writeFiles(t, root, all)
	return root, outside
}

func TestBuild(t *testing.T) {
	t.Parallel()
	root, _ := newRepo(t, map[string]string{
		"overlays/staging/kustomization.yaml": "namespace: web-staging\nresources:\n- ../../base\n- cm.yaml\n" +
			"images:\n- name: web\n  newName: reg.example.com/web\n  newTag: \"1.0\"\n",
		"overlays/staging/cm.yaml": configMap,
	})
	rm, err := Build(root, "overlays/staging")
	if err != nil {
		t.Fatal(err)
	}
	if rm.Size() != 2 {
		t.Errorf("rendered %d resources, want 2", rm.Size())
	}
	out, err := BuildYAML(root, filepath.Join(root, "overlays", "staging")) // absolute inside root
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"image: reg.example.com/web:1.0", "namespace: web-staging", "kind: ConfigMap"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBuildRefusesEscapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		overlay string // kustomization.yaml of overlays/env (ABS is replaced by the outside dir)
		setup   func(t *testing.T, root, outside string)
		wantIs  error
		wantMsg string
	}{
		{
			name:    "dot-dot out of the root",
			overlay: "resources:\n- ../../../outside\n",
			wantIs:  ErrOutsideRoot,
			wantMsg: `overlays/env/kustomization.yaml:2: resources entry "../../../outside"`,
		},
		{
			name:    "dot-dot out of the root through a base",
			overlay: "resources:\n- ../../evil\n",
			setup: func(t *testing.T, root, _ string) {
				writeFiles(t, root, map[string]string{"evil/kustomization.yaml": "resources:\n- ../../outside/cm.yaml\n"})
			},
			wantIs:  ErrOutsideRoot,
			wantMsg: "evil/kustomization.yaml:2:",
		},
		{
			name:    "absolute path outside the root",
			overlay: "resources:\n- ABS/cm.yaml\n",
			wantIs:  ErrOutsideRoot,
			wantMsg: "outside/cm.yaml",
		},
		{
			name:    "symlinked directory pointing outside",
			overlay: "resources:\n- linked\n",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, outside, filepath.Join(root, "overlays/env/linked"))
			},
			wantIs:  ErrOutsideRoot,
			wantMsg: "resolves to",
		},
		{
			name:    "symlinked file pointing outside",
			overlay: "resources:\n- cm.yaml\n",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, filepath.Join(outside, "cm.yaml"), filepath.Join(root, "overlays/env/cm.yaml"))
			},
			wantIs:  ErrOutsideRoot,
			wantMsg: `resources entry "cm.yaml"`,
		},
		{
			name:    "symlinked patch pointing outside",
			overlay: "resources:\n- ../../base\npatches:\n- path: p.yaml\n",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, filepath.Join(outside, "cm.yaml"), filepath.Join(root, "overlays/env/p.yaml"))
			},
			wantIs:  ErrOutsideRoot,
			wantMsg: `patches entry "p.yaml"`,
		},
		{
			name:    "config map generator reading a file outside",
			overlay: "configMapGenerator:\n- name: x\n  files:\n  - key=../../../outside/cm.yaml\n",
			wantIs:  ErrOutsideRoot,
			wantMsg: "configMapGenerator entry",
		},
		{
			name:    "symlinked kustomization file pointing outside",
			overlay: "",
			setup: func(t *testing.T, root, outside string) {
				if err := os.Remove(filepath.Join(root, "overlays/env/kustomization.yaml")); err != nil {
					t.Fatal(err)
				}
				symlink(t, filepath.Join(outside, "kustomization.yaml"), filepath.Join(root, "overlays/env/kustomization.yaml"))
			},
			wantIs: ErrOutsideRoot,
		},
		{
			name:    "remote base over https",
			overlay: "resources:\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v1.0.6\n",
			wantIs:  ErrRemoteResource,
			wantMsg: `overlays/env/kustomization.yaml:2: remote resources are not allowed: resources entry "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v1.0.6"`,
		},
		{
			name:    "remote base, github shorthand",
			overlay: "resources:\n- ../../base\n- github.com/org/repo//path\n",
			wantIs:  ErrRemoteResource,
			wantMsg: `:3: remote resources are not allowed: resources entry "github.com/org/repo//path"`,
		},
		{
			name:    "remote base, scp style, in the deprecated bases field",
			overlay: "bases:\n- git@gitlab.example.com:org/repo.git//base?ref=main\n",
			wantIs:  ErrRemoteResource,
		},
		{
			name:    "remote component",
			overlay: "resources:\n- ../../base\ncomponents:\n- ssh://git@example.com/org/repo//comp\n",
			wantIs:  ErrRemoteResource,
			wantMsg: "components entry",
		},
		{
			name:    "remote patch file",
			overlay: "resources:\n- ../../base\npatches:\n- path: https://example.com/patch.yaml\n",
			wantIs:  ErrRemoteResource,
			wantMsg: "patches entry",
		},
		{
			name:    "remote resource nested in a base",
			overlay: "resources:\n- ../../mid\n",
			setup: func(t *testing.T, root, _ string) {
				writeFiles(t, root, map[string]string{"mid/kustomization.yaml": "resources:\n- http://example.com/x.yaml\n"})
			},
			wantIs:  ErrRemoteResource,
			wantMsg: "mid/kustomization.yaml:2:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root, outside := newRepo(t, nil)
			writeFiles(t, root, map[string]string{
				"overlays/env/kustomization.yaml": strings.ReplaceAll(tt.overlay, "ABS", outside),
			})
			if tt.setup != nil {
				tt.setup(t, root, outside)
			}
			start := time.Now()
			_, err := Build(root, "overlays/env")
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if !strings.HasPrefix(err.Error(), "building overlay overlays/env: ") {
				t.Errorf("error %q does not start with the overlay", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Build took %v; did it try the network?", d)
			}
		})
	}
}

// TestConfinedFS checks the file system on its own, since kustomize's loader would
// already reject some of these paths before reaching it.
func TestConfinedFS(t *testing.T) {
	t.Parallel()
	root, outside := newRepo(t, nil)
	symlink(t, outside, filepath.Join(root, "out-dir"))
	symlink(t, filepath.Join(outside, "cm.yaml"), filepath.Join(root, "out-file"))
	symlink(t, filepath.Join(root, "base"), filepath.Join(root, "in-dir"))
	symlink(t, filepath.Join(outside, "missing"), filepath.Join(root, "dangling"))
	fsys, err := newConfinedFS(root)
	if err != nil {
		t.Fatal(err)
	}
	inside := []string{
		filepath.Join(root, "base/deployment.yaml"),
		filepath.Join(root, "in-dir/deployment.yaml"),
		filepath.Join(root, "base/../base/deployment.yaml"),
	}
	for _, p := range inside {
		if _, err := fsys.ReadFile(p); err != nil {
			t.Errorf("ReadFile(%s): %v", p, err)
		}
		if !fsys.Exists(p) {
			t.Errorf("Exists(%s) = false", p)
		}
	}
	escapes := []string{
		filepath.Join(outside, "cm.yaml"),
		filepath.Join(root, "../outside/cm.yaml"),
		filepath.Join(root, "out-dir/cm.yaml"),
		filepath.Join(root, "out-file"),
		filepath.Join(root, "out-dir/not-there/x.yaml"),
		"/etc/passwd",
	}
	for _, p := range escapes {
		if _, err := fsys.ReadFile(p); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("ReadFile(%s) = %v, want ErrOutsideRoot", p, err)
		}
		if _, err := fsys.Open(p); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("Open(%s) = %v, want ErrOutsideRoot", p, err)
		}
		if fsys.Exists(p) || fsys.IsDir(p) {
			t.Errorf("Exists/IsDir(%s) = true", p)
		}
		if _, _, err := fsys.CleanedAbs(p); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("CleanedAbs(%s) = %v, want ErrOutsideRoot", p, err)
		}
	}
	if _, err := fsys.ReadDir(filepath.Join(root, "out-dir")); !errors.Is(err, ErrOutsideRoot) {
		t.Errorf("ReadDir(out-dir) = %v", err)
	}
	if _, err := fsys.ReadFile(filepath.Join(root, "dangling")); err == nil || !strings.Contains(err.Error(), "symlink to nowhere") {
		t.Errorf("ReadFile(dangling) = %v", err)
	}
	if m, err := fsys.Glob(filepath.Join(root, "*")); err != nil || len(m) != 2 { // base, in-dir
		t.Errorf("Glob = %v, %v; want base and in-dir only", m, err)
	}
	if err := fsys.WriteFile(filepath.Join(root, "x"), nil); err == nil {
		t.Errorf("WriteFile succeeded on the read-only build file system")
	}
	writeFiles(t, root, map[string]string{"walk/a.yaml": configMap})
	symlink(t, outside, filepath.Join(root, "walk/z"))
	var walked []string
	err = fsys.Walk(filepath.Join(root, "walk"), func(p string, _ os.FileInfo, err error) error {
		walked = append(walked, filepath.Base(p))
		return err
	})
	if !errors.Is(err, ErrOutsideRoot) || strings.Join(walked, ",") != "walk,a.yaml" {
		t.Errorf("Walk over a tree with an escaping symlink = %v after %v, want ErrOutsideRoot after walk,a.yaml", err, walked)
	}
}

func TestBuildRefusesPluginsAndHelm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		wantMsg string
	}{
		{
			name: "generator plugin config",
			files: map[string]string{
				"overlays/env/kustomization.yaml": "resources:\n- ../../base\ngenerators:\n- gen.yaml\n",
				"overlays/env/gen.yaml":           "apiVersion: someteam.example.com/v1\nkind: ChartInflator\nmetadata:\n  name: x\n",
			},
			wantMsg: "external plugins disabled",
		},
		{
			name: "exec KRM function transformer",
			files: map[string]string{
				"overlays/env/kustomization.yaml": "resources:\n- ../../base\ntransformers:\n- fn.yaml\n",
				"overlays/env/fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: x\n  annotations:\n" +
					"    config.kubernetes.io/function: |\n      exec:\n        path: ./fn.sh\n",
			},
			wantMsg: "external plugins disabled",
		},
		{
			name: "container KRM function generator",
			files: map[string]string{
				"overlays/env/kustomization.yaml": "generators:\n- fn.yaml\n",
				"overlays/env/fn.yaml": "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: x\n  annotations:\n" +
					"    config.kubernetes.io/function: |\n      container:\n        image: example.com/fn:v1\n",
			},
			wantMsg: "external plugins disabled",
		},
		{
			name: "helm chart",
			files: map[string]string{
				"overlays/env/kustomization.yaml": "helmCharts:\n- name: x\n  repo: https://charts.example.com\n  version: 1.0.0\n",
			},
			wantMsg: "helm charts are not supported",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root, _ := newRepo(t, tt.files)
			_, err := Build(root, "overlays/env")
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Build = %v, want an error containing %q", err, tt.wantMsg)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		overlay string
		wantIs  error
		wantMsg string
	}{
		{"no overlay directory", nil, "overlays/none", ErrNoKustomization, "building overlay overlays/none: overlays/none: no kustomization file"},
		{"overlay outside the root", nil, "../outside", ErrOutsideRoot, "building overlay ../outside:"},
		{"invalid kustomization", map[string]string{"overlays/env/kustomization.yaml": "resources: {a: b}\n"}, "overlays/env", nil, "overlays/env/kustomization.yaml: invalid Kustomization"},
		{"unknown field", map[string]string{"overlays/env/kustomization.yaml": "resourcez: []\n"}, "overlays/env", nil, "unknown field"},
		{"missing resource", map[string]string{"overlays/env/kustomization.yaml": "resources:\n- nope.yaml\n"}, "overlays/env", nil, "nope.yaml"},
		{"malformed resource", map[string]string{
			"overlays/env/kustomization.yaml": "resources:\n- bad.yaml\n",
			"overlays/env/bad.yaml":           "kind: [\n",
		}, "overlays/env", nil, "bad.yaml"},
		{"resource without kind", map[string]string{
			"overlays/env/kustomization.yaml": "resources:\n- bad.yaml\n",
			"overlays/env/bad.yaml":           "apiVersion: v1\nmetadata:\n  name: x\n",
		}, "overlays/env", nil, "kind"},
		{"containers that are not objects", map[string]string{
			"overlays/env/kustomization.yaml": "resources:\n- d.yaml\nimages:\n- name: web\n  newTag: v1\n",
			"overlays/env/d.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n" +
				"spec:\n  template:\n    spec:\n      containers:\n      - null\n      - image: [web]\n",
		}, "overlays/env", nil, "expected ScalarNode but got SequenceNode"},
		{"patch that is not an object", map[string]string{
			"overlays/env/kustomization.yaml": "resources:\n- ../../base\npatches:\n- patch: \"- 1\"\n  target: {kind: Deployment}\n",
		}, "overlays/env", nil, "unable to parse SM or JSON patch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root, _ := newRepo(t, tt.files)
			_, err := Build(root, tt.overlay)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

// TestGuardRecoversPanics: a panic inside kustomize comes back as an error, and the
// build lock is released so later builds still run.
func TestGuardRecoversPanics(t *testing.T) {
	_, err := guarded(func() (struct{}, error) { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "kustomize panicked: boom") {
		t.Fatalf("guarded = %v", err)
	}
	root, _ := newRepo(t, map[string]string{"overlays/env/kustomization.yaml": "resources:\n- ../../base\n"})
	done := make(chan error, 1)
	go func() { _, err := Build(root, "overlays/env"); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Build blocked: the lock was not released after a panic")
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
