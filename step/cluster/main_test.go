package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/cluster"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one test's view of the shared cluster: a client and a namespace of
// its own (not created; see createNamespace).
type env struct {
	t   *testing.T
	ctx context.Context
	cl  *testenv.Cluster
	c   *cluster.Client
	ns  string
}

// newEnv starts (or joins) the shared cluster and picks a namespace name
// for the test; the namespace is deleted when the test ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	cl := testenv.SharedCluster(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	t.Cleanup(cancel)
	c, err := cluster.Connect(ctx, cluster.Options{Kubeconfig: cl.Kubeconfig})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	e := &env{t: t, ctx: ctx, cl: cl, c: c, ns: uniqueName(t)}
	t.Cleanup(func() {
		// Best effort, without waiting: the cluster is stopped at the end anyway.
		_, _ = cl.Kubectl(context.Background(), "delete", "namespace", e.ns, "--ignore-not-found", "--wait=false")
	})
	return e
}

// uniqueName returns a DNS label derived from the test's name plus a random
// suffix.
func uniqueName(t *testing.T) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	return name + "-" + hex.EncodeToString(b)
}

// kubectl runs kubectl against the cluster and fails the test on error.
func (e *env) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.cl.Kubectl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// kubectlEnv runs kubectl with extra environment variables.
func (e *env) kubectlEnv(extraEnv []string, args ...string) (string, error) {
	cmd := exec.CommandContext(e.ctx, filepath.Join(e.cl.BinDir, "kubectl"), append([]string{"--kubeconfig=" + e.cl.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// createNamespace creates namespace ns with kubectl.
func (e *env) createNamespace(ns string) {
	e.t.Helper()
	e.kubectl("create", "namespace", ns)
}

// notFound asserts that kubectl get args fails with NotFound.
func (e *env) notFound(args ...string) {
	e.t.Helper()
	out, err := e.cl.Kubectl(e.ctx, append([]string{"get"}, args...)...)
	if err == nil || !strings.Contains(err.Error(), "NotFound") {
		e.t.Errorf("kubectl get %s: want NotFound, got %q, %v", strings.Join(args, " "), out, err)
	}
}

// writeFile writes content to a file in a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// objects parses YAML documents separated by "---" lines.
func objects(t *testing.T, docs string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(docs, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("parsing %s: %v", doc, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("decoding %s: %v", doc, err)
		}
		objs = append(objs, u)
	}
	return objs
}

// actions returns "Ref=action" strings of a result, for comparisons.
func actions(res cluster.ApplyResult) []string {
	var l []string
	for _, o := range res.Objects {
		l = append(l, o.Ref.String()+"="+string(o.Action))
	}
	return l
}

// refs returns the references of a result's objects.
func refs(res cluster.ApplyResult) []cluster.ObjectRef {
	var l []cluster.ObjectRef
	for _, o := range res.Objects {
		l = append(l, o.Ref)
	}
	return l
}

// wantErr fails the test unless err wraps want and its message contains
// every string of contains.
func wantErr(t *testing.T, err, want error, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Errorf("error %q does not wrap %v", err, want)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// equal fails the test if got != want.
func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// equalSlices fails the test unless got and want hold the same strings in
// the same order.
func equalSlices(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// webApp is a Namespace, ConfigMap, Service and Deployment (replicas pods of
// image registry.example/web:1); only the Namespace names its namespace.
func webApp(ns string, replicas int) string {
	return strings.NewReplacer("NS", ns, "REPLICAS", strconv.Itoa(replicas)).Replace(`
apiVersion: v1
kind: Namespace
metadata:
  name: NS
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: REPLICAS
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        ports:
        - containerPort: 8080
`)
}
