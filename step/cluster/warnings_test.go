package cluster_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/step/cluster"
)

// TestWarningsReachTheUser: the API server's warnings (here from a ValidatingAdmissionPolicy
// in Warn mode, the way deprecated APIs and cluster policies speak) reach Options.Warn, each
// distinct text once however many requests carry it.
func TestWarningsReachTheUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	policy := e.ns + "-warn"
	e.kubectl("apply", "-f", writeFile(t, "policy.yaml", fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: %[1]s
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["configmaps"]
  validations:
  - expression: "!has(object.data) || !('legacy' in object.data)"
    message: "configmap key legacy is deprecated in %[1]s"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: %[1]s
spec:
  policyName: %[1]s
  validationActions: [Warn]
  matchResources:
    namespaceSelector:
      matchLabels:
        kubernetes.io/metadata.name: %[2]s
`, policy, e.ns)))
	t.Cleanup(func() {
		_, _ = e.cl.Kubectl(t.Context(), "delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy, "--ignore-not-found")
	})

	var mu sync.Mutex
	var got []string
	c, err := cluster.Connect(e.ctx, cluster.Options{Kubeconfig: e.cl.Kubeconfig, Warn: func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, msg)
	}})
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for i := range 3 {
		docs = append(docs, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: %s\ndata:\n  legacy: \"yes\"\n", i, e.ns))
	}
	objs := objects(t, strings.Join(docs, "---\n"))
	// The policy takes a moment to be enforced after it is created: apply until it speaks.
	for attempt := 0; attempt < 50; attempt++ {
		if _, err := c.Apply(e.ctx, objs, cluster.ApplyOptions{FieldManager: "deliver", DefaultNamespace: e.ns}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		select {
		case <-e.ctx.Done():
			t.Fatal(e.ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := c.Apply(e.ctx, objs, cluster.ApplyOptions{FieldManager: "deliver", DefaultNamespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.Contains(got[0], "configmap key legacy is deprecated in "+policy) {
		t.Fatalf("warnings = %q, want the policy's warning exactly once", got)
	}
}
