package cluster_test

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/step/cluster"
)

func TestWaitRolloutFailed(t *testing.T) {
	t.Parallel()
	stuck := func(deadline string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 1
` + deadline + `  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {deliver.test/no-such-node: "true"}
      containers: [{name: app, image: registry.example/stuck:1}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: fine
`
	}
	for _, tc := range []struct {
		name     string
		deadline string        // progressDeadlineSeconds line
		timeout  time.Duration // Wait's
		want     []string      // in the error, besides the Deployment and the pod's reason
		maxTime  time.Duration // Wait must return sooner
	}{
		{
			name:     "progress deadline exceeded",
			deadline: "  progressDeadlineSeconds: 2\n",
			timeout:  2 * time.Minute,
			want:     []string{"1 of 2 object(s) failed:\n", ": Failed: ProgressDeadlineExceeded: ", "has timed out progressing; pod"},
			maxTime:  time.Minute,
		},
		{
			name:    "timeout",
			timeout: 3 * time.Second,
			want:    []string{"timed out after 3s with 1 of 2 object(s) not Current:\n", ": InProgress: "},
			maxTime: 20 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.createNamespace(e.ns)
			res, err := e.c.Apply(e.ctx, objects(t, stuck(tc.deadline)), cluster.ApplyOptions{DefaultNamespace: e.ns})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			var progress progressLog
			start := time.Now()
			err = e.c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: tc.timeout, Interval: 250 * time.Millisecond, Progress: progress.add})
			took := time.Since(start)
			t.Logf("Wait returned after %s: %v\nprogress: %q", took.Round(time.Millisecond), err, progress.get())
			want := append([]string{
				"\n  Deployment/" + e.ns + "/stuck: ",
				"; pod stuck-", ": Unschedulable: 0/1 nodes are available",
			}, tc.want...)
			wantErr(t, err, cluster.ErrRolloutFailed, want...)
			if strings.Contains(err.Error(), "ConfigMap/") {
				t.Errorf("the error lists the ConfigMap, which is Current: %v", err)
			}
			if took > tc.maxTime {
				t.Errorf("Wait took %s, want less than %s", took, tc.maxTime)
			}
			if len(progress.get()) == 0 {
				t.Error("no progress lines")
			}
		})
	}
}

func TestWaitNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := e.c.Wait(e.ctx, nil, cluster.WaitOptions{}); err != nil {
		t.Errorf("Wait for nothing: %v", err)
	}
	_, err := e.c.Apply(e.ctx, nil, cluster.ApplyOptions{})
	if err != nil {
		t.Errorf("Apply of nothing: %v", err)
	}
	err = e.c.Wait(e.ctx, []cluster.ObjectRef{{Group: "nope.example", Version: "v1", Kind: "Nope", Name: "x"}}, cluster.WaitOptions{})
	wantErr(t, err, cluster.ErrInvalid, "Nope/x")
}

// TestWaitWatches waits for new Deployments while every poll of a Deployment fails (503): only
// a watch can see them become Current, so Wait returning nil says it did, whatever the speed
// of the machine. A watch that is forbidden or fails, or whose stream closes, must neither fail
// nor hang the wait: it is resumed, or the polls (let through then) see the rollout.
func TestWaitWatches(t *testing.T) {
	t.Parallel()
	deployment := func(name string) string {
		return strings.ReplaceAll(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  replicas: 2
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec:
      containers: [{name: app, image: registry.example/NAME:1}]
`, "NAME", name)
	}
	failPolls := func(r apiRequest) int {
		if r.verb == "get" && r.resource == "deployments" {
			return 503
		}
		return 0
	}
	for _, tc := range []struct {
		name        string
		deployments int
		fail        func(r apiRequest) int
		cutFirst    bool // close the stream of the first watch at once
		check       func(t *testing.T, reqs []apiRequest)
	}{
		{
			name: "one object, by name", deployments: 1, fail: failPolls,
			check: func(t *testing.T, reqs []apiRequest) {
				for _, r := range reqs {
					if r.verb == "watch" && (r.fieldSelector != "metadata.name=web-0" || r.fromRV == "") {
						t.Errorf("%s: want fieldSelector metadata.name=web-0 and a resourceVersion", r)
					}
				}
				equal(t, "LISTs", count(reqs, "list", "deployments"), 0)
			},
		},
		{
			name: "many objects, by ApplySet label", deployments: 3, fail: failPolls,
			check: func(t *testing.T, reqs []apiRequest) {
				equal(t, "LISTs", count(reqs, "list", "deployments"), 1)
				for _, r := range reqs {
					if (r.verb == "watch" || r.verb == "list") && !strings.HasPrefix(r.labelSelector, cluster.LabelPartOf+"=") {
						t.Errorf("%s: want the ApplySet's label selector", r)
					}
				}
			},
		},
		{
			name: "stream closed, resumed", deployments: 1, fail: failPolls, cutFirst: true,
			check: func(t *testing.T, reqs []apiRequest) {
				if n := count(reqs, "watch", "deployments"); n < 2 {
					t.Errorf("%d watch requests, want the closed watch and at least one more", n)
				}
			},
		},
		{
			name: "watch forbidden", deployments: 1,
			fail: func(r apiRequest) int {
				if r.verb == "watch" {
					return 403
				}
				return 0
			},
		},
		{
			name: "watch fails", deployments: 2,
			fail: func(r apiRequest) int {
				if r.verb == "watch" {
					return 500
				}
				return 0
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.createNamespace(e.ns)
			var docs []string
			for i := range tc.deployments {
				docs = append(docs, deployment(fmt.Sprintf("web-%d", i)))
			}
			opts := cluster.ApplyOptions{DefaultNamespace: e.ns, ApplySet: cluster.ApplySetRef{Name: "deliver-watch"}}
			res, err := e.c.Apply(e.ctx, objects(t, strings.Join(docs, "---\n")), opts)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			var seen []*unstructured.Unstructured
			for _, o := range res.Objects {
				seen = append(seen, o.Object)
			}
			var cuts atomic.Int32
			rec := &recorder{fail: tc.fail, cut: func(apiRequest) bool { return tc.cutFirst && cuts.Add(1) == 1 }}
			c := rec.client(t, e.c)
			var progress progressLog
			err = c.Wait(e.ctx, refs(res), cluster.WaitOptions{Timeout: 2 * time.Minute, Seen: seen, Progress: progress.add})
			reqs := rec.take()
			t.Logf("requests: %v\nprogress: %q", reqs, progress.get())
			if err != nil {
				t.Fatalf("Wait: %v", err)
			}
			lines := progress.get()
			if last := fmt.Sprintf("Deployment/%s/web-%d: 2/2 ready", e.ns, tc.deployments-1); len(lines) == 0 || !slices.Contains(lines, last) {
				t.Errorf("progress lines %q: want %q", lines, last)
			}
			if count(reqs, "watch", "deployments") == 0 {
				t.Errorf("Wait did not try to watch: %v", reqs)
			}
			if tc.check != nil {
				tc.check(t, reqs)
			}
		})
	}
}
