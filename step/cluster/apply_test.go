package cluster_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/cluster"
)

// progressLog collects Wait's progress lines.
type progressLog struct {
	mu    sync.Mutex
	lines []string
}

func (p *progressLog) add(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, line)
}

func (p *progressLog) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

func TestApplyWaitReapply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	objs := objects(t, webApp(e.ns, 2))
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, ApplySet: cluster.ApplySetRef{Name: "deliver-test", Namespace: e.ns}}

	res, err := e.c.Apply(e.ctx, objs, opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ns := e.ns
	equalSlices(t, "first apply", actions(res), []string{
		"Namespace/" + ns + "=created",
		"ConfigMap/" + ns + "/web-config=created",
		"Service/" + ns + "/web=created",
		"Deployment/" + ns + "/web=created",
	})
	if res.DryRun || len(res.Pruned) != 0 {
		t.Errorf("DryRun = %v, Pruned = %v; want false, none", res.DryRun, res.Pruned)
	}
	if objs[3].GetNamespace() != "" || objs[3].GetLabels() != nil {
		t.Errorf("Apply modified its input: %v", objs[3].Object["metadata"])
	}

	var progress progressLog
	start := time.Now()
	if err := e.c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: time.Minute, Interval: 200 * time.Millisecond, Progress: progress.add}); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	t.Logf("rollout took %s; progress: %q", time.Since(start).Round(time.Millisecond), progress.get())
	lines := progress.get()
	if len(lines) == 0 || lines[len(lines)-1] != "Deployment/"+ns+"/web: 2/2 ready" {
		t.Errorf("progress lines %q: want the last to be %q", lines, "Deployment/"+ns+"/web: 2/2 ready")
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "ConfigMap/") || strings.HasPrefix(l, "Namespace/") {
			t.Errorf("progress line %q about an object that was Current at once", l)
		}
	}
	pods := e.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.spec.nodeName} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	equal(t, "pods (node, Ready)", pods, testenv.FakeNodeName+" True\n"+testenv.FakeNodeName+" True")
	equal(t, "Deployment's ApplySet label", e.kubectl("get", "deployment", "web", "-n", ns, "-o", `jsonpath={.metadata.labels.applyset\.kubernetes\.io/part-of}`),
		opts.ApplySet.ID())
	managers := e.kubectl("get", "deployment", "web", "-n", ns, "-o", `jsonpath={.metadata.managedFields[?(@.operation=="Apply")].manager}`)
	equal(t, "apply field manager", managers, "deliver")
	generation := e.kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.metadata.generation}")

	res, err = e.c.Apply(e.ctx, objects(t, webApp(ns, 2)), opts)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, o := range res.Objects {
		if o.Action != cluster.ActionUnchanged {
			t.Errorf("second apply: %s %s, want unchanged", o.Ref, o.Action)
		}
	}
	equal(t, "generation after the second apply", e.kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.metadata.generation}"), generation)
	if err := e.c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: 30 * time.Second}); err != nil {
		t.Errorf("second Wait: %v", err)
	}
}

func TestApplyCRDAndCustomResource(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	group := e.ns + ".deliver.test"
	crd := "widgets." + group
	t.Cleanup(func() { _, _ = e.cl.Kubectl(t.Context(), "delete", "crd", crd, "--ignore-not-found", "--wait=false") })
	docs := strings.NewReplacer("NS", e.ns, "GROUP", group).Replace(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.GROUP
  namespace: ignored-for-cluster-scoped
spec:
  group: GROUP
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
---
apiVersion: GROUP/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
---
apiVersion: v1
kind: Namespace
metadata:
  name: NS
`)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns}
	want := []string{
		"CustomResourceDefinition/" + crd + "=created",
		"Namespace/" + e.ns + "=created",
		"Widget/" + e.ns + "/w1=created",
	}

	dry := opts
	dry.DryRun = true
	res, err := e.c.Apply(e.ctx, objects(t, docs), dry)
	if err != nil {
		t.Fatalf("dry-run Apply: %v", err)
	}
	equalSlices(t, "dry run", actions(res), want)
	e.notFound("crd", crd)
	e.notFound("namespace", e.ns)

	res, err = e.c.Apply(e.ctx, objects(t, docs), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	equalSlices(t, "apply", actions(res), want)
	equal(t, "widget size", e.kubectl("get", "widgets."+group, "w1", "-n", e.ns, "-o", "jsonpath={.spec.size}"), "3")
	if err := e.c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: 30 * time.Second, Interval: 200 * time.Millisecond}); err != nil {
		t.Errorf("Wait: %v", err)
	}

	res, err = e.c.Apply(e.ctx, objects(t, strings.Replace(docs, "size: 3", "size: 4", 1)), opts)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	equalSlices(t, "second apply", actions(res), []string{
		"CustomResourceDefinition/" + crd + "=unchanged",
		"Namespace/" + e.ns + "=unchanged",
		"Widget/" + e.ns + "/w1=configured",
	})
	equal(t, "widget size", e.kubectl("get", "widgets."+group, "w1", "-n", e.ns, "-o", "jsonpath={.spec.size}"), "4")
}

func TestDryRunAndDiff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ns := e.ns
	opts := cluster.ApplyOptions{DefaultNamespace: ns, Prune: true, ApplySet: cluster.ApplySetRef{Name: "deliver-dry", Namespace: ns}}
	dry := opts
	dry.DryRun = true

	res, err := e.c.Apply(e.ctx, objects(t, webApp(ns, 2)), dry)
	if err != nil {
		t.Fatalf("dry-run Apply: %v", err)
	}
	if !res.DryRun {
		t.Error("result of a dry run has DryRun false")
	}
	equalSlices(t, "dry run on an empty cluster", actions(res), []string{
		"Namespace/" + ns + "=created",
		"ConfigMap/" + ns + "/web-config=created",
		"Service/" + ns + "/web=created",
		"Deployment/" + ns + "/web=created",
	})
	e.notFound("namespace", ns)

	if _, err := e.c.Apply(e.ctx, objects(t, webApp(ns, 2)), opts); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	// Scale to 3 and drop the ConfigMap: a dry run reports, changes nothing.
	changed := objects(t, webApp(ns, 3))
	changed = append(changed[:1], changed[2:]...)
	res, err = e.c.Apply(e.ctx, changed, dry)
	if err != nil {
		t.Fatalf("second dry-run Apply: %v", err)
	}
	equalSlices(t, "dry run of a scale-up", actions(res), []string{
		"Namespace/" + ns + "=unchanged",
		"Service/" + ns + "/web=unchanged",
		"Deployment/" + ns + "/web=configured",
	})
	if len(res.Pruned) != 1 || res.Pruned[0].String() != "ConfigMap/"+ns+"/web-config" {
		t.Errorf("dry run Pruned = %v, want [ConfigMap/%s/web-config]", res.Pruned, ns)
	}
	equal(t, "live replicas", e.kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}"), "2")
	e.kubectl("get", "configmap", "web-config", "-n", ns)
	equal(t, "ApplySet group-kinds after dry runs",
		e.kubectl("get", "secret", "deliver-dry", "-n", ns, "-o", `jsonpath={.metadata.annotations.applyset\.kubernetes\.io/contains-group-kinds}`),
		"ConfigMap,Deployment.apps,Namespace,Service")

	diffs, err := e.c.Diff(e.ctx, changed, opts)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	if len(diffs) != 2 {
		t.Fatalf("Diff returned %d diffs, want 2 (Deployment configured, ConfigMap pruned): %+v", len(diffs), diffs)
	}
	d := diffs[0]
	equal(t, "first diff", d.Ref.String()+" "+string(d.Action), "Deployment/"+ns+"/web configured")
	for _, s := range []string{"--- live/Deployment/" + ns + "/web", "+++ applied/Deployment/" + ns + "/web", "\n-  replicas: 2\n", "\n+  replicas: 3\n"} {
		if !strings.Contains(d.Diff, s) {
			t.Errorf("Deployment diff does not contain %q:\n%s", s, d.Diff)
		}
	}
	for _, s := range []string{"managedFields", "resourceVersion", "uid:", "creationTimestamp", "status:", "generation"} {
		if strings.Contains(d.Diff, s) {
			t.Errorf("Deployment diff mentions %q:\n%s", s, d.Diff)
		}
	}
	if changes := changedLines(d.Diff); len(changes) != 2 {
		t.Errorf("Deployment diff changes %q, want only replicas:\n%s", changes, d.Diff)
	}
	d = diffs[1]
	equal(t, "second diff", d.Ref.String()+" "+string(d.Action), "ConfigMap/"+ns+"/web-config pruned")
	if !strings.Contains(d.Diff, "-  greeting: hello") {
		t.Errorf("ConfigMap diff does not remove its data:\n%s", d.Diff)
	}
	equal(t, "live replicas after Diff", e.kubectl("get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}"), "2")

	diffs, err = e.c.Diff(e.ctx, objects(t, webApp(ns, 2)), opts)
	if err != nil {
		t.Fatalf("Diff of the live state: %v", err)
	}
	if len(diffs) != 0 {
		t.Errorf("Diff of the applied objects = %+v, want none", diffs)
	}
}

func TestNamespaceDeletedThenReapplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := cluster.ApplyOptions{DefaultNamespace: e.ns, Prune: true, ApplySet: cluster.ApplySetRef{Name: "deliver-again", Namespace: e.ns}}
	wait := cluster.WaitOptions{Timeout: time.Minute, Interval: 200 * time.Millisecond}
	res, err := e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := e.c.Wait(e.ctx, refs(res), wait); err != nil {
		t.Fatalf("Wait: %v", err)
	}

	e.kubectl("delete", "namespace", e.ns, "--wait=true", "--timeout=2m")
	e.notFound("namespace", e.ns)

	res, err = e.c.Apply(e.ctx, objects(t, webApp(e.ns, 1)), opts)
	if err != nil {
		t.Fatalf("Apply after the namespace was deleted: %v", err)
	}
	for _, o := range res.Objects {
		if o.Action != cluster.ActionCreated {
			t.Errorf("%s %s, want created", o.Ref, o.Action)
		}
	}
	if len(res.Pruned) != 0 {
		t.Errorf("Pruned = %v, want none", res.Pruned)
	}
	if err := e.c.Wait(e.ctx, refs(res), wait); err != nil {
		t.Fatalf("Wait after re-creating: %v", err)
	}
	e.kubectl("get", "secret", "deliver-again", "-n", e.ns)
}

func TestFieldConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	cm := func(value string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: " + e.ns + "\ndata:\n  key: " + value + "\n"
	}
	e.kubectl("apply", "--server-side", "--field-manager=other", "-f", writeFile(t, "cm.yaml", cm("from-other")))

	opts := cluster.ApplyOptions{DefaultNamespace: e.ns}
	_, err := e.c.Apply(e.ctx, objects(t, cm("from-deliver")), opts)
	wantErr(t, err, cluster.ErrApply, "ConfigMap/"+e.ns+"/shared", `.data.key is owned by field manager "other"`, "--force-conflicts")
	var ce *cluster.ConflictError
	if !errors.As(err, &ce) || len(ce.Conflicts) != 1 || ce.Conflicts[0] != (cluster.FieldConflict{Manager: "other", Field: ".data.key"}) {
		t.Errorf("conflict error %#v: want one conflict on .data.key with other", ce)
	}
	equal(t, "value after the refused apply", e.kubectl("get", "configmap", "shared", "-n", e.ns, "-o", "jsonpath={.data.key}"), "from-other")

	opts.ForceConflicts = true
	res, err := e.c.Apply(e.ctx, objects(t, cm("from-deliver")), opts)
	if err != nil {
		t.Fatalf("Apply with ForceConflicts: %v", err)
	}
	equalSlices(t, "forced apply", actions(res), []string{"ConfigMap/" + e.ns + "/shared=configured"})
	equal(t, "value after the forced apply", e.kubectl("get", "configmap", "shared", "-n", e.ns, "-o", "jsonpath={.data.key}"), "from-deliver")
}

// changedLines returns the removed and added lines of a unified diff.
func changedLines(diff string) []string {
	var l []string
	for _, line := range strings.Split(diff, "\n") {
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "+++") {
			continue
		}
		if strings.HasPrefix(line, "-") || strings.HasPrefix(line, "+") {
			l = append(l, line)
		}
	}
	return l
}

func TestWarningsReachOptionsWarn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createNamespace(e.ns)
	var warnings progressLog
	c, err := cluster.Connect(e.ctx, cluster.Options{Kubeconfig: e.cl.Kubeconfig, Warn: warnings.add})
	if err != nil {
		t.Fatal(err)
	}
	deploy := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: old-labels
spec:
  replicas: 0
  selector: {matchLabels: {app: old}}
  template:
    metadata: {labels: {app: old}}
    spec:
      nodeSelector: {beta.kubernetes.io/os: linux}
      containers: [{name: app, image: registry.example/old:1}]
`
	if _, err := c.Apply(e.ctx, objects(t, deploy), cluster.ApplyOptions{DefaultNamespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(warnings.get(), "\n")
	if !strings.Contains(got, "beta.kubernetes.io/os") || !strings.Contains(got, "deprecated") {
		t.Errorf("warnings %q: want the deprecated node label", got)
	}
}

// getPatchOnlyRole lets user apply ConfigMaps, Services, Deployments and the ApplySet parent
// in namespace ns without the right to list or watch anything.
func getPatchOnlyRole(ns, user string) string {
	return strings.NewReplacer("NS", ns, "USER", user).Replace(`
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: get-patch-only
  namespace: NS
rules:
- apiGroups: [""]
  resources: [configmaps, services, secrets]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: get-patch-only
  namespace: NS
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: get-patch-only
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: USER
`)
}

// TestApplyClassifiesWithLists applies many objects of three kinds with an ApplySet: first, again
// unchanged, with one object changed, one new and one adopted, and as a dry run. Apply reads
// the ApplySet's members with one LIST per kind and namespace, and only the others one by one;
// as an identity that may get and patch but not list (or watch) it reads every object one by
// one. Both classify every object the same way, and both can wait for the result.
func TestApplyClassifiesWithLists(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		canList bool
	}{
		{"admin", true},
		{"get and patch only", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ns := e.ns
			e.createNamespace(ns)
			c := e.c
			if !tc.canList {
				user := "deliver-test-" + ns
				e.kubectl("apply", "-f", writeFile(t, "rbac.yaml", getPatchOnlyRole(ns, user)))
				c = e.impersonating(user)
			}
			rec := &recorder{}
			c = rec.client(t, c)
			set := cluster.ApplySetRef{Name: "deliver-lists", Namespace: ns}
			opts := cluster.ApplyOptions{DefaultNamespace: ns, ApplySet: set}
			members := []string{"configmaps", "services", "deployments"}

			// docs returns 6 ConfigMaps, 3 Services and 3 Deployments (web-1 with replicas
			// replicas), with cm-1's value and any extra ConfigMaps.
			docs := func(value string, replicas int, extra ...string) string {
				var d []string
				for i := range 6 {
					v := fmt.Sprintf("v%d", i)
					if i == 1 {
						v = value
					}
					d = append(d, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  k: %s\n", i, v))
				}
				for _, name := range extra {
					d = append(d, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\ndata:\n  k: v\n")
				}
				for i := range 3 {
					d = append(d, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\nspec:\n  selector: {app: web-%d}\n  ports: [{port: 80}]\n", i, i))
				}
				for i := range 3 {
					r := 1
					if i == 1 {
						r = replicas
					}
					d = append(d, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-%d
spec:
  replicas: %d
  selector: {matchLabels: {app: web-%d}}
  template:
    metadata: {labels: {app: web-%d}}
    spec:
      containers: [{name: web, image: registry.example/web:1}]
`, i, r, i, i))
				}
				return strings.Join(d, "---\n")
			}
			// want returns the expected "Ref=action" lines: every object unchanged but those
			// of actions.
			want := func(extra []string, actions map[string]string) []string {
				var l []string
				add := func(ref string) {
					a := actions[ref]
					if a == "" {
						a = "unchanged"
					}
					l = append(l, ref+"="+a)
				}
				for i := range 6 {
					add(fmt.Sprintf("ConfigMap/%s/cm-%d", ns, i))
				}
				for _, name := range extra {
					add("ConfigMap/" + ns + "/" + name)
				}
				for i := range 3 {
					add(fmt.Sprintf("Service/%s/svc-%d", ns, i))
				}
				for i := range 3 {
					add(fmt.Sprintf("Deployment/%s/web-%d", ns, i))
				}
				return l
			}
			apply := func(step, docs string, opts cluster.ApplyOptions, want []string) (cluster.ApplyResult, []apiRequest) {
				t.Helper()
				rec.take()
				res, err := c.Apply(e.ctx, objects(t, docs), opts)
				if err != nil {
					t.Fatalf("%s: Apply: %v", step, err)
				}
				reqs := rec.take()
				equalSlices(t, step, actions(res), want)
				return res, reqs
			}
			checkLists := func(step string, reqs []apiRequest, wantLists int) {
				t.Helper()
				equal(t, step+": LISTs of members", count(reqs, "list", members...), wantLists)
				for _, r := range reqs {
					if r.verb == "list" && r.labelSelector != cluster.LabelPartOf+"="+set.ID() {
						t.Errorf("%s: %s: want the ApplySet's label selector", step, r)
					}
				}
			}

			// First apply: nothing is a member yet, so nothing is listed.
			created := map[string]string{}
			for _, l := range want(nil, nil) {
				ref, _, _ := strings.Cut(l, "=")
				created[ref] = "created"
			}
			res, reqs := apply("first apply", docs("v1", 1), opts, want(nil, created))
			equal(t, "first apply: GETs of members", count(reqs, "get", members...), 12)
			checkLists("first apply", reqs, 0)

			// Wait for the new Deployments works with or without the right to watch.
			var progress progressLog
			seen := make([]*unstructured.Unstructured, 0, len(res.Objects))
			for _, o := range res.Objects {
				seen = append(seen, o.Object)
			}
			if err := c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: time.Minute, Seen: seen, Progress: progress.add}); err != nil {
				t.Fatalf("Wait: %v", err)
			}
			reqs = rec.take()
			t.Logf("Wait's requests: %v; progress: %q", reqs, progress.get())
			if tc.canList && count(reqs, "watch", "deployments") == 0 {
				t.Errorf("Wait did not watch the Deployments: %v", reqs)
			}

			// Again: every object is a member; one LIST per kind replaces the 12 GETs.
			_, reqs = apply("second apply", docs("v1", 1), opts, want(nil, nil))
			wantGets := 0
			if !tc.canList {
				wantGets = 12 // each LIST forbidden
			}
			equal(t, "second apply: GETs of members", count(reqs, "get", members...), wantGets)
			checkLists("second apply", reqs, 3)

			// One changed, one new, one that exists without the ApplySet's label: only the
			// last two are read one by one.
			e.kubectl("create", "configmap", "cm-adopted", "-n", ns, "--from-literal=k=v")
			extra := []string{"cm-adopted", "cm-new"}
			_, reqs = apply("update", docs("changed", 1, extra...), opts, want(extra, map[string]string{
				"ConfigMap/" + ns + "/cm-1":       "configured",
				"ConfigMap/" + ns + "/cm-adopted": "configured",
				"ConfigMap/" + ns + "/cm-new":     "created",
			}))
			wantGets = 2
			if !tc.canList {
				wantGets = 14
			}
			equal(t, "update: GETs of members", count(reqs, "get", members...), wantGets)
			checkLists("update", reqs, 3)
			equal(t, "cm-1 after the update", e.kubectl("get", "configmap", "cm-1", "-n", ns, "-o", "jsonpath={.data.k}"), "changed")

			// A dry run of a scale-up changes nothing and says what would change.
			dry := opts
			dry.DryRun = true
			_, reqs = apply("dry run", docs("changed", 3, extra...), dry, want(extra, map[string]string{
				"Deployment/" + ns + "/web-1": "configured",
			}))
			// A dry run reads each object just before its dry-run apply: no LISTs.
			checkLists("dry run", reqs, 0)
			equal(t, "web-1 replicas after the dry run", e.kubectl("get", "deployment", "web-1", "-n", ns, "-o", "jsonpath={.spec.replicas}"), "1")

			// The same dry run with ListInDryRun (the check before a push) reads as an apply does,
			// and says the same.
			dry.ListInDryRun = true
			_, reqs = apply("dry run by lists", docs("changed", 3, extra...), dry, want(extra, map[string]string{
				"Deployment/" + ns + "/web-1": "configured",
			}))
			// Every object is a member by now: the lists hold them all, or, each LIST
			// forbidden, every one is read.
			wantGets = 0
			if !tc.canList {
				wantGets = 14
			}
			equal(t, "dry run by lists: GETs of members", count(reqs, "get", members...), wantGets)
			checkLists("dry run by lists", reqs, 3)
			equal(t, "web-1 replicas after the dry run by lists", e.kubectl("get", "deployment", "web-1", "-n", ns, "-o", "jsonpath={.spec.replicas}"), "1")

		})
	}
}
