package flux

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/step/cluster"
)

const hex40 = "0123456789abcdef0123456789abcdef01234567"

func TestCommitOf(t *testing.T) {
	tests := []struct{ rev, want string }{
		{"main@sha1:" + hex40, hex40},
		{"refs/heads/release/v1@sha1:" + hex40, hex40},
		{"sha1:" + hex40, hex40},
		{"main/" + hex40, hex40}, // Flux before v2.1
		{"", ""},
		{"main@sha1:0123", ""},
		{"main@sha256:" + hex40 + hex40[:24], ""},
		{"v1.2.3@sha1:" + hex40[:39] + "g", ""},
	}
	for _, tt := range tests {
		if got := commitOf(tt.rev); got != tt.want {
			t.Errorf("commitOf(%q) = %q, want %q", tt.rev, got, tt.want)
		}
	}
}

func TestParseInventoryID(t *testing.T) {
	tests := []struct {
		id      string
		want    cluster.ObjectRef
		wantErr bool
	}{
		{id: "web-staging_web_apps_Deployment", want: cluster.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: "web-staging", Name: "web"}},
		{id: "_web-staging__Namespace", want: cluster.ObjectRef{Kind: "Namespace", Name: "web-staging"}},
		{id: "web-staging_web__Service", want: cluster.ObjectRef{Kind: "Service", Namespace: "web-staging", Name: "web"}},
		{id: "_system__aggregate_rbac.authorization.k8s.io_ClusterRole", want: cluster.ObjectRef{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:aggregate"}},
		{id: "web", wantErr: true},
		{id: "ns_web_apps_", wantErr: true},
		{id: "ns__apps_Deployment", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseInventoryID(tt.id)
		if (err != nil) != tt.wantErr || err == nil && got != tt.want {
			t.Errorf("parseInventoryID(%q) = %+v, %v; want %+v (error: %v)", tt.id, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSameRepo(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"https://gitlab.example.com/team/config.git", "https://gitlab.example.com/team/config", true},
		{"https://user:tok@GitLab.example.com/team/config.git/", "ssh://git@gitlab.example.com:2222/team/config.git", true},
		{"git@gitlab.example.com:team/config.git", "https://gitlab.example.com/team/config", true},
		{"http://127.0.0.1:4000/config.git", "http://127.0.0.1:5000/config.git", true}, // ports are ignored: proxies, ssh vs https
		{"https://gitlab.example.com/team/config.git", "https://gitlab.example.com/team/other.git", false},
		{"https://gitlab.example.com/team/config.git", "https://github.com/team/config.git", false},
	}
	for _, tt := range tests {
		if got := sameRepo(tt.a, tt.b); got != tt.want {
			t.Errorf("sameRepo(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSourceRef(t *testing.T) {
	src := func(ref map[string]any) *unstructured.Unstructured {
		spec := map[string]any{"url": "http://x"}
		if ref != nil {
			spec["ref"] = ref
		}
		return &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	}
	tests := []struct {
		ref          map[string]any
		branch, othr string
	}{
		{ref: map[string]any{"branch": "main"}, branch: "main"},
		{ref: nil, branch: "master"},
		{ref: map[string]any{"name": "refs/heads/prod"}, branch: "prod"},
		{ref: map[string]any{"tag": "v1.0.0"}, othr: "tag v1.0.0"},
		{ref: map[string]any{"semver": ">=1.0"}, othr: "semver >=1.0"},
		{ref: map[string]any{"branch": "main", "commit": hex40}, branch: "main", othr: "commit " + hex40},
		{ref: map[string]any{"name": "refs/pull/1/head"}, othr: "ref refs/pull/1/head"},
	}
	for _, tt := range tests {
		s := src(tt.ref)
		if got := sourceBranch(s); got != tt.branch {
			t.Errorf("sourceBranch(%v) = %q, want %q", tt.ref, got, tt.branch)
		}
		if got := refOtherThanBranch(s); got != tt.othr {
			t.Errorf("refOtherThanBranch(%v) = %q, want %q", tt.ref, got, tt.othr)
		}
	}
}

// TestAttemptedAndReadyFor: the revision a Kustomization tries is read from its Reconciling
// condition when that names one (a failure before lastAttemptedRevision is set), and a Ready
// condition that names another revision than lastAppliedRevision is not taken as ready for it.
func TestAttemptedAndReadyFor(t *testing.T) {
	other := "fedcba9876543210fedcba9876543210fedcba98"
	ks := func(last string, conds ...map[string]any) *unstructured.Unstructured {
		var cs []any
		for _, c := range conds {
			cs = append(cs, c)
		}
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"lastAttemptedRevision": last, "conditions": cs}}}
	}
	cond := func(typ, status, msg string) map[string]any {
		return map[string]any{"type": typ, "status": status, "reason": "r", "message": msg}
	}
	k := ks("main@sha1:"+hex40, cond("Reconciling", "True", "Fetching manifests for revision main@sha1:"+other+" with a timeout of 30s"))
	if got := commitOf(attempted(k)); got != other {
		t.Errorf("attempted = %s, want the revision the Reconciling condition names, %s", got, other)
	}
	k = ks("main@sha1:"+hex40, cond("Reconciling", "False", "Fetching manifests for revision main@sha1:"+other))
	if got := commitOf(attempted(k)); got != hex40 {
		t.Errorf("attempted = %s, want lastAttemptedRevision %s", got, hex40)
	}
	k = ks("", cond("Ready", "True", "Applied revision: main@sha1:"+other))
	if readyFor(k, hex40) || !readyFor(k, other) {
		t.Errorf("readyFor does not follow the revision the Ready message names")
	}
	if !readyFor(ks("", cond("Ready", "True", "Reconciliation finished")), hex40) {
		t.Errorf("a Ready message naming no revision should not block")
	}
}

// TestSuspendedBy: who suspended an object is the field manager owning spec.suspend.
func TestSuspendedBy(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC))
	entry := func(manager, fields, sub string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, Time: &at,
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(fields), Subresource: sub}
	}
	tests := []struct {
		fields []metav1.ManagedFieldsEntry
		want   string
	}{
		{nil, ""},
		{[]metav1.ManagedFieldsEntry{
			entry("kubectl-client-side-apply", `{"f:spec":{"f:path":{},"f:interval":{}}}`, ""),
			entry("kustomize-controller", `{"f:status":{"f:suspend":{}}}`, "status"),
			entry("flux-client-side-apply", `{"f:spec":{"f:suspend":{}}}`, ""),
		}, "flux-client-side-apply at 2026-11-30T10:00:00Z"},
	}
	for _, tt := range tests {
		u := &unstructured.Unstructured{Object: map[string]any{}}
		u.SetManagedFields(tt.fields)
		if got := suspendedBy(u); got != tt.want {
			t.Errorf("suspendedBy = %q, want %q", got, tt.want)
		}
	}
}
