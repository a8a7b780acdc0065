package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func TestConflictError(t *testing.T) {
	ref := ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "demo", Name: "web"}
	apiErr := apierrors.NewApplyConflict([]metav1.StatusCause{
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `conflict with "kubectl-edit" using apps/v1`, Field: ".spec.template.spec.containers[name=\"web\"].image"},
		{Type: metav1.CauseTypeFieldManagerConflict, Message: `conflict with "helm"`, Field: ".spec.replicas"},
	}, "Apply failed with 2 conflicts")
	err := conflictError(ref, apiErr)
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrApply) || !errors.Is(err, apiErr) {
		t.Fatalf("conflictError = %#v: want a *ConflictError wrapping ErrApply and the API error", err)
	}
	want := []FieldConflict{{"helm", ".spec.replicas"}, {"kubectl-edit", `.spec.template.spec.containers[name="web"].image`}}
	if len(ce.Conflicts) != 2 || ce.Conflicts[0] != want[0] || ce.Conflicts[1] != want[1] {
		t.Errorf("conflicts = %+v, want %+v", ce.Conflicts, want)
	}
	for _, s := range []string{"applying Deployment/demo/web", `.spec.replicas is owned by field manager "helm"`, `"kubectl-edit"`, "--force-conflicts"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not contain %q", err, s)
		}
	}
	if conflictError(ref, apierrors.NewConflict(schema.GroupResource{Resource: "deployments"}, "web", errors.New("stale"))) != nil {
		t.Error("a resourceVersion conflict was taken for a field conflict")
	}
}

func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	terminating := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "x", errors.New("namespace demo is being terminated"))
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
	for _, tc := range []struct {
		err  error
		want error
	}{
		{apierrors.NewUnauthorized("no"), ErrUnauthorized},
		{apierrors.NewForbidden(gr, "web", errors.New("no")), ErrUnauthorized},
		{terminating, ErrApply},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "x", nil), ErrInvalid},
		{apierrors.NewBadRequest("strict decoding error"), ErrInvalid},
		{apierrors.NewServiceUnavailable("later"), ErrUnreachable},
		{apierrors.NewInternalError(errors.New("boom")), ErrApply},
		{errors.New("something else"), ErrApply},
	} {
		got := classify(context.Background(), "doing", tc.err)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.err) || !strings.HasPrefix(got.Error(), "doing: ") {
			t.Errorf("classify(%v) = %v, want it to wrap %v and the error", tc.err, got, tc.want)
		}
	}
}

func TestClassifyAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	limiter := errors.New("client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline")
	got := classify(ctx, "doing", limiter)
	if !errors.Is(got, context.DeadlineExceeded) || !errors.Is(got, limiter) || errors.Is(got, ErrApply) {
		t.Errorf("classify after the deadline = %v, want it to wrap context.DeadlineExceeded and the error", got)
	}
	// The server's answers keep their meaning.
	if got := classify(ctx, "doing", apierrors.NewUnauthorized("no")); !errors.Is(got, ErrUnauthorized) {
		t.Errorf("classify(401) after the deadline = %v, want ErrUnauthorized", got)
	}
}

func TestPodReasons(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{
		Phase: corev1.PodPending,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable", Message: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "},
		},
		InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
		ContainerStatuses: []corev1.ContainerStatus{
			{Name: "web", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example/web:1"`}}},
			{Name: "side", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			{Name: "job", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}}},
		},
	}}
	got := strings.Join(podReasons(pod), "; ")
	want := `Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector; ` +
		`container web: ImagePullBackOff: Back-off pulling image "registry.example/web:1"; container job: Error (exit code 3)`
	if got != want {
		t.Errorf("podReasons =\n %s\nwant\n %s", got, want)
	}
	notReady := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [web]"},
	}}}
	if got := strings.Join(podReasons(notReady), "; "); got != "not ready: ContainersNotReady: containers with unready status: [web]" {
		t.Errorf("podReasons of a running pod = %q", got)
	}
}

func TestSummarize(t *testing.T) {
	deploy := func(replicas, updated, total, ready int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"spec":   map[string]any{"replicas": replicas},
			"status": map[string]any{"updatedReplicas": updated, "replicas": total, "readyReplicas": ready},
		}}
	}
	inProgress := &status.Result{Status: status.InProgressStatus}
	for _, tc := range []struct {
		u    *unstructured.Unstructured
		res  *status.Result
		want string
	}{
		{deploy(3, 1, 3, 2), inProgress, "1/3 updated"},
		{deploy(3, 3, 4, 3), inProgress, "1 old replica(s) terminating"},
		{deploy(3, 3, 3, 2), inProgress, "2/3 ready"},
		{deploy(3, 3, 3, 3), &status.Result{Status: status.CurrentStatus}, "3/3 ready"},
		{&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}, &status.Result{Status: status.CurrentStatus}, "Current"},
		{&unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.com/v1", "kind": "Widget"}},
			&status.Result{Status: status.FailedStatus, Conditions: []status.Condition{{Type: status.ConditionStalled, Reason: "Broken", Message: "it broke"}}},
			"Failed: Broken: it broke"},
	} {
		if got := summarize(tc.u, tc.res); got != tc.want {
			t.Errorf("summarize(%v, %v) = %q, want %q", tc.u.Object["status"], tc.res.Status, got, tc.want)
		}
	}
}

func TestSafeDetail(t *testing.T) {
	for msg, want := range map[string]string{
		"yaml: line 1: did not find expected ',' or '}'":                                 "",
		"json: cannot unmarshal string into Go struct field Config.users of type []v1.X": ": json: cannot unmarshal string into Go struct field Config.users of type []v1.X",
		"cannot unmarshal !!str `s3cr3t` into int":                                       "",
		`unknown field "token"`:                                                          "",
	} {
		if got := safeDetail(errors.New(msg)); got != want {
			t.Errorf("safeDetail(%q) = %q, want %q", msg, got, want)
		}
	}
}
