package step_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

// deliverBin is the deliver binary built once for the package: the end-to-end tests run it as
// CI would, as separate processes.
var deliverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "deliver-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	deliverBin = filepath.Join(dir, "deliver")
	build := exec.Command("go", "build", "-o", deliverBin, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building deliver: %v\n%s", err, out)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testenv.Main(m)
}

// result of one deliver run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs the deliver binary with args and extra environment (KEY=VALUE), in a clean
// environment (no CI variables of the machine running the tests).
func run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, deliverBin, args...)
	home := t.TempDir()
	cmd.Dir = home
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + home}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running deliver: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// writeFiles writes files (path -> content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// app describes the config repo fixture: a base with one Deployment (and Service) per
// service, overlays per environment with their own namespace.
type app struct {
	services []string          // image names as the manifests use them, also Deployment names
	envs     map[string]string // environment -> namespace
	// overlayImages is the initial images: block of every overlay (verbatim YAML, may be "");
	// {registry} is replaced by the test registry's host.
	overlayImages string
	replicas      int
	// policy is the deliver.yaml at the repo root ("" for none).
	policy string
}

func (a app) files(registryHost string) map[string]string {
	files := map[string]string{}
	var resources []string
	for _, s := range a.services {
		resources = append(resources, "  - "+s+".yaml")
		replicas := a.replicas
		if replicas == 0 {
			replicas = 1
		}
		files["base/"+s+".yaml"] = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  labels:
    app: %[1]s
spec:
  replicas: %[2]d
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
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  selector:
    app: %[1]s
  ports:
    - port: 80
      targetPort: 8080
`, s, replicas)
	}
	if a.policy != "" {
		files["deliver.yaml"] = a.policy
	}
	files["base/kustomization.yaml"] = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n" + strings.Join(resources, "\n") + "\n"
	for env, ns := range a.envs {
		files["overlays/"+env+"/kustomization.yaml"] = fmt.Sprintf(`# %s overlay: edited by deliver, by hand too.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s

resources:
  - ../../base
  - namespace.yaml
%s`, env, ns, strings.ReplaceAll(a.overlayImages, "{registry}", registryHost))
		files["overlays/"+env+"/namespace.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns)
	}
	return files
}

// servers are the real servers one test talks to.
type servers struct {
	git  *testenv.GitServer
	reg  *testenv.Registry
	repo string // config repo name on the git server
	url  string // its clone URL
}

// newServers starts a git server (with gitOpts) with the app's config repo and a registry.
func newServers(t *testing.T, a app, gitOpts ...testenv.GitOption) *servers {
	t.Helper()
	s := &servers{git: testenv.NewGitServer(t, gitOpts...), reg: testenv.NewRegistry(t), repo: "config"}
	seed := t.TempDir()
	writeFiles(t, seed, a.files(s.reg.Host))
	url, err := s.git.CreateRepo(s.repo, "main", seed)
	if err != nil {
		t.Fatal(err)
	}
	s.url = url
	return s
}

// gitArgs are the flags that reach the config repo.
func (s *servers) gitArgs() []string {
	return []string{"--config-repo", s.url, "--git-username", s.git.Username, "--git-token", s.git.Password}
}

func (s *servers) push(t testing.TB, repo string, tags ...string) string {
	t.Helper()
	d, err := s.reg.PushRandomImage(repo, tags...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (s *servers) file(t testing.TB, path string) string {
	t.Helper()
	b, err := s.git.ReadFile(s.repo, "main", path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (s *servers) commits(t testing.TB) int {
	t.Helper()
	log, err := s.git.Log(s.repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	return len(log)
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
