package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
)

// Fixture describes a generated GitOps config repo: a base with one Deployment per service
// (plus optional Services, ConfigMaps and Secrets) and one overlay, overlays/<Env>, that sets
// the namespace and pins every service's image.
type Fixture struct {
	Services []string // image names as the manifests use them, also the Deployment names
	Env, NS  string
	Registry string // registry host the overlay's images point at
	Tag      string // initial tag of every image
	// Canonical writes the overlay as `kustomize edit` formats it (lists at column 0, tags
	// unquoted, no inline comments), so the baseline's first edit only changes its own line;
	// otherwise it is hand-written (indented lists, quoted tags, comments), as deliver keeps it.
	Canonical bool
	// WithServices adds a Service per Deployment; ConfigMaps and Secrets add that many objects
	// of each kind (in one multi-document file).
	WithServices        bool
	ConfigMaps, Secrets int
}

// services returns n service names, svc-000 ...
func services(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("svc-%03d", i)
	}
	return s
}

// Objects is how many objects the overlay renders.
func (f Fixture) Objects() int {
	n := 1 + len(f.Services) + f.ConfigMaps + f.Secrets // the Namespace, the Deployments
	if f.WithServices {
		n += len(f.Services)
	}
	return n
}

// ImageRepo is the registry repository of a service's image.
func (f Fixture) ImageRepo(svc string) string { return "team/" + svc }

func deploymentYAML(svc string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels:
    app: %[1]s
    bench-tier: app
spec:
  replicas: 1
  progressDeadlineSeconds: 600
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
        - name: %[1]s
          image: %[1]s
          ports:
            - containerPort: 8080
          resources:
            requests:
              cpu: 10m
              memory: 16Mi
`, svc)
}

func serviceYAML(svc string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector:
    app: %[1]s
  ports:
    - port: 80
      targetPort: 8080
`, svc)
}

// Files returns the repo's files, path -> content.
func (f Fixture) Files() map[string]string {
	files := map[string]string{}
	var res []string
	for _, s := range f.Services {
		doc := deploymentYAML(s)
		if f.WithServices {
			doc += "---\n" + serviceYAML(s)
		}
		files["base/"+s+".yaml"] = doc
		res = append(res, s+".yaml")
	}
	if f.ConfigMaps+f.Secrets > 0 {
		var b strings.Builder
		for i := 0; i < f.ConfigMaps; i++ {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-%04d\ndata:\n  LOG_LEVEL: info\n  FEATURE_%04d: \"on\"\n  settings.json: '{\"shard\": %d, \"replicas\": 3}'\n", i, i, i)
		}
		for i := 0; i < f.Secrets; i++ {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: secret-%04d\ntype: Opaque\nstringData:\n  token: not-a-secret-%04d\n", i, i)
		}
		files["base/config.yaml"] = b.String()
		res = append(res, "config.yaml")
	}
	files["base/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " +
		strings.Join(res, "\n  - ") + "\n"
	overlay := "overlays/" + f.Env + "/"
	files[overlay+"namespace.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", f.NS)
	var b strings.Builder
	if f.Canonical {
		fmt.Fprintf(&b, "# %s overlay\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\n\nresources:\n- ../../base\n- namespace.yaml\n\nimages:\n", f.Env, f.NS)
		for _, s := range f.Services {
			fmt.Fprintf(&b, "- name: %s\n  newName: %s/%s\n  newTag: %s\n", s, f.Registry, f.ImageRepo(s), f.Tag)
		}
	} else {
		fmt.Fprintf(&b, "# %s overlay: edited by deliver, by hand too.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\n\nresources:\n  - ../../base\n  - namespace.yaml\n\nimages:\n", f.Env, f.NS)
		for _, s := range f.Services {
			fmt.Fprintf(&b, "  # %s is built by its team's pipeline\n  - name: %s\n    newName: %s/%s\n    newTag: %q # first release\n", s, s, f.Registry, f.ImageRepo(s), f.Tag)
		}
	}
	files[overlay+"kustomization.yaml"] = b.String()
	return files
}

// createRepo writes the fixture into a seed directory and creates repository name from it.
func (e *Env) createRepo(name string, f Fixture) (Target, error) {
	seed, err := e.tempDir("seed")
	if err != nil {
		return Target{}, err
	}
	defer os.RemoveAll(seed)
	for p, content := range f.Files() {
		full := filepath.Join(seed, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return Target{}, err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return Target{}, err
		}
	}
	url, err := e.Git.CreateRepo(name, "main", seed)
	if err != nil {
		return Target{}, err
	}
	// A reflog of every ref update, so that P2 can count the pushes that moved the branch.
	if out, err := exec.Command("git", "--git-dir="+e.Git.BareDir(name), "config", "core.logAllRefUpdates", "always").CombinedOutput(); err != nil {
		return Target{}, fmt.Errorf("turning on the reflog of %s: %w: %s", name, err, out)
	}
	return Target{Repo: name, URL: url, Env: f.Env, NS: f.NS}, nil
}

// overlayImages reads the images: of the overlay at the tip of the repo's main branch.
func (e *Env) overlayImages(t Target) (map[string]types.Image, error) {
	data, err := e.Git.ReadFile(t.Repo, "main", "overlays/"+t.Env+"/kustomization.yaml")
	if err != nil {
		return nil, err
	}
	dir, err := e.tempDir("read")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), data, 0o644); err != nil {
		return nil, err
	}
	_, imgs, err := kustomize.ReadImages(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]types.Image{}
	for _, img := range imgs {
		out[img.Name] = img
	}
	return out, nil
}

// addHistory appends commits to branch of the bare repository with `git fast-import`, in
// one process: each commit changes one service's manifest (an annotation), and every 50th
// one also bumps an image tag in the overlay, like a config repo that has seen years of
// deploys and edits; with empty, the commits change nothing (for a short history with the
// same tree as a long one). It takes about half a second per 1 000 commits.
func addHistory(bare, branch string, f Fixture, commits int, empty bool) error {
	if commits <= 0 {
		return nil
	}
	var in bytes.Buffer
	w := bufio.NewWriter(&in)
	data := func(s string) { fmt.Fprintf(w, "data %d\n%s\n", len(s), s) }
	when := time.Now().Add(-time.Duration(commits) * time.Hour).Unix()
	overlayPath := "overlays/" + f.Env + "/kustomization.yaml"
	ov := f.Files()[overlayPath]
	for i := 0; i < commits; i++ {
		svc := f.Services[i%len(f.Services)]
		fmt.Fprintf(w, "commit refs/heads/%s\n", branch)
		fmt.Fprintf(w, "committer history <history@example.invalid> %d +0000\n", when+int64(i)*3600)
		data(fmt.Sprintf("change %d: tune %s", i+1, svc))
		if i == 0 {
			fmt.Fprintf(w, "from refs/heads/%s^0\n", branch)
		}
		if empty {
			fmt.Fprintln(w)
			continue
		}
		doc := strings.Replace(deploymentYAML(svc), "  labels:\n", fmt.Sprintf("  annotations:\n    bench/revision: \"%d\"\n  labels:\n", i+1), 1)
		if f.WithServices {
			doc += "---\n" + serviceYAML(svc)
		}
		fmt.Fprintf(w, "M 100644 inline base/%s.yaml\n", svc)
		data(doc)
		if i%50 == 49 {
			ov = setTag(ov, svc, fmt.Sprintf("0.%d.0", i+1))
			fmt.Fprintf(w, "M 100644 inline %s\n", overlayPath)
			data(ov)
		}
		fmt.Fprintln(w)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Env = append(os.Environ(), "GIT_DIR="+bare)
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git fast-import: %w\n%s", err, out)
	}
	// Pack it as a server would hold it.
	cmd = exec.Command("git", "repack", "-a", "-d", "-q")
	cmd.Env = append(os.Environ(), "GIT_DIR="+bare)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git repack: %w\n%s", err, out)
	}
	return nil
}

// setTag rewrites the newTag line of svc's entry in an overlay.
func setTag(overlay, svc, tag string) string {
	i := strings.Index(overlay, "name: "+svc+"\n")
	if i < 0 {
		return overlay
	}
	j := strings.Index(overlay[i:], "newTag: ")
	if j < 0 {
		return overlay
	}
	start := i + j + len("newTag: ")
	end := start + strings.IndexByte(overlay[start:], '\n')
	return overlay[:start] + strconv.Quote(tag) + overlay[end:]
}

// exportTree writes the tree at branch of the bare repository into dir.
func exportTree(bare, branch, dir string) error {
	cmd := exec.Command("sh", "-c", `git --git-dir="$1" archive "$2" | tar -x -C "$3"`, "sh", bare, branch, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("exporting %s of %s: %w\n%s", branch, bare, err, out)
	}
	return nil
}
