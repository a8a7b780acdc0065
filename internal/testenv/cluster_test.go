package testenv_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/deliverhq/deliver/internal/testenv"
)

var (
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
)

func TestCluster(t *testing.T) {
	t.Parallel()
	c := testenv.SharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dc, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply := metav1.ApplyOptions{FieldManager: "testenv-smoke", Force: true}
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "testenv-smoke"},
	}}
	if _, err := dc.Resource(namespaces).Apply(ctx, "testenv-smoke", ns, apply); err != nil {
		t.Fatalf("applying namespace: %v", err)
	}
	labels := map[string]any{"app": "web"}
	deploy := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "namespace": "testenv-smoke"},
		"spec": map[string]any{
			"replicas": int64(2),
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{"containers": []any{
					map[string]any{"name": "web", "image": "registry.example/web:1"},
				}},
			},
		},
	}}
	if _, err := dc.Resource(deployments).Namespace("testenv-smoke").Apply(ctx, "web", deploy, apply); err != nil {
		t.Fatalf("applying deployment: %v", err)
	}

	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		d, err := dc.Resource(deployments).Namespace("testenv-smoke").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		gen := d.GetGeneration()
		observed, _, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration")
		updated, _, _ := unstructured.NestedInt64(d.Object, "status", "updatedReplicas")
		available, _, _ := unstructured.NestedInt64(d.Object, "status", "availableReplicas")
		if observed >= gen && updated == 2 && available == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment not rolled out after 60s: status %v", d.Object["status"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("deployment rolled out in %s", time.Since(start).Round(time.Millisecond))

	list, err := dc.Resource(pods).Namespace("testenv-smoke").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 {
		t.Fatalf("got %d pods, want 2", len(list.Items))
	}
	for _, p := range list.Items {
		if node, _, _ := unstructured.NestedString(p.Object, "spec", "nodeName"); node != testenv.FakeNodeName {
			t.Errorf("pod %s on node %q, want %s", p.GetName(), node, testenv.FakeNodeName)
		}
	}

	out, err := c.Kubectl(ctx, "get", "pods", "-A")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if !strings.Contains(string(out), p.GetName()) {
			t.Errorf("kubectl get pods -A does not list %s:\n%s", p.GetName(), out)
		}
	}
	if !strings.Contains(string(out), "testenv-smoke") || !strings.Contains(string(out), "Running") {
		t.Errorf("kubectl get pods -A output lacks the namespace or Running pods:\n%s", out)
	}
}

// TestNeverReadyImage: pods of an image named *never-ready* stay unready, so tests can make a
// rollout fail by image alone.
func TestNeverReadyImage(t *testing.T) {
	t.Parallel()
	c := testenv.SharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	manifest := `apiVersion: v1
kind: Namespace
metadata:
  name: never-ready-test
---
apiVersion: v1
kind: Pod
metadata:
  name: broken
  namespace: never-ready-test
spec:
  containers:
    - name: app
      image: registry.example/team/never-ready:1
---
apiVersion: v1
kind: Pod
metadata:
  name: fine
  namespace: never-ready-test
spec:
  containers:
    - name: app
      image: registry.example/team/web:1
`
	f := filepath.Join(t.TempDir(), "pods.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Kubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "wait", "-n", "never-ready-test", "--for=condition=Ready", "pod/fine", "--timeout=20s"); err != nil {
		t.Fatalf("the ordinary pod did not become ready: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	out, err := c.Kubectl(ctx, "get", "pod", "broken", "-n", "never-ready-test", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) == "True" {
		t.Fatal("the never-ready pod became ready")
	}
}
