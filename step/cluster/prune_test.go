package cluster_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/step/cluster"
)

// parent reads an ApplySet parent Secret's labels and annotations.
func (e *env) parent(ns, name string) (labels, annotations map[string]string) {
	e.t.Helper()
	var s struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(e.kubectl("get", "secret", name, "-n", ns, "-o", "json")), &s); err != nil {
		e.t.Fatal(err)
	}
	return s.Metadata.Labels, s.Metadata.Annotations
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns, ns2 := e.ns, e.ns+"-b"
	t.Cleanup(func() {
		_, _ = e.cl.Kubectl(t.Context(), "delete", "namespace", ns2, "--ignore-not-found", "--wait=false")
	})
	e.createNamespace(ns)
	e.createNamespace(ns2)
	// Objects that are not ours, in both namespaces, must survive.
	e.kubectl("create", "configmap", "unrelated", "-n", ns, "--from-literal=k=v")
	e.kubectl("create", "configmap", "unrelated", "-n", ns2, "--from-literal=k=v")

	a := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: a\n"
	b := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: b
spec:
  replicas: 0
  selector: {matchLabels: {app: b}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers: [{name: b, image: registry.example/b:1}]
`
	c := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: " + ns2 + "\n"
	d := "apiVersion: v1\nkind: Service\nmetadata:\n  name: d\nspec:\n  ports: [{port: 80}]\n"
	set := cluster.ApplySetRef{Name: "deliver-prune", Namespace: ns}
	opts := cluster.ApplyOptions{DefaultNamespace: ns, Prune: true, ApplySet: set, Tooling: "deliver/v0.1.0"}
	sum := sha256.Sum256([]byte("deliver-prune." + ns + ".Secret."))
	id := "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
	equal(t, "ApplySetRef.ID", set.ID(), id)

	apply := func(step string, opts cluster.ApplyOptions, docs ...string) cluster.ApplyResult {
		t.Helper()
		res, err := e.c.Apply(e.ctx, objects(t, strings.Join(docs, "---\n")), opts)
		if err != nil {
			t.Fatalf("%s: Apply: %v", step, err)
		}
		return res
	}
	checkParent := func(step, groupKinds, namespaces string) {
		t.Helper()
		labels, ann := e.parent(ns, "deliver-prune")
		equal(t, step+": parent id label", labels[cluster.LabelApplySetID], id)
		equal(t, step+": parent tooling", ann[cluster.AnnotationTooling], "deliver/v0.1.0")
		equal(t, step+": parent contains-group-kinds", ann[cluster.AnnotationContainsGroupKinds], groupKinds)
		got, ok := ann[cluster.AnnotationAdditionalNamespaces]
		if namespaces == "" && ok {
			t.Errorf("%s: parent has additional-namespaces %q, want none", step, got)
		} else if namespaces != "" {
			equal(t, step+": parent additional-namespaces", got, namespaces)
		}
	}
	partOf := `jsonpath={.metadata.labels.applyset\.kubernetes\.io/part-of}`

	res := apply("apply {a, b, c}", opts, a, b, c)
	if len(res.Pruned) != 0 {
		t.Errorf("first apply pruned %v", res.Pruned)
	}
	checkParent("after {a, b, c}", "ConfigMap,Deployment.apps", ns2)
	equal(t, "label of c", e.kubectl("get", "configmap", "c", "-n", ns2, "-o", partOf), id)

	res = apply("apply {a}", opts, a)
	var pruned []string
	for _, r := range res.Pruned {
		pruned = append(pruned, r.String())
	}
	equalSlices(t, "pruned", pruned, []string{"ConfigMap/" + ns2 + "/c", "Deployment/" + ns + "/b"})
	e.notFound("deployment", "b", "-n", ns)
	e.notFound("configmap", "c", "-n", ns2)
	e.kubectl("get", "configmap", "a", "-n", ns)
	e.kubectl("get", "configmap", "unrelated", "-n", ns)
	e.kubectl("get", "configmap", "unrelated", "-n", ns2)
	checkParent("after {a}", "ConfigMap", "")

	// Without Prune, members are still labelled and the parent still grows.
	noPrune := opts
	noPrune.Prune = false
	apply("apply {a, d} without prune", noPrune, a, d)
	equal(t, "label of d", e.kubectl("get", "service", "d", "-n", ns, "-o", partOf), id)
	checkParent("after {a, d} without prune", "ConfigMap,Service", "")
	res = apply("apply {a} without prune", noPrune, a)
	if len(res.Pruned) != 0 {
		t.Errorf("apply without Prune pruned %v", res.Pruned)
	}
	e.kubectl("get", "service", "d", "-n", ns)
	checkParent("after {a} without prune", "ConfigMap,Service", "")

	res = apply("apply {a} with prune", opts, a)
	if len(res.Pruned) != 1 || res.Pruned[0].String() != "Service/"+ns+"/d" {
		t.Errorf("Pruned = %v, want [Service/%s/d]", res.Pruned, ns)
	}
	e.notFound("service", "d", "-n", ns)
	checkParent("after {a} with prune", "ConfigMap", "")
	e.kubectl("get", "configmap", "unrelated", "-n", ns)
}

// TestApplySetOfKubectl checks the ApplySet ID against kubectl's own
// ApplySet implementation, and that an ApplySet kubectl manages is refused.
func TestApplySetOfKubectl(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	file := writeFile(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-kubectl\n  namespace: "+e.ns+"\n")
	out, err := e.kubectlEnv([]string{"KUBECTL_APPLYSET=true"}, "apply", "--server-side", "--prune", "--applyset=kubectl-set", "-n", e.ns, "-f", file)
	if err != nil {
		t.Fatalf("kubectl apply --applyset: %v: %s", err, out)
	}
	set := cluster.ApplySetRef{Name: "kubectl-set", Namespace: e.ns}
	labels, ann := e.parent(e.ns, "kubectl-set")
	equal(t, "kubectl's ApplySet id vs ours", labels[cluster.LabelApplySetID], set.ID())
	if !strings.HasPrefix(ann[cluster.AnnotationTooling], "kubectl/") {
		t.Fatalf("kubectl's tooling annotation is %q", ann[cluster.AnnotationTooling])
	}

	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-deliver\n"
	for _, dryRun := range []bool{true, false} {
		_, err = e.c.Apply(e.ctx, objects(t, cm), cluster.ApplyOptions{DefaultNamespace: e.ns, Prune: true, ApplySet: set, DryRun: dryRun})
		wantErr(t, err, cluster.ErrApply, "Secret/"+e.ns+"/kubectl-set", ann[cluster.AnnotationTooling], "another tool")
	}
	e.notFound("configmap", "by-deliver", "-n", e.ns)
	e.kubectl("get", "configmap", "by-kubectl", "-n", e.ns)
}

// TestApplySetParentNotAnApplySet checks that an existing object that is
// not an ApplySet parent is never adopted.
func TestApplySetParentNotAnApplySet(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	e.kubectl("create", "secret", "generic", "deliver-prod", "-n", e.ns, "--from-literal=password=x")
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n"
	_, err := e.c.Apply(e.ctx, objects(t, cm), cluster.ApplyOptions{DefaultNamespace: e.ns, ApplySet: cluster.ApplySetRef{Name: "deliver-prod"}})
	wantErr(t, err, cluster.ErrApply, "Secret/"+e.ns+"/deliver-prod", "not an ApplySet parent")
	e.notFound("configmap", "app", "-n", e.ns)
	labels, _ := e.parent(e.ns, "deliver-prod")
	if len(labels) != 0 {
		t.Errorf("the Secret got labels %v", labels)
	}
}
