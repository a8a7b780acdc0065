package cluster_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/step/cluster"
)

// hpa is a HorizontalPodAutoscaler (autoscaling/v2) named web in ns that scales Deployment web
// between min and 5 replicas on CPU. The test cluster has no metrics server: the real HPA
// controller only moves a replica count that is outside [min, 5] into it.
func hpa(ns string, min int) string {
	return strings.NewReplacer("NS", ns, "MIN", strconv.Itoa(min)).Replace(`
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: NS
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: MIN
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 80
`)
}

// deployment is webApp's Deployment alone, in ns.
func deployment(t *testing.T, ns string, replicas int) string {
	t.Helper()
	docs := strings.Split(webApp(ns, replicas), "---")
	return docs[len(docs)-1]
}

// kubectlApply applies docs with kubectl (client-side, as a cluster admin would).
func (e *env) kubectlApply(docs string, extra ...string) {
	e.t.Helper()
	e.kubectl(append([]string{"apply", "-f", writeFile(e.t, "objects.yaml", docs)}, extra...)...)
}

// replicas is Deployment web's spec.replicas in the env's namespace.
func (e *env) replicas() string {
	e.t.Helper()
	return e.kubectl("get", "deployment", "web", "-n", e.ns, "-o", "jsonpath={.spec.replicas}")
}

// replicasOwners lists the managedFields entries that own Deployment web's spec.replicas, as
// "manager/operation/subresource".
func (e *env) replicasOwners() []string {
	e.t.Helper()
	out := e.kubectl("get", "deployment", "web", "-n", e.ns, "-o",
		`jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}/{.subresource} {.fieldsV1.f:spec.f:replicas}{"\n"}{end}`)
	var owners []string
	for _, line := range strings.Split(out, "\n") {
		if who, fields, ok := strings.Cut(line, " "); ok && strings.TrimSpace(fields) != "" {
			owners = append(owners, who)
		}
	}
	return owners
}

// scaleAs writes Deployment web's scale subresource as field manager manager does it: an
// Update of /scale, the way the HPA controller (kube-controller-manager) and kubectl scale
// write it.
func (e *env) scaleAs(manager string, replicas int) {
	e.t.Helper()
	e.kubectl("patch", "deployment", "web", "-n", e.ns, "--subresource=scale", "--type=merge",
		"-p", `{"spec":{"replicas":`+strconv.Itoa(replicas)+`}}`, "--field-manager="+manager)
}

// replicasOf returns what Apply left of the Deployment's spec.replicas.
func replicasOf(t *testing.T, res cluster.ApplyResult) *cluster.ReplicasLeft {
	t.Helper()
	for _, o := range res.Objects {
		if o.Ref.Kind == "Deployment" {
			return o.Replicas
		}
	}
	t.Fatalf("no Deployment in %v", actions(res))
	return nil
}

// TestReplicasLeftToRealAutoscaler: the real HPA controller raises the replicas to its minimum;
// an apply that leaves replicas to autoscalers keeps its count (with or without ForceConflicts,
// as a dry run too), while one that does not conflicts with kube-controller-manager.
func TestReplicasLeftToRealAutoscaler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, AutoscaledReplicas: true, KeepForeignReplicas: true}
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), opts); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	e.kubectlApply(hpa(e.ns, 3))
	err := wait.PollUntilContextTimeout(e.ctx, 500*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		return e.replicas() == "3", nil
	})
	if err != nil {
		t.Fatalf("the HPA controller did not scale web to its minimum of 3: replicas %s", e.replicas())
	}
	// What a real autoscaler's scale looks like: the step tests write the same.
	equalSlices(t, "owners of spec.replicas after the HPA scaled", e.replicasOwners(), []string{"kube-controller-manager/Update/scale"})

	for _, force := range []bool{false, true} {
		for _, dry := range []bool{true, false} {
			o := opts
			o.ForceConflicts, o.DryRun = force, dry
			res, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), o)
			if err != nil {
				t.Fatalf("Apply (force %v, dry run %v): %v", force, dry, err)
			}
			want := cluster.ReplicasLeft{By: "HorizontalPodAutoscaler/" + e.ns + "/web", Autoscaled: true, Live: 3, Given: 1}
			if got := replicasOf(t, res); got == nil || *got != want {
				t.Errorf("force %v, dry run %v: Replicas = %+v, want %+v", force, dry, got, want)
			}
			equal(t, "replicas after the apply", e.replicas(), "3")
		}
	}

	// Not leaving replicas to autoscalers, as before: a conflict with the HPA controller.
	o := opts
	o.AutoscaledReplicas = false
	_, err = e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), o)
	var ce *cluster.ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0] != (cluster.FieldConflict{Manager: "kube-controller-manager", Field: ".spec.replicas"}) {
		t.Errorf("Apply without AutoscaledReplicas: %v; want a conflict on .spec.replicas with kube-controller-manager", err)
	}
}

// TestReplicasHandedOver: when an HPA comes to a Deployment whose replicas deliver owns,
// dropping spec.replicas from the apply must not reset it to its default of 1: it is handed
// over first. And once the HPA is gone before it ever scaled, deliver takes it back.
func TestReplicasHandedOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, AutoscaledReplicas: true, KeepForeignReplicas: true}
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 2)), opts); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	equalSlices(t, "owners of spec.replicas", e.replicasOwners(), []string{"deliver/Apply/"})
	e.kubectlApply(hpa(e.ns, 1)) // 2 is within [1, 5]: the controller leaves it

	// A dry run first, as deliver does before its push: no conflict, no change.
	dry := opts
	dry.DryRun = true
	res, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 4)), dry)
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if got := replicasOf(t, res); got == nil || !got.Autoscaled || got.Live != 2 || got.Given != 4 {
		t.Errorf("dry run: Replicas = %+v", got)
	}
	for _, o := range res.Objects {
		if o.Ref.Kind == "Deployment" && o.Action != cluster.ActionUnchanged {
			t.Errorf("dry run: Deployment would be %s, want unchanged", o.Action)
		}
	}

	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 4)), opts); err != nil {
		t.Fatalf("Apply with the HPA: %v", err)
	}
	equal(t, "replicas after the HPA came", e.replicas(), "2")
	equalSlices(t, "owners of spec.replicas after the handover", e.replicasOwners(), []string{"deliver-handover/Apply/"})

	// The autoscaler scales: the handover gives way, and the next apply keeps its count.
	e.scaleAs("kube-controller-manager", 3)
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 4)), opts); err != nil {
		t.Fatalf("Apply after the HPA scaled: %v", err)
	}
	equal(t, "replicas after the HPA scaled", e.replicas(), "3")
	equalSlices(t, "owners of spec.replicas after the HPA scaled", e.replicasOwners(), []string{"kube-controller-manager/Update/scale"})

	// The HPA is gone, its count stays: a conflict, named, like any other.
	e.kubectl("delete", "hpa", "web", "-n", e.ns)
	_, err = e.c.Apply(e.ctx, objects(t, webApp(e.ns, 4)), opts)
	wantErr(t, err, cluster.ErrApply, "Deployment/"+e.ns+"/web", `.spec.replicas is owned by field manager "kube-controller-manager"`, "keeps the live replica count")
	equal(t, "replicas after the conflict", e.replicas(), "3")
}

// TestReplicasTakenBack: an HPA that goes away before it ever scaled leaves spec.replicas to
// deliver's handover; deliver takes it back, so that the overlay's count applies again, and the
// handover manager disappears.
func TestReplicasTakenBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, AutoscaledReplicas: true, KeepForeignReplicas: true}
	objs := objects(t, webApp(e.ns, 2)+"---"+hpa(e.ns, 1))
	res, err := e.c.Apply(e.ctx, objs, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := replicasOf(t, res); got != nil {
		t.Errorf("a new Deployment: Replicas = %+v, want it created with the given count", got)
	}
	equal(t, "replicas of the new Deployment", e.replicas(), "2")
	// The HPA is one of the applied objects: it counts as soon as the Deployment exists.
	res, err = e.c.Apply(e.ctx, objs, opts)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if got := replicasOf(t, res); got == nil || got.By != "HorizontalPodAutoscaler/"+e.ns+"/web" {
		t.Errorf("second Apply: Replicas = %+v, want left to the HPA of the apply", got)
	}
	equalSlices(t, "owners of spec.replicas after the handover", e.replicasOwners(), []string{"deliver-handover/Apply/"})

	e.kubectl("delete", "hpa", "web", "-n", e.ns)
	dry := opts
	dry.DryRun = true
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 3)), dry); err != nil {
		t.Fatalf("dry run without the HPA: %v", err)
	}
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 3)), opts); err != nil {
		t.Fatalf("Apply without the HPA: %v", err)
	}
	equal(t, "replicas once the HPA is gone", e.replicas(), "3")
	equalSlices(t, "owners of spec.replicas once the HPA is gone", e.replicasOwners(), []string{"deliver/Apply/"})
	if managers := e.kubectl("get", "deployment", "web", "-n", e.ns, "-o", "jsonpath={.metadata.managedFields[*].manager}"); strings.Contains(managers, "deliver-handover") {
		t.Errorf("the handover manager is still there: %s", managers)
	}
}

// TestReplicasScaledByHand: kubectl scale sets another count. Without ForceConflicts that is a
// conflict naming the field and the manager; with it, every other field is taken over but the
// count stays (KeepForeignReplicas), unless KeepForeignReplicas is off.
func TestReplicasScaledByHand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, AutoscaledReplicas: true, KeepForeignReplicas: true}
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 2)), opts); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	e.kubectl("scale", "deployment", "web", "-n", e.ns, "--replicas=5")
	owners := e.replicasOwners()
	if len(owners) != 1 || !strings.HasSuffix(owners[0], "/Update/scale") {
		t.Fatalf("owners of spec.replicas after kubectl scale: %q", owners)
	}
	manager := strings.Split(owners[0], "/")[0]
	// Another manager also takes the image.
	e.kubectlApply(strings.NewReplacer("NS", e.ns).Replace(`
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
spec:
  template:
    spec:
      containers:
      - name: web
        image: registry.example/web:hotfix
`), "--server-side", "--field-manager=other", "--force-conflicts")

	_, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 2)), opts)
	wantErr(t, err, cluster.ErrApply, "Deployment/"+e.ns+"/web", `.spec.replicas is owned by field manager "`+manager+`"`,
		`.spec.template.spec.containers[name="web"].image is owned by field manager "other"`, "keeps the live replica count")

	force := opts
	force.ForceConflicts = true
	res, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 2)), force)
	if err != nil {
		t.Fatalf("Apply with ForceConflicts: %v", err)
	}
	want := cluster.ReplicasLeft{By: `field manager "` + manager + `" (through the scale subresource)`, Live: 5, Given: 2}
	if got := replicasOf(t, res); got == nil || *got != want {
		t.Errorf("Replicas = %+v, want %+v", got, want)
	}
	equal(t, "replicas after a forced apply", e.replicas(), "5")
	equal(t, "image after a forced apply", e.kubectl("get", "deployment", "web", "-n", e.ns, "-o", "jsonpath={.spec.template.spec.containers[0].image}"), "registry.example/web:1")

	// Scaled back to the given count by hand, it is shared again, and a forced apply changes it.
	e.kubectl("scale", "deployment", "web", "-n", e.ns, "--replicas=2")
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 2)), opts); err != nil {
		t.Fatalf("Apply at the same count: %v", err)
	}
	_, err = e.c.Apply(e.ctx, objects(t, webApp(e.ns, 3)), opts)
	wantErr(t, err, cluster.ErrApply, `.spec.replicas is owned by field manager "`+manager+`"`, "--force-conflicts applies the new one")
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 3)), force); err != nil {
		t.Fatalf("forced Apply of a new count: %v", err)
	}
	equal(t, "replicas after the overlay changed them", e.replicas(), "3")

	// Without KeepForeignReplicas (deliver diff), forcing takes the count too.
	e.kubectl("scale", "deployment", "web", "-n", e.ns, "--replicas=5")
	force.KeepForeignReplicas = false
	if _, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 3)), force); err != nil {
		t.Fatalf("Apply with ForceConflicts, without KeepForeignReplicas: %v", err)
	}
	equal(t, "replicas after forcing without KeepForeignReplicas", e.replicas(), "3")
}

// TestAutoscalersHidden: an identity that may not list HorizontalPodAutoscalers gets a warning
// that says so, and a conflict with an autoscaler's count that says why it could not be
// avoided.
func TestAutoscalersHidden(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	e.kubectlApply(strings.NewReplacer("NS", e.ns).Replace(`
apiVersion: v1
kind: ServiceAccount
metadata:
  name: applier
  namespace: NS
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: applier
  namespace: NS
rules:
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: applier
  namespace: NS
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: applier}
subjects:
- {kind: ServiceAccount, name: applier, namespace: NS}
`))
	kc, err := clientcmd.LoadFromFile(e.cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range kc.AuthInfos {
		a.Impersonate = "system:serviceaccount:" + e.ns + ":applier"
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	c, err := cluster.Connect(e.ctx, cluster.Options{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, AutoscaledReplicas: true, KeepForeignReplicas: true}
	res, err := c.Apply(e.ctx, objects(t, deployment(t, e.ns, 2)), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "HorizontalPodAutoscalers in namespace "+e.ns+" may not be listed") {
		t.Errorf("warnings %q: want one saying the HPAs may not be listed", res.Warnings)
	}
	e.kubectlApply(hpa(e.ns, 1))
	e.scaleAs("kube-controller-manager", 4)
	_, err = c.Apply(e.ctx, objects(t, deployment(t, e.ns, 2)), opts)
	wantErr(t, err, cluster.ErrApply, `.spec.replicas is owned by field manager "kube-controller-manager"`,
		"HorizontalPodAutoscalers in namespace "+e.ns+" may not be listed, so whether one scales web is unknown")
	equal(t, "replicas", e.replicas(), "4")
}
