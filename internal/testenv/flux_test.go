package testenv_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/internal/testenv"
)

// fluxSeed writes a config repo with one overlay: a namespace and a Deployment "web" running
// image.
func fluxSeed(t *testing.T, ns, image string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"overlays/staging/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - web.yaml\n",
		"overlays/staging/namespace.yaml":     fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns),
		"overlays/staging/web.yaml":           fluxDeployment(ns, image),
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func fluxDeployment(ns, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: %s
`, ns, image)
}

// pushFile commits content as path on branch main of the repo at url (with credentials) and
// pushes it with the git CLI; it returns the new commit.
func pushFile(t *testing.T, url, path, content string) string {
	t.Helper()
	work := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("clone", "-q", url, ".")
	if err := os.WriteFile(filepath.Join(work, filepath.FromSlash(path)), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	run("add", path)
	run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "change "+path)
	run("push", "-q", "origin", "HEAD:main")
	return run("rev-parse", "HEAD")
}

// fluxStatus is what a test reads of a Kustomization.
func fluxStatus(t *testing.T, f *testenv.Flux, name string) (applied string, ready string) {
	t.Helper()
	u, err := f.Get(context.Background(), testenv.KustomizationGVR, name)
	if err != nil {
		t.Fatal(err)
	}
	applied, _, _ = unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			ready = fmt.Sprint(m["status"], "/", m["reason"])
		}
	}
	return applied, ready
}

// waitApplied waits until Kustomization name has applied commit and is Ready, and returns how
// long that took.
func waitApplied(t *testing.T, f *testenv.Flux, name, commit string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	want := "main@sha1:" + commit
	for {
		applied, ready := fluxStatus(t, f, name)
		if applied == want && ready == "True/ReconciliationSucceeded" {
			return time.Since(start)
		}
		if err := f.Alive(); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) > limit {
			t.Fatalf("Kustomization %s did not apply %s within %s: lastAppliedRevision %q, Ready %s", name, want, limit, applied, ready)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFlux: the real controllers, started against the test cluster, apply the overlay of a
// repo on the test git server through its auth Secret; a push is picked up at once when the
// GitRepository is annotated (rather than at the one-minute interval), and the Deployment
// rolls out to the pushed image. A Kustomization in a namespace the controllers do not watch
// is left alone, so several Flux instances can share a cluster.
func TestFlux(t *testing.T) {
	t.Parallel()
	c := testenv.SharedCluster(t)
	gs := testenv.NewGitServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := "flux-harness-web"
	url, err := gs.CreateRepo("config", "main", fluxSeed(t, ns, "registry.example/web:1"))
	if err != nil {
		t.Fatal(err)
	}
	head, err := gs.Head("config", "main")
	if err != nil {
		t.Fatal(err)
	}
	f := testenv.NewFlux(t, c, testenv.FluxOptions{})
	other := testenv.NewFlux(t, c, testenv.FluxOptions{})
	for _, fl := range []*testenv.Flux{f, other} {
		if err := fl.CreateGitRepository(ctx, testenv.GitRepository{Name: "config", URL: url, Branch: "main", Username: gs.Username, Password: gs.Password}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.CreateKustomization(ctx, testenv.Kustomization{Name: "staging", Source: "config", Path: "./overlays/staging", Prune: true, Wait: true}); err != nil {
		t.Fatal(err)
	}
	t.Logf("first sync in %s", waitApplied(t, f, "staging", head.String(), time.Minute).Round(time.Millisecond))

	// A push, then the annotation the flux CLI sets: picked up well before the interval.
	commit := pushFile(t, strings.Replace(url, "http://", "http://"+gs.Username+":"+gs.Password+"@", 1),
		"overlays/staging/web.yaml", fluxDeployment(ns, "registry.example/web:2"))
	annotation := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, time.Now().Format(time.RFC3339Nano))
	if err := f.Patch(ctx, testenv.GitRepositoryGVR, "config", []byte(annotation)); err != nil {
		t.Fatal(err)
	}
	took := waitApplied(t, f, "staging", commit, 40*time.Second)
	t.Logf("push applied in %s", took.Round(time.Millisecond))
	dc, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dc.Resource(deployments).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 || containers[0].(map[string]any)["image"] != "registry.example/web:2" {
		t.Errorf("Deployment %s/web runs %v, want registry.example/web:2", ns, containers)
	}
	ready, _, _ := unstructured.NestedInt64(d.Object, "status", "readyReplicas")
	if ready != 2 {
		t.Errorf("Deployment %s/web has %d ready replicas after Flux reported it healthy, want 2", ns, ready)
	}

	// The other instance has a source but no Kustomization: its source fetched the same
	// commit, and nothing in its namespace reconciled f's Kustomization.
	if err := other.Patch(ctx, testenv.GitRepositoryGVR, "config", []byte(annotation)); err != nil {
		t.Fatal(err)
	}
	unwatched := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
		"metadata": map[string]any{"name": "unwatched", "namespace": "default"},
		"spec": map[string]any{"interval": "1m", "path": "./overlays/staging", "prune": false,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "config", "namespace": f.Namespace}},
	}}
	if _, err := dc.Resource(testenv.KustomizationGVR).Namespace("default").Create(ctx, unwatched, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	got, err := dc.Resource(testenv.KustomizationGVR).Namespace("default").Get(ctx, "unwatched", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The CRD defaults status.observedGeneration to -1; a controller would have added its
	// finalizer and conditions.
	conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	if len(got.GetFinalizers()) > 0 || len(conds) > 0 {
		t.Errorf("a Kustomization outside the controllers' namespaces was reconciled: finalizers %v, status %v", got.GetFinalizers(), got.Object["status"])
	}
}

// TestFluxStop: Stop ends both controllers (their processes are gone and their ports closed)
// and can be called again.
func TestFluxStop(t *testing.T) {
	t.Parallel()
	c := testenv.SharedCluster(t)
	f, err := testenv.StartFlux(context.Background(), c, testenv.FluxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pids := controllerPIDs(t, f)
	if len(pids) != 2 {
		t.Fatalf("found %d controller processes, want 2", len(pids))
	}
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("controller process %d still runs after Stop", pid)
		}
	}
	if conn, err := net.DialTimeout("tcp", f.StorageAddr, time.Second); err == nil {
		conn.Close()
		t.Errorf("source-controller's storage %s still answers after Stop", f.StorageAddr)
	}
	if err := f.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// controllerPIDs finds the processes running the controllers of f, by their RUNTIME_NAMESPACE.
func controllerPIDs(t *testing.T, f *testenv.Flux) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	want := "RUNTIME_NAMESPACE=" + f.Namespace + "\x00"
	var pids []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && strings.Contains(string(env), want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestFluxBinDirNamesWhatIsMissing: without the controllers, the error says what is missing
// and how to build it.
func TestFluxBinDirNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DELIVER_FLUX_BINS", dir)
	_, err := testenv.FluxBinDir()
	if err == nil {
		t.Fatal("FluxBinDir found controllers in an empty directory")
	}
	for _, want := range []string{dir, "source-controller", "kustomize-controller", "crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml", "make flux-bins"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
