package cluster_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/deliverhq/deliver/step/cluster"
)

// kubeconfigWith returns the admin kubeconfig with its user replaced by a
// bearer token and, if server is set, its server replaced.
func (e *env) kubeconfigWith(token, server string) []byte {
	e.t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.cl.Kubeconfig)
	if err != nil {
		e.t.Fatal(err)
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	cfg.AuthInfos[cur.AuthInfo] = &clientcmdapi.AuthInfo{Token: token}
	if server != "" {
		cfg.Clusters[cur.Cluster].Server = server
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	e.kubectl("create", "serviceaccount", "limited", "-n", e.ns)
	saToken := e.kubectl("create", "token", "limited", "-n", e.ns)
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
	for _, tc := range []struct {
		name       string
		kubeconfig []byte // nil: the admin's
		docs       string
		want       error
		contains   []string
	}{
		{
			name:       "connection refused",
			kubeconfig: e.kubeconfigWith("x", "https://127.0.0.1:1"),
			docs:       cm, want: cluster.ErrUnreachable, contains: []string{"127.0.0.1:1", "connection refused"},
		},
		{
			name:       "bad token",
			kubeconfig: e.kubeconfigWith("not-a-valid-token", ""),
			docs:       cm, want: cluster.ErrUnauthorized, contains: []string{"ConfigMap/cfg", "provide credentials"},
		},
		{
			name:       "forbidden",
			kubeconfig: e.kubeconfigWith(saToken, ""),
			docs:       cm, want: cluster.ErrUnauthorized,
			contains: []string{"ConfigMap/" + e.ns + "/cfg", `"system:serviceaccount:` + e.ns + `:limited"`, `cannot get resource "configmaps"`},
		},
		{
			name: "invalid name", docs: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
			want: cluster.ErrInvalid, contains: []string{"applying ConfigMap/" + e.ns + "/Bad_Name", "metadata.name"},
		},
		{
			name: "invalid field value", docs: "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\nspec:\n  ports: [{port: 99999}]\n",
			want: cluster.ErrInvalid, contains: []string{"applying Service/" + e.ns + "/svc", "spec.ports[0].port"},
		},
		{
			name: "unknown field", docs: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndatta:\n  k: v\n",
			want: cluster.ErrInvalid, contains: []string{"ConfigMap/" + e.ns + "/cfg", "datta"},
		},
		{
			name: "unknown kind", docs: cm + "---\napiVersion: nope.example/v1\nkind: Gadget\nmetadata:\n  name: g\n",
			want: cluster.ErrInvalid, contains: []string{"Gadget/g", `no matches for kind "Gadget"`},
		},
		{
			name: "custom resource of an unserved version",
			docs: `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.nope.example}
spec:
  group: nope.example
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
---
apiVersion: nope.example/v2
kind: Gadget
metadata: {name: g}
`,
			want: cluster.ErrInvalid, contains: []string{"Gadget/" + e.ns + "/g", "does not serve version \"v2\" (served: v1)"},
		},
		{
			name: "no name", docs: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n",
			want: cluster.ErrInvalid, contains: []string{"metadata.name"},
		},
		{
			name: "prune without ApplySet", docs: cm,
			want: cluster.ErrInvalid, contains: []string{"pruning needs an ApplySet"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.c
			if tc.kubeconfig != nil {
				var err error
				if c, err = cluster.Connect(e.ctx, cluster.Options{KubeconfigData: tc.kubeconfig}); err != nil {
					t.Fatalf("Connect: %v", err)
				}
			}
			opts := cluster.ApplyOptions{DefaultNamespace: e.ns, Prune: tc.name == "prune without ApplySet"}
			_, err := c.Apply(e.ctx, objects(t, tc.docs), opts)
			t.Logf("error: %v", err)
			wantErr(t, err, tc.want, tc.contains...)
			if err != nil && len(saToken) > 20 && strings.Contains(err.Error(), saToken) {
				t.Error("the error contains the token")
			}
		})
	}
	// Nothing of the above was created.
	e.notFound("configmap", "cfg", "-n", e.ns)
}

// TestApplyGoValues applies objects built in Go, with int values (as some
// YAML decoders produce) that unstructured's deep copy cannot handle.
func TestApplyGoValues(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": "svc"},
		"spec": map[string]any{
			"ports":    []any{map[string]any{"port": 80, "targetPort": int32(8080)}},
			"selector": map[string]any{"app": "x"},
		},
	}}
	res, err := e.c.Apply(e.ctx, []*unstructured.Unstructured{svc}, cluster.ApplyOptions{DefaultNamespace: e.ns})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	equalSlices(t, "apply", actions(res), []string{"Service/" + e.ns + "/svc=created"})
	equal(t, "port", e.kubectl("get", "service", "svc", "-n", e.ns, "-o", "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}"), "80/8080")
}
