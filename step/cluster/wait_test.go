package cluster_test

import (
	"strings"
	"testing"
	"time"

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
